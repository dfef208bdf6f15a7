"""Retention sweeps (GDPR Art. 5(1)(e), storage limitation): a tenant's rules, applied every
night with nobody watching.

A policy names a mapped table, a date attribute, an age (an ISO 8601 duration), an action
(`anonymise`, `delete`, `export_then_delete`, `export_only`), an optional equality filter and
a legal-hold attribute: items on hold are skipped and counted. A sweep is one run of a policy,
the tasks of `statemachines/retention_sweep.asl.json`:

- `find`: queries the table's sweep index (partition `<tenant>#<YYYY-MM>`, sort key the date)
  bucket by bucket up to the cutoff, a few buckets at once, page by page, and writes the
  candidates' keys as chunk manifests to the work bucket. Its progress (each bucket's resume
  point) moves with each chunk written, so a retried or resumed find goes on where it stopped.
  A table without an index uses the fallback its data map declares: a parallel segmented Scan.
- `apply_chunk`: one chunk through the same engine as single requests (`rules.apply_unit`,
  then `rules.remaining_keys` to check); its outcome is written once, so a chunk is never
  done or counted twice.
- `report`: the counts in a JSON report in S3, an audit entry, a `RetentionSweepCompleted`
  event; the policy's lock is released.
- `fail`: records the failure; the policy's next run resumes the same sweep.

A resumed sweep is a new run (`attempt`) whose execution carries its number to every task:
a task of the run that failed (Step Functions runs a task again after a timeout) writes
nothing to the sweep, releases no lock and counts only its own run's end (`chunks.stale`,
`chunks.write_on_run`). A run whose StartExecution failed is recorded failed at once (the
policy's next run resumes it), never left `running` with nothing running.

The work prefix, the chunk manifests and their index, the Map's input, a chunk recorded once
and the failure step are the chunked pipeline that bulk erasure shares (`jobs.chunks`).

Two sweeps of one policy never run at once: a conditional write takes the policy's lock (a
second run is refused with 409 `sweep_running`). Payloads, logs, events and the audit carry
counts and references, never an item's content.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from pynamodb.exceptions import DeleteError, DoesNotExist, PutError
from ulid import ULID

from oblio.control import audit, metering, records
from oblio.control.tenants import Principal, get_tenant
from oblio.core import clock, datamap, meter
from oblio.core.bodies import POLICY_ACTIONS, POLICY_SCOPES, PolicyBody, RunBody, parse
from oblio.core.boundary import SweepEvent
from oblio.core.datamap import DataMap, TableMap
from oblio.core.errors import Conflict, Invalid, NotFound, OblioError
from oblio.core.observability import count, gauge, logger
from oblio.core.settings import get_settings
from oblio.jobs import chunks
from oblio.jobs.candidates import Finder
from oblio.pipeline import apply, find, rules, verify
from oblio.pipeline import plan as planner
from oblio.store import aws, objects, outbound, workflows
from oblio.store import tables as store
from oblio.store.models import RetentionPolicyModel, RetentionSweepModel, TenantModel, plain

ACTIONS = POLICY_ACTIONS
FIELDS = ("table", "date_attribute", "older_than", "action", "filter", "hold_attribute",
          "enabled", "description", "scope")
#: "items": the action applies to the table's items found; "subjects": each item found names a
#: subject (its identity attributes), and the action applies to all of the subject's items in
#: every mapped table, through the same walk and engine as a single request
SCOPES = POLICY_SCOPES
#: what a find counts, then what the chunks count
FIND_COUNTS = ("candidates", "on_hold", "filtered_out", "already_done", "expired")
APPLY_COUNTS = ("matched", "anonymised", "deleted", "kept", "held", "retained", "exported",
                "files_deleted", "items_remaining", "files_remaining", "subjects")
_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DURATION = re.compile(r"^P(?=\d|T\d)(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?"
                       r"(?:T(?=\d)(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?)?$")
#: a lock older than this is taken over (its holder died without releasing it)
LOCK_SECONDS = 6 * 3600
#: a failed sweep is resumed within this window; later its manifests have expired (the work
#: bucket keeps files a day) and the next run starts afresh (which does nothing twice either:
#: what was done has left the index or carries the anonymisation marker)
RESUME_HOURS = 20
#: one find invocation stops after this many chunks or seconds and the state machine calls
#: it again (page by page, never a whole table in one Lambda)
FIND_MAX_CHUNKS = 100
FIND_MAX_SECONDS = 600.0
#: month buckets queried at once
PARALLEL_BUCKETS = 4


class SweepIncomplete(OblioError):
    code = "sweep_incomplete"


# -- durations and cutoffs ---------------------------------------------------------------------

class Duration(NamedTuple):
    """An ISO 8601 duration as calendar months and the rest (weeks, days, time)."""

    months: int
    rest: timedelta


def parse_duration(text: Any) -> Duration:
    """An ISO 8601 duration ("P18M", "P30D", "P2Y6M", "PT12H") as its months and the rest;
    raises ValueError for anything else or a zero duration."""
    m = _DURATION.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(text)
    y, mo, w, d, h, mi, s = (int(g) if g else 0 for g in m.groups())
    months, rest = y * 12 + mo, timedelta(weeks=w, days=d, hours=h, minutes=mi, seconds=s)
    if not months and not rest:
        raise ValueError(text)
    return Duration(months, rest)


def cutoff_of(older_than: Any, now: datetime | None = None) -> datetime:
    """Items dated before this are past the policy: `older_than` is a duration back from now
    ("P18M") or a fixed date ("2025-01-01": everything dated before it)."""
    if isinstance(older_than, str) and _DATE.match(older_than):
        return datetime.strptime(older_than, "%Y-%m-%d").replace(tzinfo=UTC)
    months, rest = parse_duration(older_than)
    return clock.add_months(now or clock.now(), -months) - rest


# -- policies ----------------------------------------------------------------------------------

def _anonymisable(t: TableMap) -> bool:
    return t.on_anonymise == "anonymise" and any(
        (a.anonymise or "keep") != "keep" for n, a in t.attributes.items()
        if n not in t.key.names)


def validate(dm: DataMap, body: PolicyBody | Mapping[str, Any]) -> dict[str, Any]:
    """A policy's spec from a request body (its shape is `PolicyBody`'s), checked against the
    data map; Invalid (422) names the first bad field."""
    if not isinstance(body, PolicyBody):
        body = parse(PolicyBody, body)
    given = body.model_fields_set
    name = body.table
    if name not in dm.tables:
        raise Invalid("table", f"table must name a mapped table: one of "
                               f"{', '.join(sorted(dm.tables))}", code="unmapped_table")
    t = dm.tables[name]
    known = set(t.attributes) | set(t.key.names)
    sw = t.sweep
    date_attr = body.date_attribute or (sw.date_attribute if sw else None)
    if not isinstance(date_attr, str) or date_attr not in known:
        raise Invalid("date_attribute", f"date_attribute must be a mapped attribute of table "
                      f"'{name}' holding a date", code="unmapped_attribute")
    indexed = bool(sw and sw.index and sw.date_attribute == date_attr)
    if not indexed and not (sw and sw.scan_segments):
        raise Invalid("date_attribute", f"table '{name}' has no sweep index on '{date_attr}' "
                      "and its data map entry declares no Scan fallback (sweep: "
                      "{scan_segments: N}); add one of them to the data map",
                      code="not_sweepable")
    older = body.older_than
    try:
        cutoff = cutoff_of(older)
    except (ValueError, TypeError):
        raise Invalid("older_than", "older_than must be an ISO 8601 duration such as P18M, "
                      "P30D, P2Y or P1Y6M, or a date (2025-01-01: what is dated before it)",
                      code="invalid_duration") from None
    if cutoff > clock.now():
        # a cutoff after today catches every item, the ones of yesterday included
        raise Invalid("older_than", "older_than is a date after today: every item would be "
                      "older than it; give a past date, or a duration such as P18M",
                      code="cutoff_in_future")
    action = body.action
    if action == "anonymise" and not _anonymisable(t):
        raise Invalid("action", f"table '{name}' has no anonymise rules (its items are deleted "
                      "or kept as they are): use delete or export_then_delete",
                      code="action_not_allowed")
    flt = dict(body.filter or {})
    for attr in flt:
        if attr not in known:
            raise Invalid("filter", f"filter names an attribute that is not a mapped "
                          f"attribute of table '{name}' (it is not repeated here); mapped: "
                          f"{', '.join(sorted(known))}", code="unmapped_attribute")
    hold = body.hold_attribute if "hold_attribute" in given else \
        ("legal_hold" if "legal_hold" in known else None)
    if hold is not None and hold not in known:
        raise Invalid("hold_attribute", f"hold_attribute must be a mapped attribute of table "
                      f"'{name}' (items where it is true are skipped), or null",
                      code="unmapped_attribute")
    scope = body.scope
    if scope == "subjects":
        if action not in ("anonymise", "delete"):
            raise Invalid("action", "a policy over whole subjects anonymises or deletes them "
                          "(erasure rules); exports are per item", code="action_not_allowed")
        if not any(f.identity for f in t.find):
            raise Invalid("scope", f"table '{name}' is not found by an identity, so its items "
                          "do not name a subject: use scope items", code="not_a_subject_table")
    return {"table": name, "date_attribute": date_attr, "older_than": older, "action": action,
            "filter": flt, "hold_attribute": hold, "enabled": body.enabled,
            "description": body.description, "scope": scope,
            "finder": "index" if indexed else "scan"}


def _policy_sk(policy_id: str) -> str:
    return f"policy#{policy_id}"


def policy_json(p: RetentionPolicyModel) -> dict[str, Any]:
    spec = (plain(p.spec) or {})
    return {"id": p.policy_id, **{k: spec.get(k) for k in FIELDS}, "finder": spec.get("finder"),
            "updated_at": p.updated_at, "last_sweep_id": p.last_sweep_id,
            "resume_sweep_id": p.resume_sweep}



def load_policy(tenant_id: str, policy_id: str) -> RetentionPolicyModel:
    try:
        return RetentionPolicyModel.get(tenant_id, _policy_sk(policy_id), consistent_read=True)
    except DoesNotExist:
        raise NotFound("no retention policy with this id in this tenant") from None


def delete_policy(tenant_id: str, policy_id: str, actor: str) -> dict[str, Any]:
    """DELETE /v1/retention-policies/{id}: the policy goes (its sweeps stay, as evidence);
    refused (409) while a sweep of it runs; an unknown policy is 404."""
    p = load_policy(tenant_id, policy_id)
    try:
        lock = RetentionSweepModel.get(tenant_id, f"lock#{policy_id}", consistent_read=True)
        if (lock.expires or 0) >= int(clock.now().timestamp()):
            raise Conflict("a sweep of this policy is running; wait for it to finish "
                           "(GET /v1/retention-sweeps/{sweep_id}), then delete the policy",
                           code="sweep_running", details={"sweep_id": lock.sweep_id})
    except DoesNotExist:
        pass
    try:
        p.delete(condition=RetentionPolicyModel.sk.exists())
    except DeleteError:
        raise NotFound("no retention policy with this id in this tenant") from None
    audit.append(tenant_id, "retention_policy_deleted", actor=actor,
                 details={"policy_id": policy_id})
    return {"id": policy_id, "deleted": True, "last_sweep_id": p.last_sweep_id}


def list_policies(tenant_id: str) -> dict[str, Any]:
    rows = RetentionPolicyModel.query(tenant_id, RetentionPolicyModel.sk.startswith("policy#"))
    return {"items": [policy_json(p) for p in rows], "next_cursor": None}


class Saved(NamedTuple):
    """A policy as stored, and whether it is new (else it replaced one)."""

    policy: dict[str, Any]
    created: bool


def put_policy(tenant_id: str, policy_id: str, body: PolicyBody | Mapping[str, Any],
               actor: str, dm: DataMap | None = None) -> Saved:
    """Create or replace a policy."""
    if not _ID.match(policy_id):
        raise Invalid("id", "a policy id is 1-63 lower-case letters, digits, '-' or '_'")
    spec = validate(dm or datamap.current(), body)
    try:
        old = load_policy(tenant_id, policy_id)
    except NotFound:
        old = None
    p = RetentionPolicyModel(tenant_id=tenant_id, sk=_policy_sk(policy_id),
                             policy_id=policy_id, spec=spec, updated_at=clock.iso(),
                             updated_by=actor,
                             last_sweep_id=old.last_sweep_id if old else None,
                             resume_sweep=old.resume_sweep if old else None)
    p.save()
    audit.append(tenant_id, "retention_policy_changed", actor=actor,
                 details={"policy_id": policy_id, **{k: spec[k] for k in
                                                     ("table", "older_than", "action",
                                                      "enabled")}})
    return Saved(policy_json(p), created=old is None)


#: the demo tenant's rules (the local stack writes them with the demo data)
DEMO_POLICIES: dict[str, dict[str, Any]] = {
    "inactive-contacts": {
        "table": "contacts", "date_attribute": "last_activity_at", "older_than": "P18M",
        "action": "anonymise", "hold_attribute": "legal_hold",
        "description": "anonymise contacts inactive for 18 months"},
    "ticket-trash": {
        "table": "tickets", "date_attribute": "deleted_at", "older_than": "P30D",
        "action": "delete", "hold_attribute": "legal_hold",
        "description": "delete tickets 30 days after they were soft-deleted"},
    "old-email-events": {
        "table": "email_events", "date_attribute": "at", "older_than": "P24M",
        "action": "delete", "hold_attribute": None,
        "description": "delete e-mail opens and clicks after 24 months"},
}


def seed_demo_policies(tenant_id: str) -> None:
    for policy_id, body in DEMO_POLICIES.items():
        put_policy(tenant_id, policy_id, body, actor="oblio-demo")


# -- a policy's dry run -----------------------------------------------------------------------

def dry_run(tenant_id: str, policy_id: str, audited: bool = True) -> dict[str, Any]:
    """What a run would do now, counted through the same finder; changes nothing. Audited
    (`retention_dry_run`) unless `audited` is false (the replay of an answered dry run)."""
    p = load_policy(tenant_id, policy_id)
    spec = (plain(p.spec) or {})
    dm = datamap.current()
    cutoff = clock.iso(cutoff_of(spec["older_than"]))
    finder = Finder(dm, tenant_id, spec, cutoff, page=1000)
    counts = dict.fromkeys(FIND_COUNTS, 0)
    acting = 0
    state = finder.initial_state()
    width = PARALLEL_BUCKETS if finder.index else finder.sweep.scan_segments
    with aws.counting() as io, ThreadPoolExecutor(width) as pool:
        while state:
            acting += len(finder.classify(finder.round(state, pool, width), counts))
    table = {**counts, "would_" + spec["action"]: acting}
    if audited:
        audit.append(tenant_id, "retention_dry_run", actor="oblio",
                     details={"policy_id": policy_id, "cutoff": cutoff, "tables":
                              {spec["table"]: table}})
    return {"dry_run": True, "policy_id": policy_id, "action": spec["action"],
            "cutoff": cutoff, "finder": spec.get("finder"), "tables": {spec["table"]: table},
            "io": io.as_dict()}


# -- sweeps ------------------------------------------------------------------------------------

def _run_sk(sweep_id: str) -> str:
    return f"run#{sweep_id}"


def _work(tenant_id: str, sweep_id: str) -> chunks.Work:
    return chunks.Work(tenant_id, "sweeps", sweep_id)


def load_sweep(tenant_id: str, sweep_id: str) -> RetentionSweepModel:
    try:
        return RetentionSweepModel.get(tenant_id, _run_sk(sweep_id), consistent_read=True)
    except DoesNotExist:
        raise NotFound("no retention sweep with this id in this tenant") from None


def _lock(tenant_id: str, policy_id: str, sweep_id: str, attempt: int) -> None:
    """Take the policy's lock for the run `attempt` of `sweep_id`, or raise Conflict naming
    the sweep holding it."""
    now = int(clock.now().timestamp())
    lock = RetentionSweepModel(tenant_id=tenant_id, sk=f"lock#{policy_id}", sweep_id=sweep_id,
                               policy_id=policy_id, expires=now + LOCK_SECONDS,
                               attempt=attempt)
    try:
        lock.save(condition=RetentionSweepModel.sk.does_not_exist()
                  | (RetentionSweepModel.expires < now))
    except PutError as exc:
        if "ConditionalCheckFailed" not in str(exc):
            raise
        try:
            holder = RetentionSweepModel.get(tenant_id, f"lock#{policy_id}",
                                             consistent_read=True).sweep_id
        except DoesNotExist:  # released meanwhile: let the caller try again
            holder = None
        raise Conflict(f"a sweep of policy {policy_id!r} is running; wait for it to finish "
                       "(GET /v1/retention-sweeps/{sweep_id})", code="sweep_running",
                       details={"sweep_id": holder}) from None


def _unlock(tenant_id: str, policy_id: str, sweep_id: str, attempt: int) -> None:
    """Release the lock of the run `attempt` of `sweep_id`. Another sweep's lock, the lock
    of another run of this one (a step of run n, run again after the sweep was resumed:
    the new run's lock stays), or none: nothing to release. A lock taken by an earlier
    release names no run (0)."""
    with contextlib.suppress(DeleteError):
        RetentionSweepModel(tenant_id=tenant_id, sk=f"lock#{policy_id}",
                            sweep_id=sweep_id).delete(
            condition=(RetentionSweepModel.sweep_id == sweep_id)
            & RetentionSweepModel.attempt.is_in(attempt, 0))


def start(tenant_id: str, policy_id: str, trigger: str) -> dict[str, Any]:
    """Start a sweep of the policy, or resume the one that failed; refused (409) while
    another sweep of the policy runs."""
    p = load_policy(tenant_id, policy_id)
    resume = None
    if p.resume_sweep:
        try:
            old = load_sweep(tenant_id, p.resume_sweep)
            age = clock.now() - clock.parse(old.created_at or clock.iso())
            if old.status == "failed" and age < timedelta(hours=RESUME_HOURS):
                resume = old
        except NotFound:
            pass
    sweep_id = resume.sweep_id if resume else str(ULID())
    n = chunks.run_of(resume) + 1 if resume is not None else 1
    _lock(tenant_id, policy_id, sweep_id, n)
    try:
        if resume is not None:
            m = resume
            m.update(actions=[RetentionSweepModel.status.set("running"),
                              RetentionSweepModel.attempt.add(1),
                              RetentionSweepModel.error.remove(),
                              RetentionSweepModel.audit_entry.remove()])
        else:
            spec = (plain(p.spec) or {})
            m = RetentionSweepModel(
                tenant_id=tenant_id, sk=_run_sk(sweep_id), sweep_id=sweep_id,
                policy_id=policy_id, policy=spec, status="running", trigger=trigger,
                cutoff=clock.iso(cutoff_of(spec["older_than"])), created_at=clock.iso(),
                attempt=1, counts=dict.fromkeys(FIND_COUNTS, 0), io={}, chunks=0)
            m.save()
        p.update(actions=[RetentionPolicyModel.last_sweep_id.set(sweep_id),
                          RetentionPolicyModel.resume_sweep.remove()])
        metering.bill_to(SweepEvent(tenant_id=tenant_id, sweep_id=sweep_id))
        try:
            workflows.start("retention_sweep", f"sweep-{sweep_id}-{n}",
                            {"tenant_id": tenant_id, "sweep_id": sweep_id, "attempt": n})
        except Exception as exc:
            # nothing runs: the sweep is failed now (the policy's next run resumes it), not
            # `running` for good with nothing running
            reason = (f"start_failed: the sweep's workflow did not start "
                      f"({type(exc).__name__}); run the policy again to resume it")
            chunks.started_nothing(lambda: _record_failure(m, n, "start_failed", reason), n)
            raise
        metering.started(n)
    except Exception:
        _unlock(tenant_id, policy_id, sweep_id, n)
        raise
    audit.append(tenant_id, "retention_sweep_started", actor=trigger,
                 details={"sweep_id": sweep_id, "policy_id": policy_id,
                          "resumed": resume is not None})
    logger.info("retention sweep started", extra={"sweep_id": sweep_id,
                                                   "policy_id": policy_id})
    return {"sweep_id": sweep_id, "policy_id": policy_id, "status": "running",
            "resumed": resume is not None}


class Ran(NamedTuple):
    """A run of a policy: a dry run's report (answered at once), or the sweep `started`."""

    body: dict[str, Any]
    started: bool


def run(principal: Principal, policy_id: str, body: RunBody, audited: bool = True) -> Ran:
    """POST /v1/retention-policies/{id}/run: a dry run (at once; audited unless `audited` is
    false) or a sweep (started)."""
    dry = body.dry_run
    if dry:
        return Ran(dry_run(principal.tenant_id, policy_id, audited=audited), started=False)
    if not body.confirm:
        load_policy(principal.tenant_id, policy_id)  # an unknown policy is 404 all the same
        raise Invalid("confirm", "a sweep is irreversible: send {\"confirm\": true} to run "
                                 "it, or {\"dry_run\": true} to see what it would do",
                      code="confirmation_required")
    return Ran(start(principal.tenant_id, policy_id, trigger=f"api:{principal.key_id}"),
               started=True)


#: what a scheduled sweep's figures leave out: the nightly pass's part that no one sweep caused
SCHEDULE_SHARED = ("the nightly schedule's own invocation and its listing of tenants, their "
                   "policies and overdue requests, one pass shared by every sweep it starts "
                   "(the start of this sweep is counted)",)


def run_scheduled() -> dict[str, Any]:
    """The nightly schedule: a sweep of every enabled policy of every tenant; a policy whose
    sweep still runs is skipped (its lock says so)."""

    started, skipped, failed, overdue = 0, 0, 0, 0
    # the tenants table is oblio's own, small: listing it is not a scan of a tenant's data
    for tenant in TenantModel.scan(attributes_to_get=["tenant_id"]):
        # the same nightly pass counts overdue requests (Art. 12(3)) for the alarm
        late = records.overdue_count(tenant.tenant_id)
        gauge("OverdueRequests", late)
        overdue += late
        for p in RetentionPolicyModel.query(tenant.tenant_id,
                                            RetentionPolicyModel.sk.startswith("policy#")):
            if not (plain(p.spec) or {}).get("enabled", True):
                continue
            try:
                with metering.invocation(kind="share"):  # counted to the sweep it starts
                    start(tenant.tenant_id, p.policy_id, trigger="schedule")
                started += 1
            except Conflict:
                skipped += 1
            except Exception as exc:  # noqa: BLE001 - one policy's failure stops no other's
                # recorded on the sweep when it was made (`start_failed`); the next night, or
                # a run through the API, resumes it
                failed += 1
                logger.warning("retention sweep not started",
                               extra={"tenant_id": tenant.tenant_id, "policy_id": p.policy_id,
                                      "raised": type(exc).__name__})
    if failed:
        count("RetentionSweepStartFailures", failed)
    logger.info("retention schedule", extra={"started": started, "skipped": skipped,
                                             "failed": failed, "overdue_requests": overdue})
    return {"started": started, "skipped": skipped, "failed": failed,
            "overdue_requests": overdue}


def find_candidates(tenant_id: str, sweep_id: str, attempt: int | None = None,
                    ) -> dict[str, Any]:
    """Find candidates, write chunk manifests; stops after a budget of chunks or seconds
    (`done` false: the state machine calls again). Progress is saved with each chunk, by a
    task of the sweep's current run only (`attempt`)."""
    s = get_settings()
    m = load_sweep(tenant_id, sweep_id)
    if _stale(m, attempt):
        return {**_STALE, "done": True, "chunks": 0}  # its run ends, doing nothing
    if m.find_done:
        return _map_input(m)
    spec = (plain(m.policy) or {})
    dm = datamap.current()
    finder = Finder(dm, tenant_id, spec, m.cutoff or "", page=0)
    width = PARALLEL_BUCKETS if finder.index else finder.sweep.scan_segments
    finder.page = max(1, s.retention_chunk_size // width)
    state: dict[str, Any] = (plain(m.find_state) or {}) if m.find_state is not None \
        else finder.initial_state()
    counts = {k: int(v) for k, v in (plain(m.counts) or {}).items()}
    for k in FIND_COUNTS:
        counts.setdefault(k, 0)
    io_total = {k: int(v) for k, v in (plain(m.io) or {}).items()}
    n = int(m.chunks or 0)
    t = dm.tables[spec["table"]]
    work = _work(tenant_id, sweep_id)
    began, written = time.monotonic(), 0
    buffer: list[dict[str, Any]] = []
    with ThreadPoolExecutor(width) as pool:
        while True:
            with aws.counting() as io:
                if state:
                    buffer += finder.classify(finder.round(state, pool, width), counts)
                last = not state
                flush = buffer and (len(buffer) >= s.retention_chunk_size or last)
                if flush:
                    work.put_chunk(n, chunk_manifest(dm, t, buffer, tenant_id))
                    n, written, buffer = n + 1, written + 1, []
            for k, v in io.calls.items():
                io_total[k] = io_total.get(k, 0) + v
            # the resume point moves only with an empty buffer: nothing read is lost
            if (flush or last) and not chunks.write_on_run(
                    m, [RetentionSweepModel.find_state.set(state),
                        RetentionSweepModel.counts.set(counts),
                        RetentionSweepModel.chunks.set(n),
                        RetentionSweepModel.io.set(io_total)], attempt):
                return {**_STALE, "done": True, "chunks": 0}
            if last:
                break
            if not buffer and (written >= FIND_MAX_CHUNKS or
                               time.monotonic() - began > FIND_MAX_SECONDS):
                return {"done": False, "chunks": n}
    index = work.write_index(work.chunk(i) for i in range(n))
    if not chunks.write_on_run(m, [RetentionSweepModel.find_done.set(True),
                                   RetentionSweepModel.index_key.set(index)], attempt):
        return {**_STALE, "done": True, "chunks": 0}
    logger.info("retention candidates found", extra={"sweep_id": sweep_id, "chunks": n,
                                                     **counts})
    return _map_input(load_sweep(tenant_id, sweep_id))


def _map_input(m: RetentionSweepModel) -> dict[str, Any]:
    return chunks.map_input(int(m.chunks or 0), m.index_key,
                            get_settings().retention_concurrency, done=True)


def _chunk_sk(sweep_id: str, chunk_key: str) -> str:
    return f"chunk#{sweep_id}#{chunks.chunk_name(chunk_key)}"


def apply_chunk(tenant_id: str, sweep_id: str, chunk_key: str, attempt: int | None = None,
                ) -> dict[str, Any]:
    """Apply the policy's action to one chunk through the engine, check it, record the
    outcome once; a chunk already recorded, or a task of an earlier run, is skipped."""
    m = load_sweep(tenant_id, sweep_id)
    if _stale(m, attempt):
        return {**_STALE, "chunk": chunk_key, "skipped": True}
    sk = _chunk_sk(sweep_id, chunk_key)
    try:
        RetentionSweepModel.get(tenant_id, sk, consistent_read=True)
        return {"chunk": chunk_key, "skipped": True}
    except DoesNotExist:
        pass
    spec = (plain(m.policy) or {})
    dm = datamap.current()
    tenant = get_tenant(tenant_id)
    t = dm.tables[spec["table"]]
    unit = rules.Unit(tenant_id, spec["table"])
    marker = f"sweep:{sweep_id}"
    action = spec["action"]
    counts = dict.fromkeys(APPLY_COUNTS, 0)
    with aws.counting() as io:
        manifest = objects.get_json(chunk_key)
        if action in ("export_only", "export_then_delete"):
            counts["exported"] = _export(tenant, t, sweep_id, sk, manifest["keys"])
        if spec.get("scope") == "subjects":
            _apply_subjects(dm, tenant, t, action, manifest, marker, counts)
        elif action == "export_only":
            counts["matched"] = counts["kept"] = len(manifest["keys"])
        else:
            # anonymised items all get the same pseudonyms: no link between them is kept
            act = "anonymise" if action == "anonymise" else "purge"
            got = apply.apply_unit(dm, act, unit, manifest, tenant.keys,
                                    f"retention:{sweep_id}", marker=marker)
            for k in ("matched", "anonymised", "deleted", "kept", "held", "files_deleted"):
                counts[k] = got.get(k, 0)
            counts["items_remaining"] = len(verify.remaining_keys(
                dm, act, unit, manifest, marker, subject_ref=f"retention:{sweep_id}"))
            counts["files_remaining"] = _files_left(dm, unit.table, act, manifest)
    row = RetentionSweepModel(tenant_id=tenant_id, sk=sk, sweep_id=sweep_id, counts=counts,
                              io=dict(io.calls))
    if not chunks.record_once(lambda: row.save(
            condition=RetentionSweepModel.sk.does_not_exist())):
        return {"chunk": chunk_key, "skipped": True}  # a parallel duplicate recorded it
    return {"chunk": chunk_key, **counts}


def chunk_manifest(dm: DataMap, t: TableMap, items: list[dict[str, Any]], tenant_id: str,
                   ) -> dict[str, Any]:
    """The keys of the items a sweep acts on and every file that goes with them: pointers,
    and the objects the table's file rules (key templates, prefixes) give each item."""
    out: dict[str, Any] = {"keys": [find.key_of(t, i) for i in items],
                           "s3": find.s3_refs(dm, t, items, tenant_id)}
    if t.files:
        out.update(find.file_refs(dm, t, items, tenant_id))
    return out


def _files_left(dm: DataMap, table: str, action: str, manifest: dict[str, Any]) -> int:
    """Versions left of the files the action deleted (none when it keeps them)."""
    if rules.table_mode(dm, table, action) not in ("delete", "anonymise"):
        return 0
    return sum(f["left"] for f in verify.files_left(manifest).values())


def _apply_subjects(dm: DataMap, tenant: Any, t: TableMap, action: str,
                    manifest: dict[str, Any], marker: str, counts: dict[str, int]) -> None:
    """Each item names a subject by its identity attributes: walk the map from them and apply
    the action to every table of the subject (anonymise, or erase by the erasure rules),
    through the plan a request of the same action makes: items she is in only in a role are
    treated by the role's rules, items on legal hold are counted `held`, exempted ones
    `retained`; each subject keeps her own pseudonyms."""
    act = "anonymise" if action == "anonymise" else "erase"
    for item in store.batch_get(t.physical(tenant.tenant_id), manifest["keys"]):
        # an identity stored as typed is looked up (and referred to) in its canonical form
        ids = find.item_identities(t, item, tenant.phone_region)
        if not ids:  # no identity left (anonymised already): nothing names a subject
            counts["kept"] += 1
            continue
        ref = tenant.keys.subject_ref(ids)
        counts["subjects"] += 1
        fp = find.walk(dm, tenant.tenant_id, ids, include_expired=True)
        for name in dm.order:
            m = planner.unit_manifest(dm, name, act, {}, fp, tenant.tenant_id)
            if m is None:
                continue
            unit = rules.Unit(tenant.tenant_id, name)
            got = apply.apply_unit(dm, act, unit, m, tenant.keys, ref, marker=marker)
            for k in ("matched", "anonymised", "deleted", "kept", "held", "retained",
                      "files_deleted"):
                counts[k] += got.get(k, 0)
            counts["items_remaining"] += len(verify.remaining_keys(dm, act, unit, m, marker,
                                                                   subject_ref=ref))
            counts["files_remaining"] += _files_left(dm, name, act, m)


def _export(tenant: Any, t: TableMap, sweep_id: str, sk: str, keys: list[Any]) -> int:
    """The chunk's items as JSON in the exports bucket (SSE-KMS, expiring with the tenant's
    export TTL), before anything is deleted."""
    s = get_settings()
    items = store.batch_get(t.physical(tenant.tenant_id), keys)
    part = sk.rsplit("#", 1)[1]
    objects.put_encrypted(
        s.bucket("exports"), f"exports/{tenant.tenant_id}/retention/{sweep_id}/{part}.json",
        json.dumps(items, default=str).encode(), content_type="application/json",
        tags={"oblio-ttl": str(tenant.settings.get("export_ttl_days", 14))})
    return len(items)


def _chunk_rows(tenant_id: str, sweep_id: str) -> list[RetentionSweepModel]:
    return list(RetentionSweepModel.query(
        tenant_id, RetentionSweepModel.sk.startswith(f"chunk#{sweep_id}#"),
        consistent_read=True))


def not_done(m: RetentionSweepModel) -> list[str]:
    """The names of the chunks of the sweep's index that no chunk row records done."""
    work = _work(m.tenant_id, m.sweep_id)
    done = {r.sk for r in _chunk_rows(m.tenant_id, m.sweep_id)}
    return [chunks.chunk_name(work.chunk(n)) for n in range(int(m.chunks or 0))
            if _chunk_sk(m.sweep_id, work.chunk(n)) not in done]


def totals(m: RetentionSweepModel) -> tuple[dict[str, int], dict[str, int], int]:
    """The sweep's counts (find + chunks), AWS calls by operation, and chunks done."""
    counts = {k: int(v) for k, v in (plain(m.counts) or {}).items()}
    io = {k: int(v) for k, v in (plain(m.io) or {}).items()}
    rows = _chunk_rows(m.tenant_id, m.sweep_id)
    for k in APPLY_COUNTS:
        counts.setdefault(k, 0)
    for r in rows:
        for k, v in (plain(r.counts) or {}).items():
            counts[k] = counts.get(k, 0) + int(v)
        for k, v in (plain(r.io) or {}).items():
            io[k] = io.get(k, 0) + int(v)
    io.setdefault("dynamodb.Scan", 0)
    return counts, dict(sorted(io.items())), len(rows)


def sweep_json(m: RetentionSweepModel) -> dict[str, Any]:
    s = get_settings()
    spec = (plain(m.policy) or {})
    counts, io, done = totals(m)
    url = None
    if m.report_key:
        url = objects.presign("get_object", s.bucket("exports"), m.report_key)
    return {"sweep_id": m.sweep_id, "policy_id": m.policy_id, "status": m.status,
            "trigger": m.trigger, "action": spec.get("action"), "cutoff": m.cutoff,
            "created_at": m.created_at, "completed_at": m.completed_at,
            "attempt": int(m.attempt or 0), "chunks": int(m.chunks or 0),
            "chunks_done": done, "tables": {spec.get("table"): counts},
            # every call of the sweep's invocations, and per candidate item
            "io": meter.view(plain(m.meter), io, per=int(counts.get("candidates") or 0),
                             per_name="per_item",
                             not_counted=SCHEDULE_SHARED if m.trigger == "schedule" else (),
                             attempt=int(m.attempt or 1)),
            "report_url": url, "audit_entry": m.audit_entry, "error": m.error}


def list_sweeps(tenant_id: str, limit: int = 50, cursor: str | None = None
                ) -> dict[str, Any]:
    after = {"tenant_id": {"S": tenant_id}, "sk": {"S": _run_sk(cursor)}} if cursor else None
    it = RetentionSweepModel.query(tenant_id, RetentionSweepModel.sk.startswith("run#"),
                                   scan_index_forward=False, limit=limit,
                                   last_evaluated_key=after)
    rows = list(it)
    more = len(rows) == limit and it.last_evaluated_key is not None
    return {"items": [sweep_json(r) for r in rows],
            "next_cursor": rows[-1].sweep_id if more else None}


def report(tenant_id: str, sweep_id: str, attempt: int | None = None) -> dict[str, Any]:
    """The report in S3, the audit entry (the same counts), the event; the lock is released.
    A retried report writes the audit entry once; one of an earlier run writes nothing."""
    s = get_settings()
    m = load_sweep(tenant_id, sweep_id)
    if _stale(m, attempt):
        _ended(m, attempt=attempt)  # its own run's end, counted once
        return {**_STALE, "status": m.status}
    if m.status in chunks.ENDED:  # run again after the sweep ended: counted once
        if m.status != "failed":  # what a run killed after writing the status left to do
            _close(m)
        _ended(m, attempt=attempt)
        return {"status": m.status}
    spec = (plain(m.policy) or {})
    counts, io, done = totals(m)
    if done < int(m.chunks or 0):
        # a chunk failed (the Map's own verdict is not trusted: an emulator may report
        # success, a tolerated failure would): never report a sweep complete that skipped
        # work; the state machine records the failure, naming the chunks, and the policy's
        # next run resumes with them
        left = not_done(m)
        names = ", ".join(left[:20]) + (f" and {len(left) - 20} more" if len(left) > 20
                                        else "")
        raise SweepIncomplete(f"{len(left)} of {int(m.chunks or 0)} chunks did not finish "
                              f"({names}); run the policy again to resume them")
    status = "completed_with_errors" if counts.get("items_remaining") or \
        counts.get("files_remaining") else "completed"
    tables = {spec["table"]: counts}
    body = {"sweep_id": sweep_id, "policy_id": m.policy_id, "tenant_id": tenant_id,
            "status": status, "action": spec["action"], "older_than": spec["older_than"],
            "date_attribute": spec["date_attribute"], "finder": spec.get("finder"),
            "cutoff": m.cutoff, "trigger": m.trigger, "started_at": m.created_at,
            "finished_at": clock.iso(), "attempts": int(m.attempt or 1), "chunks": done,
            "tables": tables, "io": io}
    key = f"reports/{tenant_id}/retention-{sweep_id}.json"
    n = attempt if attempt is not None else chunks.run_of(m)
    # the entry this run appended (a sweep resumed by an earlier release may still hold its
    # failed run's: that one is not this run's end)
    entry = m.audit_entry if int(m.audited_attempt or 0) == n else None
    if not entry:
        # once per run (a resumed sweep's end is its own entry: a resume clears the last
        # run's), and only while the run is the sweep's: a report that outlived its run
        # appends nothing
        entry = chunks.audit_end(m, n, "retention_sweep_completed", f"sweep:{sweep_id}:{n}:end",
                                 {k: body[k] for k in ("sweep_id", "policy_id", "status",
                                                       "action", "cutoff", "tables",
                                                       "chunks")})
        if entry is None:
            _ended(m, attempt=attempt)  # its own run's end, counted once
            return {**_STALE, "status": m.status}
        if not chunks.write_on_run(m, [RetentionSweepModel.audit_entry.set(entry),
                                       RetentionSweepModel.audited_attempt.set(n)], attempt):
            return {**_STALE, "status": m.status}
    body["audit_entry"] = entry
    objects.put_encrypted(
        s.bucket("exports"), key, json.dumps(body, indent=2).encode(),
        content_type="application/json",
        tags={"oblio-ttl": str(get_tenant(tenant_id).settings.get("export_ttl_days", 14))})
    outbound.emit("RetentionSweepCompleted", tenant_id, sweep_id=sweep_id,
                policy_id=m.policy_id, status=status, table=spec["table"],
                action=spec["action"], counts=counts)
    if not chunks.write_on_run(m, [RetentionSweepModel.status.set(status),
                                   RetentionSweepModel.completed_at.set(clock.iso()),
                                   RetentionSweepModel.report_key.set(key)], attempt):
        return {**_STALE, "status": m.status}
    _close(m)
    logger.info("retention sweep finished", extra={"sweep_id": sweep_id, "status": status})
    _ended(m, attempt=attempt)  # Report is the sweep's last task
    return {"status": status}


def fail(tenant_id: str, sweep_id: str, error: dict[str, Any], attempt: int | None = None,
         ) -> dict[str, Any]:
    """Record a failure the state machine caught; the policy's next run resumes this sweep
    (its manifests and finished chunks stay). A failure step of an earlier run (run again
    by Step Functions after the sweep was resumed) records nothing and keeps the lock."""
    m = load_sweep(tenant_id, sweep_id)
    if _stale(m, attempt):
        _ended(m, after=1, attempt=attempt)  # its own run's end, counted once
        return {**_STALE, "status": m.status}
    n = attempt if attempt is not None else int(m.attempt or 1)
    if m.status in ("completed", "completed_with_errors"):
        # the report wrote the end, then failed before what follows it (and its failure
        # came here): the work files go and the lock is released all the same
        _close(m)
    elif m.status == "failed":
        _release(m, n)  # this step, run again after it wrote the status: what followed it
    out = chunks.fail(m.status, error, lambda code, reason: _record_failure(m, n, code,
                                                                            reason))
    # and the Failed state after it; once, however often the step runs
    _ended(m, after=1, attempt=attempt)
    return out


def _close(m: RetentionSweepModel) -> None:
    """After a sweep's end is written (never before: not under a run resumed meanwhile): its
    work files go and the policy's lock is released; both can be done again."""
    _work(m.tenant_id, m.sweep_id).clear()
    _unlock(m.tenant_id, m.policy_id or "", m.sweep_id, chunks.run_of(m))


def _record_failure(m: RetentionSweepModel, attempt: int, code: str, reason: str) -> bool:
    """The sweep's run `attempt` failed: the audit entry (once per run, and only while the
    run is the sweep's), its status and error, the policy's resume point and the lock
    released, the event. False, and nothing written, once the sweep is on another run
    (resumed meanwhile: the new run's lock and status stand)."""
    tenant_id, sweep_id = m.tenant_id, m.sweep_id
    if chunks.audit_end(m, attempt, "retention_sweep_failed",
                        f"sweep:{sweep_id}:{attempt}:failed",
                        {"sweep_id": sweep_id, "policy_id": m.policy_id, "code": code,
                         "attempt": attempt}) is None:
        return False
    if not chunks.write_on_run(m, [RetentionSweepModel.status.set("failed"),
                                   RetentionSweepModel.error.set(reason[:500]),
                                   RetentionSweepModel.completed_at.set(clock.iso())],
                               attempt):
        return False
    _release(m, attempt)
    outbound.emit("RetentionSweepCompleted", tenant_id, sweep_id=sweep_id,
                  policy_id=m.policy_id, status="failed")
    logger.warning("retention sweep failed", extra={"sweep_id": sweep_id, "code": code})
    return True


def _release(m: RetentionSweepModel, attempt: int) -> None:
    """The sweep's run `attempt` failed: the policy's next run resumes it, and the run's lock
    is released (both can be done again: a failure step that died after writing the status
    finishes them; one run again after the sweep was resumed leaves the new run's lock)."""
    with contextlib.suppress(NotFound):
        load_policy(m.tenant_id, m.policy_id or "").update(
            actions=[RetentionPolicyModel.resume_sweep.set(m.sweep_id)])
    _unlock(m.tenant_id, m.policy_id or "", m.sweep_id, attempt)


#: what a task of an earlier run answers (it did nothing)
_STALE: dict[str, Any] = {"stale": True}


def _stale(m: RetentionSweepModel, attempt: int | None) -> bool:
    return chunks.stale("retention sweep", {"sweep_id": m.sweep_id}, m, attempt)


def _ended(m: RetentionSweepModel, after: int = 0, attempt: int | None = None) -> None:
    """`metering.last_step` for the sweep's run `attempt` (None: its current one), with its
    meter as this task read it (a step run again counts the end once)."""
    n = attempt if attempt is not None else int(m.attempt or 1)
    metering.last_step(_execution(m, n), n, after=after, meter=plain(m.meter))


def _execution(m: RetentionSweepModel, attempt: int) -> str:
    """The ARN of the sweep's execution of its run `attempt`."""
    return workflows.execution_arn("retention_sweep", f"sweep-{m.sweep_id}-{attempt}")
