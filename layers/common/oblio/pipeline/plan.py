"""Plan: walk the data map from the subject's identities (and child tenants' when asked),
write the request's one manifest (the frozen map, the item keys of every table, the
identifying values), freeze the plan into the request. A retry reuses the plan."""

from __future__ import annotations

import json
from typing import Any

from pynamodb.exceptions import UpdateError

from oblio.control import exports, records
from oblio.control.tenants import get_tenant
from oblio.core import clock, datamap
from oblio.core.observability import logger
from oblio.pipeline import find, rules
from oblio.pipeline.rules import Unit
from oblio.pipeline.work import planned_units, request_params, write_manifest
from oblio.store import aws
from oblio.store.models import RequestModel, plain


def unit_manifest(dm: datamap.DataMap, name: str, action: str, params: dict[str, Any],
                  fp: find.Footprint, tenant_id: str) -> dict[str, Any] | None:
    """One table's share of the plan, or None when the action does nothing there: the keys
    of the items it acts on, their files (pointers, key templates, prefixes), the items on
    legal hold with their reasons, and per role the items she appears in only in that
    role."""
    table = dm.tables[name]
    mode = rules.table_mode(dm, name, action, params)
    found = fp.items.get(name, [])
    roles = {r: items for r, items in fp.roles.get(name, {}).items()
             if rules.role_mode(dm, name, r, action, params) != "none"}
    if (mode == "none" or not found) and not roles:
        return None
    if mode == "none":
        found = []
    items, held = rules.split_held(table, found) if mode in rules.DESTRUCTIVE \
        else (found, [])
    manifest: dict[str, Any] = {"keys": [find.key_of(table, i) for i in items],
                                "s3": find.s3_refs(dm, table, items, tenant_id),
                                "outside": find.outside_refs(dm, table, items, tenant_id),
                                "unreadable": find.unreadable_refs(dm, table, items, tenant_id)}
    if table.files:
        manifest.update(find.file_refs(dm, table, items, tenant_id))
    if held:  # on legal hold: not touched, counted with the reason
        manifest["held"] = [{"key": find.key_of(table, i), "reason": r} for i, r in held]
    for role, role_items in sorted(roles.items()):
        acted, kept = rules.split_held(table, role_items)
        group: dict[str, Any] = {"keys": [find.key_of(table, i) for i in acted]}
        if kept:
            group["held"] = [{"key": find.key_of(table, i), "reason": r} for i, r in kept]
        manifest.setdefault("roles", {})[role] = group
    return manifest


def plan(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """Walk the map for the subject (and child tenants when asked), write one manifest per
    table to the work bucket, freeze the map into the request. A retry reuses the plan."""
    m = records.load(tenant_id, request_id)
    if not records.proceed(m):
        return {"units": [], "cancelled": True}
    if m.plan is not None and plain(m.plan).get("units") is not None:
        return {"units": [*({"tenant_id": u.tenant_id, "table": u.table}
                            for u in planned_units(m)),
                          *_archive_unit(m.tenant_id, plain(m.plan))]}
    dm = datamap.current()
    tenant = get_tenant(tenant_id)
    ids = records.identities_of(m, tenant)
    options = records.options_of(m)
    tenants = [tenant, *(get_tenant(c) for c in tenant.children)] \
        if options.get("include_children") else [tenant]
    manifests: dict[str, Any] = {}
    identifying: dict[str, list[str]] = {}
    params = request_params(m, tenant)
    units, refs, found, queries, late = [], {}, {}, 0, 0
    with aws.counting() as io:
        for t in tenants:
            fp = find.walk(dm, t.tenant_id, ids,
                           include_expired=action in find.SEES_EXPIRED)
            queries += fp.queries
            late += fp.expired
            refs[t.tenant_id] = find.identity_refs(dm, t.keys, fp, ids, t.phone_region)
            found[t.tenant_id] = {name: fp.count(name) + fp.in_roles(name) for name in dm.order
                                  if fp.count(name) or fp.in_roles(name)}
            if action == "anonymise":
                values = [v for name, items in fp.items.items()
                          for v in rules.identifying_values(dm, name, items)]
                identifying[t.tenant_id] = sorted(
                    rules.value_refs(t.keys, [*values, *ids.values()]))
            for name in dm.order:
                manifest = unit_manifest(dm, name, action, params, fp, t.tenant_id)
                if manifest is None:
                    continue
                unit = Unit(t.tenant_id, name)
                manifests[unit.id] = manifest
                units.append({"tenant_id": t.tenant_id, "table": name,
                              "count": fp.count(name) + fp.in_roles(name)})
        # an erasure deletes the subject's unexpired access-export archives (everything
        # about her, kept for the export TTL)
        found_archives = exports.subject_archives(refs) if action == "erase" else []
        map_key = write_manifest(m, {"datamap": json.loads(dm.to_json()), "units": manifests,
                                     "identifying": identifying})
    records.record_unit(m, "_plan", {"status": "done", "queries": queries}, dict(io.calls))
    planned = {"archives": found_archives} if action == "erase" else {}
    try:
        _record_plan(m, {**planned, "datamap_digest": dm.digest, "datamap_key": map_key,
                         "manifest_key": map_key,
                         "units": units, "identity_refs": refs, "found": found,
                         "queries": queries, "action": action,
                         # items past their TTL that DynamoDB had not deleted yet,
                         # planned like the others
                         "expired_items": late, "started_at": clock.iso()}, units)
    except UpdateError:
        # cancelled while it planned (the write is conditional on the request being open):
        # the cancel stands, nothing is planned
        if records.load(tenant_id, request_id).status in records.ENDED:
            return {"units": [], "cancelled": True}
        raise
    logger.info("planned", extra={"request_id": request_id, "subject_ref": m.subject_ref,
                                  "units": len(units)})
    return {"units": [*({"tenant_id": u["tenant_id"], "table": u["table"]} for u in units),
                      *_archive_unit(tenant_id, planned)]}


def _record_plan(m: Any, plan_: dict[str, Any], units: list[dict[str, Any]]) -> None:
    """Freeze the plan into the request and mark it running, if it is still open."""
    records.fenced_update(m, [
        RequestModel.plan.set(plan_),
        RequestModel.status.set("running"),
        RequestModel.timeline.set(RequestModel.timeline.append([records.event(
            event="planned", tables=len(units), items=sum(u["count"] for u in units))])),
    ], condition=RequestModel.status.is_in(*records.OPEN))


def _archive_unit(tenant_id: str, plan_: dict[str, Any]) -> list[dict[str, str]]:
    return [{"tenant_id": tenant_id, "table": exports.UNIT}] if plan_.get("archives") else []
