"""Shadow backfills: the canonical shadow (`_oblio_<attribute>`) of every identity stored as
typed, written once for the items a tenant already has (the stream consumer,
`oblio.jobs.shadowstream`, keeps them current from then on).

A backfill is one run of `statemachines/shadow_backfill.asl.json` for one tenant:

- `create` (POST /v1/backfills) chooses the logical tables (every one with an as-typed
  identity, or those named), groups them by physical table, records the run and one row per
  Scan segment of each physical table, and starts the workflow with references only (table
  names and segment numbers).
- `run_segment` reads one segment page by page (`settings.backfill_page_size` items a page,
  only the key, the as-typed attributes and their shadows): a Scan segment, filtered to the
  tenant in a pooled table, or, where the tenant's items are one partition of a pooled table
  (keyed by the tenant), a Query of that partition alone (one segment); it asks
  `oblio.core.shadowscan.decide` what each item needs, writes only the items
  whose shadows are missing or wrong (an UpdateItem conditioned on the item still existing
  with the raw values read, re-read and decided again when a concurrent write moved it), then
  moves the segment's resume point and counters together in one conditional write. A retried
  or resumed segment starts from its last checkpoint; the items of a page it had written
  before it failed are right by then and are not written again (counted as already right).
  After `settings.backfill_seconds` it hands over (`done: false`) and the workflow calls it
  again: never a whole table in one invocation, memory bounded by one page.
- `finish` adds the segments up, audits, and sets the status; `fail` records a failure, and
  `resume` (POST /v1/backfills/{id}/resume) starts the workflow again from the checkpoints.

A resume is a new run (`attempt`) whose execution carries its number to every task: a task of
the run that failed writes nothing to the backfill and counts only its own run's end
(`chunks.stale`, `chunks.write_on_run`). A run whose StartExecution failed is recorded
failed at once (and can be resumed), never left `running` with nothing running.

Counts, not contents: payloads, logs, the audit entry and the answers carry counts, table
names and ids; a value that does not parse is counted, never shown.
"""

from __future__ import annotations

import contextvars
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from pynamodb.exceptions import DoesNotExist, UpdateError
from ulid import ULID

from oblio.control import audit, metering
from oblio.control.tenants import Principal, get_tenant
from oblio.core import clock, datamap, meter, shadowscan
from oblio.core.bodies import BackfillBody
from oblio.core.boundary import BackfillEvent
from oblio.core.errors import Conflict, NotFound, OblioError
from oblio.core.observability import logger
from oblio.core.settings import get_settings
from oblio.jobs import chunks
from oblio.store import aws, workflows
from oblio.store import tables as store
from oblio.store.models import BackfillModel, plain

ENDED = ("completed", "completed_with_errors", "failed")
#: what a segment counts: items DynamoDB read (every tenant's, in a pooled table), the
#: tenant's mapped items among them, items written, items whose shadows were right, as-typed
#: values that do not parse (no shadow), items changed by a concurrent write and decided again,
#: items deleted meanwhile, items still moving after every try (left without a right shadow)
COUNTS = ("items_scanned", "items_read", "items_written", "already_right",
          "values_unparsable", "changed_meanwhile", "gone_meanwhile", "items_left")
#: tries of one item's write when concurrent writes keep changing it
WRITE_TRIES = 3
#: shadow writes of one page made at once
WRITERS = 8


class BackfillIncomplete(OblioError):
    code = "backfill_incomplete"


def _run_sk(backfill_id: str) -> str:
    return f"run#{backfill_id}"


def _seg_sk(backfill_id: str, table: str, segment: int) -> str:
    return f"seg#{backfill_id}#{table}#{segment:04d}"


def load(tenant_id: str, backfill_id: str) -> BackfillModel:
    try:
        return BackfillModel.get(tenant_id, _run_sk(backfill_id), consistent_read=True)
    except DoesNotExist:
        raise NotFound("no backfill with this id in this tenant") from None


def _segment_rows(tenant_id: str, backfill_id: str) -> list[BackfillModel]:
    return list(BackfillModel.query(tenant_id,
                                    BackfillModel.sk.startswith(f"seg#{backfill_id}#"),
                                    consistent_read=True))


def _input(m: BackfillModel) -> dict[str, Any]:
    """The workflow's input: ids, and each segment as (physical table, number)."""
    segs = [{"table": table, "segment": i}
            for table, n in sorted((plain(m.physical) or {}).items()) for i in range(int(n))]
    return {"tenant_id": m.tenant_id, "backfill_id": m.backfill_id, "segments": segs,
            "attempt": chunks.run_of(m)}


def _start(m: BackfillModel) -> None:
    """Start the run of the backfill's attempt, counted to it; a start that fails leaves the
    run recorded failed (resumable), and raises."""
    n = chunks.run_of(m)
    metering.bill_to(BackfillEvent(tenant_id=m.tenant_id, backfill_id=m.backfill_id))
    try:
        workflows.start("shadow_backfill", f"backfill-{m.backfill_id}-{n}", _input(m))
    except Exception as exc:
        reason = (f"start_failed: the backfill's workflow did not start "
                  f"({type(exc).__name__}); resume it (POST /v1/backfills/{m.backfill_id}"
                  "/resume)")
        chunks.started_nothing(lambda: _record_failure(m, n, "start_failed", reason), n)
        raise
    metering.started(n)


def create(principal: Principal, body: BackfillBody) -> dict[str, Any]:
    """POST /v1/backfills: record a backfill of the tenant's tables and start it."""
    s = get_settings()
    tenant_id = principal.tenant_id
    dm = datamap.current()
    names = shadowscan.chosen(dm, body.tables)
    segments = body.segments or s.backfill_segments
    targets = shadowscan.targets(dm, tenant_id, names)
    backfill_id = str(ULID())
    now = clock.iso()
    # a tenant that is one partition of a pooled table is read by a Query of it (one
    # "segment": a Query cannot be split); other tables by a parallel segmented Scan
    per = {t.physical: 1 if t.partition else segments for t in targets}
    m = BackfillModel(tenant_id=tenant_id, sk=_run_sk(backfill_id), backfill_id=backfill_id,
                      status="running", tables=names, physical=per,
                      segments_total=sum(per.values()), created_at=now,
                      requested_by=principal.key_id, attempt=1, meter={})
    with BackfillModel.batch_write() as batch:
        for t in targets:
            for i in range(per[t.physical]):
                batch.save(BackfillModel(
                    tenant_id=tenant_id, sk=_seg_sk(backfill_id, t.physical, i),
                    backfill_id=backfill_id, table=t.physical, segment=i,
                    segments=per[t.physical], pages=0, done=False,
                    counts=dict.fromkeys(COUNTS, 0), io={}))
        batch.save(m)
    _start(m)
    audit.append(tenant_id, "shadow_backfill_started", actor=principal.key_id,
                 details={"backfill_id": backfill_id, "tables": names,
                          "physical_tables": [t.physical for t in targets],
                          "segments": segments})
    logger.info("shadow backfill started", extra={"backfill_id": backfill_id,
                                                   "tables": len(targets),
                                                   "segments": segments})
    return to_json(m, [])


def resume(principal: Principal, backfill_id: str) -> dict[str, Any]:
    """POST /v1/backfills/{id}/resume: start a failed backfill again; finished segments stay
    finished, the others go on from their checkpoints."""
    m = load(principal.tenant_id, backfill_id)
    if m.status != "failed":
        raise Conflict(f"only a failed backfill can be resumed; this one is {m.status}",
                       code="backfill_not_failed")
    attempt = int(m.attempt or 1) + 1
    try:
        m.update(actions=[BackfillModel.status.set("running"),
                          BackfillModel.attempt.set(attempt), BackfillModel.error.remove(),
                          BackfillModel.completed_at.remove()],
                 condition=(BackfillModel.status == "failed")
                 & chunks.current(BackfillModel, attempt - 1))
    except UpdateError as exc:
        if not chunks.condition_failed(exc):
            raise
        raise Conflict("the backfill was resumed meanwhile; follow it with GET "
                       f"/v1/backfills/{backfill_id}", code="backfill_not_failed") from None
    _start(m)
    audit.append(principal.tenant_id, "shadow_backfill_resumed", actor=principal.key_id,
                 details={"backfill_id": backfill_id, "attempt": attempt})
    return to_json(load(principal.tenant_id, backfill_id))


# -- one segment ---------------------------------------------------------------------------------


def _start_key(tenant_id: str, blob: str | None) -> dict[str, Any] | None:
    if not blob:
        return None
    return json.loads(get_tenant(tenant_id).keys.decrypt(blob)["key"])  # type: ignore[no-any-return]


def _seal(tenant_id: str, key: dict[str, Any]) -> str:
    return get_tenant(tenant_id).keys.encrypt({"key": json.dumps(key)})


def _write(target: shadowscan.Target, dm: Any, tenant_id: str, region: str | None,
           seen: shadowscan.Seen) -> str:
    """Write one item's shadows; returns the counter it goes to."""
    outcome = "items_written"
    for _ in range(WRITE_TRIES):
        assert seen.write is not None
        w = seen.write
        if store.set_if_unchanged(target.physical, w.key, w.set, w.remove, w.expect):
            return outcome
        # a concurrent write changed the item (or deleted it): read it again and decide anew
        outcome = "changed_meanwhile"
        now = store.batch_get(target.physical, [w.key])
        if not now:
            return "gone_meanwhile"
        seen = shadowscan.decide(dm, target.tables, now[0], tenant_id, region)
        if seen.write is None:
            return outcome  # the concurrent writer (or the stream consumer) made it right
    return "items_left"


def process_page(dm: Any, target: shadowscan.Target, items: list[dict[str, Any]],
                 tenant_id: str, region: str | None, pool: ThreadPoolExecutor | None = None,
                 ) -> dict[str, int]:
    """Decide and write one page's items (the writes on `pool`, each in a copy of the
    caller's context: their calls are counted by every counter open around the call, the
    page's and the invocation's meter); returns the page's counts (but items_scanned)."""
    counts = dict.fromkeys(COUNTS, 0)
    writes: list[shadowscan.Seen] = []
    for item in items:
        seen = shadowscan.decide(dm, target.tables, item, tenant_id, region)
        if not seen.mine:
            continue
        counts["items_read"] += 1
        counts["values_unparsable"] += seen.unparsable
        if seen.write is None:
            counts["already_right"] += 1
        else:
            writes.append(seen)
    def write(seen: shadowscan.Seen) -> str:
        return _write(target, dm, tenant_id, region, seen)

    if pool is not None and len(writes) > 1:
        futures = [pool.submit(contextvars.copy_context().run, write, x) for x in writes]
        outcomes = [f.result() for f in futures]
    else:
        outcomes = [write(x) for x in writes]
    for outcome in outcomes:
        counts[outcome] += 1
    return counts


def run_segment(tenant_id: str, backfill_id: str, table: str, segment: int,
                attempt: int | None = None) -> dict[str, Any]:
    """Scan one segment from its checkpoint, page by page, for at most
    `settings.backfill_seconds`; `done` says whether the segment reached its end (a task of
    an earlier run does nothing and says done: its run ends)."""
    s = get_settings()
    run = load(tenant_id, backfill_id)
    if _stale(run, attempt):
        return {"done": True, "stale": True}
    sk = _seg_sk(backfill_id, table, segment)
    try:
        m = BackfillModel.get(tenant_id, sk, consistent_read=True)
    except DoesNotExist:
        raise NotFound("no such segment of this backfill") from None
    if m.done:
        return {"done": True}
    dm = datamap.current()
    found = [t for t in shadowscan.targets(dm, tenant_id, run.tables or []) if t.physical == table]
    if not found:
        raise NotFound("the data map no longer maps this table with identities stored as "
                       "typed; start a new backfill")
    target = found[0]
    region = get_tenant(tenant_id).phone_region
    began = time.monotonic()
    with ThreadPoolExecutor(WRITERS) as pool:
        while True:
            start = _start_key(tenant_id, m.start_key)
            with aws.counting() as io:
                if target.partition is not None:
                    items, last, scanned = store.query_page(
                        table, target.partition, s.backfill_page_size, start=start,
                        projection=target.projection)
                else:
                    items, last, scanned = store.scan_page_counted(
                        table, segment, int(m.segments or 1), s.backfill_page_size,
                        start=start, projection=target.projection, where=target.tenant_filter)
                page = process_page(dm, target, items, tenant_id, region, pool)
            page["items_scanned"] = scanned
            calls = dict(io.calls)
            # the checkpoint below is one more UpdateItem (on oblio's own table)
            calls["dynamodb.UpdateItem"] = calls.get("dynamodb.UpdateItem", 0) + 1
            if not _checkpoint(m, page, calls, None if last is None else _seal(tenant_id, last)):
                # another invocation of this segment moved it (a retry overlapping a slow
                # attempt): its count of this page stands; go on from where it is
                m = BackfillModel.get(tenant_id, sk, consistent_read=True)
            if m.done:
                return {"done": True}
            if time.monotonic() - began > s.backfill_seconds:
                return {"done": False}


def _checkpoint(m: BackfillModel, page: dict[str, int], calls: dict[str, int],
                next_key: str | None) -> bool:
    """Move the segment's resume point and counters past one page, in one write conditioned
    on the page count it was read at; False when another invocation moved it first."""
    counts = {k: int(v) for k, v in (plain(m.counts) or {}).items()}
    for k, v in page.items():
        counts[k] = counts.get(k, 0) + v
    io = {k: int(v) for k, v in (plain(m.io) or {}).items()}
    for k, v in calls.items():
        io[k] = io.get(k, 0) + v
    pages = int(m.pages or 0)
    actions: list[Any] = [BackfillModel.counts.set(counts), BackfillModel.io.set(io),
                          BackfillModel.pages.set(pages + 1)]
    if next_key is None:
        actions += [BackfillModel.done.set(True), BackfillModel.start_key.remove()]
    else:
        actions.append(BackfillModel.start_key.set(next_key))
    try:
        m.update(actions=actions, condition=BackfillModel.pages == pages)
    except UpdateError as exc:
        if "ConditionalCheckFailed" not in str(exc):
            raise
        return False
    return True


# -- the end -------------------------------------------------------------------------------------


def totals(rows: list[BackfillModel]) -> tuple[dict[str, int], dict[str, int], int,
                                               dict[str, dict[str, Any]]]:
    """The segments' counts and calls added up, segments done, and per physical table."""
    counts = dict.fromkeys(COUNTS, 0)
    io: dict[str, int] = {}
    per: dict[str, dict[str, Any]] = {}
    done = 0
    for r in rows:
        t = per.setdefault(r.table or "", {"segments": 0, "segments_done": 0,
                                           "counts": dict.fromkeys(COUNTS, 0)})
        t["segments"] += 1
        if r.done:
            done += 1
            t["segments_done"] += 1
        for k, v in (plain(r.counts) or {}).items():
            counts[k] = counts.get(k, 0) + int(v)
            t["counts"][k] = t["counts"].get(k, 0) + int(v)
        for k, v in (plain(r.io) or {}).items():
            io[k] = io.get(k, 0) + int(v)
    io.setdefault("dynamodb.Scan", 0)
    return counts, dict(sorted(io.items())), done, per


def finish(tenant_id: str, backfill_id: str, attempt: int | None = None) -> dict[str, Any]:
    """Add the segments up, audit once, set the status: `completed` when every item of the
    tenant's tables was read and has its right shadow (or a value that does not parse, which
    gets none), `completed_with_errors` when concurrent writes kept some item from it. One
    of an earlier run writes nothing."""
    m = load(tenant_id, backfill_id)
    if _stale(m, attempt):
        _ended(m, attempt=attempt)  # its own run's end, counted once
        return {"status": m.status, "stale": True}
    if m.status in ENDED:  # run again after the backfill ended: counted once
        _ended(m, attempt=attempt)
        return {"status": m.status}
    rows = _segment_rows(tenant_id, backfill_id)
    counts, io, done, _ = totals(rows)
    if done < len(rows):
        # never report a backfill complete that skipped a segment
        raise BackfillIncomplete(f"{len(rows) - done} of {len(rows)} segments did not "
                                 "finish; resume the backfill to go on")
    status = "completed_with_errors" if counts["items_left"] else "completed"
    n = attempt if attempt is not None else chunks.run_of(m)
    # once per run (a finish run again after dying before its write appends none), and only
    # while the run is the backfill's: one that outlived its run appends nothing
    entry = chunks.audit_end(m, n, "shadow_backfill_completed",
                             f"backfill:{backfill_id}:{n}:end",
                             {"backfill_id": backfill_id, "status": status,
                              "tables": m.tables, "counts": counts, "io": io})
    if entry is None:
        return {"status": m.status, "stale": True}
    if not chunks.write_on_run(m, [BackfillModel.status.set(status),
                                   BackfillModel.completed_at.set(clock.iso()),
                                   BackfillModel.totals.set(counts),
                                   BackfillModel.audit_entry.set(entry)], attempt):
        return {"status": m.status, "stale": True}
    logger.info("shadow backfill finished", extra={"backfill_id": backfill_id,
                                                    "status": status, **counts})
    _ended(m, attempt=attempt)  # Finish is the run's last task
    return {"status": status}


def fail(tenant_id: str, backfill_id: str, error: dict[str, Any],
         attempt: int | None = None) -> dict[str, Any]:
    """Record a failure the workflow caught; its checkpoints stay for a resume. A failure
    step of an earlier run (run again after the backfill was resumed) records nothing."""
    m = load(tenant_id, backfill_id)
    if _stale(m, attempt):
        _ended(m, after=1, attempt=attempt)  # its own run's end, counted once
        return {"status": m.status, "stale": True}
    n = attempt if attempt is not None else chunks.run_of(m)
    out = chunks.fail(m.status, error, lambda code, reason: _record_failure(m, n, code,
                                                                            reason))
    # and the Failed state after it; once, however often the step runs
    _ended(m, after=1, attempt=attempt)
    return out


def _record_failure(m: BackfillModel, attempt: int, code: str, reason: str) -> bool:
    """The backfill's run `attempt` failed: the audit entry (once per run, and only while the
    run is the backfill's), its status and error. False, and nothing written, once the
    backfill is on another run (resumed meanwhile: the new run's status stands)."""
    if chunks.audit_end(m, attempt, "shadow_backfill_failed",
                        f"backfill:{m.backfill_id}:{attempt}:failed",
                        {"backfill_id": m.backfill_id, "code": code,
                         "attempt": attempt}) is None:
        return False
    if not chunks.write_on_run(m, [BackfillModel.status.set("failed"),
                                   BackfillModel.error.set(reason[:500]),
                                   BackfillModel.completed_at.set(clock.iso())], attempt):
        return False
    logger.warning("shadow backfill failed", extra={"backfill_id": m.backfill_id,
                                                     "code": code})
    return True


def _stale(m: BackfillModel, attempt: int | None) -> bool:
    return chunks.stale("backfill", {"backfill_id": m.backfill_id}, m, attempt)


def _ended(m: BackfillModel, after: int = 0, attempt: int | None = None) -> None:
    """`metering.last_step` for the run `attempt` (None: the current one), with its meter
    as this task read it (a step run again counts the end once)."""
    n = attempt if attempt is not None else chunks.run_of(m)
    metering.last_step(_execution(m, n), n, after=after, meter=plain(m.meter))


def _execution(m: BackfillModel, attempt: int) -> str:
    return workflows.execution_arn("shadow_backfill", f"backfill-{m.backfill_id}-{attempt}")


# -- answers -------------------------------------------------------------------------------------


def to_json(m: BackfillModel, rows: list[BackfillModel] | None = None) -> dict[str, Any]:
    """A backfill's status and progress (counts and calls, never an item)."""
    if rows is None:
        rows = _segment_rows(m.tenant_id, m.backfill_id)
    counts, io, done, per = totals(rows)
    began = clock.parse(m.created_at) if m.created_at else clock.now()
    ended = clock.parse(m.completed_at) if m.completed_at else clock.now()
    return {"backfill_id": m.backfill_id, "status": m.status, "tables": list(m.tables or []),
            "physical_tables": per or {t: {"segments": int(n), "segments_done": 0,
                                           "counts": dict.fromkeys(COUNTS, 0)}
                                       for t, n in (plain(m.physical) or {}).items()},
            "segments": {"done": done, "total": int(m.segments_total or 0)},
            "counts": counts,
            # every call of the run's invocations (the API's that filed it too), per item read
            "io": meter.view(plain(m.meter), io, per=int(counts.get("items_read") or 0),
                             per_name="per_item", attempt=int(m.attempt or 1)),
            "elapsed_seconds": round(max(0.0, (ended - began).total_seconds()), 3),
            "created_at": m.created_at, "completed_at": m.completed_at,
            "attempt": int(m.attempt or 1), "requested_by": m.requested_by,
            "audit_entry": m.audit_entry, "error": m.error}


def list_backfills(tenant_id: str, limit: int = 50, cursor: str | None = None
                   ) -> dict[str, Any]:
    after = {"tenant_id": {"S": tenant_id}, "sk": {"S": _run_sk(cursor)}} if cursor else None
    it = BackfillModel.query(tenant_id, BackfillModel.sk.startswith("run#"),
                             scan_index_forward=False, limit=limit, last_evaluated_key=after)
    rows = list(it)
    more = len(rows) == limit and it.last_evaluated_key is not None
    return {"items": [to_json(r) for r in rows],
            "next_cursor": rows[-1].backfill_id if more else None}
