"""Data-subject requests: the one durable state of each request (status, due date, timeline,
result), and the moves between statuses. The identities of an open request are held
encrypted; once it ends they are dropped and only their HMACs remain."""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Iterator
from contextvars import ContextVar
from datetime import timedelta
from typing import Any

from pynamodb.exceptions import DeleteError, DoesNotExist, TransactWriteError, UpdateError
from pynamodb.transactions import TransactWrite

from oblio.control import audit
from oblio.control.tenants import Tenant
from oblio.core import clock, meter
from oblio.core.bodies import REQUEST_STATUSES, REQUEST_TYPES
from oblio.core.boundary import current_attempt, transient
from oblio.core.errors import Conflict, NotFound, StaleAttempt, TransientError
from oblio.core.observability import count, logger
from oblio.store import shards, tables, workflows
from oblio.store.models import RequestModel, plain
from oblio.store.tables import ConditionFailed, add_to_map

TYPES = REQUEST_TYPES
#: request type -> the state machine that carries it out
AVAILABLE = {"erasure": "erasure", "anonymisation": "anonymisation",
             "rectification": "subject_update", "restriction": "subject_update",
             "objection": "subject_update", "access": "access_export"}
#: request type -> the engine's action (restriction with "lift": unrestrict)
ACTIONS = {"erasure": "erase", "anonymisation": "anonymise", "rectification": "rectify",
           "restriction": "restrict", "objection": "object", "access": "export"}
IRREVERSIBLE = {"erasure", "anonymisation"}
STATUSES = REQUEST_STATUSES
ENDED = frozenset({"completed", "completed_with_errors", "cancelled"})
#: where the work of a request may still go on (a step may start, a cancel is honoured)
OPEN = ("received", "awaiting_verification", "awaiting_approval", "queued", "running")
#: Finish has begun: the request can no longer be cancelled, only end (or fail)
FINISHING = "finishing"
#: what `retry` resumes: a failed request, one that completed with errors, and a cancelled
#: erasure or anonymisation (a new attempt goes on from the units done)
RETRYABLE = ("failed", "completed_with_errors", "cancelled")
REQUEST_PREFIX = "req#"


def request_sk(request_id: str) -> str:
    return REQUEST_PREFIX + request_id


def request_key(tenant_id: str, request_id: str) -> tuple[str, str]:
    """The (partition, sort) key of the tenant's request record."""
    sk = request_sk(request_id)
    return shards.key(tenant_id, sk), sk


#: the sort key prefix of a request's meter: its own small item beside the request record,
#: so that each invocation's count is a write of one unit, not a rewrite of the record
METER_PREFIX = "meter#"


def meter_key(tenant_id: str, request_id: str) -> dict[str, str]:
    """The key of the request's meter item (`control.metering`)."""
    sk = METER_PREFIX + request_id
    return {"pk": shards.key(tenant_id, sk), "sk": sk}


#: the small item beside a request where the events of its outbox are claimed for sending
#: (`send_once`): one write unit a claim, where the 6-8 KB record would take eight
SENT_PREFIX = "sent#"


def sent_key(tenant_id: str, request_id: str) -> dict[str, str]:
    sk = SENT_PREFIX + request_id
    return {"pk": shards.key(tenant_id, sk), "sk": sk}


def sent_of(m: RequestModel) -> set[str]:
    """The outbox's events claimed for sending, as their unit ids (`_sent:<n>`): on the
    request's sent item, or in its units for a request that sent before that item."""
    item = tables.get_item(RequestModel.Meta.table_name,
                           sent_key(m.tenant_id, m.request_id)) or {}
    return {u for u in [*units_of(m), *item] if u.startswith("_sent:")}


def meters_of(tenant_id: str, request_ids: list[str]) -> dict[str, dict[str, Any]]:
    """The meters of these requests, by request id (BatchGetItem, 100 keys a call)."""
    got = tables.batch_get(RequestModel.Meta.table_name,
                           [meter_key(tenant_id, r) for r in request_ids])
    return {str(i["sk"])[len(METER_PREFIX):]: {k: v for k, v in i.items()
                                               if k not in ("pk", "sk")} for i in got}


def open_sk(type_: str, subject_ref: str) -> str:
    return f"open#{type_}#{subject_ref}"


def options_of(m: RequestModel) -> dict[str, Any]:
    """What the request was filed with (action, scope, purposes, notify, ...)."""
    return plain(m.options) or {}


def plan_of(m: RequestModel) -> dict[str, Any]:
    """The plan the Plan step froze into the request ({} before it ran)."""
    return plain(m.plan) or {}


def units_of(m: RequestModel) -> dict[str, Any]:
    """The recorded outcome of each unit and step, by id (`<tenant>/<table>`, `_audit`...),
    with those recorded inside this invocation's `outcomes_in_one_write` block and not
    written yet."""
    units: dict[str, Any] = plain(m.units) or {}
    for held, unit_id, outcome, _ in _held.get() or ():
        if (held.tenant_id, held.sk) == (m.tenant_id, m.sk):
            units[unit_id] = outcome
    return units


def result_of(m: RequestModel) -> dict[str, Any]:
    """The finished request's result ({} while it runs)."""
    return plain(m.result) or {}


def io_of(m: RequestModel) -> dict[str, Any]:
    """The AWS calls recorded so far, by `service.Operation`."""
    return plain(m.io) or {}


def extension_of(m: RequestModel) -> dict[str, Any]:
    """How far the due date was moved and why (Art. 12(3)); {} when it was not."""
    return plain(m.extended) or {}


def event(at: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"at": at or clock.iso(), **fields}


def to_json(m: RequestModel, evidence: dict[str, Any] | None = None,
            meters: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """The API's view of a request: no identity, only the subject's HMAC reference.
    `evidence`: the chunk evidence objects read so far (a page of bulk lines reads each
    chunk's once); `meters`: the page's meters read at once (`meters_of`), else the
    request's is read."""
    options = options_of(m)
    overdue = (m.status not in ENDED and m.due_at is not None
               and clock.parse(m.due_at) < clock.now())
    return {
        "id": m.request_id, "type": m.type, "status": m.status, "subject_ref": m.subject_ref,
        "created_at": m.created_at, "due_at": m.due_at, "completed_at": m.completed_at,
        "overdue": overdue, "reason": m.reason, "dry_run": bool(options.get("dry_run")),
        "include_children": bool(options.get("include_children")),
        "attempt": int(m.attempt or 0), "error": plain(m.error),
        "timeline": plain(m.timeline) or [], "result": _result_view(m, evidence, meters),
        "extension": plain(m.extended),
    }


def _result_view(m: RequestModel, evidence: dict[str, Any] | None = None,
                 meters: dict[str, dict[str, Any]] | None = None) -> dict[str, Any] | None:
    """The result; a cancelled request's says what was done and what was not (read from
    the units recorded, so a step that was under way at the cancel is counted once done);
    a bulk line's with its certificate, read from its chunk's evidence object."""
    result: dict[str, Any] | None = plain(m.result)
    if result is not None and "evidence" in result:
        return _with_certificate(result, evidence)
    if result is not None:  # every call counted so far, the last task's included
        counts = (meters if meters is not None else
                  meters_of(m.tenant_id, [m.request_id])).get(m.request_id)
        result["io"] = meter.view(counts, result.get("io"), attempt=int(m.attempt or 1))
    if m.status == "cancelled" and plain(m.plan):
        return {**(result or {}), "progress": progress(m)}
    return result


def _with_certificate(result: dict[str, Any], evidence: dict[str, Any] | None,
                      ) -> dict[str, Any]:
    """A bulk line's result: its certificate (from the chunk's evidence object, checked
    against the digest its record keeps) and the tables, totals and verification it says;
    when the evidence object no longer holds that certificate, the result says so instead
    of showing one (`certificate: null`, `evidence_problem`). Its calls are its job's."""
    cert = audit.from_pointer(result["evidence"], evidence)
    out = {k: v for k, v in result.items() if k != "evidence"}
    out["io"] = {"bulk_job": result.get("bulk_job"),
                 "counted": "with its job: GET /v1/bulk-erasures/{job_id}, io.per_subject"}
    if cert is None:
        return {**out, "certificate": None, "evidence_problem": (
            "the chunk's evidence object does not hold this request's certificate as it was "
            "committed: verify the audit chain (GET /v1/audit/verify) to see what changed")}
    tables: dict[str, dict[str, Any]] = cert.get("tables") or {}
    names = dict.fromkeys(k for c in tables.values() for k in c)  # every table's counts
    return {**out, "tables": tables, "verification": cert.get("verification"),
            "totals": {k: sum(int(c.get(k, 0)) for c in tables.values()) for k in names},
            "certificate": cert}


def load(tenant_id: str, request_id: str, consistent: bool = True) -> RequestModel:
    """The tenant's request; 404 for an unknown id or another tenant's (never says which)."""
    try:
        return RequestModel.get(*request_key(tenant_id, request_id), consistent_read=consistent)
    except DoesNotExist:
        raise NotFound("no request with this id in this tenant") from None


def identities_of(m: RequestModel, tenant: Tenant) -> dict[str, str]:
    if not m.identities_enc:
        raise Conflict("the request has ended and no longer holds the subject's identities")
    return tenant.keys.decrypt(m.identities_enc)


def start(m: RequestModel, claimed: bool = False) -> bool:
    """Start the request's workflow for attempt `m.attempt` (carried by the execution, so
    that every task of it is fenced on it) and mark it queued; True when this call started
    the execution of the attempt that is current.

    The order cannot leave an execution nobody tracks: the record is made `queued` for this
    attempt first (conditionally; `claimed`: the caller did it, as `retry` does), and only
    then is the execution started, named after the attempt (a second start of the same
    attempt is refused by Step Functions, so one attempt never runs twice). Its ARN is then
    recorded on the condition that the attempt is still current; if it is not (a newer
    attempt won meanwhile), the execution is stopped, and its tasks would be refused anyway.
    If the execution cannot be started, the request is marked `failed` (code
    `start_failed`) so that `retry` can run it: never `queued` with nothing running."""
    attempt = int(m.attempt or 1)
    if not claimed:
        try:
            m.update(actions=[
                RequestModel.status.set("queued"),
                RequestModel.timeline.set(RequestModel.timeline.append(
                    [event(event="queued", attempt=attempt)])),
            ], condition=RequestModel.status.is_in("received", "failed", "completed_with_errors")
                & (RequestModel.attempt == attempt))
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            m.refresh(consistent_read=True)
            return False  # another caller queued this attempt (and started it) or it moved on
    try:
        arn = workflows.start(AVAILABLE[m.type or ""], f"{m.request_id}-{attempt}", {
            "request_id": m.request_id, "tenant_id": m.tenant_id, "attempt": attempt,
            "action": options_of(m).get("action") or ACTIONS.get(m.type or "", "")})
    except workflows.AlreadyStarted:
        m.refresh(consistent_read=True)
        return False  # this very attempt runs already: started by a concurrent caller
    except Exception as exc:
        with contextlib.suppress(UpdateError):
            m.update(actions=[
                RequestModel.status.set("failed"),
                RequestModel.error.set({"code": "start_failed", "attempt": attempt,
                                        "at": clock.iso(),
                                        "message": "the workflow could not be started; "
                                                   "retry the request"}),
                RequestModel.timeline.set(RequestModel.timeline.append(
                    [event(event="failed", code="start_failed", attempt=attempt)])),
            ], condition=(RequestModel.status == "queued") & (RequestModel.attempt == attempt))
        raise TransientError("the request's workflow could not be started; it is marked "
                             "failed: retry it", details={"attempt": attempt}) from exc
    try:
        m.update(actions=[RequestModel.execution_arn.set(arn)],
                 condition=RequestModel.attempt == attempt)
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        logger.warning("execution of a stale attempt stopped", extra={
            "request_id": m.request_id, "attempt": attempt})
        workflows.stop(arn, cause="a newer attempt of the request is current")
        current = False
    else:
        current = True
    m.refresh(consistent_read=True)
    return current


def fence(m: RequestModel) -> Any:
    """The condition every write of a task makes on its request: the task's attempt (see
    `oblio.core.boundary.current_attempt`) is still the request's current one. None outside
    a request's task (a bulk chunk's own records, the API)."""
    attempt = current_attempt()
    return None if attempt is None else (RequestModel.attempt == attempt)


def check_current(m: RequestModel) -> None:
    """Refuse, before any work, a task whose attempt is no longer the request's current one
    (a client retried meanwhile); logged, never applied."""
    if not is_current(m):
        stale(m, current_attempt())


def is_current(m: RequestModel) -> bool:
    """Whether the running task is of the request's current attempt (or of none)."""
    attempt = current_attempt()
    return attempt is None or int(m.attempt or 1) == attempt


def proceed(m: RequestModel) -> bool:
    """At a step boundary: refuse a stale attempt (StaleAttempt), and say whether the step
    may do its work (False once the request was cancelled: a cancel is honoured at the next
    step, and what was done before it stays recorded on the request)."""
    check_current(m)
    return m.status not in ENDED


#: inside `one_claim`: the steps claimed by its one write (None: each step claims its own)
_claimed: ContextVar[set[str] | None] = ContextVar("claimed_steps", default=None)


@contextlib.contextmanager
def one_claim() -> Iterator[None]:
    """The steps of one invocation (a small request's tables inside Work) claimed by one
    write: the first `begin_step` marks every planned unit started at once, and each later
    one relies on the consistent read its caller has just made of the request (a cancel is
    still honoured between two tables). A unit that was then not begun is said so by the
    caller (`not_begun`), so that the progress of a cancelled request stays exact."""
    token = _claimed.set(set())
    try:
        yield
    finally:
        _claimed.reset(token)


def not_begun(m: RequestModel, step_ids: list[str]) -> None:
    """Record that these claimed steps were not begun (a cancel came first)."""
    for step_id in step_ids:
        record_unit(m, f"_not_begun:{step_id}", {"at": clock.iso()}, {})


def begin_step(m: RequestModel, step_id: str) -> bool:
    """Claim, before a step changes anything, that the request is still open on this
    attempt: one conditional write (`units._started:<step>`). False (and nothing written)
    once the request was cancelled or ended, so a cancel that lands between a step's read
    and its work is still honoured; StaleAttempt when another attempt is current. Inside
    `one_claim`, the first claim is made for every planned unit and the others are the
    caller's fresh read of `m`."""
    attempt = current_attempt()
    claimed = _claimed.get()
    if claimed is not None and step_id in claimed:
        check_current(m)
        return m.status in OPEN
    steps = [step_id]
    if claimed is not None:
        steps += [u for u in (f"{x['tenant_id']}/{x['table']}"
                              for x in plan_of(m).get("units", [])) if u != step_id]
    cond = RequestModel.status.is_in(*OPEN)
    if attempt is not None:
        cond = cond & (RequestModel.attempt == attempt)
    try:
        m.update(actions=[RequestModel.units[f"_started:{s}"].set(
            {"at": clock.iso(), "attempt": attempt}) for s in steps], condition=cond)
        if claimed is not None:
            claimed.update(steps)
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        m.refresh(consistent_read=True)
        check_current(m)
        if m.status in OPEN:  # pragma: no cover - the condition names exactly these
            raise
        return False
    return True


def mark_finishing(m: RequestModel) -> bool:
    """Finish begins: the request moves to `finishing` only if it is still open on this
    attempt (or already finishing: a retried Finish). False once it was cancelled (the
    cancel stands; Finish does nothing); from here on a cancel answers 409."""
    try:
        fenced_update(m, [RequestModel.status.set(FINISHING)],
                      condition=RequestModel.status.is_in(*OPEN, FINISHING))
    except UpdateError:
        m.refresh(consistent_read=True)
        return False
    m.refresh(consistent_read=True)
    return True


def progress(m: RequestModel) -> dict[str, Any]:
    """What a request that stopped before its end had done: the planned units done (with
    their counts), those begun and not recorded done, and those not started."""
    units = units_of(m)
    planned = [f"{u['tenant_id']}/{u['table']}" for u in plan_of(m).get("units", [])]
    done = {u: {k: v for k, v in units[u].items() if isinstance(v, int | float)}
            for u in planned if (units.get(u) or {}).get("status") == "done"}
    begun = [u for u in planned if u not in done and f"_not_begun:{u}" not in units and (
        u in units or f"_started:{u}" in units)]
    return {"planned": len(planned), "done": done, "in_progress": begun,
            "not_started": [u for u in planned if u not in done and u not in begun],
            "verified": "_verification" in units}


def stale(m: RequestModel, attempt: int | None = None) -> None:
    attempt = attempt if attempt is not None else current_attempt()
    logger.warning("stale write refused", extra={
        "request_id": m.request_id, "attempt": attempt, "current_attempt": int(m.attempt or 1)})
    count("StaleWritesRefused", type=m.type or "")
    raise StaleAttempt(f"attempt {attempt} of request {m.request_id} is no longer current; "
                       "its write was refused", details={"attempt": attempt})


def fenced_update(m: RequestModel, actions: list[Any], condition: Any = None) -> None:
    """`m.update` conditional on the task's attempt being current (and on `condition`);
    a refused fence raises StaleAttempt, logged."""
    f = fence(m)
    cond = f if condition is None else (condition if f is None else condition & f)
    try:
        m.update(actions=actions, condition=cond)
    except UpdateError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException" or f is None:
            raise
        m.refresh(consistent_read=True)
        if int(m.attempt or 1) != current_attempt():
            stale(m)
        raise


def overdue_count(tenant_id: str) -> int:
    """How many of the tenant's requests are open past their due date (Art. 12(3)), counted
    by DynamoDB (Select=COUNT) without reading the requests into memory."""
    return shards.count_tenant(
        RequestModel, tenant_id, RequestModel.sk.startswith(REQUEST_PREFIX),
        filter_condition=(RequestModel.due_at < clock.iso()) & ~RequestModel.status.is_in(*ENDED))


#: tries of the request's transaction when it is refused for a reason other than its
#: conditions (a throttle, a conflicting transaction) or when the open request it repeated
#: ended before its marker was read
INSERT_TRIES = 6


def insert(m: RequestModel, kind: str) -> str | None:
    """Write a new request with the marker of the open request of its kind for its subject,
    in one transaction. Returns None, or the id of the open request it repeats (then nothing
    is written).

    A refused transaction is a repeat only when a condition refused it and the marker is
    there to name the open request: a throttle or a conflicting transaction is tried again,
    and so is a marker gone by the time it is read (that request ended meanwhile: this one
    is not a repeat), instead of answering 500."""
    marker = RequestModel(tenant_id=m.tenant_id, sk=open_sk(kind, m.subject_ref or ""),
                          request_id=m.request_id)
    for n in range(INSERT_TRIES):
        if n:
            time.sleep(random.uniform(0, 0.05 * 2 ** n))
        try:
            with TransactWrite(connection=RequestModel._get_connection().connection) as tx:
                tx.save(marker, condition=RequestModel.sk.does_not_exist())
                tx.save(m, condition=RequestModel.sk.does_not_exist())
        except TransactWriteError as exc:
            if not _refused_by_a_condition(exc):
                if transient(exc) or _conflicted(exc):
                    continue
                raise
            try:
                return RequestModel.get(marker.pk, marker.sk, consistent_read=True).request_id
            except DoesNotExist:
                continue  # the open request ended between the two: file this one
        return None
    raise TransientError("the request could not be filed for now (its record was busy); "
                         "send it again with the same Idempotency-Key")


def _reasons(exc: TransactWriteError) -> list[str]:
    return [r.code for r in exc.cancellation_reasons if r is not None and r.code]


def _refused_by_a_condition(exc: TransactWriteError) -> bool:
    return "ConditionalCheckFailed" in _reasons(exc)


def _conflicted(exc: TransactWriteError) -> bool:
    return bool({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"}
                & set(_reasons(exc)))


def release_open(m: RequestModel) -> None:
    """Drop the marker of the open request (once it has ended)."""
    # the marker may already be gone, or belong to a newer request: then it stays
    with contextlib.suppress(DeleteError):
        RequestModel(tenant_id=m.tenant_id, sk=open_sk(m.type or "", m.subject_ref or "")
                     ).delete(condition=RequestModel.request_id == m.request_id)


def append_timeline(m: RequestModel, **fields: Any) -> None:
    m.update(actions=[RequestModel.timeline.set(RequestModel.timeline.append(
        [event(**fields)]))])


def end(m: RequestModel, status: str, result: dict[str, Any],
        outbox: dict[str, Any] | None = None, **timeline: Any) -> None:
    """Close a request: final status and result; the identities go, their HMACs stay.

    Conditional on the request still being open or finishing on this attempt (a cancelled
    or ended request is never ended again: UpdateError); `outbox` (the events to send) is
    written in the same update, so a request ends with its outbox or not at all."""
    actions = [
        RequestModel.status.set(status), RequestModel.completed_at.set(clock.iso()),
        RequestModel.result.set(result), RequestModel.identities_enc.remove(),
        RequestModel.changes_enc.remove(),
        RequestModel.timeline.set(RequestModel.timeline.append([event(event=status,
                                                                      **timeline)])),
    ]
    if outbox is not None:
        actions.append(RequestModel.units["_outbox"].set(outbox))
    fenced_update(m, actions, condition=RequestModel.status.is_in(*OPEN, FINISHING))
    release_open(m)
    count("RequestsCompleted", type=m.type or "", status=status)


def inclusion(tenant_id: str, request_id: str) -> dict[str, Any]:
    """Whether the request's certificate is the one the audit chain committed to: for a bulk
    line, its inclusion in its chunk entry's Merkle root (`chunk`: entry, index, proof)."""
    m = load(tenant_id, request_id)
    result = result_of(m)
    # a bulk line's certificate is in its chunk's evidence (the meter is not needed here)
    view = _with_certificate(result, None) if "evidence" in result else result
    if view.get("evidence_problem"):
        return {"request_id": request_id, "included": False, "chunk": None,
                "audit_entry": (result.get("evidence") or {}).get("entry"),
                "reason": view["evidence_problem"]}
    cert = view.get("certificate")
    if not cert:
        raise Conflict("this request has no certificate (only a finished erasure or "
                       "anonymisation has one)", code="no_certificate")
    return {"request_id": request_id, **audit.certificate_inclusion(tenant_id, cert)}


def put_many(models: list[RequestModel]) -> None:
    """Write finished request records (a bulk chunk's) in batches of 25 (BatchWriteItem,
    unprocessed items retried). Each is keyed by an id derived from where it comes from (the
    job and the line), so writing them again (a rerun) leaves one record each, as it was."""
    with RequestModel.batch_write() as batch:
        for m in models:
            batch.save(m)


def due_in(m: RequestModel) -> timedelta:
    return clock.parse(m.due_at or clock.iso()) - clock.now()


#: outcomes held back by `outcomes_in_one_write` (request, unit id, outcome, io)
_held: ContextVar[list[tuple[RequestModel, str, dict[str, Any], dict[str, Any]]] | None] = \
    ContextVar("held_outcomes", default=None)


def record_unit(m: RequestModel, unit_id: str, outcome: dict[str, Any],
                io: dict[str, Any]) -> None:
    """Store one table's outcome and add its AWS calls to the request's `io`, atomically
    (parallel Map iterations write the same record). Inside `outcomes_in_one_write` the
    outcome waits for that block's one write, except a unit's `applying` mark (what it
    found before deleting), which must be stored before the deletion."""
    held = _held.get()
    if held is not None and outcome.get("status") != "applying":
        held.append((m, unit_id, outcome, io))
        return
    _write_units(m, {unit_id: outcome}, io)


def _write_units(m: RequestModel, outcomes: dict[str, dict[str, Any]],
                 io: dict[str, Any]) -> None:
    attempt = current_attempt()
    try:
        add_to_map(RequestModel.Meta.table_name, {"pk": m.pk, "sk": m.sk}, "io",
                   io, {uid: ("units", o) for uid, o in outcomes.items()},
                   only_if=None if attempt is None else {"attempt": attempt})
    except ConditionFailed:
        stale(m)


def send_once(m: RequestModel, unit_ids: list[str], send: Any) -> bool:
    """Send events of the outbox at most once per delivery race: the sends are claimed first
    by one conditional write of their unit ids `unit_ids` on the request's sent item
    (refused when another run claimed any of them), then made; a send that fails gives the
    claims back so that the retry sends them, and only them (EventBridge names the events
    it took). Returns whether this call sent them. The claim is not fenced by the attempt:
    the finish that calls this checked its attempt, and a request that has an outbox has
    ended and cannot be retried (its identities are gone), so every outbox is its last
    attempt's and the claims alone keep each send single."""
    key = sent_key(m.tenant_id, m.request_id)
    if not tables.claim(RequestModel.Meta.table_name, key, unit_ids,
                        {"sent": True, "at": clock.iso()}):
        return False
    try:
        send()
    except Exception as exc:
        # the claims of what was not sent go back (what EventBridge took stays claimed)
        took = set(getattr(exc, "accepted", ()))
        back = [u for i, u in enumerate(unit_ids) if i not in took]
        if back and not tables.unclaim(RequestModel.Meta.table_name, key, back):
            # the send's failure is the one raised; these events stay claimed, unsent
            logger.warning("claims of unsent events not given back",
                           extra={"request_id": m.request_id, "events": len(back)})
        raise
    return True


@contextlib.contextmanager
def written_now() -> Iterator[None]:
    """Inside `outcomes_in_one_write`: the outcomes recorded in this block are written at
    once, whatever becomes of the block's (an outcome that must stand when the block fails)."""
    token = _held.set(None)
    try:
        yield
    finally:
        _held.reset(token)


@contextlib.contextmanager
def outcomes_in_one_write(keep_on_failure: bool = True) -> Iterator[None]:
    """The steps of a small request run in one invocation: the outcomes they record (the
    plan's, each unit's, the verification's) and their calls go to the request in one
    update at the end of the block instead of one each (`units_of` reads them meanwhile).
    What was done before a failure is written too, then the failure goes on, unless
    `keep_on_failure` is false (what the block did is only good with the rest of it: an
    export's parts held in memory; only its calls are written then); an invocation that
    dies first leaves them unwritten, and the retry does those units again (each is
    repeatable)."""
    token = _held.set([])
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        held = _held.get() or []
        # without its outcomes, a failed block's calls are still counted (they were made)
        keep = keep_on_failure or not failed
        _held.reset(token)
        by_request: dict[tuple[str, str], list[Any]] = {}
        for entry in held:
            by_request.setdefault((entry[0].tenant_id, entry[0].sk), []).append(entry)
        for entries in by_request.values():
            io: dict[str, int] = {}
            for _, _, _, calls in entries:
                for k, v in calls.items():
                    io[k] = io.get(k, 0) + int(v)
            try:
                outcomes = {uid: o for _, uid, o, _ in entries} if keep else {}
                if outcomes or any(io.values()):
                    _write_units(entries[0][0], outcomes, io)
            except Exception:
                if not failed:
                    raise
                logger.warning("outcomes before a failure not written",
                               extra={"request_id": entries[0][0].request_id})


