"""Apply: one table's share of the plan, in batched calls. BatchWriteItem for deletes,
BatchGetItem and one conditional UpdateItem per rewritten item, DeleteObjects for every
version of the S3 objects the items point to. A unit applied twice changes nothing the
second time."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from oblio.control import records
from oblio.control.crypto import TenantKeys
from oblio.control.tenants import get_tenant
from oblio.core import clock
from oblio.core.datamap import DataMap, TableMap
from oblio.core.observability import logger
from oblio.pipeline.find import Item
from oblio.pipeline.rules import COUNTS, Unit, changes_for, rewrite, table_mode, value_refs
from oblio.pipeline.work import frozen_map, manifest_key, request_params
from oblio.store import aws, objects
from oblio.store import tables as store


def apply_unit(dm: DataMap, action: str, unit: Unit, manifest: dict[str, Any],
               keys: TenantKeys, subject_ref: str, marker: str,
               params: dict[str, Any] | None = None,
               files_seen: Callable[[int], int] | None = None) -> dict[str, int]:
    """Apply `action` to the unit's items and S3 objects; returns its counts. The items are
    counted from the plan, the files from what was found before deleting (`files_seen`
    records that count first, so a retried unit still counts what it deleted before)."""
    t = dm.tables[unit.table]
    m = table_mode(dm, unit.table, action, params)
    item_keys: list[Item] = manifest["keys"]
    counts = dict.fromkeys(COUNTS, 0)
    counts["matched"] = len(item_keys)
    if m == "delete":
        store.batch_delete(t.table, item_keys)
        counts["deleted"] = len(item_keys)
    elif m == "anonymise":
        for item in store.batch_get(t.table, item_keys):
            done = item.get(dm.anonymised_marker)
            if done is not None:
                # done by this request before a retry, or by an earlier request: not again
                counts["anonymised" if done == marker else "kept"] += 1
                continue
            sets, removes = rewrite(dm, t, item, action, keys, subject_ref)
            sets[dm.anonymised_marker] = marker
            store.update(t.table, {k: item[k] for k in t.key.names}, sets, removes,
                         only_if_absent=dm.anonymised_marker)
            counts["anonymised"] += 1
    elif m in ("update", "flag", "unflag"):
        values = changes_for(t, (params or {}).get("changes") or {}) if m == "update" \
            else {t.restriction_flag or "": m == "flag"}
        if any(a in t.key.names for a in values):
            _move(t, item_keys, values)
            counts["updated"] = len(item_keys)
        else:
            for key in item_keys:
                store.update(t.table, key, values, [])
                counts["updated"] += 1
    else:
        counts["kept"] = len(item_keys)
    refs = [(b, k) for b, k in manifest.get("s3", [])]
    if refs and m in ("delete", "anonymise"):
        counts["files_deleted"] = objects.delete_all_versions(refs, seen=files_seen)
    return counts


def _move(t: TableMap, item_keys: list[Item], values: dict[str, Any]) -> None:
    """Rectify items whose key holds a changed value: each is written at its new key first,
    then removed from the old one, so that a retry finds it moved (the old key gone) and
    nothing is ever lost between the two."""
    items = store.batch_get(t.table, item_keys)
    moved = [{**item, **values} for item in items]
    gone = [{k: i[k] for k in t.key.names} for i, n in zip(items, moved, strict=True)
            if any(i[k] != n[k] for k in t.key.names)]
    store.batch_put(t.table, moved)
    store.batch_delete(t.table, gone)


def apply(request_id: str, tenant_id: str, action: str, unit: dict[str, str]) -> dict[str, Any]:
    """Apply the action to one table of the plan; a unit already done is not done again."""
    m = records.load(tenant_id, request_id)
    u = Unit(unit["tenant_id"], unit["table"])
    if not records.proceed(m):
        return {"unit": u.id, "skipped": True, "cancelled": True}
    done = (records.units_of(m)).get(u.id)
    if done and done.get("status") == "done":
        return {"unit": u.id, "skipped": True}
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
        manifest = objects.get_json(manifest_key(m, u))
        if action == "rectify":
            extra["old"] = rectified_refs(dm, u, manifest, params, tenant)
        counts = apply_unit(dm, action, u, manifest, tenant.keys, m.subject_ref or "",
                                   marker=request_id, params=params, files_seen=files_seen)
    records.record_unit(m, u.id, {"status": "done", "at": clock.iso(), **counts, **extra},
                     dict(io.calls))
    logger.info("unit done", extra={"request_id": request_id, "unit": u.id, **counts})
    return {"unit": u.id, **counts}


def rectified_refs(dm: DataMap, u: Unit, manifest: dict[str, Any], params: dict[str, Any],
                   tenant: Any) -> dict[str, list[str]]:
    """HMACs of the values a rectification replaces, per attribute (for the audit entry)."""
    t = dm.tables[u.table]
    attrs = changes_for(t, params.get("changes") or {})
    out: dict[str, set[str]] = {a: set() for a in attrs}
    for item in store.batch_get(t.table, manifest["keys"]):
        for a in attrs:
            if a in item:
                out[a] |= value_refs(tenant.keys, [item[a]])
    return {a: sorted(v) for a, v in out.items()}
