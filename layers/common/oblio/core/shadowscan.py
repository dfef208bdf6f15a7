"""What the two writers of shadow attributes decide, without touching AWS.

The backfill (`oblio.jobs.backfill`) scans a physical table once, segment by segment; the
stream consumer (`oblio.jobs.shadowstream`) reads each new image a tenant's write produces.
Both ask `decide()` what one item needs: the shadows to SET and REMOVE (from
`oblio.core.shadows.changes`), and the raw values they were computed from, which the write is
conditioned on so that a value changed meanwhile is never given a stale shadow. An item whose
shadows are right needs nothing: the backfill does not write it twice, and the consumer's own
write, seen again on the stream, ends there (no loop).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from oblio.core import layout, shadows, templates
from oblio.core.errors import Invalid
from oblio.core.identity import shadow_value
from oblio.core.mapmodel import DataMap, TableMap

#: (attribute, "=" or "begins_with", value): the Scan filter that keeps one tenant's items
TenantFilter = tuple[str, Literal["=", "begins_with"], str]


@dataclass(frozen=True)
class Target:
    """One physical table a backfill scans for one tenant: the logical tables (entity types)
    in it that have as-typed identities, what a page reads, and the tenant's filter."""

    physical: str
    tables: tuple[str, ...]
    key: tuple[str, ...]
    projection: tuple[str, ...]
    #: None: the table is the tenant's own (silo), or its layout gives no filter (then every
    #: item is checked by `decide` and only the tenant's are written)
    tenant_filter: TenantFilter | None
    #: (attribute, value): the tenant's items are one partition (a pooled table keyed by the
    #: tenant, or by a template of the tenant alone): read by a Query of it, never a Scan of
    #: every tenant's items; None: a (segmented) Scan
    partition: tuple[str, str] | None = None


@dataclass(frozen=True)
class Write:
    """The shadows one item needs: SET these, REMOVE those, only if the raw values are still
    `expect` (attribute -> value, None for absent) and the item still exists."""

    key: dict[str, Any]
    set: dict[str, str]
    remove: tuple[str, ...]
    expect: dict[str, Any]


@dataclass(frozen=True)
class Seen:
    """What one item read means: whether it is one of the tenant's mapped items, the write it
    needs (None: its shadows are right), and how many of its as-typed values do not parse
    (they get no shadow; counted, never shown)."""

    mine: bool
    write: Write | None = None
    unparsable: int = 0
    attributes: tuple[str, ...] = field(default=())


def with_shadows(dm: DataMap) -> dict[str, TableMap]:
    """The logical tables with at least one as-typed identity attribute."""
    return shadows.tables_with_shadows(dm)


def chosen(dm: DataMap, names: Iterable[str] | None) -> list[str]:
    """The logical tables a backfill covers: `names` (each checked), or every table with
    as-typed identities. Raises Invalid naming the position of a name that is not such a
    table (never repeating it) and the tables that are."""
    typed = with_shadows(dm)
    if not typed:
        raise Invalid("tables", "the data map declares no identity attribute stored as typed "
                      "(stored: as_typed), so there is no shadow to backfill",
                      code="nothing_to_backfill")
    if names is None:
        return sorted(typed)
    out: list[str] = []
    for i, name in enumerate(names):
        if name not in typed:
            raise Invalid("tables", f"tables[{i}] is not a mapped table with an identity "
                          f"stored as typed; such tables: {', '.join(sorted(typed))}",
                          code="unmapped_table")
        if name not in out:
            out.append(name)
    if not out:
        raise Invalid("tables", "tables is empty: name at least one table, or leave it out "
                      "to backfill every table with an identity stored as typed")
    return out


def tenant_filter(dm: DataMap, t: TableMap) -> tuple[str, Literal["=", "begins_with"],
                                                     str] | None:
    """The filter template keeping the tenant's items of a pooled table: the tenant attribute
    equal to the tenant, or a key template beginning with its tenant prefix. `{tenant}` in
    the value stands for the tenant. None for a silo table or a layout without one."""
    if templates.is_template(t.table) and templates.TENANT in templates.parse(t.table).fields:
        return None
    for part in t.key.parts:
        tpl = part.parsed
        if tpl is None:
            if part.attribute == dm.tenant_attribute:
                return (part.attribute, "=", "{tenant}")
            continue
        if tpl.fields and tpl.fields[0] == templates.TENANT:
            return (part.attribute, "begins_with", part.template or "")
    return None


def _filter_for(dm: DataMap, t: TableMap, tenant_id: str) -> TenantFilter | None:
    found = tenant_filter(dm, t)
    if found is None:
        return None
    attr, op, value = found
    if op == "=":
        return (attr, "=", tenant_id)
    # the template's constant prefix with the tenant filled in, up to the next field
    return (attr, "begins_with", templates.parse(value).prefix({templates.TENANT: tenant_id}))


def tenant_partition(dm: DataMap, t: TableMap, tenant_id: str) -> tuple[str, str] | None:
    """(partition key, value) when the tenant's items of `t` are exactly one partition: the
    partition key is the tenant attribute, or a template whose only field is the tenant
    (`TENANT#{tenant}`). None otherwise (a silo table, or partitions per item)."""
    if templates.is_template(t.table) and templates.TENANT in templates.parse(t.table).fields:
        return None
    part = t.key.partition_part
    tpl = part.parsed
    if tpl is None:
        return (part.attribute, tenant_id) if part.attribute == dm.tenant_attribute else None
    if tpl.fields == (templates.TENANT,):
        value = tpl.render({templates.TENANT: tenant_id})
        return (part.attribute, value) if value is not None else None
    return None


def targets(dm: DataMap, tenant_id: str, names: Iterable[str]) -> list[Target]:
    """The physical tables to scan for `tenant_id`, each once with every chosen logical table
    it holds; sorted by physical name."""
    by_physical: dict[str, list[str]] = {}
    for name in names:
        by_physical.setdefault(dm.tables[name].physical(tenant_id), []).append(name)
    out: list[Target] = []
    for physical, logical in sorted(by_physical.items()):
        ts = [dm.tables[n] for n in logical]
        key = ts[0].key.names
        wanted: set[str] = set(key)
        for t in ts:
            wanted |= set(t.as_typed()) | set(shadows.names(t).values())
            wanted |= {p.attribute for p in t.key.parts}
            if t.entity is not None and t.entity.attribute:
                wanted.add(t.entity.attribute)
        filters = {_filter_for(dm, t, tenant_id) for t in ts}
        partitions = {tenant_partition(dm, t, tenant_id) for t in ts}
        partition = partitions.pop() if len(partitions) == 1 else None
        out.append(Target(physical=physical, tables=tuple(logical), key=tuple(key),
                          projection=tuple(sorted(wanted)),
                          tenant_filter=None if partition else
                          (filters.pop() if len(filters) == 1 else None),
                          partition=partition))
    return out


def tenant_of(dm: DataMap, t: TableMap, item: dict[str, Any]) -> str | None:
    """The tenant an item of a pooled table belongs to: from a key template holding
    `{tenant}`, or the tenant attribute; None when it says none."""
    for part in t.key.parts:
        tpl = part.parsed
        if tpl is not None:
            got = tpl.match(item.get(part.attribute))
            if got is not None and templates.TENANT in got:
                return got[templates.TENANT]
        elif part.attribute == dm.tenant_attribute:
            value = item.get(part.attribute)
            return value if isinstance(value, str) else None
    value = item.get(dm.tenant_attribute)
    return value if isinstance(value, str) else None


def owners(dm: DataMap, physical: str, item: dict[str, Any]) -> list[tuple[str, str]]:
    """(logical table, tenant) of each table with as-typed identities that the item of
    `physical` belongs to (the stream consumer: a record names its table, not the tenant)."""
    out: list[tuple[str, str]] = []
    for name, t in with_shadows(dm).items():
        tenant: str | None = None
        if templates.is_template(t.table):
            got = templates.parse(t.table).match(physical)
            tenant = got.get(templates.TENANT) if got else None
        elif t.table == physical:
            tenant = tenant_of(dm, t, item)
        if tenant and layout.selects(dm, t, item, tenant):
            out.append((name, tenant))
    return out


def decide(dm: DataMap, tables: Iterable[str], item: dict[str, Any], tenant_id: str,
           region: str | None) -> Seen:
    """What `item` needs, as an item of `tables` (logical tables sharing one physical table)
    for `tenant_id`: not the tenant's (or no entity's of them): `mine` False, nothing to do."""
    sets: dict[str, str] = {}
    removes: list[str] = []
    expect: dict[str, Any] = {}
    unparsable, mine = 0, False
    key_names: tuple[str, ...] = ()
    for name in tables:
        t = dm.tables[name]
        if not layout.selects(dm, t, item, tenant_id):
            continue
        mine, key_names = True, t.key.names
        for attr, a in t.as_typed().items():
            assert a.identity is not None
            raw = item.get(attr)
            if raw is not None and shadow_value(a.identity, raw, a.region or region) is None \
                    and not (isinstance(raw, str) and not raw.strip()):
                unparsable += 1
        attr_of = {v: k for k, v in shadows.names(t).items()}
        for shadow, value in shadows.changes(t, item, region).items():
            attr = attr_of[shadow]
            expect[attr] = item.get(attr)
            if value is None:
                if shadow not in removes:
                    removes.append(shadow)
            else:
                sets[shadow] = value
    if not mine:
        return Seen(mine=False)
    if not sets and not removes:
        return Seen(mine=True, unparsable=unparsable)
    key = {k: item[k] for k in key_names}
    return Seen(mine=True, unparsable=unparsable,
                write=Write(key=key, set=sets, remove=tuple(removes), expect=expect),
                attributes=tuple(sorted(expect)))
