"""Evidence: how a subject's request ends. `finish_request` is the one closing sequence of
every subject workflow and of the access export (audit entry, the steps that follow it,
events, work files deleted, the request ended); `finish` gives it what a subject workflow
says: the certificate of an erasure or anonymisation, the suppression entries and the consent
ledger's records. `fail` records what the state machine caught."""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pynamodb.exceptions import UpdateError

from oblio.control import audit, exports, ledger, metering, records, suppression
from oblio.control.tenants import get_tenant
from oblio.core import clock
from oblio.core.boundary import caught
from oblio.core.datamap import DataMap
from oblio.core.identity import IDENTITY_KINDS
from oblio.core.observability import count, logger
from oblio.pipeline import outcome, rules
from oblio.pipeline.apply import GONE
from oblio.pipeline.work import frozen_map, work_prefix
from oblio.store import objects, outbound
from oblio.store.models import RequestModel, plain

SUBJECT_EVENTS: dict[str, tuple[str, ...]] = {
    "erase": ("SubjectErased",), "anonymise": ("SubjectAnonymised",),
    "rectify": ("SubjectRectified",), "restrict": ("SubjectRestricted",),
    # an objection's ConsentChanged events come from the ledger, one per purpose withdrawn
    "unrestrict": ("SubjectRestricted",), "object": ("SubjectRestricted",),
}


def certificate(*, request_id: str, tenant_id: str, type_: str, subject_ref: str,
                tables: dict[str, Any], tenants: dict[str, Any], verification: dict[str, Any],
                suppressed: int, started_at: str | None, entry: audit.Entry | None,
                datamap_digest: str | None) -> dict[str, Any]:
    """The evidence of an erasure or anonymisation: no personal data, only counts, the
    verification's outcome and the hash of the audit entry that records it (None: a bulk
    line's certificate, which its chunk's entry commits to, so cannot hold that entry)."""
    cert = {"request_id": request_id, "tenant_id": tenant_id, "type": type_,
            "subject_ref": subject_ref, "tables": tables, "tenants": tenants,
            "verification": verification, "suppression_entries": suppressed,
            "started_at": started_at, "completed_at": clock.iso(),
            "audit_entry": {"id": entry.id, "hash": entry.hash} if entry else None,
            "datamap_digest": datamap_digest}
    if entry is None:
        del cert["audit_entry"]
    return cert


def _counts(m: RequestModel, dm: DataMap) -> dict[str, dict[str, dict[str, int]]]:
    units = records.units_of(m)
    plan_ = records.plan_of(m)
    out: dict[str, dict[str, dict[str, int]]] = {}
    tenants = sorted({u["tenant_id"] for u in plan_.get("units", [])} | {m.tenant_id})
    for t in tenants:
        out[t] = {}
        for name in dm.order:
            got = units.get(f"{t}/{name}", {})
            out[t][name] = {k: int(got.get(k, 0)) for k in rules.COUNTS}
            if got.get(GONE):  # planned, and no longer there when the request acted
                out[t][name][GONE] = int(got[GONE])
    return out


def _rectification_audit(m: RequestModel, tenant: Any) -> dict[str, Any]:
    """HMACs of the new value of each change and of the old values of each attribute it
    replaced: the audit proves what changed without holding either value."""
    changes = tenant.keys.decrypt(m.changes_enc) if m.changes_enc else {}
    old: dict[str, set[str]] = {}
    for u in (records.units_of(m)).values():
        for attr, refs in (u.get("old") or {}).items():
            old.setdefault(attr, set()).update(refs)
    return {"new": {name: sorted(rules.value_refs(tenant.keys, [value]))
                    for name, value in changes.items()},
            "old": {attr: sorted(refs) for attr, refs in sorted(old.items())}}


def _new_identities(m: RequestModel, tenant: Any) -> dict[str, str]:
    """The identities a rectification changes (kind -> the new, normalised value)."""
    if m.type != "rectification" or not m.changes_enc:
        return {}
    changes = tenant.keys.decrypt(m.changes_enc)
    return {k: str(v) for k, v in changes.items() if k in IDENTITY_KINDS and v}


def _new_refs(m: RequestModel, tenant: Any, plan_: dict[str, Any],
              ) -> dict[str, dict[str, str]]:
    """Per tenant the request reached, the HMAC of each rectified identity's new value."""
    new = _new_identities(m, tenant)
    return {t: {k: get_tenant(t).keys.hmac(k, v) for k, v in new.items()}
            for t in (plan_.get("identity_refs") or {m.tenant_id: {}})} if new else {}


Counts = dict[str, dict[str, dict[str, int]]]
"""What a request counted: tenant -> table -> count name -> number."""


@dataclass(frozen=True)
class Ending:
    """What one kind of request says as it ends; `finish_request` does the rest, the same way
    for every kind (an erasure, an anonymisation, a rectification, a restriction or objection,
    an access export)."""

    status: str
    counts: Counts
    totals: dict[str, int]
    found: bool
    #: what the audit entry records
    details: dict[str, Any]
    #: the steps after the audit entry (certificate, the requester's e-mail), each safe to
    #: repeat; returns what the result says beyond what every result says
    result: Callable[[audit.Entry], dict[str, Any]]
    #: the subject's events (Art. 17(2), 19), one for each tenant the request reached
    subject_events: tuple[str, ...] = ()
    event_fields: dict[str, Any] = field(default_factory=dict)
    #: what the result says right after `found` (what stays by design: retained, held)
    top: dict[str, Any] = field(default_factory=dict)
    #: the steps the audit entry's completion claims (an erasure's suppression entries and
    #: late archives), done before it is appended, each safe to repeat
    before: Callable[[], None] = lambda: None


def totals_of(counts: Counts, names: Iterable[str]) -> dict[str, int]:
    """Each count summed over every tenant and table."""
    return {k: sum(c[k] for t in counts.values() for c in t.values()) for k in names}


def io_of(m: RequestModel) -> dict[str, int]:
    """The request's AWS calls by operation; a Scan is always named, if only to say 0."""
    io = {k: int(v) for k, v in records.io_of(m).items()}
    io.setdefault("dynamodb.Scan", 0)
    return io


def once(m: RequestModel, units: dict[str, Any], unit_id: str,
         do: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """The outcome of a step of the finish, recorded as unit `unit_id`: a retried finish
    reuses it instead of doing the step again."""
    if unit_id in units:
        got: dict[str, Any] = units[unit_id]
        return got
    outcome = do()
    records.record_unit(m, unit_id, outcome, {})
    return outcome


def finish_request(request_id: str, tenant_id: str,
                   ending: Callable[[RequestModel], Ending]) -> dict[str, Any]:
    """How every request of one subject ends, in this order, each step safe to repeat (a
    retried finish finds what an earlier invocation of the same attempt recorded and goes on
    from there):

    1. `ending(m)`: what the request found and did, as the audit entry records it (for an
       erasure or objection after the consent ledger has changed: once, as unit `_consent`);
    2. `ending.before()`: the steps the completion entry claims done (an erasure's
       suppression entries and late archives): a failure there leaves no completion entry;
    3. the audit entry, once (unit `_audit`: a retried finish reuses it);
    4. `ending.result(entry)`: the steps after the entry (certificate, the requester's
       e-mail) and the fields of the result that are its own;
    5. the events to send written to the request's outbox (unit `_outbox`), and the request
       ended with its status and result, conditionally on this attempt being current and the
       request still open (a client that sees it completed can rely on 1-4);
    6. each event of the outbox sent once (claimed as `_sent:<n>` on the request's sent
       item, `records.send_once`);
    7. the request's work files deleted, last (nothing above needs them on a retry).

    A task of an attempt that is no longer current is refused before it does anything. A
    request ended by something else (cancelled) is left alone."""
    m = records.load(tenant_id, request_id)
    records.check_current(m)
    # this task's attempt and execution (the record may be retried before this step ends)
    attempt, arn = int(m.attempt or 1), m.execution_arn
    if m.status not in records.ENDED and not records.mark_finishing(m):
        # cancelled before Finish began (the cancel stands, nothing is written), or ended
        # meanwhile by a concurrent run of this same Finish (then it goes on below)
        m = records.load(tenant_id, request_id)
    units = records.units_of(m)
    again = m.status != records.FINISHING  # ended by an earlier run of this step
    if again:
        if "_outbox" not in units:  # ended by a cancel, not by this finish
            return {"status": m.status}
        status = str(units["_outbox"].get("status", m.status))
    else:
        status = _conclude(m, ending)
        m = records.load(tenant_id, request_id)
        units = records.units_of(m)
    outbox = units.get("_outbox", {}).get("events", [])
    sent = records.sent_of(m) if outbox else set()
    todo = [i for i in range(len(outbox)) if f"_sent:{i}" not in sent]
    if todo:  # the events not sent yet: claimed by one write, sent in one PutEvents
        records.send_once(m, [f"_sent:{i}" for i in todo],
                          functools.partial(_send, [outbox[i] for i in todo]))
    leftover = objects.delete_prefix(work_prefix(m))
    if leftover:
        logger.warning("work files left behind", extra={"request_id": request_id,
                                                         "left": leftover})
    logger.info("request finished", extra={"request_id": request_id, "status": status,
                                           "subject_ref": m.subject_ref})
    metering.last_step(arn, attempt, meter=_meter(m) if again else None)
    return {"status": status}


def _meter(m: RequestModel) -> dict[str, Any]:
    """The request's meter as it stands (read only by a last step run again)."""
    return records.meters_of(m.tenant_id, [m.request_id]).get(m.request_id, {})


def _send(events: list[dict[str, Any]]) -> None:
    outbound.emit_all([(ev["type"], ev["tenant_id"], dict(ev["detail"])) for ev in events])


def _conclude(m: RequestModel, ending: Callable[[RequestModel], Ending]) -> str:
    """Steps 1-5 of `finish_request`: the evidence, the outbox, the request ended."""
    request_id, tenant_id = m.request_id, m.tenant_id
    e = ending(m)
    e.before()
    got = once(m, records.units_of(m), "_audit", lambda: _audit(m, e.details))
    entry = audit.Entry(got["id"], got["hash"])
    own = e.result(entry)
    m = records.load(tenant_id, request_id)
    result: dict[str, Any] = {
        "found": e.found, **e.top, "tables": e.counts[tenant_id],
        "tenants": {t: {"tables": c} for t, c in e.counts.items() if t != tenant_id},
        "totals": e.totals, **own, "io": io_of(m),
        "queries_planned": records.plan_of(m).get("queries", 0), "audit_entry": entry.id}
    events = [{"type": detail_type, "tenant_id": t, "detail": {
        "request_id": request_id, "subject_ref": m.subject_ref, "type": m.type,
        "parent_tenant_id": tenant_id if t != tenant_id else None,
        "found": any(c["matched"] for c in e.counts[t].values()) or (
            t == tenant_id and e.found), **e.event_fields}}
        for t in e.counts for detail_type in e.subject_events]
    events.append({"type": "RequestCompleted", "tenant_id": tenant_id, "detail": {
        "request_id": request_id, "subject_ref": m.subject_ref, "type": m.type,
        "status": e.status}})
    try:
        records.end(m, e.status, result, outbox={"status": e.status, "events": events})
    except UpdateError:
        # a concurrent run of this Finish ended it first: its outbox and result stand
        m = records.load(tenant_id, request_id)
        if "_outbox" not in records.units_of(m):
            raise
        return str(records.units_of(m)["_outbox"].get("status", m.status))
    return e.status


def _audit(m: RequestModel, details: dict[str, Any]) -> dict[str, Any]:
    # one completion entry per request, whatever the attempts and deliveries of Finish
    entry = audit.append(m.tenant_id, f"{m.type}_completed", actor="oblio",
                         request_id=m.request_id, subject_ref=m.subject_ref, details=details,
                         once=f"{m.request_id}:completed")
    return {"id": entry.id, "hash": entry.hash}


def finish(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """Audit entry, certificate (erasure, anonymisation), suppression entries, events; the
    request completes."""
    return finish_request(request_id, tenant_id, lambda m: _subject_ending(m, action))


def _subject_ending(m: RequestModel, action: str) -> Ending:
    """What a subject workflow (erasure, anonymisation, subject update) says as it ends."""
    request_id, tenant_id = m.request_id, m.tenant_id
    dm = frozen_map(m)
    tenant = get_tenant(tenant_id)
    plan_ = records.plan_of(m)
    units = records.units_of(m)
    verification = units.get("_verification", {"passed": False, "reason": "not run"})
    counts = _counts(m, dm)
    totals = totals_of(counts, rules.COUNTS)
    gone = sum(c.get(GONE, 0) for tables in counts.values() for c in tables.values())
    if gone:
        totals[GONE] = gone
    status = outcome.status_of(verification)
    options = records.options_of(m)
    body: dict[str, Any] = {
        "found": totals["matched"] > 0,  # the ledger's records count too (below)
        "type": m.type, "verification_passed": verification.get("passed") is True,
        "total": totals["matched"],
        "counts": {t: {n: c for n, c in tables.items() if c["matched"]}
                   for t, tables in counts.items()}}
    if action == "rectify":
        body.update(_rectification_audit(m, tenant))
    if action == "object":
        body["purposes"] = options.get("purposes") or ["marketing"]
    # the consent ledger: an erasure removes the subject's records, an objection records the
    # withdrawals (once: a retried finish reuses the outcome)
    consented = units.get("_consent") or {}
    if action in ("erase", "object") or (action == "rectify" and _new_identities(m, tenant)):
        consented = once(m, units, "_consent", lambda: ledger.on_request_finished(
            m, action, plan_.get("identity_refs", {}), body.get("purposes") or [],
            new_refs=_new_refs(m, tenant, plan_)))
    if action == "rectify" and consented.get("moved") is not None:
        # the ledger follows the rectified identity (counted; the audit holds no value)
        body["consent_records_moved"] = sum(consented["moved"].values())
    if action == "erase":
        body["consent_records_deleted"] = sum(consented.get("deleted", {}).values())
        body["archives_deleted"] = int((units.get(f"{tenant_id}/{exports.UNIT}") or {})
                                       .get("archives_deleted", 0))
    found = body["found"] = outcome.found(totals["matched"],
                                          int(body.get("consent_records_deleted", 0))
                                          + int(body.get("archives_deleted", 0)))
    exempt = outcome.exemptions(dm, counts, units) if action in ("erase", "anonymise") \
        else None
    if exempt and (exempt["retained"] or exempt["held"]):
        # the audit says what stays and under which law; the reasons are the certificate's
        body["retained"], body["held"] = exempt["retained"], exempt["held"]
        body["legal_bases"] = sorted({e["legal_basis"] for e in exempt.get("exemptions", [])})

    # what the steps before the audit entry did (filled once per finish run)
    done: dict[str, Any] = {}

    def before() -> None:
        if done:
            return
        refs = plan_.get("identity_refs", {})
        suppressed = asked = 0
        # a subject found nowhere was not erased: the suppression list would say it was
        if (action == "erase" and found) or \
                (action == "object" and "marketing" in body["purposes"]):
            reason = "erasure" if action == "erase" else "objection:marketing"
            for t, kinds in refs.items():
                # dated by her verification, after the deletions: a retried finish writes
                # the same entries (an export filed since is not taken for one running then)
                suppressed += suppression.add(t, kinds, reason=reason, request_id=request_id,
                                              at=verification.get("at"))
                asked += suppression.entries_of(kinds)
        # once her suppression entries are written (an export beside an erasure that found
        # nothing is not withdrawn: nor is its archive taken here)
        late = once(m, units, "_late_archives", lambda: _late_archives(m, units, plan_)) \
            if action == "erase" and found else None
        done.update(suppressed=suppressed, asked=asked, late=late)

    def result(entry: audit.Entry) -> dict[str, Any]:
        before()
        suppressed, asked, late = done["suppressed"], done["asked"], done["late"]
        out: dict[str, Any] = {"verification": verification}
        if action in ("erase", "anonymise"):
            cert = certificate(
                request_id=request_id, tenant_id=tenant_id, type_=m.type or "",
                subject_ref=m.subject_ref or "", tables=counts[tenant_id],
                tenants={t: c for t, c in counts.items() if t != tenant_id},
                verification=verification, suppressed=suppressed,
                started_at=plan_.get("started_at"), entry=entry,
                datamap_digest=plan_.get("datamap_digest"))
            out["certificate"] = {"found": found, **(exempt or {}), **cert}
            if not found:
                out["certificate"]["statement"] = outcome.NOT_FOUND_STATEMENT
        if action == "erase":
            out["certificate"]["consent_records_deleted"] = body["consent_records_deleted"]
            # the subject's unexpired access-export archives, every version deleted
            out["certificate"]["archives_deleted"] = body["archives_deleted"]
            # read again once the suppression entries were written: an export that was still
            # writing its archive when the erasure was planned (not in the audit entry)
            out["certificate"]["late_archives"] = late
        if action in ("erase", "anonymise"):
            # items past their DynamoDB TTL not deleted yet: planned and acted on like the
            # rest (counted in the tables' figures too)
            out["certificate"]["expired_items_included"] = int(plan_.get("expired_items", 0))
        if consented:
            out["consent"] = consented
        if suppressed:
            out["suppression_entries"] = suppressed
        if action == "object" and asked > suppressed:
            # her identities' entries that say she was erased, left as they are
            out["suppression_entries_erased"] = asked - suppressed
        if not any((plan_.get("found") or {}).values()):
            out["message"] = "no item of the subject was found in any mapped table" + (
                ": nothing was erased and the subject was not added to the suppression list"
                if action == "erase" and not found else "")
        elif exempt and outcome.exemption_message(exempt):
            out["message"] = outcome.exemption_message(exempt)
        elif action == "anonymise" and totals["anonymised"] + totals["deleted"] == 0:
            out["message"] = "the subject was already anonymised: nothing changed"
        elif gone:
            out["message"] = (f"{gone} planned item(s) were no longer there when the request "
                              "acted: nothing was done to them (see gone)")
        return out

    return Ending(status=status, counts=counts, totals=totals, found=found,
                  details=body, result=result, subject_events=SUBJECT_EVENTS.get(action, ()),
                  event_fields={"purposes": body["purposes"]} if action == "object" else {},
                  top=exempt or {}, before=before)


def _late_archives(m: RequestModel, units: dict[str, Any],
                   plan_: dict[str, Any]) -> dict[str, int]:
    """The subject's archives indexed since her erasure was planned, read after her
    suppression entries were written and deleted (`exports.late_archives`, which raises
    TransientError over one left), summed over her tenants. What a tenant's read finds is
    noted first (unit `_late_noted`, written at once): a finish retried after the deletion
    counts it still."""
    noted: dict[str, Any] = dict(units.get(LATE_NOTED) or {})

    def note(t: str) -> Callable[[list[list[dict[str, str]]]], None]:
        def write(late: list[list[dict[str, str]]]) -> None:
            noted[t] = late[0]
            with records.written_now():
                records.record_unit(m, LATE_NOTED, dict(noted), {})
        return write

    for t, kinds in sorted((plan_.get("identity_refs") or {}).items()):
        if kinds:
            exports.late_archives(t, [kinds], noted=[noted[t]] if t in noted else None,
                                  note=note(t))
    # each archive once, whichever of her tenants' indexes named it (a family export's):
    # every archive found was noted, and deleted (one left raises)
    found = len({(a["tenant_id"], a["request_id"]) for late in noted.values() for a in late})
    return {"found": found, "deleted": found, "left": 0}


#: the unit of the archives an erasure's late read found, noted before it deleted them
LATE_NOTED = "_late_noted"


def fail(request_id: str, tenant_id: str, error: dict[str, Any]) -> dict[str, Any]:
    """Record the failure that the state machine caught; `retry` resumes from here.

    Fenced: only the request's current attempt, still open, is marked failed (a stale
    failure of an earlier attempt never overwrites a newer one); the audit entry and the
    `RequestFailed` event go out once per attempt, however often this step is retried."""
    m = records.load(tenant_id, request_id)
    if m.status in records.ENDED:
        if m.status != "cancelled" and records.is_current(m):
            # ended by Finish, which failed after it: this is the run's last task
            metering.last_step(m.execution_arn, int(m.attempt or 1), after=1, meter=_meter(m))
        return {"status": m.status}
    records.check_current(m)
    code, message = caught(error)
    attempt, arn = int(m.attempt or 1), m.execution_arn  # this task's (a retry may follow)
    again = m.status == "failed"  # this step run again
    if m.status != "failed":
        failure = {"code": code, "message": message, "at": clock.iso(), "attempt": attempt}
        try:
            records.fenced_update(m, [
                RequestModel.status.set("failed"), RequestModel.error.set(failure),
                RequestModel.timeline.set(RequestModel.timeline.append([records.event(
                    event="failed", code=code, attempt=attempt)])),
            ], condition=RequestModel.status.is_in(*records.OPEN, records.FINISHING))
        except UpdateError:  # ended (or cancelled) meanwhile: its end stands
            return {"status": records.load(tenant_id, request_id).status}
        count("RequestsCompleted", type=m.type or "", status="failed")
    m = records.load(tenant_id, request_id)
    code = str((plain(m.error) or {}).get("code", code))
    units = records.units_of(m)
    once(m, units, f"_failed_audit:{attempt}", lambda: _audit_failure(m, code))
    once(m, units, f"_failed_event:{attempt}", lambda: _failure_event(m, code))
    logger.warning("request failed", extra={"request_id": request_id, "code": code,
                                            "attempt": attempt})
    # and the Fail state after this one; once, however often the step runs
    metering.last_step(arn, attempt, after=1, meter=_meter(m) if again else None)
    return {"status": "failed"}


def _audit_failure(m: RequestModel, code: str) -> dict[str, Any]:
    entry = audit.append(m.tenant_id, "request_failed", actor="oblio",
                         request_id=m.request_id, subject_ref=m.subject_ref,
                         details={"code": code, "attempt": int(m.attempt or 1)},
                         once=f"{m.request_id}:failed:{int(m.attempt or 1)}")
    return {"id": entry.id}


def _failure_event(m: RequestModel, code: str) -> dict[str, Any]:
    outbound.emit("RequestFailed", m.tenant_id, request_id=m.request_id,
                  subject_ref=m.subject_ref, type=m.type, code=code)
    return {"sent": True}
