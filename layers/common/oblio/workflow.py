"""The steps of a request's state machine, one function per Task. Each takes references (the
request id, the tenant, a unit's table), reads the request record, and is idempotent: a step
retried after it half-ran does not touch twice what it did, nor count it twice."""

from __future__ import annotations

import json
from typing import Any

from oblio import audit, aws, clock, datamap, engine, events, planner, suppression
from oblio import requests as reqs
from oblio.datamap import DataMap
from oblio.engine import Unit
from oblio.models import RequestModel
from oblio.observability import count, logger
from oblio.settings import get_settings
from oblio.store import objects
from oblio.tenants import get_tenant

_maps: dict[str, DataMap] = {}
SUBJECT_EVENTS = {"erase": "SubjectErased", "anonymise": "SubjectAnonymised"}


def _work(m: RequestModel) -> str:
    return f"work/{m.tenant_id}/{m.request_id}/"


def _manifest_key(m: RequestModel, unit: Unit) -> str:
    return f"{_work(m)}units/{unit.tenant_id}/{unit.table}.json"


def frozen_map(m: RequestModel) -> DataMap:
    """The data map as it was when the request was planned (frozen into the request)."""
    plan = reqs._plain(m.plan) or {}
    digest = plan["datamap_digest"]
    if digest not in _maps:
        _maps[digest] = datamap.from_json(json.dumps(objects.get_json(plan["datamap_key"])))
    return _maps[digest]


def _units(m: RequestModel) -> list[Unit]:
    return [Unit(u["tenant_id"], u["table"]) for u in (reqs._plain(m.plan) or {})["units"]]


def plan(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """Walk the map for the subject (and child tenants when asked), write one manifest per
    table to the work bucket, freeze the map into the request. A retry reuses the plan."""
    m = reqs.load(tenant_id, request_id)
    if m.plan is not None and reqs._plain(m.plan).get("units") is not None:
        return {"units": [{"tenant_id": u.tenant_id, "table": u.table} for u in _units(m)]}
    dm = datamap.load(get_settings().datamap)
    tenant = get_tenant(tenant_id)
    ids = reqs.identities_of(m, tenant)
    options = reqs._plain(m.options) or {}
    tenants = [tenant, *(get_tenant(c) for c in tenant.children)] \
        if options.get("include_children") else [tenant]
    map_key = f"{_work(m)}datamap.json"
    objects.put_json(map_key, json.loads(dm.to_json()))
    units, refs, found, queries = [], {}, {}, 0
    with aws.counting() as io:
        for t in tenants:
            fp = planner.walk(dm, t.tenant_id, ids)
            queries += fp.queries
            refs[t.tenant_id] = planner.identity_refs(dm, t.keys, fp, ids, t.phone_region)
            found[t.tenant_id] = {name: len(items) for name, items in fp.items.items()}
            for name, items in fp.items.items():
                unit = Unit(t.tenant_id, name)
                table = dm.tables[name]
                objects.put_json(_manifest_key(m, unit), {
                    "keys": [planner.key_of(table, i) for i in items],
                    "s3": planner.s3_refs(dm, table, items)})
                units.append({"tenant_id": t.tenant_id, "table": name, "count": len(items)})
    reqs.record_unit(m, "_plan", {"status": "done", "queries": queries}, dict(io.calls))
    m.update(actions=[
        RequestModel.plan.set({"datamap_digest": dm.digest, "datamap_key": map_key,
                               "units": units, "identity_refs": refs, "found": found,
                               "queries": queries, "action": action,
                               "started_at": clock.iso()}),
        RequestModel.status.set("running"),
        RequestModel.timeline.set(RequestModel.timeline.append([reqs.event(
            event="planned", tables=len(units), items=sum(u["count"] for u in units))])),
    ])
    logger.info("planned", extra={"request_id": request_id, "subject_ref": m.subject_ref,
                                  "units": len(units)})
    return {"units": [{"tenant_id": u["tenant_id"], "table": u["table"]} for u in units]}


def apply(request_id: str, tenant_id: str, action: str, unit: dict[str, str]) -> dict[str, Any]:
    """Apply the action to one table of the plan; a unit already done is not done again."""
    m = reqs.load(tenant_id, request_id)
    u = Unit(unit["tenant_id"], unit["table"])
    done = (reqs._plain(m.units) or {}).get(u.id)
    if done and done.get("status") == "done":
        return {"unit": u.id, "skipped": True}
    dm = frozen_map(m)
    with aws.counting() as io:
        manifest = objects.get_json(_manifest_key(m, u))
        counts = engine.apply_unit(dm, action, u, manifest,  # type: ignore[arg-type]
                                   get_tenant(u.tenant_id).keys, m.subject_ref or "",
                                   marker=request_id)
    reqs.record_unit(m, u.id, {"status": "done", "at": clock.iso(), **counts},
                     dict(io.calls))
    logger.info("unit done", extra={"request_id": request_id, "unit": u.id, **counts})
    return {"unit": u.id, **counts}


def verify(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """Read back every planned item and object, and walk the map again from the identities:
    nothing of the subject may be found. Records the outcome on the request."""
    m = reqs.load(tenant_id, request_id)
    dm = frozen_map(m)
    tenant = get_tenant(tenant_id)
    ids = reqs.identities_of(m, tenant)
    remaining: dict[str, int] = {}
    checked = files_left = 0
    with aws.counting() as io:
        for u in _units(m):
            r = engine.check_unit(dm, action, u, objects.get_json(_manifest_key(m, u)),  # type: ignore[arg-type]
                                  marker=request_id)
            checked += r["checked"]
            files_left += r["files_remaining"]
            if r["items_remaining"]:
                remaining[u.id] = r["items_remaining"]
        tenants = {u.tenant_id for u in _units(m)} | {tenant_id}
        for t in sorted(tenants):
            fp = planner.walk(dm, t, ids)
            for name, items in fp.items.items():
                # a kept shell that an identity still finds is a failure too
                if items:
                    remaining[f"{t}/{name}"] = max(remaining.get(f"{t}/{name}", 0),
                                                   len(items))
    outcome = {"passed": not remaining and not files_left, "items_checked": checked,
               "remaining": remaining, "files_remaining": files_left,
               "identity_lookup_tenants": len(tenants), "at": clock.iso()}
    reqs.record_unit(m, "_verification", outcome, dict(io.calls))
    return {"passed": outcome["passed"]}


def _counts(m: RequestModel, dm: DataMap) -> dict[str, dict[str, dict[str, int]]]:
    units = reqs._plain(m.units) or {}
    plan_ = reqs._plain(m.plan) or {}
    out: dict[str, dict[str, dict[str, int]]] = {}
    tenants = sorted({u["tenant_id"] for u in plan_.get("units", [])} | {m.tenant_id})
    for t in tenants:
        out[t] = {}
        for name in dm.order:
            got = units.get(f"{t}/{name}", {})
            out[t][name] = {k: int(got.get(k, 0)) for k in
                            ("matched", "deleted", "anonymised", "kept", "files_deleted")}
    return out


def finish(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """Certificate, audit entry, suppression entries, events; the request completes."""
    m = reqs.load(tenant_id, request_id)
    if m.status in reqs.ENDED:
        return {"status": m.status}
    dm = frozen_map(m)
    plan_ = reqs._plain(m.plan) or {}
    units = reqs._plain(m.units) or {}
    verification = units.get("_verification", {"passed": False, "reason": "not run"})
    counts = _counts(m, dm)
    total = sum(c["matched"] for t in counts.values() for c in t.values())
    status = "completed" if verification.get("passed") else "completed_with_errors"
    io = {k: int(v) for k, v in (reqs._plain(m.io) or {}).items()}
    io.setdefault("dynamodb.Scan", 0)
    body = {"type": m.type, "counts": {t: {n: c for n, c in tables.items() if c["matched"]}
                                       for t, tables in counts.items()},
            "verification_passed": bool(verification.get("passed")), "total": total}
    entry = audit.append(tenant_id, f"{m.type}_completed", actor="oblio",
                         request_id=request_id, subject_ref=m.subject_ref, details=body)
    refs = plan_.get("identity_refs", {})
    suppressed = 0
    if action == "erase":
        for t, kinds in refs.items():
            suppressed += suppression.add(t, kinds, reason="erasure", request_id=request_id)
    certificate = {
        "request_id": request_id, "tenant_id": tenant_id, "type": m.type,
        "subject_ref": m.subject_ref, "tables": counts[tenant_id],
        "tenants": {t: c for t, c in counts.items() if t != tenant_id},
        "verification": verification, "suppression_entries": suppressed,
        "started_at": plan_.get("started_at"), "completed_at": clock.iso(),
        "audit_entry": {"id": entry.id, "hash": entry.hash},
        "datamap_digest": plan_.get("datamap_digest"),
    }
    result = {"found": total > 0, "tables": counts[tenant_id],
              "tenants": {t: {"tables": c} for t, c in counts.items() if t != tenant_id},
              "totals": {k: sum(c[k] for t in counts.values() for c in t.values())
                         for k in ("matched", "deleted", "anonymised", "kept", "files_deleted")},
              "verification": verification, "certificate": certificate, "io": io,
              "queries_planned": plan_.get("queries", 0)}
    if total == 0:
        result["message"] = "no item of the subject was found in any mapped table"
    reqs.end(m, status, result)
    objects.delete_prefix(_work(m))
    detail = {"request_id": request_id, "subject_ref": m.subject_ref, "type": m.type,
              "status": status}
    if action in SUBJECT_EVENTS:
        for t in counts:
            events.emit(SUBJECT_EVENTS[action], t, request_id=request_id,
                        subject_ref=m.subject_ref, parent_tenant_id=tenant_id
                        if t != tenant_id else None)
    events.emit("RequestCompleted", tenant_id, **detail)
    logger.info("request finished", extra={"request_id": request_id, "status": status,
                                           "subject_ref": m.subject_ref})
    return {"status": status}


def fail(request_id: str, tenant_id: str, error: dict[str, Any]) -> dict[str, Any]:
    """Record the failure that the state machine caught; `retry` resumes from here."""
    m = reqs.load(tenant_id, request_id)
    if m.status in reqs.ENDED:
        return {"status": m.status}
    code, message = str(error.get("Error", "Error")), str(error.get("Cause", ""))
    try:
        cause = json.loads(message)
        code = str(cause.get("errorType", code))
        message = str(cause.get("errorMessage", ""))
    except (ValueError, AttributeError):
        pass
    failure = {"code": code, "message": message[:500], "at": clock.iso(),
               "attempt": int(m.attempt or 1)}
    count("RequestsCompleted", type=m.type or "", status="failed")
    m.update(actions=[
        RequestModel.status.set("failed"), RequestModel.error.set(failure),
        RequestModel.timeline.set(RequestModel.timeline.append([reqs.event(
            event="failed", code=code)])),
    ])
    audit.append(tenant_id, "request_failed", actor="oblio", request_id=request_id,
                 subject_ref=m.subject_ref, details={"code": code})
    events.emit("RequestFailed", tenant_id, request_id=request_id, subject_ref=m.subject_ref,
                type=m.type, code=code)
    logger.warning("request failed", extra={"request_id": request_id, "code": code})
    return {"status": "failed"}
