"""Verify: read back every planned item and object, and walk the map again from the
identities: what the action should have left is what is there, and nothing of an erased
subject can be found."""

from __future__ import annotations

from typing import Any

from oblio.control import records
from oblio.control.crypto import TenantKeys
from oblio.control.tenants import get_tenant
from oblio.core import clock
from oblio.core.datamap import DataMap
from oblio.pipeline import find
from oblio.pipeline.find import Item
from oblio.pipeline.rules import Unit, changes_for, table_mode, value_refs
from oblio.pipeline.work import (
    frozen_map,
    identifying_key,
    manifest_key,
    planned_units,
    request_params,
)
from oblio.store import aws, objects
from oblio.store import tables as store


def remaining_keys(dm: DataMap, action: str, unit: Unit, manifest: dict[str, Any],
                   marker: str, params: dict[str, Any] | None = None,
                   keys: TenantKeys | None = None, identifying: set[str] | None = None,
                   ) -> list[Item]:
    """Read the unit's items back; the keys of those not as the action left them: deleted
    ones must be gone; anonymised ones must carry the marker, no attribute whose rule removes
    it and no value of the subject's identifying attributes; updated ones must hold the new
    values."""
    t = dm.tables[unit.table]
    m = table_mode(dm, unit.table, action, params)
    item_keys: list[Item] = manifest["keys"]
    left = store.batch_get(t.table, item_keys) if item_keys and m != "none" else []
    bad: list[Item] = []
    for item in left:
        wrong = False
        if m == "delete":
            wrong = True
        elif m == "anonymise":
            own = [a for a in item if a not in t.key.names and a != dm.anonymised_marker
                   and a != dm.tenant_attribute]
            leaked = bool(identifying and keys and
                          value_refs(keys, [item[a] for a in own]) & identifying)
            wrong = item.get(dm.anonymised_marker) is None or leaked or any(
                t.rule(a, action) == "null" for a in own)
        elif m == "update":
            want = changes_for(t, (params or {}).get("changes") or {})
            wrong = any(item.get(a) != v for a, v in want.items())
        elif m in ("flag", "unflag"):
            wrong = item.get(t.restriction_flag or "") is not (m == "flag")
        if wrong:
            bad.append({k: item[k] for k in t.key.names})
    return bad


def check_unit(dm: DataMap, action: str, unit: Unit, manifest: dict[str, Any],
               marker: str, params: dict[str, Any] | None = None,
               keys: TenantKeys | None = None, identifying: set[str] | None = None,
               ) -> dict[str, int]:
    """What `remaining_keys` finds, counted, and S3 objects with any version left."""
    m = table_mode(dm, unit.table, action, params)
    bad = remaining_keys(dm, action, unit, manifest, marker, params, keys, identifying)
    refs = [(b, k) for b, k in manifest.get("s3", [])]
    files = objects.versions_left(refs) if refs and m in ("delete", "anonymise") else 0
    return {"checked": len(manifest["keys"]), "items_remaining": len(bad),
            "files_remaining": files}


def verify(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """Read back every planned item and object, and walk the map again from the identities:
    nothing of the subject may be found. Records the outcome on the request."""
    m = records.load(tenant_id, request_id)
    if not records.proceed(m):
        return {"cancelled": True}
    dm = frozen_map(m)
    tenant = get_tenant(tenant_id)
    ids = records.identities_of(m, tenant)
    params = request_params(m, tenant)
    remaining: dict[str, int] = {}
    checked = files_left = 0
    compared: dict[str, int] = {}
    with aws.counting() as io:
        for u in planned_units(m):
            identifying = set(objects.get_json(identifying_key(m, u.tenant_id))) \
                if action == "anonymise" else None
            if identifying is not None:
                compared[u.tenant_id] = len(identifying)
            r = check_unit(dm, action, u, objects.get_json(manifest_key(m, u)),
                                  marker=request_id, params=params,
                                  keys=get_tenant(u.tenant_id).keys, identifying=identifying)
            checked += r["checked"]
            files_left += r["files_remaining"]
            if r["items_remaining"]:
                remaining[u.id] = r["items_remaining"]
        tenants = {u.tenant_id for u in planned_units(m)} | {tenant_id}
        if action in ("erase", "anonymise"):
            for t in sorted(tenants):
                fp = find.walk(dm, t, ids)
                for name, items in fp.items.items():
                    if action == "anonymise":
                        # found again is fine for what is out of scope or anonymised
                        if table_mode(dm, name, action, params) == "none":
                            continue
                        items = [i for i in items if dm.anonymised_marker not in i]
                    if items:
                        remaining[f"{t}/{name}"] = max(remaining.get(f"{t}/{name}", 0),
                                                       len(items))
    outcome = {"passed": not remaining and not files_left, "items_checked": checked,
               "remaining": remaining, "files_remaining": files_left,
               "identity_lookup_tenants": len(tenants), "at": clock.iso()}
    if action == "anonymise":
        # no value of the subject's identifying attributes may survive in a rewritten item
        outcome["identifying_values_compared"] = sum(compared.values())
    records.record_unit(m, "_verification", outcome, dict(io.calls))
    return {"passed": outcome["passed"]}
