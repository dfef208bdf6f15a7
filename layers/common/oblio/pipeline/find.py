"""The walk: from a subject's identities through the data map's finds to every item of the
subject, table by table in the map's order. Each find is one Query per value (paginated) on a
key or an index; the cost grows with the subject's items, never with the table's size.

Search, dry runs, erasure, anonymisation and exports all start from this one walk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from oblio.control.crypto import TenantKeys
from oblio.core import clock, deadline, identity, layout, paths, pointers, shadows
from oblio.core.datamap import DataMap, TableMap
from oblio.store import tables as store

Item = dict[str, Any]


@dataclass
class Footprint:
    """Where one subject appears in one tenant: the items per mapped table."""

    tenant_id: str
    #: the items about the subject (reached by finds without a role)
    items: dict[str, list[Item]] = field(default_factory=dict)
    queries: int = 0
    #: items past their TTL found (and returned) by a walk that includes them
    expired: int = 0
    #: table -> role -> the items she appears in only in that role (not in `items`); their
    #: references are not followed (what a review she wrote links to is not hers)
    roles: dict[str, dict[str, list[Item]]] = field(default_factory=dict)

    def count(self, table: str) -> int:
        return len(self.items.get(table, []))

    def in_roles(self, table: str) -> int:
        """Items of the table she appears in only in a role (each once)."""
        seen = {id(i) for items in self.roles.get(table, {}).values() for i in items}
        return len(seen)

    @property
    def total(self) -> int:
        return sum(len(v) for v in self.items.values()) + \
            sum(self.in_roles(t) for t in self.roles)


def key_of(t: TableMap, item: Item) -> Item:
    return {k: item[k] for k in t.key.names}


def _projection(dm: DataMap, name: str) -> set[str]:
    t = dm.tables[name]
    identifying = {a for a, spec in t.attributes.items() if spec.category == "identity"}
    flags = {dm.anonymised_marker} | ({t.restriction_flag} if t.restriction_flag else set()) \
        | ({t.ttl_attribute} if t.ttl_attribute else set())
    if t.legal_hold is not None:
        flags |= {a for a in (t.legal_hold.attribute, t.legal_hold.reason_attribute) if a}
    wanted = (dm.referenced_attributes(name) | set(t.s3_attributes())
              | set(t.identity_attributes()) | identifying | t.template_fields())
    for role in t.roles.values():
        wanted |= set(role.attributes)
    # fields a reference or a template reads back from the keys, the entity's type
    flags |= {p.attribute for p in t.key_parts()}
    if t.entity is not None and t.entity.attribute:
        flags.add(t.entity.attribute)
    # the shadows of identities stored as typed: the subject's canonical values, which
    # actions remove and verification checks like the attributes they shadow
    flags |= set(shadows.names(t).values())
    # a path is read whole from its top-level attribute (a projection cannot say "every
    # element of a list")
    return set(t.key.names) | {_top(a) for a in wanted} | flags


def _top(attr: str) -> str:
    try:
        return paths.top(attr)
    except paths.PathError:
        return attr


def _unique(values: Iterable[Any]) -> list[Any]:
    seen: dict[Any, None] = {}
    for v in values:
        if v is not None and v != "":
            seen.setdefault(v, None)
    return list(seen)


def _queryable(value: Any) -> bool:
    """A value a key condition can compare with: a string, a number or bytes."""
    return isinstance(value, str | int | Decimal | bytes) and not isinstance(value, bool)


def expired(t: TableMap, item: Item, now: float) -> bool:
    """The item is past its DynamoDB TTL (which AWS deletes lazily, and moto never)."""
    ttl = item.get(t.ttl_attribute) if t.ttl_attribute else None
    return isinstance(ttl, int | float | Decimal) and not isinstance(ttl, bool) and ttl <= now


#: the actions whose walk reaches items past their TTL: DynamoDB deletes those lazily (it
#: can take days; moto never does), and TTL would delete only the item and orphan what it
#: references (a soft-deleted ticket's messages). Search, exports and rectification hide
#: them: to the person and the tenant they are already gone.
SEES_EXPIRED = frozenset({"erase", "anonymise"})


def walk(dm: DataMap, tenant_id: str, identities: dict[str, str],
         full_items: bool = False, include_expired: bool = False) -> Footprint:
    """Every item of the subject named by `identities` in `tenant_id`. An item past its TTL
    is returned (and its references followed) only with `include_expired` (erasure,
    anonymisation, bulk erasure and their verification: see SEES_EXPIRED); `expired` counts
    those returned.

    Items carry the key, the attributes other tables' finds read, S3 references and identity
    attributes; with `full_items`, every attribute."""
    now = clock.now().timestamp()
    fp = Footprint(tenant_id)
    found: dict[str, dict[tuple[Any, ...], Item]] = {}
    for name in dm.order:
        t = dm.tables[name]
        proj = None if full_items else _projection(dm, name)
        hits: dict[tuple[Any, ...], Item] = {}
        role_hits: dict[str, dict[tuple[Any, ...], Item]] = {}
        for f in t.find:
            if f.identity:
                values = _unique([identities.get(f.identity)])
            else:
                src, attr = f.source  # type: ignore[misc]
                st = dm.tables[src]
                # an identity stored as typed is read in its canonical form (its shadow)
                attr = shadows.names(st).get(attr, attr)
                values = _unique(v for i in found.get(src, {}).values()
                                 for v in st.field_values(i, attr, tenant_id)
                                 if _queryable(v))
                typed = t.as_typed().get(f.attribute)
                if typed is not None and typed.identity:
                    # this table's shadow holds the canonical form: look that up
                    values = _unique(identity.shadow_value(typed.identity, v, None)
                                     for v in values)
            for value in values:
                deadline.check()  # a walk only reads: it may stop between two queries
                fp.queries += 1
                c = layout.condition(dm, t, f, tenant_id, value)
                for item in store.query_key(c.table, c.partition, c.sort, index=c.index,
                                            projection=proj):
                    if not layout.selects(dm, t, item, tenant_id):
                        continue
                    late = expired(t, item, now)
                    if late and not include_expired:
                        continue
                    into = role_hits.setdefault(f.role, {}) if f.role else hits
                    key = tuple(item[k] for k in t.key.names)
                    if late and key not in into:
                        fp.expired += 1
                    into.setdefault(key, item)
        found[name] = hits
        if hits:
            fp.items[name] = list(hits.values())
        # an item about her is hers whatever else she is in it: the stronger rules apply
        roles = {r: [i for k, i in got.items() if k not in hits]
                 for r, got in role_hits.items()}
        if any(roles.values()):
            fp.roles[name] = {r: items for r, items in roles.items() if items}
    return fp


def s3_refs(dm: DataMap, t: TableMap, items: Iterable[Item], tenant_id: str | None = None,
            ) -> list[tuple[str, str]]:
    """The (bucket, key) of every S3 object the items point to, at any path (what a pointer
    is: `core.pointers`). A pointer naming a bucket the map does not declare is not followed
    (`outside_refs` counts those), nor is a value that names no file oblio can tell
    (`unreadable_refs`). A bucket named by a template of the tenant needs the tenant."""
    return [(p.bucket, p.key) for p in _pointers(dm, t, items, tenant_id)
            if p.kind == "file" and p.bucket and p.key]


def file_refs(dm: DataMap, t: TableMap, items: Iterable[Item], tenant_id: str,
              ) -> dict[str, Any]:
    """The objects the table's file rules give the items: (bucket, key) of each key
    template and (bucket, prefix) of each prefix, rendered from the tenant and each item's
    attributes; `unresolved` counts the (item, rule) pairs an attribute was missing for (no
    prefix is ever made wider by a missing value)."""
    templated: list[tuple[str, str]] = []
    prefixes: list[tuple[str, str]] = []
    unresolved = 0
    for item in items:
        for r in t.files:
            text = r.template.render(lambda f, i=item: t.field(i, f, tenant_id))  # type: ignore[misc]
            if text is None:
                unresolved += 1
                continue
            ref = (dm.bucket(r.bucket, tenant_id), text)
            (prefixes if r.kind == "prefix" else templated).append(ref)
    return {"templated": _unique(templated), "prefixes": _unique(prefixes),
            "unresolved": unresolved}


def outside_refs(dm: DataMap, t: TableMap, items: Iterable[Item],
                 tenant_id: str | None = None) -> int:
    """How many pointers of the items name a bucket the map does not declare: files of the
    subject that oblio may not touch, reported rather than ignored."""
    return sum(1 for p in _pointers(dm, t, items, tenant_id) if p.kind == "outside")


def unreadable_refs(dm: DataMap, t: TableMap, items: Iterable[Item],
                    tenant_id: str | None = None) -> int:
    """How many values of the items' pointer attributes name no file oblio can tell (a
    number, a map without a key, a URL that is not S3's): files that may be left, reported
    rather than taken for none."""
    return sum(1 for p in _pointers(dm, t, items, tenant_id) if p.kind == "unreadable")


def _pointers(dm: DataMap, t: TableMap, items: Iterable[Item], tenant_id: str | None,
              ) -> list[pointers.Pointer]:
    declared = dm.physical_buckets(tenant_id)
    return [p for item in items for attr, bucket in t.s3_attributes().items()
            for _, value in paths.values(item, attr)
            for p in pointers.read(value, dm.bucket(bucket, tenant_id), declared)]


def item_identities(t: TableMap, item: Item, region: str | None) -> dict[str, str]:
    """The identities an item names, as the walk looks them up (first attribute of each
    kind): a canonical attribute's value as stored, an as-typed one's canonical form (its
    shadow as the writers compute it; none when the value does not parse)."""
    typed = shadows.names(t)
    wanted = shadows.wanted(t, item, region) if typed else {}
    ids: dict[str, str] = {}
    for attr, kind in t.identity_attributes().items():
        value = wanted.get(typed[attr]) if attr in typed else item.get(attr)
        if isinstance(value, str) and value:
            ids.setdefault(kind, value)
    return ids


def identity_refs(dm: DataMap, keys: TenantKeys, fp: Footprint, named: dict[str, str],
                  region: str | None) -> dict[str, list[str]]:
    """HMACs of the identities named and of those found on the subject's items (so that the
    suppression list covers the phone of a subject who was named by e-mail)."""
    values: dict[str, set[str]] = {k: {v} for k, v in named.items()}
    for name, items in fp.items.items():
        t = dm.tables[name]
        typed = t.as_typed()
        kind_of = {shadow: typed[attr].identity for attr, shadow in shadows.names(t).items()}
        for item in items if typed else ():
            # stored as typed: the canonical form as the writers compute it (a value that
            # does not parse has none, and is no identity of hers)
            for shadow, value in shadows.wanted(t, item, region).items():
                typed_kind = kind_of[shadow]
                if value is not None and typed_kind:
                    values.setdefault(typed_kind, set()).add(value)
        for attr, kind in t.identity_attributes().items():
            if attr in typed:
                continue
            for raw in (v for item in items for _, v in paths.values(item, attr)):
                if raw is None:
                    continue
                try:
                    values.setdefault(kind, set()).add(identity.normalise(kind, raw, region))
                except Exception:  # noqa: BLE001 - a malformed stored value is not an identity
                    continue
    return {k: sorted(keys.hmac(k, v) for v in vs) for k, vs in sorted(values.items())}
