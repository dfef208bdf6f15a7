"""How a find reads a table, whatever its layout: the key condition of one Query (the
partition key equal to a value; the sort key equal to one, or beginning with a constant),
on the base table or an index, plain attributes or key templates, pooled or silo tenancy;
and which items a Query returns belong to the entity type and the tenant asked for.

Every key condition carries the tenant: in the partition or sort key (an attribute, or
`{tenant}` inside a template), or the table itself is the tenant's (`{tenant}-employees`).
The loader refuses a find whose condition would not (`problems`), and one whose condition
does not use the value it looks up (its Query would read the whole tenant).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from oblio.core import templates
from oblio.core.mapmodel import DataMap, Find, KeyPart, KeySchema, TableMap


@dataclass(frozen=True)
class KeyCondition:
    table: str
    index: str | None
    partition: tuple[str, Any]
    #: (attribute, "=" or "begins_with", value), or None for the whole partition
    sort: tuple[str, Literal["=", "begins_with"], Any] | None


def target(dm: DataMap, t: TableMap, f: Find) -> KeySchema:
    """The key schema a find queries: its index's (declared, or in version 1 the tenant
    attribute and the find's attribute), or the base table's."""
    if f.index is None:
        return t.key
    declared = t.indexes.get(f.index)
    if declared is not None:
        return declared
    return KeySchema(partition=dm.tenant_attribute, sort=f.attribute)


def _value(dm: DataMap, part: KeyPart, known: dict[str, Any]) -> Any:
    """A key part's value from the known fields, or None."""
    tpl = part.parsed
    if tpl is not None:
        return tpl.render(known)
    if part.attribute == dm.tenant_attribute:
        return known.get(templates.TENANT)
    return known.get(part.attribute)


def _prefix(part: KeyPart, known: dict[str, Any]) -> str:
    tpl = part.parsed
    return tpl.prefix(known) if tpl is not None else ""


def sort_prefix(t: TableMap) -> str | None:
    """The constant the entity's base sort key starts with (its explicit `sort_prefix`, else
    the constant its sort template starts with), or None."""
    if t.entity is not None and t.entity.sort_prefix:
        return t.entity.sort_prefix
    part = t.key.sort_part
    tpl = part.parsed if part is not None else None
    return tpl.parts[0] if tpl is not None and tpl.parts[0] else None


def condition(dm: DataMap, t: TableMap, f: Find, tenant_id: str, value: Any) -> KeyCondition:
    """The key condition of the find's Query for one value."""
    keys = target(dm, t, f)
    known = {templates.TENANT: tenant_id, f.attribute: value}
    p = keys.partition_part
    partition = (p.attribute, _value(dm, p, known))
    s = keys.sort_part
    sort: tuple[str, Literal["=", "begins_with"], Any] | None = None
    if s is not None:
        exact = _value(dm, s, known)
        if exact is not None:
            sort = (s.attribute, "=", exact)
        else:
            start = _prefix(s, known)
            if not start and f.index is None:
                start = sort_prefix(t) or ""
            if start:
                sort = (s.attribute, "begins_with", start)
    return KeyCondition(t.physical(tenant_id), f.index, partition, sort)


def selects(dm: DataMap, t: TableMap, item: dict[str, Any], tenant_id: str) -> bool:
    """The item is one of this entity type's, of this tenant: its base key fits the key
    templates (with the tenant inside them equal to the tenant asked for), a plain tenant
    attribute key equals it, and the type attribute has the entity's value."""
    for part in t.key.parts:
        tpl = part.parsed
        if tpl is not None:
            got = tpl.match(item.get(part.attribute))
            if got is None or got.get(templates.TENANT, tenant_id) != tenant_id:
                return False
        elif part.attribute == dm.tenant_attribute and item.get(part.attribute) != tenant_id:
            return False
    e = t.entity
    if e is not None:
        if e.attribute and item.get(e.attribute) != e.value:
            return False
        sort = t.key.sort_part
        if e.sort_prefix and sort is not None and \
                not str(item.get(sort.attribute, "")).startswith(e.sort_prefix):
            return False
    return True


def _tenant_in(dm: DataMap, part: KeyPart, before: set[str] | None = None) -> bool:
    tpl = part.parsed
    if tpl is None:
        return part.attribute == dm.tenant_attribute
    if before is None:
        return templates.TENANT in tpl.fields
    # in a sort prefix: only the fields before the first unknown one take part
    for name in tpl.fields:
        if name == templates.TENANT:
            return True
        if name not in before:
            return False
    return False


def _uses(dm: DataMap, part: KeyPart, attribute: str, known: set[str]) -> bool:
    """The part's condition uses the find's value (exactly, or in the known prefix)."""
    tpl = part.parsed
    if tpl is None:
        return part.attribute == attribute
    for name in tpl.fields:
        if name == attribute:
            return True
        if name not in known:
            return False
    return False


def problems(dm: DataMap, name: str, t: TableMap, i: int, f: Find) -> list[str]:
    """Why a find's Query could not be made, could go without the tenant, or would read
    more than the subject's items; each message names the table, the key or index and the
    fix."""
    fw = f"table '{name}', find #{i}"
    keys = target(dm, t, f)
    where = f"index '{f.index}'" if f.index else "the table's key"
    known = {templates.TENANT, f.attribute}
    out: list[str] = []
    p = keys.partition_part
    try:
        ptpl = p.parsed
        stpl = keys.sort_part.parsed if keys.sort_part else None
    except templates.TemplateError as exc:
        return [f"{fw}: {where}: {exc}"]
    if ptpl is not None:
        missing = [x for x in ptpl.fields if x not in known]
        if missing:
            out.append(f"{fw}: the partition template '{p.template}' of {where} names "
                       f"'{{{missing[0]}}}', which this find does not supply (it knows the "
                       f"tenant and '{f.attribute}'); query an index whose partition holds "
                       "only those")
    elif p.attribute not in (dm.tenant_attribute, f.attribute):
        out.append(f"{fw}: the partition key '{p.attribute}' of {where} is neither the tenant "
                   f"attribute nor the find's attribute '{f.attribute}'; give it a template "
                   "(e.g. 'TENANT#{tenant}#EMAIL#{email}') or query another index")
    s = keys.sort_part
    sort_known = known
    uses = _uses(dm, p, f.attribute, known) or (s is not None and _uses(dm, s, f.attribute,
                                                                       sort_known))
    if not out and not uses:
        out.append(f"{fw}: the key condition on {where} does not use '{f.attribute}', so its "
                   "Query would read every item of the tenant; put the attribute in the "
                   "partition or sort key (or its template), or query an index keyed by it")
    tenant = _tenant_in(dm, p) or (s is not None and stpl is not None and
                                   _tenant_in(dm, s, known)) or \
        (s is not None and stpl is None and s.attribute == dm.tenant_attribute) or \
        templates.TENANT in (templates.parse(t.table).fields
                             if templates.is_template(t.table) else ())
    if not tenant:
        out.append(f"{fw}: the key condition on {where} does not carry the tenant, so a read "
                   "could reach another tenant's items; put {tenant} in the partition "
                   "template (e.g. 'TENANT#{tenant}#EMAIL#{email}'), key it by the tenant "
                   "attribute, or make the table name a template of {tenant}")
    return out
