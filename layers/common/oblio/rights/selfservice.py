"""Self-service requests (Art. 12(6)): a person asks, without an API key, for access to,
erasure of, or an objection to the processing of the data held about their own e-mail address
or phone number. Nothing runs until they prove the identity is theirs with a one-time code
sent to it.

- The tenant is named by its public slug (tenant setting `public_slug`, unique across
  tenants; a tenant without one has no self-service page).
- A request starts `awaiting_verification`. Its code (6 digits) is stored only as an HMAC,
  lives `selfservice_code_minutes`, and allows `selfservice_code_attempts` attempts, counted
  with a conditional update so that parallel guesses cannot get more. Too many wrong codes,
  or an expired one, cancel the request with the reason.
- The right code moves it to `queued` and starts its workflow, or to `awaiting_approval`
  when the tenant wants its DPO to approve self-service requests first (Art. 12(4): a denial
  gives the person the reason).
- Public answers are the same whether or not the person is in the tenant's data: nothing is
  looked up before the code is verified.
- Requests from one address are limited per tenant and hour (a counter per HMAC of the
  address and fixed window, in DynamoDB with a TTL): beyond the limit, 429.
- The due date counts from receipt; the tenant may pause it while the request waits for its
  code (`selfservice_due_pauses_until_verified`).
- An access export asked for this way is handed to the person: when it is ready they receive,
  at the address they proved, a link signed for that request alone and valid until the
  archive expires; each opening of it is a fresh presigned download of minutes.
"""

from __future__ import annotations

import contextlib
import hmac
import secrets
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite
from ulid import ULID

from oblio.access import deliver
from oblio.control import audit, links, metering, records
from oblio.control.tenants import Principal, Tenant, get_tenant
from oblio.core import clock, datamap
from oblio.core.bodies import (
    PUBLIC_REQUEST,
    PUBLIC_TYPES,
    SLUG,
    DenyBody,
    PublicAccess,
    PublicErasure,
    PublicObjection,
    PublicRequestBody,
    PublicSubject,
    VerifyBody,
    parse,
)
from oblio.core.boundary import TaskEvent
from oblio.core.errors import (
    BadRequest,
    Conflict,
    Gone,
    Invalid,
    MessageRefused,
    NotFound,
    TooManyRequests,
    TransientError,
)
from oblio.core.identity import parse_subject
from oblio.core.observability import count, logger
from oblio.core.settings import get_settings
from oblio.rights import intake
from oblio.store import outbound
from oblio.store.models import PublicSlugModel, RequestModel, SelfServiceModel

TYPES = PUBLIC_TYPES


#: the identities a person can prove they hold (an external id cannot receive a code)
KINDS = ("email", "phone")


ACTOR = "self-service"




_WINDOW = 3600


_LABELS = {"access": "access to your data", "erasure": "erasure of your data",
           "objection": "objection to the use of your data"}


class RateLimited(TooManyRequests):
    code = "rate_limited"


def resolve(slug: str) -> Tenant:
    """The tenant whose self-service page is `slug`; 404 if none has it."""
    if not slug.strip():
        raise Invalid("tenant", "tenant is required: the public name of the organisation "
                                "you are asking, as its privacy page gives it")
    unknown = NotFound("there is no self-service page with this name; check the name the "
                       "organisation's privacy page gives", code="unknown_tenant")
    slug = slug.strip().lower()
    if not SLUG.match(slug):
        raise unknown
    try:
        tenant = get_tenant(PublicSlugModel.get(slug).tenant_id)
    except (DoesNotExist, NotFound):
        raise unknown from None
    if tenant.settings.get("public_slug") != slug:  # a claim left behind by a failed change
        raise unknown
    return tenant


# -- rate limit -------------------------------------------------------------------------------


def limit(tenant: Tenant, source_ip: str) -> None:
    """Count one public request from this address in the current hour; 429 beyond the
    tenant's limit. One conditional update: concurrent requests cannot overshoot."""
    now = int(clock.now().timestamp())
    window = now // _WINDOW
    allowed = int(tenant.settings.get("public_requests_per_hour") or 20)
    counter = SelfServiceModel(tenant_id=tenant.tenant_id,
                               sk=f"rate#{tenant.keys.hmac('ip', source_ip)}#{window}")
    try:
        counter.update(actions=[SelfServiceModel.hits.add(1),
                                SelfServiceModel.expires.set((window + 2) * _WINDOW)],
                       condition=SelfServiceModel.hits.does_not_exist()
                       | (SelfServiceModel.hits < allowed))
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        wait = (window + 1) * _WINDOW - now
        count("PublicRequestsLimited")
        raise RateLimited(f"too many requests from this address; try again in {wait // 60 + 1} "
                          "minutes", details={"retry_after_seconds": wait}) from None


# -- sending codes and notices ----------------------------------------------------------------


def _send(tenant: Tenant, kind: str, address: str, request_id: str, subject: str,
          text: str) -> None:
    """E-mail or, for a phone, a message on the codes topic that the tenant's SMS sender
    subscribes to. Any failure is worth a retry by the person: TransientError."""
    try:
        outbound.tell(kind, address, subject, text, tenant_id=tenant.tenant_id,
                      request_id=request_id)
    except MessageRefused as exc:
        logger.warning("self-service message not sent", extra={
            "request_id": request_id, "code": exc.provider_code})
        raise TransientError("the message could not be sent; try again in a moment") from None


def _code_mac(tenant: Tenant, request_id: str, code: str) -> str:
    return tenant.keys.hmac("otp", f"{request_id}:{code}")


# -- the public requests ----------------------------------------------------------------------


def _subject(tenant: Tenant, raw: PublicSubject) -> tuple[str, str]:
    named = raw.identities()
    if len([v for v in named.values() if v is not None]) != 1:
        raise Invalid("subject", "subject names the one e-mail address or phone number the "
                                 "request is about, e.g. {\"email\": \"name@example.com\"}: "
                                 "the code goes to it")
    ids = parse_subject(named, tenant.phone_region, KINDS)
    kind, value = next(iter(ids.items()))
    return kind, value


def create(body: PublicRequestBody | Mapping[str, Any], source_ip: str,
           base_url: str | None = None) -> dict[str, Any]:
    """`POST /v1/public/requests`: file a request that waits for its one-time code, and send
    the code. The answer is the same whether or not the person is in the tenant's data."""
    if not isinstance(body, PublicAccess | PublicErasure | PublicObjection):
        body = parse(PUBLIC_REQUEST, body)
    tenant = resolve(body.tenant)
    limit(tenant, source_ip)
    type_ = body.type
    kind, value = _subject(tenant, body.subject)
    purposes = body.purposes if isinstance(body, PublicObjection) else None
    params = intake.params_of({"type": type_, "purposes": purposes}, datamap.current(),
                              tenant.phone_region)
    s = get_settings()
    now = clock.now()
    request_id = str(ULID())
    ids = {kind: value}
    code = f"{secrets.randbelow(10**6):06d}"
    expires = now + timedelta(minutes=s.selfservice_code_minutes)
    m = RequestModel(
        tenant_id=tenant.tenant_id, sk=records.request_sk(request_id), request_id=request_id,
        type=type_, status="awaiting_verification", subject_ref=tenant.keys.subject_ref(ids),
        identities_enc=tenant.keys.encrypt(ids),
        identity_refs={kind: tenant.keys.hmac(kind, value)}, created_at=clock.iso(now),
        due_at=clock.iso(clock.add_months(now, s.due_months)), requested_by=ACTOR,
        reason="asked by the person through the self-service page",
        options={"dry_run": False, "include_children": False, "tables": None,
                 "purposes": params["purposes"], "action": records.ACTIONS[type_],
                 "self_service": {"verify_by": kind, "base_url": base_url}},
        timeline=[records.event(event="received", by=ACTOR),
                  records.event(event="verification_code_sent", channel=kind)],
        units={}, io={}, attempt=1)
    otp = SelfServiceModel(tenant_id=tenant.tenant_id, sk=f"otp#{request_id}",
                           request_id=request_id, code_mac=_code_mac(tenant, request_id, code),
                           channel=kind, expires_at=clock.iso(expires), attempts=0,
                           expires=int((now + timedelta(days=2)).timestamp()))
    with TransactWrite(connection=RequestModel._get_connection().connection) as tx:
        tx.save(m, condition=RequestModel.sk.does_not_exist())
        tx.save(otp, condition=SelfServiceModel.sk.does_not_exist())
    audit.append(tenant.tenant_id, "request_received", actor=ACTOR, request_id=request_id,
                 subject_ref=m.subject_ref,
                 details={"type": type_, "self_service": True, "verify_by": kind,
                          "purposes": params["purposes"]})
    minutes = s.selfservice_code_minutes
    try:
        _send(tenant, kind, value, request_id, f"Your code for {tenant.name}: {code}",
              f"Your code is {code}.\n\nEnter it to confirm your request for "
              f"{_LABELS[type_]} to {tenant.name} (request {request_id}). It is valid for "
              f"{minutes} minutes.\n\nIf you did not ask for this, ignore this message: "
              "nothing happens without the code.\n")
    except TransientError:
        _cancel(m, "code_not_sent", "the verification code could not be sent")
        raise
    count("RequestsCreated", type=type_)
    logger.info("self-service request received", extra={"request_id": request_id,
                                                        "tenant_id": tenant.tenant_id})
    return {"request_id": request_id, "status": "awaiting_verification",
                 "verify_by": "e-mail" if kind == "email" else "phone",
                 "code_expires_at": clock.iso(expires), "attempts": s.selfservice_code_attempts,
                 "due_at": m.due_at, "verify": f"/v1/public/requests/{request_id}/verify"}


def _cancel(m: RequestModel, code: str, message: str, by: str = ACTOR) -> None:
    """Close a request that never ran, with the reason; the identities go."""
    with contextlib.suppress(UpdateError):  # it has moved on meanwhile: leave it
        m.update(actions=[
            RequestModel.status.set("cancelled"), RequestModel.completed_at.set(clock.iso()),
            RequestModel.identities_enc.remove(), RequestModel.changes_enc.remove(),
            RequestModel.result.set({"cancelled": {"reason": code, "message": message}}),
            RequestModel.timeline.set(RequestModel.timeline.append(
                [records.event(event="cancelled", by=by, reason=code)])),
        ], condition=RequestModel.status.is_in("awaiting_verification", "awaiting_approval"))
        records.release_open(m)
        audit.append(m.tenant_id, "request_cancelled", actor=by, request_id=m.request_id,
                     subject_ref=m.subject_ref, details={"reason": code})
        count("RequestsCompleted", type=m.type or "", status="cancelled")


def _public_request(tenant: Tenant, request_id: str) -> RequestModel:
    try:
        m = records.load(tenant.tenant_id, request_id)
    except NotFound:
        m = None
    if m is None or m.requested_by != ACTOR:
        raise NotFound("no self-service request with this id for this organisation")
    return m


def verify(request_id: str, body: VerifyBody | Mapping[str, Any]) -> dict[str, Any]:
    """`POST /v1/public/requests/{id}/verify {"tenant", "code"}`: the right code queues the
    request (or hands it to the DPO); a wrong one is 400 with the attempts left."""
    if not isinstance(body, VerifyBody):
        body = parse(VerifyBody, body)
    tenant = resolve(body.tenant)
    code = body.code
    m = _public_request(tenant, request_id)
    if m.status != "awaiting_verification":
        raise Conflict(f"this request is {m.status}: there is nothing to verify",
                       code="not_awaiting_verification", details={"status": m.status})
    try:
        otp = SelfServiceModel.get(tenant.tenant_id, f"otp#{request_id}", consistent_read=True)
    except DoesNotExist:
        raise Conflict("this request has no code to verify", code="not_awaiting_verification",
                       details={"status": m.status}) from None
    s = get_settings()
    if otp.expires_at and clock.parse(otp.expires_at) < clock.now():
        _cancel(m, "code_expired", "the verification code expired before it was entered")
        raise Gone("the code has expired and the request was cancelled; file the request "
                   "again to receive a new code", code="code_expired",
                   details={"status": "cancelled"})
    try:  # the attempt is counted before the code is compared
        otp.update(actions=[SelfServiceModel.attempts.add(1)],
                   condition=(SelfServiceModel.attempts < s.selfservice_code_attempts)
                   & SelfServiceModel.verified_at.does_not_exist())
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        _cancel(m, "too_many_attempts", "too many wrong verification codes")
        raise Conflict("too many wrong codes: the request was cancelled; file it again to "
                       "receive a new code", code="too_many_attempts",
                       details={"status": "cancelled", "attempts_left": 0}) from None
    left = max(0, s.selfservice_code_attempts - int(otp.attempts or 0))
    if not hmac.compare_digest(otp.code_mac or "", _code_mac(tenant, request_id, code.strip())):
        audit.append(tenant.tenant_id, "verification_failed", actor=ACTOR,
                     request_id=request_id, subject_ref=m.subject_ref,
                     details={"attempts_left": left})
        if left == 0:
            _cancel(m, "too_many_attempts", "too many wrong verification codes")
            raise BadRequest("the code is not right, and that was the last attempt: the "
                             "request was cancelled; file it again to receive a new code",
                             code="invalid_code",
                             details={"attempts_left": 0, "status": "cancelled"})
        raise BadRequest(f"the code is not right; {left} attempt{'s' if left > 1 else ''} "
                         "left", code="invalid_code",
                         details={"attempts_left": left, "status": "awaiting_verification"})
    otp.update(actions=[SelfServiceModel.verified_at.set(clock.iso())])
    return _verified(tenant, m)


def _verified(tenant: Tenant, m: RequestModel) -> dict[str, Any]:
    """Hold the subject's open-request marker and move on: to the DPO, or to the workflow. A
    request of the same type already open for the subject absorbs this one."""
    now = clock.now()
    due = m.due_at or clock.iso(now)
    if tenant.settings.get("selfservice_due_pauses_until_verified"):
        waited = now - clock.parse(m.created_at or clock.iso(now))
        due = clock.iso(clock.parse(due) + waited)
    approval = bool(tenant.settings.get("selfservice_requires_approval"))
    marker = RequestModel(tenant_id=m.tenant_id, sk=records.open_sk(m.type or "",
                                                                 m.subject_ref or ""),
                          request_id=m.request_id)
    try:
        with TransactWrite(connection=RequestModel._get_connection().connection) as tx:
            tx.save(marker, condition=RequestModel.sk.does_not_exist())
            tx.update(m, actions=[
                RequestModel.status.set("awaiting_approval" if approval else "received"),
                RequestModel.due_at.set(due),
                RequestModel.timeline.set(RequestModel.timeline.append(
                    [records.event(event="verified", by=ACTOR)]))],
                condition=RequestModel.status == "awaiting_verification")
    except TransactWriteError:
        m.refresh(consistent_read=True)
        if m.status != "awaiting_verification":
            raise Conflict(f"this request is {m.status}: there is nothing to verify",
                           code="not_awaiting_verification",
                           details={"status": m.status}) from None
        open_id = RequestModel.get(marker.pk, marker.sk, consistent_read=True).request_id
        _cancel(m, "duplicate", f"merged into the open request {open_id}")
        other = records.load(m.tenant_id, open_id)
        return {"request_id": open_id, "status": other.status, "due_at": other.due_at,
                "duplicate_of_open_request": True}
    audit.append(m.tenant_id, "request_verified", actor=ACTOR, request_id=m.request_id,
                 subject_ref=m.subject_ref, details={"approval_required": approval})
    m = records.load(m.tenant_id, m.request_id)
    if approval:
        return {"request_id": m.request_id, "status": m.status, "due_at": m.due_at,
                "message": "verified: the organisation's privacy team reviews the request "
                           "before it runs"}
    return {"request_id": m.request_id, **_run(m), "due_at": m.due_at}


def _run(m: RequestModel) -> dict[str, str]:
    """Start the request's workflow; a type this version cannot run yet stays queued."""
    if m.type in records.AVAILABLE:
        metering.bill_to(TaskEvent(request_id=m.request_id, tenant_id=m.tenant_id))
        if records.start(m):
            metering.started(int(m.attempt or 1))
        return {"status": "queued"}
    m.update(actions=[RequestModel.status.set("queued"),
                      RequestModel.timeline.set(RequestModel.timeline.append([records.event(
                          event="queued", note="this type of request is not run "
                                               "automatically yet")]))])
    return {"status": "queued", "message": "verified: the organisation handles this request "
                                           "by hand; it has been told"}


# -- the DPO's decision (Art. 12(4)) ----------------------------------------------------------


def _awaiting(principal: Principal, request_id: str) -> RequestModel:
    # a scope first, before the lookup: a key that may decide nothing must not tell ids
    # that exist (403) from ids that do not (404)
    if "dsr:erase" not in principal.scopes:
        principal.require("dsr:write")
    m = records.load(principal.tenant_id, request_id)
    principal.require("dsr:erase" if m.type in records.IRREVERSIBLE else "dsr:write")
    if m.status != "awaiting_approval":
        raise Conflict(f"only a request awaiting approval can be approved or denied; this "
                       f"one is {m.status}", code="not_awaiting_approval",
                       details={"status": m.status})
    return m


def approve(principal: Principal, request_id: str) -> dict[str, Any]:
    """Let a verified self-service request run."""
    m = _awaiting(principal, request_id)
    try:
        m.update(actions=[RequestModel.status.set("received"),
                          RequestModel.timeline.set(RequestModel.timeline.append(
                              [records.event(event="approved", by=principal.key_id)]))],
                 condition=RequestModel.status == "awaiting_approval")
    except UpdateError:
        raise Conflict("the request changed meanwhile; read it again") from None
    audit.append(principal.tenant_id, "request_approved", actor=principal.key_id,
                 request_id=request_id, subject_ref=m.subject_ref)
    _run(m)
    return records.to_json(records.load(principal.tenant_id, request_id))


def deny(principal: Principal, request_id: str, body: DenyBody) -> dict[str, Any]:
    """Refuse a verified self-service request with a reason; the person is told it."""
    reason = body.reason
    m = _awaiting(principal, request_id)
    tenant = get_tenant(principal.tenant_id)
    ids = records.identities_of(m, tenant)
    _cancel(m, "denied", reason.strip(), by=principal.key_id)
    m = records.load(principal.tenant_id, request_id)
    if m.status != "cancelled":
        raise Conflict("the request changed meanwhile; read it again")
    kind, address = next(iter(ids.items()))
    try:
        _send(tenant, kind, address, request_id, f"Your request to {tenant.name}",
              f"{tenant.name} will not act on your request for {_LABELS.get(m.type or '', '')}"
              f" (request {request_id}).\n\nThe reason: {reason.strip()}\n\nYou may lodge a "
              "complaint with a data protection supervisory authority and seek a judicial "
              "remedy.\n")
        told = True
    except TransientError:
        told = False
    records.append_timeline(m, event="denial_sent" if told else "denial_not_sent")
    return records.to_json(records.load(principal.tenant_id, request_id))


# -- the export, handed to the person ---------------------------------------------------------


def public_download(request_id: str, token: str | None) -> str:
    """`GET /v1/public/requests/{id}/download?token=...`: a presigned URL of minutes for the
    person's link. A link not signed as it is, for another request, or for a request not made
    through the self-service page raises InvalidLink; an expired archive, ExpiredLink."""
    tenant, claims = links.verify(token, use=deliver.EXPORT_LINK, needs={"r": str})
    invalid = links.InvalidLink("this link is not valid")
    if claims.get("r") != request_id:
        raise invalid
    try:
        m = records.load(tenant.tenant_id, request_id)
    except NotFound:
        raise invalid from None
    if m.requested_by != ACTOR:
        raise invalid
    try:
        got = deliver.presigned(m, actor=ACTOR)
    except Gone:
        raise links.ExpiredLink("this download has expired") from None
    except (Conflict, NotFound):
        raise invalid from None
    return str(got["url"])
