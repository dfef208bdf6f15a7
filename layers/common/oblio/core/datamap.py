"""The data map: which tables hold a tenant's subjects, how to find a subject's items, and
what each action does to each attribute.

`load()` reads the YAML, validates it against the schema (pydantic; `schema()` gives the JSON
Schema), then checks what a schema cannot: every table reachable from an identity, every
reference pointing at a mapped attribute, no cycle, no personal attribute without a rule, no
key attribute that an action would have to change. `check_tables()` compares the map with the
live tables (key schema, indexes). Every problem found is reported at once, each naming the
table and attribute.
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from oblio.core import paths, templates
from oblio.core.errors import DataMapError
from oblio.core.identity import IDENTITY_KINDS, IdentityKind
from oblio.core.settings import get_settings

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


class KeySchema(_Strict):
    partition: str
    sort: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.partition,) if self.sort is None else (self.partition, self.sort)


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
    table: str  # the physical DynamoDB table name
    purpose: str = ""
    key: KeySchema
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
    #: S3 objects by key template or prefix (version 2)
    files: list[FileRule] = Field(default_factory=list)
    #: the roles finds may name, each with its own rules (version 2)
    roles: dict[str, Role] = Field(default_factory=dict)
    #: attribute paths (`address.street`, `annexes[].s3_key`) or top-level names
    attributes: dict[str, Attribute]

    def field(self, item: dict[str, Any], name: str, tenant_id: str) -> Any:
        """The value of a template's field for one item: the tenant, or the attribute (a
        path without []) of that name."""
        if name == templates.TENANT:
            return tenant_id
        return paths.first(item, name)

    def template_fields(self) -> set[str]:
        """Attributes that the table's file templates read (beside the tenant)."""
        return {f for r in self.files if _renders_ok(r) for f in r.template.fields
                if f != templates.TENANT}

    @cached_property
    def tree(self) -> paths.Tree:
        """The mapped attribute paths, for walking an item's maps and lists."""
        return paths.Tree([paths.parse(a) for a in self.attributes if _parses(a)])

    @cached_property
    def path_names(self) -> dict[paths.Pattern, str]:
        """Each mapped pattern -> the attribute path as the map writes it."""
        return {paths.parse(a): a for a in self.attributes if _parses(a)}

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


def _renders_ok(rule: FileRule) -> bool:
    try:
        _ = rule.template
    except templates.TemplateError:
        return False
    return True


def _parses(path: str) -> bool:
    try:
        paths.parse(path)
    except paths.PathError:
        return False
    return True


def schema() -> dict[str, Any]:
    """The JSON Schema of a data map file."""
    return DataMap.model_json_schema(by_alias=True)


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


def _problems(dm: DataMap) -> list[str]:
    out: list[str] = [f"register: tables names an unmapped table '{n}'"
                      for n in dm.processing_register.tables if n not in dm.tables]
    for name, t in dm.tables.items():
        where = f"table '{name}'"
        if t.key.partition != dm.tenant_attribute:
            out.append(f"{where}: its partition key '{t.key.partition}' must be the tenant "
                       f"attribute '{dm.tenant_attribute}' (every key carries the tenant)")
        if not t.find:
            out.append(f"{where}: no 'find' rule, so it cannot be reached from any identity; "
                       "add a find by identity or 'from' another table")
        known = set(t.attributes) | set(t.key.names)
        out += _path_problems(where, t)
        out += _file_problems(dm, where, t)
        out += _exemption_problems(dm, where, t)
        out += _role_problems(dm, where, t)
        for i, f in enumerate(t.find):
            fw = f"{where}, find #{i + 1}"
            if (f.identity is None) == (f.from_ is None):
                out.append(f"{fw}: give exactly one of 'identity' or 'from'")
            if f.identity and f.identity not in dm.identities:
                out.append(f"{fw}: identity '{f.identity}' is not in the map's identities")
            if f.attribute not in known:
                out.append(f"{fw}: attribute '{f.attribute}' is not an attribute of the table")
            elif _parses(f.attribute) and paths.nested(f.attribute):
                out.append(f"{fw}: attribute '{f.attribute}' is a path inside a map or list, "
                           "which DynamoDB cannot query; find by a top-level attribute (copy "
                           "the value to one, with an index on it)")
            if f.index is None and f.attribute != t.key.sort:
                out.append(f"{fw}: attribute '{f.attribute}' is not the table's sort key, so "
                           "it needs an 'index' keyed by the tenant attribute and it")
            if f.source:
                src, attr = f.source
                if src not in dm.tables:
                    out.append(f"{fw}: 'from: {f.from_}' names an unmapped table '{src}'")
                elif attr not in dm.tables[src].attributes and attr not in \
                        dm.tables[src].key.names:
                    out.append(f"{fw}: 'from: {f.from_}': table '{src}' has no attribute "
                               f"'{attr}'")
        if t.restriction_flag and t.restriction_flag not in t.attributes:
            out.append(f"{where}: restriction_flag '{t.restriction_flag}' is not an attribute "
                       "of the table")
        if t.sweep is not None:
            sw = t.sweep
            if sw.index is None and not sw.scan_segments:
                out.append(f"{where}: sweep needs an 'index' (keyed by its bucket and date "
                           "attributes) or 'scan_segments' (the declared Scan fallback)")
            for attr in ([sw.bucket_attribute] if sw.index else []) + \
                    ([sw.date_attribute] if sw.date_attribute else []):
                if attr not in known:
                    out.append(f"{where}: sweep attribute '{attr}' is not an attribute of "
                               "the table")
            if sw.index and not sw.date_attribute:
                out.append(f"{where}: a sweep index needs its 'date_attribute'")
        if t.ttl_attribute and t.ttl_attribute not in known:
            out.append(f"{where}: ttl_attribute '{t.ttl_attribute}' is not an attribute of "
                       "the table")
        if t.purposes and not t.pending_deliveries:
            out.append(f"{where}: 'purposes' applies to pending deliveries; set "
                       "pending_deliveries: true or remove it")
        for attr, a in t.attributes.items():
            aw = f"{where}, attribute '{attr}'"
            if a.category in PERSONAL and a.anonymise is None and attr not in t.key.names:
                out.append(f"{aw}: category '{a.category}' is personal data but has no "
                           "'anonymise' rule (keep, null, mask, generalise, hmac, pseudonym:...)")
            if a.s3 and a.s3 not in dm.buckets:
                out.append(f"{aw}: s3 bucket '{a.s3}' is not declared under 'buckets'")
            if a.identity and a.identity not in dm.identities:
                out.append(f"{aw}: identity '{a.identity}' is not in the map's identities")
            rewrites = t.on_erase == "anonymise" or t.on_anonymise == "anonymise"
            if attr in t.key.names and a.anonymise not in (None, "keep") and rewrites:
                out.append(f"{aw}: it is part of the table's key, which cannot be rewritten in "
                           f"place, but its rule is '{a.anonymise}'; make the rule 'keep' or "
                           "make on_erase and on_anonymise 'delete'")
            if attr in t.key.names and a.erase not in (None, "keep") and \
                    t.on_erase == "anonymise":
                out.append(f"{aw}: it is part of the table's key, which cannot be rewritten in "
                           f"place, but its erase rule is '{a.erase}'; make the rule 'keep' or "
                           "make on_erase 'delete'")
    return out


def _role_problems(dm: DataMap, where: str, t: TableMap) -> list[str]:
    out: list[str] = []
    used = {f.role for f in t.find if f.role}
    if (used or t.roles) and dm.version < 2:
        out.append(f"{where}: roles need version: 2")
    for role in sorted(used - set(t.roles)):
        out.append(f"{where}: a find names the role '{role}', which 'roles' does not "
                   "declare; declare it with the attributes that name the subject")
    for role in sorted(set(t.roles) - used):
        out.append(f"{where}: role '{role}' is declared but no find names it; add "
                   f"'role: {role}' to the find that reaches those items, or remove it")
    for name, r in t.roles.items():
        for attr, rule in r.attributes.items():
            aw = f"{where}, role '{name}', attribute '{attr}'"
            if attr not in t.attributes and attr not in t.key.names:
                out.append(f"{aw}: not an attribute of the table; declare it under "
                           "'attributes'")
            rewrites = {x for x in (rule.anonymise, rule.erase) if x not in (None, "keep")}
            if attr in t.key.names and rewrites:
                out.append(f"{aw}: it is part of the table's key, which cannot be rewritten "
                           "in place; make the rule 'keep'")
    return out


def _exemption_problems(dm: DataMap, where: str, t: TableMap) -> list[str]:
    out: list[str] = []
    retains = "retain" in (t.on_erase, t.on_anonymise)
    if (retains or t.retain or t.legal_hold) and dm.version < 2:
        out.append(f"{where}: exemptions (on_erase: retain, retain, legal_hold) need "
                   "version: 2")
    if retains and t.retain is None:
        out.append(f"{where}: on_erase or on_anonymise is 'retain' but no 'retain: "
                   "{legal_basis, period}' says which law requires it and for how long")
    if t.retain is not None and not retains:
        out.append(f"{where}: 'retain' is given but neither on_erase nor on_anonymise is "
                   "'retain'; set on_erase: retain or remove it")
    hold = t.legal_hold
    if hold is not None:
        for setting, attr in (("attribute", hold.attribute),
                              ("reason_attribute", hold.reason_attribute)):
            if attr is None:
                continue
            if attr not in t.attributes and attr not in t.key.names:
                out.append(f"{where}: legal_hold {setting} '{attr}' is not an attribute of "
                           "the table; declare it under 'attributes'")
            elif _parses(attr) and paths.nested(attr):
                out.append(f"{where}: legal_hold {setting} '{attr}' must be a top-level "
                           "attribute, not a path")
    return out


def _file_problems(dm: DataMap, where: str, t: TableMap) -> list[str]:
    """File rules: version 2, a declared bucket, exactly one of key and prefix, a template
    of declared attributes; a prefix that ends with '/' after its last field and names
    something of the item (else it would hold other subjects' files too)."""
    out: list[str] = []
    if t.files and dm.version < 2:
        out.append(f"{where}: 'files' (objects by key template or prefix) needs version: 2")
    known = set(t.attributes) | set(t.key.names)
    for i, r in enumerate(t.files):
        fw = f"{where}, files #{i + 1}"
        if r.bucket not in dm.buckets:
            out.append(f"{fw}: bucket '{r.bucket}' is not declared under 'buckets'")
        if (r.key is None) == (r.prefix is None):
            out.append(f"{fw}: give exactly one of 'key' (a key template) or 'prefix'")
            continue
        text = r.prefix if r.prefix is not None else r.key
        try:
            tpl = r.template
        except templates.TemplateError as exc:
            out.append(f"{fw}: {exc}")
            continue
        for name in tpl.fields:
            if name != templates.TENANT and name not in known:
                out.append(f"{fw}: template '{text}' names '{{{name}}}', which is not an "
                           "attribute of the table; declare it under 'attributes' or use "
                           "{tenant}")
        if not [f for f in tpl.fields if f != templates.TENANT]:
            out.append(f"{fw}: template '{text}' names no attribute of the item, so every "
                       "subject would get the same files; put the item's id in it, e.g. "
                       "'{tenant}/employees/{employee_id}/'")
        if r.prefix is not None and (tpl.constant or not tpl.parts[-1].endswith("/")):
            out.append(f"{fw}: prefix '{text}' must end with '/' after its last field, or "
                       "it would also reach the files of items whose id starts the same "
                       "(employee 1 and employee 10)")
    return out


def _path_problems(where: str, t: TableMap) -> list[str]:
    """Attribute paths that do not parse, that use one attribute as both a map and a list,
    that reach into a key attribute; flags that must be top-level attributes."""
    out: list[str] = []
    shapes: dict[paths.Pattern, set[str]] = {}
    for attr in t.attributes:
        try:
            pat = paths.parse(attr)
        except paths.PathError as exc:
            out.append(f"{where}, attribute '{attr}': {exc}")
            continue
        if len(pat) > 1 and pat[0] in t.key.names:
            out.append(f"{where}, attribute '{attr}': it reaches into the key attribute "
                       f"'{pat[0]}', which holds no map or list; name the key attribute "
                       "itself")
        for i in range(1, len(pat)):
            shapes.setdefault(pat[:i], set()).add("list" if pat[i] == paths.ALL else "map")
    for pat, kinds in shapes.items():
        if len(kinds) > 1:
            name = paths.text(pat)
            out.append(f"{where}: attribute path '{name}' is used both as a list "
                       f"('{name}[]...') and as a map ('{name}.<member>'); give each path "
                       "the shape the items have")
    flags = {"restriction_flag": t.restriction_flag, "ttl_attribute": t.ttl_attribute}
    for setting, flag in flags.items():
        if flag and _parses(flag) and paths.nested(flag):
            out.append(f"{where}: {setting} '{flag}' must be a top-level attribute, not a "
                       "path")
    return out


def parse(data: Any, source: str = "data map") -> DataMap:
    """Validate an already-parsed data map; raises DataMapError listing every problem."""
    try:
        dm = DataMap.model_validate(data)
    except ValidationError as exc:
        raise DataMapError([
            f"{'.'.join(str(p) for p in e['loc']) or source}: {e['msg']}" for e in exc.errors()
        ]) from None
    problems = _problems(dm)
    try:
        _ = dm.order  # raises on a cycle
    except DataMapError as exc:
        problems += exc.problems
    if problems:
        raise DataMapError(problems)
    return dm


def load(path: Path | str) -> DataMap:
    """Read and validate a data map file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataMapError([f"{path}: no such file"]) from None
    except yaml.YAMLError as exc:
        raise DataMapError([f"{path}: not valid YAML ({exc})"]) from None
    return parse(data, str(path))


def from_json(text: str) -> DataMap:
    return parse(json.loads(text))


def check_tables(dm: DataMap, dynamodb: Any) -> None:
    """Compare the map with the live tables; raises DataMapError naming each mismatch."""
    problems: list[str] = []
    for name, t in dm.tables.items():
        where = f"table '{name}' ({t.table})"
        try:
            desc = dynamodb.describe_table(TableName=t.table)["Table"]
        except dynamodb.exceptions.ResourceNotFoundException:
            problems.append(f"{where}: the table does not exist")
            continue
        keys = {k["KeyType"]: k["AttributeName"] for k in desc["KeySchema"]}
        live = (keys.get("HASH"), keys.get("RANGE"))
        if live != (t.key.partition, t.key.sort):
            problems.append(f"{where}: the map says key ({t.key.partition}, {t.key.sort}) but "
                            f"the table's key is ({live[0]}, {live[1]})")
        indexes = {i["IndexName"]: i for i in desc.get("GlobalSecondaryIndexes", [])}
        for f in t.find:
            if f.index is None:
                continue
            idx = indexes.get(f.index)
            if idx is None:
                problems.append(f"{where}: index '{f.index}' (used to find by "
                                f"'{f.attribute}') does not exist")
                continue
            ik = {k["KeyType"]: k["AttributeName"] for k in idx["KeySchema"]}
            if (ik.get("HASH"), ik.get("RANGE")) != (dm.tenant_attribute, f.attribute):
                problems.append(f"{where}: index '{f.index}' is keyed ({ik.get('HASH')}, "
                                f"{ik.get('RANGE')}), not ({dm.tenant_attribute}, "
                                f"{f.attribute})")
            if idx["Projection"]["ProjectionType"] != "ALL":
                problems.append(f"{where}: index '{f.index}' must project ALL attributes")
        sw = t.sweep
        if sw is not None and sw.index:
            idx = indexes.get(sw.index)
            ik = {k["KeyType"]: k["AttributeName"] for k in (idx or {}).get("KeySchema", [])}
            if idx is None:
                problems.append(f"{where}: sweep index '{sw.index}' does not exist")
            elif (ik.get("HASH"), ik.get("RANGE")) != (sw.bucket_attribute, sw.date_attribute):
                problems.append(f"{where}: sweep index '{sw.index}' is keyed ({ik.get('HASH')}"
                                f", {ik.get('RANGE')}), not ({sw.bucket_attribute}, "
                                f"{sw.date_attribute})")
    if problems:
        raise DataMapError(problems)


_current: dict[tuple[str, float], DataMap] = {}


def current() -> DataMap:
    """The deployment's data map (settings.datamap), validated once per process and read
    again only when the file changes."""
    path = Path(get_settings().datamap)
    key = (str(path), path.stat().st_mtime if path.exists() else 0.0)
    found = _current.get(key)
    if found is None:
        found = _current[key] = load(path)
    return found
