"""Apply: one table's share of the plan, in batched calls. BatchWriteItem for deletes,
BatchGetItem and one conditional UpdateItem per rewritten item, DeleteObjects for every
version of the S3 objects the items point to. A unit applied twice changes nothing the
second time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oblio.control import exports, records
from oblio.control.crypto import TenantKeys
from oblio.control.tenants import get_tenant
from oblio.core import clock, paths
from oblio.core.datamap import DataMap, TableMap
from oblio.core.observability import logger
from oblio.core.paths import Location
from oblio.pipeline import find
from oblio.pipeline.find import Item
from oblio.pipeline.rules import (
    COUNTS,
    DESTRUCTIVE,
    Unit,
    apply_rule,
    changes_for,
    held,
    located,
    retained_places,
    rewrite,
    role_mode,
    role_rewrite,
    table_mode,
    value_refs,
)
from oblio.pipeline.work import frozen_map, request_params, unit_manifest_of
from oblio.store import aws, objects
from oblio.store import tables as store

#: beside `COUNTS`, in a unit's counts when not zero: planned items found no longer there
#: when the apply read or conditionally wrote them (nothing was done to them), and the files
#: of items found on legal hold at apply time (not deleted: named objects, and prefixes)
GONE, FILES_HELD, PREFIXES_HELD = "gone", "files_held", "prefixes_held"


def apply_unit(dm: DataMap, action: str, unit: Unit, manifest: dict[str, Any],
               keys: TenantKeys, subject_ref: str, marker: str,
               params: dict[str, Any] | None = None,
               files_seen: Callable[[int], int] | None = None) -> dict[str, int]:
    """Apply `action` to the unit's items and S3 objects; returns its counts. The items she
    appears in only in a role (`manifest["roles"]`) get that role's rules.

    `matched` counts the planned items, `held` those on legal hold (at the plan, or since:
    read again here, they are not touched, nor are the files they name). Each other planned
    item is counted by what was done to it: `anonymised`, `updated` and `retained` count the
    items that were there (an item gone since the plan, seen missing by a read or refused by
    a conditional write, is counted `gone`); `deleted` counts the deletes sent (a
    BatchWriteItem does not say whether the item was there: an item deleted since the plan
    is counted `deleted` too, and is gone either way). The pointed and templated files are
    counted from what was found before deleting (`files_seen` records that count first, so
    a retried unit still counts what it deleted before); `files_held` and `prefixes_held`
    count the unit's files left for items found on hold here."""
    t = dm.tables[unit.table]
    m = table_mode(dm, unit.table, action, params)
    counts = dict.fromkeys((*COUNTS, GONE, FILES_HELD, PREFIXES_HELD), 0)
    table = t.physical(unit.tenant_id)
    late = _apply_group(dm, t, table, m, action, manifest, keys, subject_ref, marker, None,
                        params, counts)
    for role, group in sorted((manifest.get("roles") or {}).items()):
        rm = role_mode(dm, unit.table, role, action, params)
        # a role's items bring no files of their own (the manifest's are the unit's items')
        _apply_group(dm, t, table, rm, action, group, keys, subject_ref, marker, role,
                     params, counts)
    if m in ("delete", "anonymise"):  # a retained item keeps its files
        files, counts[FILES_HELD], counts[PREFIXES_HELD] = spare_held(
            dm, t, unit.tenant_id, manifest, late)
        counts["files_deleted"] = delete_files(files, files_seen)
    return {k: v for k, v in counts.items() if k in COUNTS or v}


def _apply_group(dm: DataMap, t: TableMap, table: str, m: str, action: str,
                 group: dict[str, Any],
                 keys: TenantKeys, subject_ref: str, marker: str, role: str | None,
                 params: dict[str, Any] | None, counts: dict[str, int]) -> list[Item]:
    """Apply the mode to one group of planned items; returns those found on legal hold
    since the plan (as read now)."""
    item_keys: list[Item] = group["keys"]
    counts["matched"] += len(item_keys) + len(group.get("held", []))
    counts["held"] += len(group.get("held", []))
    late: list[Item] = []
    read: list[Item] | None = None  # the items as just read, when the hold check read them
    if t.legal_hold is not None and m in DESTRUCTIVE and item_keys:
        # a hold set since the plan still blocks: read the items again, leave the held ones
        present = store.batch_get(table, item_keys)
        late = [i for i in present if held(t, i)]
        read = [i for i in present if not held(t, i)]
        now_held = [find.key_of(t, i) for i in late]
        if now_held:
            counts["held"] += len(now_held)
            item_keys = [k for k in item_keys if k not in now_held]
        if m != "delete":
            # retained or anonymised only if there (a delete is sent whatever: see
            # apply_unit): what was deleted since the plan is gone, not retained
            there = [find.key_of(t, i) for i in present]
            counts[GONE] += sum(1 for k in item_keys if k not in there)
            item_keys = [k for k in item_keys if k in there]
    if m == "delete":
        store.batch_delete(table, item_keys)
        counts["deleted"] += len(item_keys)
    elif m == "retain":
        n = len(item_keys)
        if any(spec.erase is not None for spec in t.attributes.values()):
            n = _rewrite_retained(dm, t, table, item_keys, keys, subject_ref, marker)
        counts["retained"] += n
        counts[GONE] += len(item_keys) - n
    elif m == "anonymise":
        mark = dm.marker(subject_ref, role)
        # read once: the hold check's read serves when it was made
        items = read if read is not None else store.batch_get(table, item_keys)
        counts[GONE] += len(item_keys) - len(items)
        for item in items:
            done = item.get(mark)
            if done is not None:
                # done by this request before a retry, or by an earlier request: not again
                counts["anonymised" if done == marker else "kept"] += 1
                continue
            sets, removes = rewrite(dm, t, item, action, keys, subject_ref) if role is None \
                else role_rewrite(t, role, item, action, keys, subject_ref)
            sets[mark] = marker
            key = find.key_of(t, item)
            if store.update(table, key, sets, removes, only_if_absent=mark):
                counts["anonymised"] += 1
            else:
                counts[_refused(table, key, mark, marker)] += 1
    elif m in ("update", "flag", "unflag"):
        values: dict[str, Any] = changes_for(t, (params or {}).get("changes") or {}) \
            if m == "update" else {t.restriction_flag or "": m == "flag"}
        if any(a in t.key.names for a in values):
            moved = _move(t, table, item_keys, values)
            counts["updated"] += moved
            counts[GONE] += len(item_keys) - moved
        elif any(paths.nested(a) for a in values):
            # a path is set where each item has it (a map member, every element of a list)
            items = store.batch_get(table, item_keys)
            counts[GONE] += len(item_keys) - len(items)
            for item in items:
                # refused only when the item is gone (the one condition is that it exists)
                ok = store.update(table, find.key_of(t, item), located(item, values), [])
                counts["updated" if ok else GONE] += 1
        else:
            for key in item_keys:
                ok = store.update(table, key, {a: v for a, v in values.items()}, [])
                counts["updated" if ok else GONE] += 1
    else:
        counts["kept"] += len(item_keys)
    return late


def _refused(table: str, key: Item, mark: str, marker: str) -> str:
    """What became of an item whose marked rewrite was refused after it was read (read
    again, only then): gone, marked by this request (a concurrent run of the same unit) or
    by another one."""
    again = store.batch_get(table, [key])
    if not again:
        return GONE
    return "anonymised" if again[0].get(mark) == marker else "kept"


def spare_held(dm: DataMap, t: TableMap, tenant_id: str, manifest: dict[str, Any],
               late: list[Item]) -> tuple[dict[str, Any], int, int]:
    """The unit's files less those of the items found on legal hold at apply time (`late`,
    as read then: the objects they point to and their key templates name, their prefixes,
    any prefix one of those lies under, and any object or prefix under one of theirs); with
    how many named objects and how
    many prefixes were spared. No AWS call: the refs come from the items already read."""
    refs = {k: [(b, x) for b, x in manifest.get(k, [])] for k in ("s3", "templated", "prefixes")}
    if not late:
        return refs, 0, 0
    named = set(find.s3_refs(dm, t, late, tenant_id))
    own: set[tuple[str, str]] = set()
    if t.files:
        rendered = find.file_refs(dm, t, late, tenant_id)
        named |= {(b, x) for b, x in rendered["templated"]}
        own = {(b, x) for b, x in rendered["prefixes"]}
    def under_held(b: str, x: str) -> bool:  # an object or prefix under a held prefix
        return any(ob == b and x.startswith(op) for ob, op in own)

    kept = {k: [r for r in refs[k] if r not in named and not under_held(*r)]
            for k in ("s3", "templated")}
    kept["prefixes"] = [
        (b, p) for b, p in refs["prefixes"]
        if (b, p) not in own and not under_held(b, p)
        and not any(nb == b and nk.startswith(p) for nb, nk in named)
        and not any(ob == b and op.startswith(p) for ob, op in own)]
    files = len(set(refs["s3"]) | set(refs["templated"])) - \
        len(set(kept["s3"]) | set(kept["templated"]))
    return kept, files, len(refs["prefixes"]) - len(kept["prefixes"])


def delete_files(manifest: dict[str, Any], seen: Callable[[int], int] | None = None) -> int:
    """Every version of the unit's files: the objects its items point to, those their key
    templates name, and every object under their prefixes; returns how many objects (the
    named files as `seen` records them; the objects under prefixes as deleted this time)."""
    refs = [(b, k) for b, k in [*manifest.get("s3", []), *manifest.get("templated", [])]]
    prefixes = [(b, p) for b, p in manifest.get("prefixes", [])]
    n = objects.delete_all_versions(refs, seen=seen) if refs else 0
    return n + (objects.delete_prefixes(prefixes) if prefixes else 0)


def _rewrite_retained(dm: DataMap, t: TableMap, table: str, item_keys: list[Item],
                      keys: TenantKeys, subject_ref: str, marker: str) -> int:
    """A retained item keeps all but what its explicit `erase:` rules rewrite (once: the
    marker makes a repeated pass a no-op); returns how many of the items were there (read,
    and not found gone by a refused rewrite)."""
    mark = dm.marker(subject_ref)
    there = 0
    for item in store.batch_get(table, item_keys):
        there += 1
        if item.get(mark) is not None:
            continue
        sets: dict[Location, Any] = {}
        removes: list[Location] = []
        for attr, rule, loc, v in retained_places(dm, t, item):
            apply_rule(rule, attr, loc, v, t, keys, subject_ref, sets, removes)
        if sets or removes:
            sets[mark] = marker
            key = find.key_of(t, item)
            if not store.update(table, key, sets, removes, only_if_absent=mark) \
                    and _refused(table, key, mark, marker) == GONE:
                there -= 1
    return there


def _move(t: TableMap, table: str, item_keys: list[Item], values: dict[str, Any]) -> int:
    """Rectify items whose key holds a changed value: each is written at its new key first,
    then removed from the old one, so that a retry finds it moved (the old key gone) and
    nothing is ever lost between the two. Returns how many are at their new key: those moved
    now, and (read at their new key, only when some are missing) those a run before this
    retry moved; the others were gone."""
    items = store.batch_get(table, item_keys)
    moved = [{**item, **values} for item in items]
    gone = [{k: i[k] for k in t.key.names} for i, n in zip(items, moved, strict=True)
            if any(i[k] != n[k] for k in t.key.names)]
    store.batch_put(table, moved)
    store.batch_delete(table, gone)
    found = [find.key_of(t, i) for i in items]
    missing = [k for k in item_keys if k not in found]
    if not missing:
        return len(items)
    new_keys = [{k: values.get(k, key[k]) for k in t.key.names} for key in missing]
    return len(items) + len(store.batch_get(table, new_keys))


def apply(request_id: str, tenant_id: str, action: str, unit: dict[str, str]) -> dict[str, Any]:
    """Apply the action to one table of the plan; a unit already done is not done again."""
    m = records.load(tenant_id, request_id)
    u = Unit(unit["tenant_id"], unit["table"])
    if not records.proceed(m):
        return {"unit": u.id, "skipped": True, "cancelled": True}
    done = (records.units_of(m)).get(u.id)
    if done and done.get("status") == "done":
        return {"unit": u.id, "skipped": True}
    if not records.begin_step(m, u.id):  # cancelled since it was read: nothing is touched
        return {"unit": u.id, "skipped": True, "cancelled": True}
    if u.table == exports.UNIT:
        return _delete_archives(m, u)
    dm = frozen_map(m)
    tenant = get_tenant(u.tenant_id)
    params = request_params(m, get_tenant(tenant_id))
    extra: dict[str, Any] = {}

    def files_seen(found: int) -> int:
        # recorded before any file is deleted: a retry after the deletion (the files gone,
        # its result lost) reports what the first run found
        if done and "files_present" in done:
            return max(found, int(done["files_present"]))
        records.record_unit(m, u.id, {"status": "applying", "files_present": found}, {})
        return found

    with aws.counting() as io:
        manifest = unit_manifest_of(m, u)
        if action == "rectify":
            extra["old"] = rectified_refs(dm, u, manifest, params, tenant)
        counts = apply_unit(dm, action, u, manifest, tenant.keys, m.subject_ref or "",
                                   marker=request_id, params=params, files_seen=files_seen)
        if counts["held"]:
            extra["held_reasons"] = held_reasons(dm.tables[u.table], manifest, counts["held"])
    records.record_unit(m, u.id, {"status": "done", "at": clock.iso(), **counts, **extra},
                     dict(io.calls))
    logger.info("unit done", extra={"request_id": request_id, "unit": u.id, **counts})
    return {"unit": u.id, **counts}


def _delete_archives(m: Any, u: Unit) -> dict[str, Any]:
    """Delete every version of the archives the plan found (references only: tenant and
    request id); the count is recorded before the deletion, so a retry reports it."""
    found = records.plan_of(m).get("archives") or []
    with aws.counting() as io:
        deleted = objects.delete_all_versions(
            exports.refs(found),
            seen=lambda n: _seen(m, u, n)) if found else 0
    records.record_unit(m, u.id, {"status": "done", "at": clock.iso(), "archives": len(found),
                                  "archives_deleted": deleted}, dict(io.calls))
    logger.info("archives deleted", extra={"request_id": m.request_id, "unit": u.id,
                                           "archives_deleted": deleted})
    return {"unit": u.id, "archives_deleted": deleted}


def _seen(m: Any, u: Unit, found: int) -> int:
    done = records.units_of(m).get(u.id) or {}
    if "archives_present" in done:
        return max(found, int(done["archives_present"]))
    records.record_unit(m, u.id, {"status": "applying", "archives_present": found}, {})
    return found


def held_reasons(t: TableMap, manifest: dict[str, Any], n: int) -> dict[str, int]:
    """How many items were held, by reason (those held since the plan by the map's)."""
    out: dict[str, int] = {}
    planned = [*manifest.get("held", []),
               *(h for g in (manifest.get("roles") or {}).values() for h in g.get("held", []))]
    for h in planned:
        out[h["reason"]] = out.get(h["reason"], 0) + 1
    late = n - len(planned)
    if late > 0 and t.legal_hold is not None:
        out[t.legal_hold.reason] = out.get(t.legal_hold.reason, 0) + late
    return out


def rectified_refs(dm: DataMap, u: Unit, manifest: dict[str, Any], params: dict[str, Any],
                   tenant: Any) -> dict[str, list[str]]:
    """HMACs of the values a rectification replaces, per attribute (for the audit entry)."""
    t = dm.tables[u.table]
    attrs = changes_for(t, params.get("changes") or {})
    out: dict[str, set[str]] = {a: set() for a in attrs}
    for item in store.batch_get(t.physical(u.tenant_id), manifest["keys"]):
        for a in attrs:
            out[a] |= value_refs(tenant.keys, [v for _, v in paths.values(item, a)])
    return {a: sorted(v) for a, v in out.items()}
