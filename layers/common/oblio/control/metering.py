"""What oblio's work costs on AWS, counted where it is done.

Every task invocation of a request, a bulk job or a retention sweep, and the API call that
files a request, counts every AWS call it makes (the clients of boto3, PynamoDB and
Powertools alike: `store.aws`), by owner (the tenant's tables and buckets, or oblio's own
resources and services), service and operation, with the DynamoDB units used (reported by
DynamoDB on AWS, estimated by its item-size rules on the local stack), its own duration and
memory. At its end the counts are added to the record it worked for, in one atomic update
that counts itself (a request's go to its own meter item beside the record, a bulk job's and
a sweep's to the record's `meter` map); parallel invocations never lose a count, and a
failed or repeated invocation is counted too, since AWS bills it.

Step Functions: an execution started is counted by its type as deployed on AWS (Express for
the workflows in `settings.express_workflows` and a bulk job's chunk children); a Standard
execution's state transitions are read from its history by its last task; an Express one is
priced per execution and by its task invocations' measured time (its own time between tasks
is not measured).

`core.meter.view` turns a record's meter into its `io`: every call (the tenant's and
oblio's), the units, Lambda, Step Functions, and `cost_usd` priced by `core.prices`."""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from oblio.control.records import meter_key
from oblio.core import boundary
from oblio.core.boundary import BackfillEvent, BulkEvent, SweepEvent, TaskEvent
from oblio.core.observability import logger
from oblio.store import aws, workflows
from oblio.store.models import BackfillModel, BulkJobModel, RequestModel, RetentionSweepModel
from oblio.store.tables import add_counts, add_to_map

#: where an invocation's counts go: a table, a key, and the map attribute that holds them
#: (None: the item's own attributes, a request's meter item)
Target = tuple[str, dict[str, str], str | None]


def target_of(ev: Any) -> Target | None:
    """The record an invocation's calls are added to (its table and key), None: not
    metered."""
    if isinstance(ev, TaskEvent):
        return RequestModel.Meta.table_name, meter_key(ev.tenant_id, ev.request_id), None
    if isinstance(ev, BulkEvent):
        return BulkJobModel.Meta.table_name, {"tenant_id": ev.tenant_id,
                                              "job_id": ev.job_id}, "meter"
    if isinstance(ev, SweepEvent):
        return RetentionSweepModel.Meta.table_name, {"tenant_id": ev.tenant_id,
                                                     "sk": f"run#{ev.sweep_id}"}, "meter"
    if isinstance(ev, BackfillEvent):  # a segment's calls go to its run
        return BackfillModel.Meta.table_name, {"tenant_id": ev.tenant_id,
                                               "sk": f"run#{ev.backfill_id}"}, "meter"
    return None


def memory_mb() -> int:
    """The running function's memory (Lambda's environment), 512 (the catalogue's default)
    where it is not a Lambda (the local stack)."""
    return int(os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE") or 512)


class _Bill:
    """Where the running invocation's calls go (`target`), and the attempt of the record
    whose run it started (`started` said so; None: it started none)."""

    __slots__ = ("starts", "target")

    def __init__(self, target: Target | None) -> None:
        self.target: Target | None = target
        self.starts: int | None = None


#: the record the running invocation's calls go to, set late by `bill_to` (by a call that
#: files or starts a record: the API's, the upload's event, the nightly schedule)
_bill: ContextVar[_Bill | None] = ContextVar("oblio_bill_to", default=None)


@contextmanager
def invocation(target: Target | None = None, *, kind: str = "task",
               ) -> Iterator[aws.IoCounter]:
    """Count every AWS call of the block, one Lambda invocation, and add them to `target`
    at its end (also when it raises). `kind`: "task", a state machine's task (its time is an
    execution's); "api", an API call (one API Gateway request too); "event", a function an
    event invoked; "share", one record's part of an invocation that serves many (the nightly
    schedule starting one sweep): its calls and its time, no invocation of its own. Without
    `target` the record is the one `bill_to` names once it exists; an invocation that names
    none is not metered."""
    started = time.monotonic()
    bill = _Bill(target)
    token = _bill.set(bill)
    with aws.counting() as counter:
        try:
            yield counter
        finally:
            _bill.reset(token)
            if bill.target is not None:
                ms = max(1, math.ceil((time.monotonic() - started) * 1000))
                if kind == "api":
                    counter.note("apigateway.requests", 1)
                if bill.starts is not None:  # the run's `io` waits for these too (`view`)
                    counter.note(f"started:{bill.starts}", 1)
                _flush(bill.target, counter, ms, task_ms=kind == "task",
                       invocations=0 if kind == "share" else 1)


def bill_to(ev: TaskEvent | BulkEvent | SweepEvent | BackfillEvent) -> None:
    """Name the record the running call works for (the request, job, sweep or backfill it
    files, starts or resumes): its calls go there. Nothing outside a metered call, and
    nothing once one is named."""
    bill = _bill.get()
    if bill is not None and bill.target is None:
        bill.target = target_of(ev)


def started(attempt: int) -> None:
    """Say that the running call has just started the run (an execution) of the record's
    attempt `attempt`: that attempt's `io` is complete only once this call's counts have
    landed too (a run can end before the call that started it has counted itself). Said
    only once the start succeeded, so that a call that started nothing leaves nothing
    waiting."""
    bill = _bill.get()
    if bill is not None:
        bill.starts = attempt


def start_failed(attempt: int) -> None:
    """Say that the running call tried to start the run of the record's attempt `attempt`
    and its StartExecution failed: nothing runs for that attempt, so its `io` is this
    call's counts, complete once they have landed (its start and its end, in one)."""
    bill = _bill.get()
    if bill is not None:
        bill.starts = attempt
        aws.note(f"final:{attempt}")


def handing_over(attempt: int) -> None:
    """Say, before the running task starts another execution to carry the record's attempt
    `attempt` on (a large request's Standard twin), that the attempt's `io` waits for this
    invocation's counts too. Written on the record now, before the start, so that the
    twin's last step cannot make the attempt complete while this invocation's counts are
    still to land (they note, when they do, that they have)."""
    bill = _bill.get()
    if bill is None or bill.target is None:
        return
    _add(bill.target, {f"note:handover:{attempt}": 1})
    aws.note(f"handed:{attempt}")


def _add(target: Target, counts: dict[str, Any]) -> None:
    """Add `counts` to the record `target` names (its own attributes, or its meter map)."""
    table, key, attribute = target
    if attribute is None:
        add_counts(table, key, counts)
    else:
        add_to_map(table, key, attribute, counts)


def _flush(target: Target, counter: aws.IoCounter, ms: int, task_ms: bool = True,
           invocations: int = 1) -> None:
    counts: dict[str, Any] = dict(counter.owned)
    counts.update({f"units:{k}": round(v, 2) for k, v in counter.units.items() if v})
    counts.update({f"note:{k}": v for k, v in counter.notes.items()})
    if ms:  # one Lambda invocation (or its share)
        counts.update({"lambda:invocations": invocations, "lambda:ms": ms,
                       "lambda:mb_ms": ms * memory_mb()})
        if task_ms:
            counts["note:stepfunctions.task_ms"] = ms
    if counter.estimated:
        counts["units:estimated"] = 1
    # this update, counted by itself: one write, a unit per KB it sends (estimated)
    counts["oblio:dynamodb.UpdateItem"] = counts.get("oblio:dynamodb.UpdateItem", 0) + 1
    counts["units:oblio:write"] = round(counts.get("units:oblio:write", 0)
                                        + max(1, math.ceil(len(str(counts)) / 1024)), 2)
    try:
        with aws.counting():  # not counted twice by an open counter around this one
            _add(target, counts)
    except Exception as exc:  # noqa: BLE001 - the work stands; its count is what is lost
        logger.warning("calls not metered", extra={"table": target[0],
                                                   "raised": type(exc).__name__})


def task(arg: Any) -> Any:
    """`core.boundary.task`, metered: the invocation's calls go to the record it works for."""
    if isinstance(arg, type):
        return lambda fn: boundary.task(arg)(_metered(fn))
    return boundary.task(_metered(arg))


def _metered(fn: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    @functools.wraps(fn)
    def run(ev: Any) -> dict[str, Any]:
        with invocation(target_of(ev)):
            return fn(ev)
    return run


def last_step(execution_arn: str | None, attempt: int, after: int = 0,
              meter: dict[str, Any] | None = None) -> None:
    """Note, with the running invocation's calls, that this is the last task of the
    record's attempt `attempt` (its `io` is complete once this invocation's counts land)
    and, for a Standard execution, its state transitions (`after`: the states still to come
    after this task). `meter`: the record's meter as this task read it, where the task may
    be a run again of a last step (Step Functions runs a task again whose invocation timed
    out): the end is noted once, whether the first run's counts landed or that run was
    killed before they did, and the transitions only as far as none was noted before."""
    got = meter or {}
    if execution_arn:
        n = workflows.transitions(execution_arn, after=after)
        new = n - int(got.get(f"note:transitions_read:{attempt}", 0))
        if new > 0:
            aws.note("stepfunctions.transitions", new)
            aws.note(f"transitions_read:{attempt}", new)
    if not got.get(f"note:final:{attempt}"):
        aws.note(f"final:{attempt}")
