"""The steps of a request's state machine, one function per Task. Each takes references (the
request id, the tenant, a unit's table), reads the request record, and is idempotent: a step
retried after it half-ran does not touch twice what it did, nor count it twice."""

from __future__ import annotations

import json
from typing import Any

from oblio import audit, aws, clock, consent, datamap, engine, events, planner, suppression
from oblio import requests as reqs
from oblio.datamap import DataMap
from oblio.engine import Unit
from oblio.models import RequestModel
from oblio.observability import count, logger
from oblio.store import objects
from oblio.tasks import caught
from oblio.tenants import get_tenant

_maps: dict[str, DataMap] = {}
SUBJECT_EVENTS: dict[str, tuple[str, ...]] = {
    "erase": ("SubjectErased",), "anonymise": ("SubjectAnonymised",),
    "rectify": ("SubjectRectified",), "restrict": ("SubjectRestricted",),
    # an objection's ConsentChanged events come from the ledger, one per purpose withdrawn
    "unrestrict": ("SubjectRestricted",), "object": ("SubjectRestricted",),
}


def _work(m: RequestModel) -> str:
    return f"work/{m.tenant_id}/{m.request_id}/"


def _manifest_key(m: RequestModel, unit: Unit) -> str:
    return f"{_work(m)}units/{unit.tenant_id}/{unit.table}.json"


def _identifying_key(m: RequestModel, tenant_id: str) -> str:
    return f"{_work(m)}identifying/{tenant_id}.json"


def request_params(m: RequestModel, tenant: Any) -> dict[str, Any]:
    """What the action needs beyond the identities: a scope of tables, purposes, and (held
    encrypted on the request) a rectification's new values."""
    options = reqs._plain(m.options) or {}
    params: dict[str, Any] = {"tables": options.get("tables"),
                              "purposes": options.get("purposes")}
    if m.changes_enc:
        params["changes"] = tenant.keys.decrypt(m.changes_enc)
    return params


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
    dm = datamap.current()
    tenant = get_tenant(tenant_id)
    ids = reqs.identities_of(m, tenant)
    options = reqs._plain(m.options) or {}
    tenants = [tenant, *(get_tenant(c) for c in tenant.children)] \
        if options.get("include_children") else [tenant]
    map_key = f"{_work(m)}datamap.json"
    objects.put_json(map_key, json.loads(dm.to_json()))
    params = request_params(m, tenant)
    units, refs, found, queries = [], {}, {}, 0
    with aws.counting() as io:
        for t in tenants:
            fp = planner.walk(dm, t.tenant_id, ids)
            queries += fp.queries
            refs[t.tenant_id] = planner.identity_refs(dm, t.keys, fp, ids, t.phone_region)
            found[t.tenant_id] = {name: len(items) for name, items in fp.items.items()}
            if action == "anonymise":
                values = [v for name, items in fp.items.items()
                          for v in engine.identifying_values(dm, name, items)]
                objects.put_json(_identifying_key(m, t.tenant_id),
                                 sorted(engine.value_refs(t.keys, [*values, *ids.values()])))
            for name, items in fp.items.items():
                if engine.table_mode(dm, name, action, params) == "none":
                    continue
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
    tenant = get_tenant(u.tenant_id)
    params = request_params(m, get_tenant(tenant_id))
    extra: dict[str, Any] = {}
    with aws.counting() as io:
        manifest = objects.get_json(_manifest_key(m, u))
        if action == "rectify":
            extra["old"] = rectified_refs(dm, u, manifest, params, tenant)
        counts = engine.apply_unit(dm, action, u, manifest, tenant.keys, m.subject_ref or "",
                                   marker=request_id, params=params)
    reqs.record_unit(m, u.id, {"status": "done", "at": clock.iso(), **counts, **extra},
                     dict(io.calls))
    logger.info("unit done", extra={"request_id": request_id, "unit": u.id, **counts})
    return {"unit": u.id, **counts}


def rectified_refs(dm: DataMap, u: Unit, manifest: dict[str, Any], params: dict[str, Any],
                   tenant: Any) -> dict[str, list[str]]:
    """HMACs of the values a rectification replaces, per attribute (for the audit entry)."""
    from oblio.store import tables as store

    t = dm.tables[u.table]
    attrs = engine.changes_for(t, params.get("changes") or {})
    out: dict[str, set[str]] = {a: set() for a in attrs}
    for item in store.batch_get(t.table, manifest["keys"]):
        for a in attrs:
            if a in item:
                out[a] |= engine.value_refs(tenant.keys, [item[a]])
    return {a: sorted(v) for a, v in out.items()}


def verify(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """Read back every planned item and object, and walk the map again from the identities:
    nothing of the subject may be found. Records the outcome on the request."""
    m = reqs.load(tenant_id, request_id)
    dm = frozen_map(m)
    tenant = get_tenant(tenant_id)
    ids = reqs.identities_of(m, tenant)
    params = request_params(m, tenant)
    remaining: dict[str, int] = {}
    checked = files_left = 0
    compared: dict[str, int] = {}
    with aws.counting() as io:
        for u in _units(m):
            identifying = set(objects.get_json(_identifying_key(m, u.tenant_id))) \
                if action == "anonymise" else None
            if identifying is not None:
                compared[u.tenant_id] = len(identifying)
            r = engine.check_unit(dm, action, u, objects.get_json(_manifest_key(m, u)),
                                  marker=request_id, params=params,
                                  keys=get_tenant(u.tenant_id).keys, identifying=identifying)
            checked += r["checked"]
            files_left += r["files_remaining"]
            if r["items_remaining"]:
                remaining[u.id] = r["items_remaining"]
        tenants = {u.tenant_id for u in _units(m)} | {tenant_id}
        if action in ("erase", "anonymise"):
            for t in sorted(tenants):
                fp = planner.walk(dm, t, ids)
                for name, items in fp.items.items():
                    if action == "anonymise":
                        # found again is fine for what is out of scope or anonymised
                        if engine.table_mode(dm, name, action, params) == "none":
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
            out[t][name] = {k: int(got.get(k, 0)) for k in engine.COUNTS}
    return out


def _rectification_audit(m: RequestModel, tenant: Any) -> dict[str, Any]:
    """HMACs of the new value of each change and of the old values of each attribute it
    replaced: the audit proves what changed without holding either value."""
    changes = tenant.keys.decrypt(m.changes_enc) if m.changes_enc else {}
    old: dict[str, set[str]] = {}
    for u in (reqs._plain(m.units) or {}).values():
        for attr, refs in (u.get("old") or {}).items():
            old.setdefault(attr, set()).update(refs)
    return {"new": {name: sorted(engine.value_refs(tenant.keys, [value]))
                    for name, value in changes.items()},
            "old": {attr: sorted(refs) for attr, refs in sorted(old.items())}}


def finish(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """Audit entry, certificate (erasure, anonymisation), suppression entries, events; the
    request completes."""
    m = reqs.load(tenant_id, request_id)
    if m.status in reqs.ENDED:
        return {"status": m.status}
    dm = frozen_map(m)
    tenant = get_tenant(tenant_id)
    plan_ = reqs._plain(m.plan) or {}
    units = reqs._plain(m.units) or {}
    verification = units.get("_verification", {"passed": False, "reason": "not run"})
    counts = _counts(m, dm)
    totals = {k: sum(c[k] for t in counts.values() for c in t.values()) for k in engine.COUNTS}
    status = "completed" if verification.get("passed") else "completed_with_errors"
    io = {k: int(v) for k, v in (reqs._plain(m.io) or {}).items()}
    io.setdefault("dynamodb.Scan", 0)
    options = reqs._plain(m.options) or {}
    body: dict[str, Any] = {
        "type": m.type, "verification_passed": bool(verification.get("passed")),
        "total": totals["matched"],
        "counts": {t: {n: c for n, c in tables.items() if c["matched"]}
                   for t, tables in counts.items()}}
    if action == "rectify":
        body.update(_rectification_audit(m, tenant))
    if action == "object":
        body["purposes"] = options.get("purposes") or ["marketing"]
    # the consent ledger: an erasure removes the subject's records, an objection records the
    # withdrawals (once: a retried finish reuses the outcome)
    ledger = units.get("_consent") or {}
    if action in ("erase", "object") and "_consent" not in units:
        ledger = consent.on_request_finished(m, action, plan_.get("identity_refs", {}),
                                             body.get("purposes") or [])
        reqs.record_unit(m, "_consent", ledger, {})
    if action == "erase":
        body["consent_records_deleted"] = sum(ledger.get("deleted", {}).values())
    if "_audit" in units:  # a retried finish: the entry is written already
        entry = audit.Entry(units["_audit"]["id"], units["_audit"]["hash"])
    else:
        entry = audit.append(tenant_id, f"{m.type}_completed", actor="oblio",
                             request_id=request_id, subject_ref=m.subject_ref, details=body)
        reqs.record_unit(m, "_audit", {"id": entry.id, "hash": entry.hash}, {})
    refs = plan_.get("identity_refs", {})
    suppressed = 0
    if action == "erase" or (action == "object" and "marketing" in body["purposes"]):
        reason = "erasure" if action == "erase" else "objection:marketing"
        for t, kinds in refs.items():
            suppressed += suppression.add(t, kinds, reason=reason, request_id=request_id)
    result: dict[str, Any] = {
        "found": totals["matched"] > 0, "tables": counts[tenant_id],
        "tenants": {t: {"tables": c} for t, c in counts.items() if t != tenant_id},
        "totals": totals, "verification": verification, "io": io,
        "queries_planned": plan_.get("queries", 0), "audit_entry": entry.id}
    if action in ("erase", "anonymise"):
        result["certificate"] = reqs.certificate(
            request_id=request_id, tenant_id=tenant_id, type_=m.type or "",
            subject_ref=m.subject_ref or "", tables=counts[tenant_id],
            tenants={t: c for t, c in counts.items() if t != tenant_id},
            verification=verification, suppressed=suppressed,
            started_at=plan_.get("started_at"), entry=entry,
            datamap_digest=plan_.get("datamap_digest"))
    if action == "erase":
        result["certificate"]["consent_records_deleted"] = body["consent_records_deleted"]
    if ledger:
        result["consent"] = ledger
    if suppressed:
        result["suppression_entries"] = suppressed
    if not any((plan_.get("found") or {}).values()):
        result["message"] = "no item of the subject was found in any mapped table"
    elif action == "anonymise" and totals["anonymised"] + totals["deleted"] == 0:
        result["message"] = "the subject was already anonymised: nothing changed"
    # events and clean-up before the status: a client that sees "completed" can rely on them
    for t in counts:
        for detail_type in SUBJECT_EVENTS.get(action, ()):
            events.emit(detail_type, t, request_id=request_id, subject_ref=m.subject_ref,
                        type=m.type, parent_tenant_id=tenant_id if t != tenant_id else None,
                        **({"purposes": body["purposes"]} if action == "object" else {}))
    events.emit("RequestCompleted", tenant_id, request_id=request_id,
                subject_ref=m.subject_ref, type=m.type, status=status)
    objects.delete_prefix(_work(m))
    reqs.end(m, status, result)
    logger.info("request finished", extra={"request_id": request_id, "status": status,
                                           "subject_ref": m.subject_ref})
    return {"status": status}


def fail(request_id: str, tenant_id: str, error: dict[str, Any]) -> dict[str, Any]:
    """Record the failure that the state machine caught; `retry` resumes from here."""
    m = reqs.load(tenant_id, request_id)
    if m.status in reqs.ENDED:
        return {"status": m.status}
    code, message = caught(error)
    failure = {"code": code, "message": message, "at": clock.iso(),
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
