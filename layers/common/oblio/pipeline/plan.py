"""Plan: walk the data map from the subject's identities (and child tenants' when asked),
write one manifest of item keys per table, freeze the map into the request. A retry reuses
the plan."""

from __future__ import annotations

import json
from typing import Any

from oblio.control import records
from oblio.control.tenants import get_tenant
from oblio.core import clock, datamap
from oblio.core.observability import logger
from oblio.pipeline import find, rules
from oblio.pipeline.rules import Unit
from oblio.pipeline.work import (
    identifying_key,
    manifest_key,
    planned_units,
    request_params,
    work_prefix,
)
from oblio.store import aws, objects
from oblio.store.models import RequestModel, plain


def plan(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """Walk the map for the subject (and child tenants when asked), write one manifest per
    table to the work bucket, freeze the map into the request. A retry reuses the plan."""
    m = records.load(tenant_id, request_id)
    if not records.proceed(m):
        return {"units": [], "cancelled": True}
    if m.plan is not None and plain(m.plan).get("units") is not None:
        return {"units": [{"tenant_id": u.tenant_id, "table": u.table} for u in planned_units(m)]}
    dm = datamap.current()
    tenant = get_tenant(tenant_id)
    ids = records.identities_of(m, tenant)
    options = records.options_of(m)
    tenants = [tenant, *(get_tenant(c) for c in tenant.children)] \
        if options.get("include_children") else [tenant]
    map_key = f"{work_prefix(m)}datamap.json"
    objects.put_json(map_key, json.loads(dm.to_json()))
    params = request_params(m, tenant)
    units, refs, found, queries = [], {}, {}, 0
    with aws.counting() as io:
        for t in tenants:
            fp = find.walk(dm, t.tenant_id, ids)
            queries += fp.queries
            refs[t.tenant_id] = find.identity_refs(dm, t.keys, fp, ids, t.phone_region)
            found[t.tenant_id] = {name: len(items) for name, items in fp.items.items()}
            if action == "anonymise":
                values = [v for name, items in fp.items.items()
                          for v in rules.identifying_values(dm, name, items)]
                objects.put_json(identifying_key(m, t.tenant_id),
                                 sorted(rules.value_refs(t.keys, [*values, *ids.values()])))
            for name, items in fp.items.items():
                if rules.table_mode(dm, name, action, params) == "none":
                    continue
                unit = Unit(t.tenant_id, name)
                table = dm.tables[name]
                objects.put_json(manifest_key(m, unit), {
                    "keys": [find.key_of(table, i) for i in items],
                    "s3": find.s3_refs(dm, table, items)})
                units.append({"tenant_id": t.tenant_id, "table": name, "count": len(items)})
    records.record_unit(m, "_plan", {"status": "done", "queries": queries}, dict(io.calls))
    records.fenced_update(m, [
        RequestModel.plan.set({"datamap_digest": dm.digest, "datamap_key": map_key,
                               "units": units, "identity_refs": refs, "found": found,
                               "queries": queries, "action": action,
                               "started_at": clock.iso()}),
        RequestModel.status.set("running"),
        RequestModel.timeline.set(RequestModel.timeline.append([records.event(
            event="planned", tables=len(units), items=sum(u["count"] for u in units))])),
    ], condition=RequestModel.status.is_in("received", "queued", "running"))
    logger.info("planned", extra={"request_id": request_id, "subject_ref": m.subject_ref,
                                  "units": len(units)})
    return {"units": [{"tenant_id": u["tenant_id"], "table": u["table"]} for u in units]}
