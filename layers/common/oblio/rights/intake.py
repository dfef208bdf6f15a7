"""Request intake: filing a data-subject request (checked against the data map, a dry run
answered at once, a repeat of an open one answered with it), and the operations on a filed
request (list, cancel, retry, extend)."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any, NamedTuple

from pynamodb.exceptions import PutError, UpdateError
from ulid import ULID

from oblio.access import deliver
from oblio.control import audit, exports, metering, records
from oblio.control.tenants import Principal, get_tenant, reachable_tenants
from oblio.core import clock, datamap, identity
from oblio.core.bodies import (
    AnonymisationRequest,
    ErasureRequest,
    ExtendBody,
    ObjectionRequest,
    RectificationRequest,
    RequestBody,
    RestrictionRequest,
)
from oblio.core.boundary import TaskEvent
from oblio.core.errors import Conflict, Invalid
from oblio.core.identity import IDENTITY_KINDS, parse_subject, readings
from oblio.core.observability import count
from oblio.core.settings import get_settings
from oblio.pipeline import find, rules
from oblio.store import shards, workflows
from oblio.store.models import RequestModel


def _check(body: RequestBody) -> RequestBody:
    """What the model cannot say alone: a type this version runs, and the confirmation of an
    irreversible action (unless it is a dry run)."""
    if body.type not in records.AVAILABLE:
        raise Invalid("type", f"requests of type '{body.type}' are not available in this "
                              f"version yet; available: {', '.join(records.AVAILABLE)}",
                      code="unsupported_type")
    if isinstance(body, ErasureRequest | AnonymisationRequest) and not body.dry_run \
            and not body.confirm:
        raise Invalid("confirm", f"{body.type} is irreversible: send \"confirm\": true to run "
                                 "it, or \"dry_run\": true to see what it would do",
                      code="confirmation_required")
    return body


def action_of(body: RequestBody) -> str:
    if isinstance(body, RestrictionRequest) and body.lift:
        return "unrestrict"
    return str(records.ACTIONS.get(body.type, body.type))


def asked(body: RequestBody) -> dict[str, Any]:
    """What the request asks besides its subject: `tables` (anonymisation), `changes`
    (rectification), `purposes` (objection); None where it does not apply."""
    return {"type": body.type,
            "tables": body.tables if isinstance(body, AnonymisationRequest) else None,
            "changes": body.changes if isinstance(body, RectificationRequest) else None,
            "purposes": body.purposes if isinstance(body, ObjectionRequest) else None}


def _positions(indexes: list[int]) -> str:
    """Which items of a list are at fault, counted from 1 ("2", "1, 3")."""
    return ", ".join(str(i + 1) for i in indexes[:10]) + (", ..." if len(indexes) > 10 else "")


def params_of(options: dict[str, Any], dm: Any, region: str | None) -> dict[str, Any]:
    """The action's parameters (`asked` of a body), validated against the data map: `tables`
    (anonymisation), `changes` (rectification, normalised like identities), `purposes`
    (objection)."""
    params: dict[str, Any] = {"tables": None, "purposes": None, "changes": None}
    type_, tables = options["type"], options.get("tables")
    if tables is not None:
        unknown = [i for i, t in enumerate(tables) if t not in dm.tables]
        if unknown:
            # by position, never the name sent (a table name is where an e-mail may land)
            raise Invalid("tables", f"tables item {_positions(unknown)} is not a mapped table; "
                                    f"mapped: {', '.join(dm.order)}", code="unmapped_table")
        params["tables"] = list(tables)
    if type_ == "rectification":
        changes = options.get("changes") or {}
        held = {a for t in dm.tables.values() for a in t.attributes}
        normalised: dict[str, Any] = {}
        for n, (name, value) in enumerate(changes.items()):
            if name in IDENTITY_KINDS:
                field = f"changes.{name}"
                normalised[name] = identity.normalise(name, value, region, field=field)
            elif name not in held:
                raise Invalid("changes", f"changes: attribute {_positions([n])} is held by no "
                                         "mapped table; name a mapped attribute or an "
                                         "identity (email, phone, external_id)",
                              code="unmapped_attribute")
            else:
                normalised[name] = value
        if all(not rules.changes_for(t, normalised) for t in dm.tables.values()):
            raise Invalid("changes", "no mapped table can take these changes in place (they "
                                     "name only key attributes)", code="unmapped_attribute")
        params["changes"] = normalised
    if type_ == "objection":
        known = sorted({p for t in dm.tables.values() for p in t.purposes})
        purposes = options.get("purposes")
        if purposes is None:
            purposes = ["marketing"]
        unknown = [i for i, p in enumerate(purposes) if p not in known]
        if unknown:
            raise Invalid("purposes", f"purposes item {_positions(unknown)} is not a purpose "
                                      f"of this tenant's data map; it knows "
                                      f"{', '.join(known)}", code="unknown_purpose")
        params["purposes"] = list(purposes)
    return params


def dry_run(principal: Principal, body: RequestBody, audited: bool = True) -> dict[str, Any]:
    """What the request would do, table by table (and for a rewrite, attribute by
    attribute), without changing anything; audited (`<type>_dry_run`) unless `audited` is
    false (the replay of an answered dry run: the first answer was audited)."""
    dm = datamap.current()
    action = action_of(body)
    plans: dict[str, Any] = {}
    for tenant in reachable_tenants(principal, body.include_children):
        ids = parse_subject(body.subject.identities(), tenant.phone_region,
                            tuple(dm.identities))
        params = params_of(asked(body), dm, tenant.phone_region)
        # a dry run of an erasure or anonymisation sees what the run will: items past their
        # TTL included
        fp = find.walk(dm, tenant.tenant_id, ids,
                       include_expired=action in find.SEES_EXPIRED)
        tables = {}
        for name in dm.order:
            t = dm.tables[name]
            items = fp.items.get(name, [])
            mode = rules.table_mode(dm, name, action, params)
            plan: dict[str, Any] = {
                "matched": len(items), "action": mode if items else "none",
                "would_delete": len(items) if mode == "delete" else 0,
                "would_anonymise": len(items) if mode == "anonymise" else 0,
                "would_update": len(items) if mode in ("update", "flag", "unflag") else 0,
                "files": len(find.s3_refs(dm, t, items, tenant.tenant_id))
                if mode in ("delete", "anonymise") else 0,
                "keys": [find.key_of(t, i) for i in items],
            }
            if mode in rules.DESTRUCTIVE and (t.legal_hold or mode == "retain"):
                acted, held = rules.split_held(t, items)
                plan.update(would_delete=len(acted) if mode == "delete" else 0,
                            would_anonymise=len(acted) if mode == "anonymise" else 0,
                            would_retain=len(acted) if mode == "retain" else 0,
                            would_hold=len(held))
                if mode == "retain" and t.retain is not None:
                    plan["legal_basis"], plan["period"] = t.retain.legal_basis, t.retain.period
            if fp.roles.get(name):  # items she is in only in a role: the role's rules
                plan["roles"] = {r: {"matched": len(i),
                                     "action": rules.role_mode(dm, name, r, action, params),
                                     "attributes": {a: t.roles[r].rule(a, action)
                                                    for a in t.roles[r].attributes}}
                                 for r, i in fp.roles[name].items()}
            if t.files and mode in ("delete", "anonymise"):  # by key template or prefix
                fr = find.file_refs(dm, t, items, tenant.tenant_id)
                plan["files"] += len(fr["templated"])
                plan["file_prefixes"] = len(fr["prefixes"])
            if mode == "anonymise":
                plan["attributes"] = {a: t.rule(a, action) for a in t.attributes}
            elif mode == "update":
                plan["attributes"] = sorted(rules.changes_for(t, params["changes"]))
            tables[name] = plan
        plans[tenant.tenant_id] = {"subject_ref": tenant.keys.subject_ref(ids),
                                   "tables": tables, "total": fp.total,
                                   "queries": fp.queries}
    own = plans[principal.tenant_id]
    if audited:
        audit.append(principal.tenant_id, f"{body.type}_dry_run", actor=principal.key_id,
                     subject_ref=own["subject_ref"],
                     details={"matched": {t: p["total"] for t, p in plans.items()}})
    return {"dry_run": True, "type": body.type, "action": action,
            "subject_ref": own["subject_ref"],
            "found": any(p["total"] for p in plans.values()),
            "tables": own["tables"],
            "tenants": {t: p for t, p in plans.items() if t != principal.tenant_id},
            "changed": 0,
            **readings(body.subject.identities(), get_tenant(principal.tenant_id).phone_region)}


class Filed(NamedTuple):
    """What filing a request gave: `body` is the new request (`created`), the open request
    it repeats (`duplicate_of_open_request`), or a dry run's plan (neither filed)."""

    body: dict[str, Any]
    created: bool


def create(principal: Principal, body: RequestBody, audited: bool = True) -> Filed:
    """File a request: a new one, or the open one it repeats; a dry run files nothing (and
    is audited unless `audited` is false: see `dry_run`)."""
    body = _check(body)
    principal.require("dsr:erase" if body.type in records.IRREVERSIBLE else "dsr:write")
    if body.dry_run:
        return Filed(dry_run(principal, body, audited=audited), created=False)
    dm = datamap.current()
    tenant = get_tenant(principal.tenant_id)
    reachable = reachable_tenants(principal, body.include_children)  # 403?
    subject = body.subject.identities()
    ids = parse_subject(subject, tenant.phone_region, tuple(dm.identities))
    for child in reachable[1:]:
        parse_subject(subject, child.phone_region, tuple(dm.identities))
    params = params_of(asked(body), dm, tenant.phone_region)
    action = action_of(body)
    # access: the requester's address, held encrypted
    notify = deliver.notify_option(body.model_dump(include={"type", "notify_email"}), tenant)
    ref = tenant.keys.subject_ref(ids)
    if body.type == "anonymisation" and tenant.settings.get(
            "require_export_before_anonymisation"):
        _require_export(tenant.tenant_id, ref)
    now = clock.now()
    request_id = str(ULID())
    m = RequestModel(
        tenant_id=tenant.tenant_id, sk=records.request_sk(request_id), request_id=request_id,
        type=body.type, status="received", subject_ref=ref,
        identities_enc=tenant.keys.encrypt(ids),
        changes_enc=tenant.keys.encrypt(params["changes"]) if params["changes"] else None,
        identity_refs={k: tenant.keys.hmac(k, v) for k, v in ids.items()},
        created_at=clock.iso(now),
        due_at=clock.iso(clock.add_months(now, get_settings().due_months)),
        requested_by=principal.key_id, reason=body.reason,
        options={"dry_run": False, "include_children": body.include_children,
                 "tables": params["tables"], "purposes": params["purposes"],
                 "action": action, **notify},
        timeline=[records.event(event="received", by=principal.key_id)], units={}, io={}, attempt=1)
    kind = body.type + ("-lift" if action == "unrestrict" else "")
    existing = records.insert(m, kind)
    if existing is not None:
        return Filed({**records.to_json(records.load(tenant.tenant_id, existing)),
                      "duplicate_of_open_request": True,
                      **readings(subject, tenant.phone_region)}, created=False)
    metering.bill_to(TaskEvent(request_id=request_id, tenant_id=tenant.tenant_id))
    audit.append(tenant.tenant_id, "request_received", actor=principal.key_id,
                 request_id=request_id, subject_ref=ref,
                 details={"type": body.type, "action": action,
                          "include_children": body.include_children,
                          "tables": params["tables"], "purposes": params["purposes"],
                          "changes": sorted(params["changes"] or {})})
    if records.start(m):
        metering.started(int(m.attempt or 1))
    count("RequestsCreated", type=body.type)
    return Filed({"request_id": request_id, "status": m.status, "due_at": m.due_at,
                  **readings(subject, tenant.phone_region)}, created=True)


def _require_export(tenant_id: str, subject_ref: str) -> None:
    """The tenant wants an export of the subject before an anonymisation (Art. 20 first)."""
    if exports.latest_valid_export(tenant_id, subject_ref) is None:
        raise Conflict("this tenant requires an access export of the subject before an "
                       "anonymisation, and there is none that has not expired: file an "
                       "access request first, then anonymise", code="export_required")


def list_requests(tenant_id: str, *, type_: str | None = None, status: str | None = None,
                  overdue: bool = False, limit: int = 50, cursor: str | None = None,
                  ) -> dict[str, Any]:
    """The tenant's requests, newest first, filtered, one page at a time (the filters'
    values are the query model's: `RequestsQuery`)."""
    start = None
    if cursor:
        try:
            start = json.loads(base64.urlsafe_b64decode(cursor.encode()))["sk"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            start = None
        # a cursor made up to look like ours ({"sk": 5}) is refused, not read as a key
        if not (isinstance(start, str) and start.startswith(records.REQUEST_PREFIX)
                and len(start) <= 200):
            raise Invalid("cursor", "cursor is not one this API gave out; start again "
                                    "without it")
    cond = RequestModel.sk.startswith(records.REQUEST_PREFIX)
    filt = None
    if type_:
        filt = RequestModel.type == type_
    if status:
        filt = (RequestModel.status == status) if filt is None else \
            filt & (RequestModel.status == status)
    if overdue:
        o = (RequestModel.due_at < clock.iso()) & ~RequestModel.status.is_in(*records.ENDED)
        filt = o if filt is None else filt & o
    # one more than a page, over every shard: a next page is promised only when there is one;
    # the cursor, the last request's sort key, is a position in each shard at once
    rows = list(shards.query_tenant(RequestModel, tenant_id, cond, filter_condition=filt,
                                    scan_index_forward=False, limit=limit + 1, after=start))
    nxt = None
    if len(rows) > limit:
        rows = rows[:limit]
        nxt = base64.urlsafe_b64encode(json.dumps({"sk": rows[-1].sk}).encode()).decode()
    seen: dict[str, Any] = {}  # bulk lines of one chunk: its evidence read once
    meters = records.meters_of(tenant_id, [r.request_id for r in rows if r.result])
    return {"items": [records.to_json(r, seen, meters) for r in rows], "next_cursor": nxt}


def cancel(principal: Principal, request_id: str) -> dict[str, Any]:
    """Cancel a request that has not begun to finish. The cancel is a state, not a race: it
    is written first, conditionally on the request being open, and every step of the
    workflow checks it before it acts (a step under way completes; none begins after it).
    Then the execution is stopped (stopping first could stop a Finish that won the race and
    leave the request `finishing` for good). A request whose Finish has begun answers 409
    `request_finishing`. The cancelled request says what was done and what was not; a
    cancelled erasure or anonymisation keeps its identities (encrypted) so that `retry`
    can resume it from the units done."""
    m = records.load(principal.tenant_id, request_id)
    resumable = m.type in records.IRREVERSIBLE
    note = ("a step under way completes; nothing else is done; retry resumes it"
            if resumable else "work already done is not undone")
    actions: list[Any] = [
        RequestModel.status.set("cancelled"), RequestModel.completed_at.set(clock.iso()),
        RequestModel.result.set({"cancelled": {"by": principal.key_id, "at": clock.iso(),
                                               "note": note}}),
        RequestModel.timeline.set(RequestModel.timeline.append(
            [records.event(event="cancelled", by=principal.key_id, note=note)])),
    ]
    if not resumable:
        actions += [RequestModel.identities_enc.remove(), RequestModel.changes_enc.remove()]
    try:
        m.update(actions=actions, condition=RequestModel.status.is_in(*records.OPEN, "failed"))
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        m = records.load(principal.tenant_id, request_id)
    else:
        m = records.load(principal.tenant_id, request_id)
        if m.execution_arn:
            workflows.stop(m.execution_arn, cause="cancelled by the tenant")
        records.release_open(m)
        audit.append(principal.tenant_id, "request_cancelled", actor=principal.key_id,
                     request_id=request_id, subject_ref=m.subject_ref,
                     details={"attempt": int(m.attempt or 1)})
        count("RequestsCompleted", type=m.type or "", status="cancelled")
        return records.to_json(m)
    if m.status == records.FINISHING:
        raise Conflict("the request is finishing (its evidence is being written) and can no "
                       "longer be cancelled; it ends in a moment", code="request_finishing",
                       details={"status": m.status})
    raise Conflict(f"the request is already {m.status} and cannot be cancelled",
                   details={"status": m.status})


def retry(principal: Principal, request_id: str) -> dict[str, Any]:
    """Run a failed request (or a cancelled erasure or anonymisation) again as a new
    attempt, which goes on from the units done. The new attempt is claimed by one
    conditional write before its execution starts (see `records.start`): of two concurrent
    retries one wins, the other answers the request as it now is (the attempt that runs),
    and never a 500."""
    m = records.load(principal.tenant_id, request_id)
    if m.status not in records.RETRYABLE or (
            m.status == "cancelled" and m.type not in records.IRREVERSIBLE):
        raise Conflict(f"only a failed request (or a cancelled erasure or anonymisation) can "
                       f"be retried; this one is {m.status}", details={"status": m.status})
    if not m.identities_enc:
        raise Conflict("the request no longer holds the subject's identities; file a new one")
    was, attempt = m.status, int(m.attempt or 1) + 1
    if was == "cancelled":
        _reopen(m)
    try:
        m.update(actions=[
            RequestModel.attempt.set(attempt), RequestModel.status.set("queued"),
            RequestModel.error.remove(), RequestModel.completed_at.remove(),
            *([RequestModel.result.remove()] if was == "cancelled" else []),
            RequestModel.timeline.set(RequestModel.timeline.append(
                [records.event(event="retry", by=principal.key_id, attempt=attempt),
                 records.event(event="queued", attempt=attempt)]))],
            condition=(RequestModel.status == was) & (RequestModel.attempt == attempt - 1))
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return _current(principal, request_id, attempt)
    audit.append(principal.tenant_id, "request_retried", actor=principal.key_id,
                 request_id=request_id, subject_ref=m.subject_ref,
                 details={"attempt": attempt, "from": was})
    metering.bill_to(TaskEvent(request_id=request_id, tenant_id=principal.tenant_id))
    if records.start(m, claimed=True):
        metering.started(attempt)
    return _current(principal, request_id, attempt)


def _reopen(m: RequestModel) -> None:
    """A cancelled request that resumes is open again: it takes back the marker of the open
    request of its kind, unless another request of that kind for the subject is open now."""
    marker = RequestModel(tenant_id=m.tenant_id, sk=records.open_sk(m.type or "",
                                                                   m.subject_ref or ""),
                          request_id=m.request_id)
    try:
        marker.save(condition=RequestModel.sk.does_not_exist()
                    | (RequestModel.request_id == m.request_id))
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        other = RequestModel.get(marker.pk, marker.sk, consistent_read=True).request_id
        raise Conflict("another request of this type for this subject is open; it carries "
                       "on the work", code="duplicate_open_request",
                       details={"open_request_id": other}) from None


def _current(principal: Principal, request_id: str, attempt: int) -> dict[str, Any]:
    """The request as a retry leaves it: the attempt that now runs (this one or a
    concurrent caller's), or 409 saying why nothing runs."""
    m = records.load(principal.tenant_id, request_id)
    if m.status in ("queued", "running", records.FINISHING) and int(m.attempt or 1) >= attempt:
        return records.to_json(m)
    raise Conflict(f"the request is {m.status} (attempt {int(m.attempt or 1)}): the retry "
                   "did not start a new attempt", code="retry_not_started",
                   details={"status": m.status, "attempt": int(m.attempt or 1)})


def extend(principal: Principal, request_id: str, body: ExtendBody) -> dict[str, Any]:
    """Move the due date by one or two months with a reason (Art. 12(3))."""
    months, reason = body.months, body.reason
    m = records.load(principal.tenant_id, request_id)
    if m.status in records.ENDED:
        raise Conflict(f"the request is already {m.status}")
    done = int(records.extension_of(m).get("months", 0))
    if done + months > 2:
        raise Invalid("months", f"the due date was already extended by {done} month(s); the "
                                "total extension cannot exceed two months")
    due = clock.add_months(clock.parse(m.created_at or clock.iso()), 1 + done + months)
    m.update(actions=[
        RequestModel.due_at.set(clock.iso(due)),
        RequestModel.extended.set({"months": done + months, "reason": reason}),
        RequestModel.timeline.set(RequestModel.timeline.append(
            [records.event(event="extended", months=months, by=principal.key_id)]))])
    audit.append(principal.tenant_id, "request_extended", actor=principal.key_id,
                 request_id=request_id, subject_ref=m.subject_ref, details={"months": months})
    return records.to_json(records.load(principal.tenant_id, request_id))
