"""The data map's model: the tables (or entity types) a tenant's subjects live in, how to
find a subject's items, what each action does to each attribute, the files, roles and
exemptions. `oblio.core.datamap` loads and checks a map; `oblio.core.layout` turns a table's
keys into key conditions and physical names.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from oblio.core import paths, templates
from oblio.core.errors import DataMapError
from oblio.core.identity import IDENTITY_KINDS, IdentityKind

Category = Literal["identity", "contact", "content", "behaviour", "technical", "consent",
                   "non_personal"]
PERSONAL: frozenset[str] = frozenset(
    {"identity", "contact", "content", "behaviour", "technical", "consent"})

_STRATEGY = re.compile(r"^(keep|null|mask|generalise|hmac|pseudonym:.*\{n\}.*)$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class Attribute(_Strict):
    """One attribute of a mapped table."""

    category: Category
    #: the attribute holds an identity of this kind (used for lookups, suppression, checks)
    identity: IdentityKind | None = None
    #: what anonymisation (and erasure that keeps the shell) does to it:
    #: keep | null | mask | generalise | hmac | pseudonym:<template with {n}>
    anonymise: str | None = None
    #: what erasure does to it when the table keeps the shell (default: the anonymise rule)
    erase: str | None = None
    #: exported in access / portability archives
    export: bool = True
    #: the attribute holds an object key in this (logical) bucket
    s3: str | None = None
    #: the value is about another person: redacted in the subject's export
    other_person: bool = False

    @field_validator("anonymise", "erase")
    @classmethod
    def _strategy(cls, v: str | None) -> str | None:
        return _valid_strategy(v)


def _valid_strategy(v: str | None) -> str | None:
    if v is not None and (not _STRATEGY.match(v) or not _renders(v)):
        raise ValueError("must be keep, null, mask, generalise, hmac or "
                         "'pseudonym:<template with {n}>' (e.g. 'pseudonym:L_{n}')")
    return v


def _renders(rule: str) -> bool:
    """A pseudonym template must format with `n` alone, as the engine formats it."""
    if not rule.startswith("pseudonym:"):
        return True
    try:
        rule.split(":", 1)[1].format(n=0)
    except (KeyError, IndexError, ValueError, AttributeError):
        return False
    return True


class KeyPart(_Strict):
    """A key attribute whose value is a template of attributes and constants (version 2),
    e.g. `{attribute: pk, template: "TENANT#{tenant}#EMP#{employee_id}"}`."""

    attribute: str
    template: str | None = None

    @property
    def parsed(self) -> templates.Template | None:
        return templates.parse(self.template) if self.template else None


class KeySchema(_Strict):
    """A table's or an index's key: each part an attribute name (its value as it is) or, in
    version 2, an attribute with a template."""

    partition: str | KeyPart
    sort: str | KeyPart | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.attribute for p in self.parts)

    @property
    def parts(self) -> tuple[KeyPart, ...]:
        out = [self.partition if isinstance(self.partition, KeyPart)
               else KeyPart(attribute=self.partition)]
        if self.sort is not None:
            out.append(self.sort if isinstance(self.sort, KeyPart)
                       else KeyPart(attribute=self.sort))
        return tuple(out)

    @property
    def partition_part(self) -> KeyPart:
        return self.parts[0]

    @property
    def sort_part(self) -> KeyPart | None:
        return self.parts[1] if len(self.parts) > 1 else None

    @property
    def templated(self) -> bool:
        return any(p.template for p in self.parts)


class Entity(_Strict):
    """How one entity type is told apart from the others in a shared table (single-table
    design): by its sort key's prefix (by default the constant its sort template starts
    with, e.g. `PAYSLIP#`), and/or by a type attribute's value."""

    sort_prefix: str | None = None
    attribute: str | None = None
    value: str | None = None


class Find(_Strict):
    """One way to reach the subject's items: by an identity, or from another table's items."""

    identity: IdentityKind | None = None
    from_: str | None = Field(default=None, alias="from")  # "table.attribute"
    #: the index to query (keyed by the tenant attribute and `attribute`); none: the base
    #: table, whose sort key is `attribute`
    index: str | None = None
    attribute: str
    #: the role in which the subject appears in the items this find reaches (version 2):
    #: none, the items are about her; a role of the table's `roles` (e.g. `author` of a
    #: review about someone else), its rules apply instead
    role: str | None = None

    @property
    def source(self) -> tuple[str, str] | None:
        if self.from_ is None:
            return None
        table, _, attr = self.from_.partition(".")
        return table, attr


class Sweep(_Strict):
    """How retention sweeps find a table's old items. With `index`: a GSI partitioned by
    `bucket_attribute` (`<tenant>#<YYYY-MM>` of `date_attribute`) and sorted by
    `date_attribute`, so a sweep queries only the month buckets older than its cutoff. Without
    one, `scan_segments` declares the fallback: a parallel segmented Scan of the table (its
    cost grows with the table, not with the candidates)."""

    index: str | None = None
    bucket_attribute: str = "sweep_bucket"
    date_attribute: str | None = None
    #: the oldest month bucket a sweep looks at, counted back from its cutoff
    horizon_months: int = Field(default=120, ge=1, le=1200)
    scan_segments: int = Field(default=0, ge=0, le=64)


class FileRule(_Strict):
    """S3 objects that go with each item by a naming convention rather than a pointer: one
    object by a key `template`, or every object under a `prefix` template (both of `{tenant}`
    and the item's attributes, e.g. `{tenant}/employees/{employee_id}/`). Every version of
    every object goes with the item in erasure and anonymisation, every object is in its
    export, and verification lists the key or prefix again to prove it empty."""

    bucket: str  # a logical bucket of `buckets`
    key: str | None = None
    prefix: str | None = None

    @property
    def kind(self) -> Literal["key_template", "prefix"]:
        return "prefix" if self.prefix is not None else "key_template"

    @property
    def template(self) -> templates.Template:
        return templates.parse(self.prefix if self.prefix is not None else self.key or "")


class RoleRule(_Strict):
    """What an action does to one attribute of an item reached in a role."""

    anonymise: str | None = None
    erase: str | None = None

    @field_validator("anonymise", "erase")
    @classmethod
    def _strategy(cls, v: str | None) -> str | None:
        return _valid_strategy(v)


class Role(_Strict):
    """How the subject's actions treat an item she appears in only in this role (a review
    she wrote about a colleague, a leave she approved): the item is not hers, so by default
    only the attributes named here (those that name her) are rewritten, everything else is
    kept, and its files stay."""

    on_erase: Literal["anonymise", "delete", "keep"] = "anonymise"
    on_anonymise: Literal["anonymise", "delete", "keep"] = "anonymise"
    attributes: dict[str, RoleRule] = Field(default_factory=dict)

    def rule(self, attribute: str, action: str) -> str:
        r = self.attributes.get(attribute)
        if r is None:
            return "keep"
        if action == "erase" and r.erase is not None:
            return r.erase
        return r.anonymise or "keep"


class Retain(_Strict):
    """An exemption from erasure (Art. 17(3)): the law requires the items kept (payroll
    records). Erasure counts them `retained`, with this basis and period, in the result and
    the certificate; attributes with an `erase:` rule are rewritten by it while the rest is
    kept, and their files stay. A retention policy deletes them once the period is over."""

    legal_basis: str = Field(min_length=1)
    #: how long (an ISO 8601 duration such as P10Y, or words: "10 years after the tax year")
    period: str = Field(min_length=1)


class LegalHold(_Strict):
    """A legal hold: an item whose `attribute` is true (or a non-empty string) is neither
    erased nor anonymised, and is counted `held` with its reason."""

    attribute: str
    #: an attribute holding the reason (a case number or short text; it is shown in results
    #: and certificates, so it must not name people: e-mails and numbers are cut)
    reason_attribute: str | None = None
    reason: str = "legal hold"


class TableMap(_Strict):
    #: the physical DynamoDB table name, or (version 2, silo tenancy) a template of the
    #: tenant such as `{tenant}-employees`
    table: str
    purpose: str = ""
    key: KeySchema
    #: the indexes finds query, with their keys (version 2; in version 1 an index is keyed by
    #: the tenant attribute and the find's attribute)
    indexes: dict[str, KeySchema] = Field(default_factory=dict)
    #: an entity type in a table shared with others (version 2)
    entity: Entity | None = None
    find: list[Find] = Field(default_factory=list)
    #: erasure deletes the item, anonymises it and keeps the shell for reporting, or (version
    #: 2) retains it because a law requires it (`retain:` says which and how long)
    on_erase: Literal["delete", "anonymise", "retain"] = "delete"
    #: anonymisation rewrites the item by its rules, deletes it, or retains it
    on_anonymise: Literal["anonymise", "delete", "retain"] = "anonymise"
    #: the exemption that `retain` applies (version 2)
    retain: Retain | None = None
    #: the attribute that puts one item on legal hold (version 2)
    legal_hold: LegalHold | None = None
    #: the table holds pending deliveries (scheduled sends, subscriptions)
    pending_deliveries: bool = False
    #: the purposes its pending deliveries serve (an objection to one removes the subject)
    purposes: list[str] = Field(default_factory=list)
    #: the attribute that marks the subject's processing as restricted (Art. 18)
    restriction_flag: str | None = None
    #: retention sweeps: the sweep index, or the declared Scan fallback
    sweep: Sweep | None = None
    #: a DynamoDB TTL attribute (epoch seconds): an item past it is never returned by a read
    #: (TTL deletion is lazy) and retention sweeps purge it
    ttl_attribute: str | None = None
    #: the DynamoDB type of key and index-key attributes that are not strings (N, B): what
    #: `oblio local up` creates a missing table with
    key_types: dict[str, Literal["S", "N", "B"]] = Field(default_factory=dict)
    #: S3 objects by key template or prefix (version 2)
    files: list[FileRule] = Field(default_factory=list)
    #: the roles finds may name, each with its own rules (version 2)
    roles: dict[str, Role] = Field(default_factory=dict)
    #: attribute paths (`address.street`, `annexes[].s3_key`) or top-level names
    attributes: dict[str, Attribute]

    def physical(self, tenant_id: str) -> str:
        """The physical table name for a tenant (a silo table's template rendered)."""
        return physical_name(self.table, tenant_id, "table")

    def key_parts(self) -> list[KeyPart]:
        """Every key part of the table and its declared indexes."""
        return [*self.key.parts, *(p for i in self.indexes.values() for p in i.parts)]

    def field(self, item: dict[str, Any], name: str, tenant_id: str) -> Any:
        """The value of a template's field for one item: the tenant, the attribute (a path
        without []) of that name, or the field read back from a key template that holds it
        (the employee id inside `TENANT#acme#EMP#E042`)."""
        if name == templates.TENANT:
            return tenant_id
        found = paths.first(item, name)
        if found is not None:
            return found
        for part in self.key_parts():
            tpl = part.parsed if _template_ok(part) else None
            if tpl is not None and name in tpl.fields:
                got = tpl.match(item.get(part.attribute))
                if got is not None:
                    return got[name]
        return None

    def field_values(self, item: dict[str, Any], name: str, tenant_id: str) -> list[Any]:
        """Every value a reference to `name` reads from the item (a path may reach many)."""
        found = [v for _, v in paths.values(item, name)] if parses(name) else []
        if found:
            return found
        one = self.field(item, name, tenant_id)
        return [] if one is None else [one]

    def template_fields(self) -> set[str]:
        """Attributes that the table's file templates read (beside the tenant)."""
        return {f for r in self.files if renders_ok(r) for f in r.template.fields
                if f != templates.TENANT}

    @cached_property
    def tree(self) -> paths.Tree:
        """The mapped attribute paths, for walking an item's maps and lists."""
        return paths.Tree([paths.parse(a) for a in self.attributes if parses(a)])

    @cached_property
    def path_names(self) -> dict[paths.Pattern, str]:
        """Each mapped pattern -> the attribute path as the map writes it."""
        return {paths.parse(a): a for a in self.attributes if parses(a)}

    def s3_attributes(self) -> dict[str, str]:
        return {n: a.s3 for n, a in self.attributes.items() if a.s3}

    def identity_attributes(self) -> dict[str, str]:
        return {n: a.identity for n, a in self.attributes.items() if a.identity}

    def rule(self, attribute: str, action: str = "anonymise") -> str:
        """The strategy `action` ("anonymise" or "erase") applies to `attribute` (a
        top-level name or a mapped path)."""
        a = self.attributes.get(attribute)
        if attribute in self.key.names:
            return "keep"
        if a is None:
            return "null"  # an attribute the map does not know is not kept in a shell
        if action == "erase" and a.erase is not None:
            return a.erase
        return a.anonymise or "keep"


class RegisterEntry(_Strict):
    """What the processing register says about one table's processing (Art. 15(1)): an
    access export hands it to the subject. Empty fields fall back to the register's default."""

    legal_basis: str = ""
    #: recipients or categories of recipients the data is disclosed to
    recipients: list[str] = Field(default_factory=list)
    #: how long the data is kept, or the criteria that decide it
    retention: str = ""
    #: where the data comes from when not from the subject
    source: str = ""


class Register(_Strict):
    """The controller's processing register, as far as an access export needs it."""

    controller: str = ""
    #: the data protection officer or privacy contact
    contact: str = ""
    rights: str = ("You may ask for a copy of your data (Art. 15), its rectification (Art. 16), "
                   "its erasure (Art. 17), the restriction of its processing (Art. 18), a copy "
                   "in a machine-readable format (Art. 20), and object to its processing "
                   "(Art. 21).")
    complaint: str = ("You may lodge a complaint with a data protection supervisory authority, "
                      "in particular in the member state where you live or work.")
    automated_decisions: str = "none"
    #: what applies to every table unless its entry says otherwise
    default: RegisterEntry = Field(default_factory=RegisterEntry)
    tables: dict[str, RegisterEntry] = Field(default_factory=dict)

    def entry(self, table: str) -> RegisterEntry:
        """The table's entry, with the default filling what it leaves empty."""
        own = self.tables.get(table, RegisterEntry())
        return RegisterEntry(**{f: getattr(own, f) or getattr(self.default, f)
                                for f in RegisterEntry.model_fields})


class DataMap(_Strict):
    #: 1: the first format; 2 adds key templates, entity types, silo tenancy, files by
    #: template or prefix, roles, exemptions and legal holds (version 1 still loads)
    version: Literal[1, 2] = 1
    name: str
    tenant_attribute: str = "tenant_id"
    identities: list[IdentityKind] = Field(default_factory=lambda: list(IDENTITY_KINDS))
    #: logical bucket name -> physical bucket name
    buckets: dict[str, str] = Field(default_factory=dict)
    #: set on items that oblio anonymised, so that a repeat pass changes nothing
    anonymised_marker: str = "_oblio_anonymised"
    #: the processing register (purposes are each table's `purpose`): the Art. 15 information
    #: sheet of access exports (`register:` in the file)
    processing_register: Register = Field(default_factory=Register, alias="register")
    tables: dict[str, TableMap]

    @cached_property
    def order(self) -> list[str]:
        """Tables in walk order: every table after the tables its finds come from."""
        return _topological(self)

    @cached_property
    def digest(self) -> str:
        canon = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return hashlib.sha256(canon.encode()).hexdigest()

    def referenced_attributes(self, table: str) -> set[str]:
        """Attributes of `table` that other tables' finds read."""
        out: set[str] = set()
        for t in self.tables.values():
            for f in t.find:
                if f.source and f.source[0] == table:
                    out.add(f.source[1])
        return out

    def bucket(self, logical: str, tenant_id: str | None = None) -> str:
        """The physical bucket of a logical one, for a tenant when its name is a template
        of the tenant (silo tenancy)."""
        name = self.buckets[logical]
        if tenant_id is None:
            if templates.is_template(name):
                raise DataMapError([f"bucket '{logical}' is a template of the tenant: name "
                                    "the tenant to resolve it"])
            return name
        return physical_name(name, tenant_id, "bucket")

    def physical_buckets(self, tenant_id: str | None) -> set[str]:
        return {self.bucket(b, tenant_id) for b in self.buckets
                if tenant_id is not None or not templates.is_template(self.buckets[b])}

    def marker(self, subject_ref: str, role: str | None = None) -> str:
        """The attribute that records an item anonymised. Version 1: one marker per item.
        Version 2: one per subject and role, so that a second person's pass over a shared
        item (a review by one colleague about another) is never skipped."""
        if self.version < 2:
            return self.anonymised_marker
        return f"{self.anonymised_marker}#{subject_ref}#{role or 'subject'}"

    def is_marker(self, attribute: str) -> bool:
        """One of oblio's markers (never exported, never rewritten)."""
        return attribute == self.anonymised_marker or \
            attribute.startswith(self.anonymised_marker + "#")

    def anonymised(self, item: dict[str, Any]) -> bool:
        """Some pass anonymised the item (any subject, any role)."""
        return any(self.is_marker(a) for a in item)

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)


def _template_ok(part: KeyPart) -> bool:
    try:
        _ = part.parsed
    except templates.TemplateError:
        return False
    return True


#: physical names the services accept (DynamoDB tables, S3 buckets)
_NAMES = {"table": re.compile(r"^[A-Za-z0-9_.-]{3,255}$"),
          "bucket": re.compile(r"^(?!-)[a-z0-9.-]{3,63}(?<!-)$")}


def physical_name(text: str, tenant_id: str, kind: str) -> str:
    """A table or bucket name of the map for a tenant: as it is, or its `{tenant}` template
    rendered (silo tenancy); raises DataMapError when the name would be one AWS rejects."""
    if not templates.is_template(text):
        return text
    name = templates.parse(text).render({templates.TENANT: tenant_id}) or ""
    if not _NAMES[kind].match(name):
        raise DataMapError([f"{kind} template '{text}' makes '{name}' for tenant "
                            f"'{tenant_id}', which AWS rejects as a {kind} name"])
    return name


def renders_ok(rule: FileRule) -> bool:
    try:
        _ = rule.template
    except templates.TemplateError:
        return False
    return True


def parses(path: str) -> bool:
    try:
        paths.parse(path)
    except paths.PathError:
        return False
    return True


def _topological(dm: DataMap) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(name: str, path: list[str]) -> None:
        if state.get(name) == 2:
            return
        if state.get(name) == 1:
            cycle = " -> ".join([*path[path.index(name):], name])
            raise DataMapError([f"tables {cycle} reference each other in a cycle; a find's "
                                "'from' must lead back to an identity"])
        state[name] = 1
        for f in dm.tables[name].find:
            if f.source and f.source[0] in dm.tables:
                visit(f.source[0], [*path, name])
        state[name] = 2
        order.append(name)

    for name in dm.tables:
        visit(name, [])
    return order


