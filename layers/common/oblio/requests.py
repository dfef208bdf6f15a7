"""Data-subject requests: the one durable state of each request (status, due date, timeline,
result), and the moves between statuses. The identities of an open request are held
encrypted; once it ends they are dropped and only their HMACs remain."""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
from datetime import timedelta
from typing import Any

from pynamodb.exceptions import DeleteError, DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite
from ulid import ULID

from oblio import audit, aws, clock, datamap, engine, planner
from oblio.errors import BadRequest, Conflict, Invalid, NotFound
from oblio.identity import parse_subject
from oblio.models import RequestModel
from oblio.observability import count
from oblio.settings import get_settings
from oblio.tenants import Principal, Tenant, get_tenant, reachable_tenants

TYPES = ("access", "erasure", "anonymisation", "rectification", "restriction", "objection")
#: request type -> the state machine that carries it out
AVAILABLE = {"erasure": "erasure", "anonymisation": "anonymisation",
             "rectification": "subject_update", "restriction": "subject_update",
             "objection": "subject_update", "access": "access_export"}
#: request type -> the engine's action (restriction with "lift": unrestrict)
ACTIONS = {"erasure": "erase", "anonymisation": "anonymise", "rectification": "rectify",
           "restriction": "restrict", "objection": "object", "access": "export"}
IRREVERSIBLE = {"erasure", "anonymisation"}
STATUSES = ("received", "awaiting_verification", "awaiting_approval", "queued", "running",
            "completed", "completed_with_errors", "failed", "cancelled")
ENDED = frozenset({"completed", "completed_with_errors", "cancelled"})
_REQ = "req#"


def _sk(request_id: str) -> str:
    return _REQ + request_id


def _open_sk(type_: str, subject_ref: str) -> str:
    return f"open#{type_}#{subject_ref}"


def _plain(value: Any) -> Any:
    if value is None:
        return None
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def event(at: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"at": at or clock.iso(), **fields}


def to_json(m: RequestModel) -> dict[str, Any]:
    """The API's view of a request: no identity, only the subject's HMAC reference."""
    options = _plain(m.options) or {}
    overdue = (m.status not in ENDED and m.due_at is not None
               and clock.parse(m.due_at) < clock.now())
    return {
        "id": m.request_id, "type": m.type, "status": m.status, "subject_ref": m.subject_ref,
        "created_at": m.created_at, "due_at": m.due_at, "completed_at": m.completed_at,
        "overdue": overdue, "reason": m.reason, "dry_run": bool(options.get("dry_run")),
        "include_children": bool(options.get("include_children")),
        "attempt": int(m.attempt or 0), "error": _plain(m.error),
        "timeline": _plain(m.timeline) or [], "result": _plain(m.result),
        "extension": _plain(m.extended),
    }


def load(tenant_id: str, request_id: str, consistent: bool = True) -> RequestModel:
    """The tenant's request; 404 for an unknown id or another tenant's (never says which)."""
    try:
        return RequestModel.get(tenant_id, _sk(request_id), consistent_read=consistent)
    except DoesNotExist:
        raise NotFound(f"no request {request_id!r} in this tenant") from None


def identities_of(m: RequestModel, tenant: Tenant) -> dict[str, str]:
    if not m.identities_enc:
        raise Conflict("the request has ended and no longer holds the subject's identities")
    return tenant.keys.decrypt(m.identities_enc)


def _validate(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object, e.g. {\"type\": \"erasure\", "
                         "\"subject\": {\"email\": \"name@example.com\"}, \"confirm\": true}")
    type_ = body.get("type")
    if type_ not in TYPES:
        raise Invalid("type", f"type must be one of {', '.join(TYPES)}", code="invalid_type")
    if type_ not in AVAILABLE:
        raise Invalid("type", f"requests of type '{type_}' are not available in this version "
                              f"yet; available: {', '.join(AVAILABLE)}",
                      code="unsupported_type")
    for flag in ("confirm", "dry_run", "include_children", "lift"):
        if flag in body and body[flag] is not None and not isinstance(body[flag], bool):
            raise Invalid(flag, f"{flag} must be true or false")
    if type_ in IRREVERSIBLE and not body.get("dry_run") and body.get("confirm") is not True:
        raise Invalid("confirm", f"{type_} is irreversible: send \"confirm\": true to run it, "
                                 "or \"dry_run\": true to see what it would do",
                      code="confirmation_required")
    reason = body.get("reason")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 1000):
        raise Invalid("reason", "reason must be a string of at most 1000 characters")
    return body


def action_of(body: dict[str, Any]) -> str:
    if body["type"] == "restriction" and body.get("lift"):
        return "unrestrict"
    return str(ACTIONS.get(body["type"], body["type"]))


def params_of(body: dict[str, Any], dm: Any, region: str | None) -> dict[str, Any]:
    """The action's parameters, validated against the data map: `tables` (anonymisation),
    `changes` (rectification, normalised like identities), `purposes` (objection)."""
    from oblio import identity
    from oblio.identity import IDENTITY_KINDS

    params: dict[str, Any] = {"tables": None, "purposes": None, "changes": None}
    tables = body.get("tables")
    if tables is not None:
        if body["type"] != "anonymisation":
            raise Invalid("tables", "tables limits an anonymisation; leave it out for "
                                    f"{body['type']}")
        if not isinstance(tables, list) or not tables or \
                not all(isinstance(t, str) for t in tables):
            raise Invalid("tables", "tables must be a non-empty list of mapped table names")
        unknown = [t for t in tables if t not in dm.tables]
        if unknown:
            raise Invalid("tables", f"tables names unmapped tables {unknown}; mapped: "
                                    f"{', '.join(dm.order)}", code="unmapped_table")
        params["tables"] = tables
    if body["type"] == "rectification":
        changes = body.get("changes")
        if not isinstance(changes, dict) or not changes:
            raise Invalid("changes", "rectification needs changes: {attribute: new value}, "
                                     "e.g. {\"email\": \"new@example.com\"}")
        held = {a for t in dm.tables.values() for a in t.attributes}
        normalised: dict[str, Any] = {}
        for name, value in changes.items():
            field = f"changes.{name}"
            if name in IDENTITY_KINDS:
                normalised[name] = identity.normalise(name, value, region, field=field)
            elif name not in held:
                raise Invalid(field, f"no mapped table holds an attribute '{name}'; name a "
                                     "mapped attribute or an identity (email, phone, "
                                     "external_id)", code="unmapped_attribute")
            elif not isinstance(value, str | int | bool):
                raise Invalid(field, f"{field} must be a string, a whole number or a boolean")
            else:
                normalised[name] = value
        if all(not engine.changes_for(t, normalised) for t in dm.tables.values()):
            raise Invalid("changes", "no mapped table can take these changes in place (they "
                                     "name only key attributes)", code="unmapped_attribute")
        params["changes"] = normalised
    elif body.get("changes") is not None:
        raise Invalid("changes", f"changes applies to rectification, not {body['type']}")
    if body["type"] == "objection":
        known = sorted({p for t in dm.tables.values() for p in t.purposes})
        purposes = body.get("purposes") or ["marketing"]
        if not isinstance(purposes, list) or not all(isinstance(p, str) for p in purposes):
            raise Invalid("purposes", "purposes must be a list of purpose names")
        unknown = [p for p in purposes if p not in known]
        if unknown:
            raise Invalid("purposes", f"unknown purposes {unknown}; this tenant's data map "
                                      f"knows {', '.join(known)}", code="unknown_purpose")
        params["purposes"] = purposes
    return params


def dry_run(principal: Principal, body: dict[str, Any]) -> dict[str, Any]:
    """What the request would do, table by table (and for a rewrite, attribute by
    attribute), without changing anything."""
    dm = datamap.current()
    action = action_of(body)
    plans: dict[str, Any] = {}
    for tenant in reachable_tenants(principal, bool(body.get("include_children"))):
        ids = parse_subject(body.get("subject"), tenant.phone_region, tuple(dm.identities))
        params = params_of(body, dm, tenant.phone_region)
        fp = planner.walk(dm, tenant.tenant_id, ids)
        tables = {}
        for name in dm.order:
            t = dm.tables[name]
            items = fp.items.get(name, [])
            mode = engine.table_mode(dm, name, action, params)
            plan: dict[str, Any] = {
                "matched": len(items), "action": mode if items else "none",
                "would_delete": len(items) if mode == "delete" else 0,
                "would_anonymise": len(items) if mode == "anonymise" else 0,
                "would_update": len(items) if mode in ("update", "flag", "unflag") else 0,
                "files": len(planner.s3_refs(dm, t, items)) if mode in ("delete",
                                                                       "anonymise") else 0,
                "keys": [planner.key_of(t, i) for i in items],
            }
            if mode == "anonymise":
                plan["attributes"] = {a: t.rule(a, action) for a in t.attributes}
            elif mode == "update":
                plan["attributes"] = sorted(engine.changes_for(t, params["changes"]))
            tables[name] = plan
        plans[tenant.tenant_id] = {"subject_ref": tenant.keys.subject_ref(ids),
                                   "tables": tables, "total": fp.total,
                                   "queries": fp.queries}
    own = plans[principal.tenant_id]
    audit.append(principal.tenant_id, f"{body['type']}_dry_run", actor=principal.key_id,
                 subject_ref=own["subject_ref"],
                 details={"matched": {t: p["total"] for t, p in plans.items()}})
    return {"dry_run": True, "type": body["type"], "action": action,
            "subject_ref": own["subject_ref"],
            "found": any(p["total"] for p in plans.values()),
            "tables": own["tables"],
            "tenants": {t: p for t, p in plans.items() if t != principal.tenant_id},
            "changed": 0}


def create(principal: Principal, body: Any) -> tuple[int, dict[str, Any]]:
    """File a request: 202 with a new one, or 200 with the open one it repeats."""
    body = _validate(body)
    principal.require("dsr:erase" if body["type"] in IRREVERSIBLE else "dsr:write")
    if body.get("dry_run"):
        return 200, dry_run(principal, body)
    dm = datamap.current()
    tenant = get_tenant(principal.tenant_id)
    reachable = reachable_tenants(principal, bool(body.get("include_children")))  # 403?
    ids = parse_subject(body.get("subject"), tenant.phone_region, tuple(dm.identities))
    for child in reachable[1:]:
        parse_subject(body.get("subject"), child.phone_region, tuple(dm.identities))
    params = params_of(body, dm, tenant.phone_region)
    action = action_of(body)
    from oblio import exporter  # it imports this module

    notify = exporter.notify_option(body, tenant)  # access: the requester's address
    ref = tenant.keys.subject_ref(ids)
    if body["type"] == "anonymisation" and tenant.settings.get(
            "require_export_before_anonymisation"):
        _require_export(tenant.tenant_id, ref)
    now = clock.now()
    request_id = str(ULID())
    m = RequestModel(
        tenant_id=tenant.tenant_id, sk=_sk(request_id), request_id=request_id,
        type=body["type"], status="received", subject_ref=ref,
        identities_enc=tenant.keys.encrypt(ids),
        changes_enc=tenant.keys.encrypt(params["changes"]) if params["changes"] else None,
        identity_refs={k: tenant.keys.hmac(k, v) for k, v in ids.items()},
        created_at=clock.iso(now),
        due_at=clock.iso(clock.add_months(now, get_settings().due_months)),
        requested_by=principal.key_id, reason=body.get("reason"),
        options={"dry_run": False, "include_children": bool(body.get("include_children")),
                 "tables": params["tables"], "purposes": params["purposes"],
                 "action": action, **notify},
        timeline=[event(event="received", by=principal.key_id)], units={}, io={}, attempt=1)
    kind = body["type"] + ("-lift" if action == "unrestrict" else "")
    marker = RequestModel(tenant_id=tenant.tenant_id, sk=_open_sk(kind, ref),
                          request_id=request_id)
    try:
        with TransactWrite(connection=RequestModel._get_connection().connection) as tx:
            tx.save(marker, condition=RequestModel.sk.does_not_exist())
            tx.save(m, condition=RequestModel.sk.does_not_exist())
    except TransactWriteError:
        existing = RequestModel.get(tenant.tenant_id, _open_sk(kind, ref),
                                    consistent_read=True)
        return 200, {**to_json(load(tenant.tenant_id, existing.request_id)),
                     "duplicate_of_open_request": True}
    audit.append(tenant.tenant_id, "request_received", actor=principal.key_id,
                 request_id=request_id, subject_ref=ref,
                 details={"type": body["type"], "action": action, "include_children":
                          bool(body.get("include_children")), "tables": params["tables"],
                          "purposes": params["purposes"],
                          "changes": sorted(params["changes"] or {})})
    _start(m)
    count("RequestsCreated", type=body["type"])
    return 202, {"request_id": request_id, "status": m.status, "due_at": m.due_at}


def latest_valid_export(tenant_id: str, subject_ref: str) -> RequestModel | None:
    """The newest completed access request of the subject whose archive has not expired."""
    now = clock.iso()
    for m in RequestModel.query(
            tenant_id, RequestModel.sk.startswith(_REQ), scan_index_forward=False,
            filter_condition=(RequestModel.type == "access")
            & (RequestModel.subject_ref == subject_ref)
            & RequestModel.status.is_in("completed", "completed_with_errors")):
        expires = (_plain(m.result) or {}).get("expires_at")
        if expires and expires > now:
            return m
    return None


def _require_export(tenant_id: str, subject_ref: str) -> None:
    """The tenant wants an export of the subject before an anonymisation (Art. 20 first)."""
    if latest_valid_export(tenant_id, subject_ref) is None:
        raise Conflict("this tenant requires an access export of the subject before an "
                       "anonymisation, and there is none that has not expired: file an "
                       "access request first, then anonymise", code="export_required")


def _start(m: RequestModel) -> None:
    s = get_settings()
    resp = aws.client("stepfunctions").start_execution(
        stateMachineArn=s.state_machine_arn(AVAILABLE[m.type or ""]),
        name=f"{m.request_id}-{int(m.attempt or 1)}",
        input=json.dumps({"request_id": m.request_id, "tenant_id": m.tenant_id,
                          "action": (_plain(m.options) or {}).get("action")
                          or ACTIONS.get(m.type or "", "")}))
    m.update(actions=[
        RequestModel.status.set("queued"),
        RequestModel.execution_arn.set(resp["executionArn"]),
        RequestModel.timeline.set(RequestModel.timeline.append(
            [event(event="queued", attempt=int(m.attempt or 1))])),
    ], condition=RequestModel.status.is_in("received", "failed", "completed_with_errors"))


def list_requests(tenant_id: str, *, type_: str | None = None, status: str | None = None,
                  overdue: bool = False, limit: int = 50, cursor: str | None = None,
                  ) -> dict[str, Any]:
    """The tenant's requests, newest first, filtered, one page at a time."""
    if type_ is not None and type_ not in TYPES:
        raise Invalid("type", f"type must be one of {', '.join(TYPES)}")
    if status is not None and status not in STATUSES:
        raise Invalid("status", f"status must be one of {', '.join(STATUSES)}")
    start = None
    if cursor:
        try:
            start = json.loads(base64.urlsafe_b64decode(cursor.encode()))["sk"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise Invalid("cursor", "cursor is not one this API gave out; start again "
                                    "without it") from None
    cond = RequestModel.sk.startswith(_REQ)
    filt = None
    if type_:
        filt = RequestModel.type == type_
    if status:
        filt = (RequestModel.status == status) if filt is None else \
            filt & (RequestModel.status == status)
    if overdue:
        o = (RequestModel.due_at < clock.iso()) & ~RequestModel.status.is_in(*ENDED)
        filt = o if filt is None else filt & o
    after = {"tenant_id": {"S": tenant_id}, "sk": {"S": start}} if start else None
    it = RequestModel.query(tenant_id, cond, filter_condition=filt, scan_index_forward=False,
                            limit=limit, page_size=max(limit, 25), last_evaluated_key=after)
    rows = list(it)
    nxt = None
    if len(rows) == limit and it.last_evaluated_key is not None:
        nxt = base64.urlsafe_b64encode(json.dumps({"sk": rows[-1].sk}).encode()).decode()
    return {"items": [to_json(r) for r in rows], "next_cursor": nxt}


def overdue_count(tenant_id: str) -> int:
    """How many of the tenant's requests are open past their due date (Art. 12(3)), counted
    by DynamoDB (Select=COUNT) without reading the requests into memory."""
    return int(RequestModel.count(
        tenant_id, RequestModel.sk.startswith(_REQ),
        filter_condition=(RequestModel.due_at < clock.iso()) & ~RequestModel.status.is_in(*ENDED)))


def _finish_marker(m: RequestModel) -> None:
    # the marker may already be gone, or belong to a newer request: then it stays
    with contextlib.suppress(DeleteError):
        RequestModel(tenant_id=m.tenant_id, sk=_open_sk(m.type or "", m.subject_ref or "")
                     ).delete(condition=RequestModel.request_id == m.request_id)


def cancel(principal: Principal, request_id: str) -> dict[str, Any]:
    m = load(principal.tenant_id, request_id)
    if m.status in ENDED:
        raise Conflict(f"the request is already {m.status} and cannot be cancelled",
                       details={"status": m.status})
    if m.execution_arn and m.status in ("queued", "running"):
        sfn = aws.client("stepfunctions")
        with contextlib.suppress(sfn.exceptions.ExecutionDoesNotExist):
            sfn.stop_execution(executionArn=m.execution_arn, cause="cancelled by the tenant")
    m.update(actions=[
        RequestModel.status.set("cancelled"), RequestModel.completed_at.set(clock.iso()),
        RequestModel.identities_enc.remove(), RequestModel.changes_enc.remove(),
        RequestModel.timeline.set(RequestModel.timeline.append(
            [event(event="cancelled", by=principal.key_id,
                   note="work already done on some tables is not undone")])),
    ])
    _finish_marker(m)
    audit.append(principal.tenant_id, "request_cancelled", actor=principal.key_id,
                 request_id=request_id, subject_ref=m.subject_ref)
    return to_json(load(principal.tenant_id, request_id))


def retry(principal: Principal, request_id: str) -> dict[str, Any]:
    m = load(principal.tenant_id, request_id)
    if m.status not in ("failed", "completed_with_errors"):
        raise Conflict(f"only a failed request can be retried; this one is {m.status}",
                       details={"status": m.status})
    if not m.identities_enc:
        raise Conflict("the request no longer holds the subject's identities; file a new one")
    attempt = int(m.attempt or 1) + 1
    m.update(actions=[RequestModel.attempt.set(attempt), RequestModel.error.remove(),
                      RequestModel.timeline.set(RequestModel.timeline.append(
                          [event(event="retry", by=principal.key_id, attempt=attempt)]))])
    audit.append(principal.tenant_id, "request_retried", actor=principal.key_id,
                 request_id=request_id, subject_ref=m.subject_ref,
                 details={"attempt": attempt})
    _start(m)
    return to_json(load(principal.tenant_id, request_id))


def extend(principal: Principal, request_id: str, body: Any) -> dict[str, Any]:
    """Move the due date by one or two months with a reason (Art. 12(3))."""
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object: {\"months\": 1, \"reason\": ...}")
    months, reason = body.get("months"), body.get("reason")
    if months not in (1, 2):
        raise Invalid("months", "months must be 1 or 2 (Art. 12(3) allows two more months)")
    if not isinstance(reason, str) or not reason.strip():
        raise Invalid("reason", "reason is required: say why the request needs more time")
    m = load(principal.tenant_id, request_id)
    if m.status in ENDED:
        raise Conflict(f"the request is already {m.status}")
    done = int((_plain(m.extended) or {}).get("months", 0))
    if done + months > 2:
        raise Invalid("months", f"the due date was already extended by {done} month(s); the "
                                "total extension cannot exceed two months")
    due = clock.add_months(clock.parse(m.created_at or clock.iso()), 1 + done + months)
    m.update(actions=[
        RequestModel.due_at.set(clock.iso(due)),
        RequestModel.extended.set({"months": done + months, "reason": reason.strip()}),
        RequestModel.timeline.set(RequestModel.timeline.append(
            [event(event="extended", months=months, by=principal.key_id)]))])
    audit.append(principal.tenant_id, "request_extended", actor=principal.key_id,
                 request_id=request_id, subject_ref=m.subject_ref, details={"months": months})
    return to_json(load(principal.tenant_id, request_id))


# -- used by the workflow's tasks -------------------------------------------------------------

def append_timeline(m: RequestModel, **fields: Any) -> None:
    m.update(actions=[RequestModel.timeline.set(RequestModel.timeline.append(
        [event(**fields)]))])


def end(m: RequestModel, status: str, result: dict[str, Any], **timeline: Any) -> None:
    """Close a request: final status and result; the identities go, their HMACs stay."""
    m.update(actions=[
        RequestModel.status.set(status), RequestModel.completed_at.set(clock.iso()),
        RequestModel.result.set(result), RequestModel.identities_enc.remove(),
        RequestModel.changes_enc.remove(),
        RequestModel.timeline.set(RequestModel.timeline.append([event(event=status,
                                                                      **timeline)])),
    ])
    _finish_marker(m)
    count("RequestsCompleted", type=m.type or "", status=status)


def due_in(m: RequestModel) -> timedelta:
    return clock.parse(m.due_at or clock.iso()) - clock.now()


def record_unit(m: RequestModel, unit_id: str, outcome: dict[str, Any],
                io: dict[str, Any]) -> None:
    """Store one table's outcome and add its AWS calls to the request's `io`, atomically
    (parallel Map iterations write the same record)."""
    from oblio.store.tables import add_to_map

    add_to_map(RequestModel.Meta.table_name, {"tenant_id": m.tenant_id, "sk": m.sk}, "io",
               io, {unit_id: ("units", outcome)})


def certificate(*, request_id: str, tenant_id: str, type_: str, subject_ref: str,
                tables: dict[str, Any], tenants: dict[str, Any], verification: dict[str, Any],
                suppressed: int, started_at: str | None, entry: audit.Entry,
                datamap_digest: str | None) -> dict[str, Any]:
    """The evidence of an erasure or anonymisation: no personal data, only counts, the
    verification's outcome and the hash of the audit entry that records it."""
    return {"request_id": request_id, "tenant_id": tenant_id, "type": type_,
            "subject_ref": subject_ref, "tables": tables, "tenants": tenants,
            "verification": verification, "suppression_entries": suppressed,
            "started_at": started_at, "completed_at": clock.iso(),
            "audit_entry": {"id": entry.id, "hash": entry.hash},
            "datamap_digest": datamap_digest}


def record_bulk_erasure(tenant: Tenant, ids: dict[str, str], job_id: str,
                        tables: dict[str, dict[str, int]], verification: dict[str, Any],
                        refs: dict[str, list[str]], request_id: str | None = None) -> str:
    """One subject of a bulk job, erased: the same request record, certificate, audit entry,
    suppression entries and event as a single erasure. Returns the request id. Recording a
    request id that is already recorded (a retried chunk) does nothing again."""
    from oblio import consent, events, suppression

    request_id, started = request_id or str(ULID()), clock.iso()
    try:
        RequestModel.get(tenant.tenant_id, _sk(request_id))
        return request_id
    except DoesNotExist:
        pass
    ref = tenant.keys.subject_ref(ids)
    passed = bool(verification.get("passed"))
    status = "completed" if passed else "completed_with_errors"
    actor = f"bulk:{job_id}"
    consents = consent.erase_subject(tenant.tenant_id, refs)  # the ledger goes too
    entry = audit.append(tenant.tenant_id, "erasure_completed", actor=actor,
                         request_id=request_id, subject_ref=ref,
                         details={"type": "erasure", "bulk_job": job_id,
                                  "verification_passed": passed,
                                  "consent_records_deleted": consents,
                                  "counts": {n: c for n, c in tables.items() if c["matched"]}})
    suppressed = suppression.add(tenant.tenant_id, refs, reason="erasure",
                                 request_id=request_id) if passed else 0
    totals = {k: sum(c.get(k, 0) for c in tables.values()) for k in engine.COUNTS}
    cert = certificate(request_id=request_id, tenant_id=tenant.tenant_id, type_="erasure",
                       subject_ref=ref, tables=tables, tenants={}, verification=verification,
                       suppressed=suppressed, started_at=started, entry=entry,
                       datamap_digest=datamap.current().digest)
    cert["consent_records_deleted"] = consents
    now = clock.now()
    RequestModel(
        tenant_id=tenant.tenant_id, sk=_sk(request_id), request_id=request_id, type="erasure",
        status=status, subject_ref=ref,
        identity_refs={k: tenant.keys.hmac(k, v) for k, v in ids.items()},
        created_at=started, completed_at=clock.iso(now),
        due_at=clock.iso(clock.add_months(now, get_settings().due_months)),
        requested_by=actor, reason=f"bulk erasure job {job_id}",
        options={"bulk_job": job_id, "action": "erase"},
        timeline=[event(at=started, event="received", by=actor), event(event=status)],
        result={"found": True, "tables": tables, "tenants": {}, "totals": totals,
                "verification": verification, "certificate": cert, "bulk_job": job_id},
        units={}, io={}, attempt=1).save()
    events.emit("SubjectErased", tenant.tenant_id, request_id=request_id, subject_ref=ref,
                type="erasure", bulk_job=job_id)
    count("RequestsCompleted", type="erasure", status=status)
    return request_id
