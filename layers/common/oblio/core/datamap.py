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


class TableMap(_Strict):
    table: str  # the physical DynamoDB table name
    purpose: str = ""
    key: KeySchema
    find: list[Find] = Field(default_factory=list)
    #: erasure deletes the item, or anonymises it and keeps the shell for reporting
    on_erase: Literal["delete", "anonymise"] = "delete"
    #: anonymisation rewrites the item by its rules, or deletes it
    on_anonymise: Literal["anonymise", "delete"] = "anonymise"
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
    attributes: dict[str, Attribute]

    def s3_attributes(self) -> dict[str, str]:
        return {n: a.s3 for n, a in self.attributes.items() if a.s3}

    def identity_attributes(self) -> dict[str, str]:
        return {n: a.identity for n, a in self.attributes.items() if a.identity}

    def rule(self, attribute: str, action: str = "anonymise") -> str:
        """The strategy `action` ("anonymise" or "erase") applies to `attribute`."""
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
    version: Literal[1] = 1
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

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)


def schema() -> dict[str, Any]:
    """The JSON Schema of a data map file."""
    return DataMap.model_json_schema(by_alias=True)


def summary(dm: DataMap) -> dict[str, Any]:
    """What a client needs to build its forms from the map, and nothing of where the data
    lives (no physical table or bucket names): the tables in walk order with what erasure
    and anonymisation do to them and their attributes' categories, the purposes an objection
    may name, and the names a rectification may change."""
    tables = []
    for name in dm.order:
        t = dm.tables[name]
        tables.append({
            "name": name, "purpose": t.purpose, "on_erase": t.on_erase,
            "on_anonymise": t.on_anonymise, "pending_deliveries": t.pending_deliveries,
            "purposes": list(t.purposes), "restriction_flag": t.restriction_flag is not None,
            "key": list(t.key.names), "files": bool(t.s3_attributes()),
            "attributes": [{"name": a, "category": attr.category, "identity": attr.identity,
                            "files": attr.s3 is not None}
                           for a, attr in t.attributes.items()],
        })
    # what a person asks to correct (Art. 16): who they are and how to reach them
    keys = {a for t in dm.tables.values() for a in t.key.names}
    rectifiable = sorted({a for t in dm.tables.values() for a, attr in t.attributes.items()
                          if a not in keys and attr.identity is None and attr.s3 is None
                          and attr.category in ("identity", "contact")})
    return {"name": dm.name, "identities": list(dm.identities), "tables": tables,
            "objection_purposes": sorted({p for t in dm.tables.values()
                                          if t.pending_deliveries for p in t.purposes}),
            "rectifiable": [*dm.identities, *rectifiable]}


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
        for i, f in enumerate(t.find):
            fw = f"{where}, find #{i + 1}"
            if (f.identity is None) == (f.from_ is None):
                out.append(f"{fw}: give exactly one of 'identity' or 'from'")
            if f.identity and f.identity not in dm.identities:
                out.append(f"{fw}: identity '{f.identity}' is not in the map's identities")
            if f.attribute not in known:
                out.append(f"{fw}: attribute '{f.attribute}' is not an attribute of the table")
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
