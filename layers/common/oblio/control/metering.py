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

import contextlib
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
from oblio.store.tables import ConditionFailed, add_counts, add_to_map

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


#: the record the running invocation's calls go to, set late by `bill_to` (the API's)
_target: ContextVar[list[Target | None] | None] = ContextVar("oblio_bill_to", default=None)


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
    holder: list[Target | None] = [target]
    token = _target.set(holder)
    with aws.counting() as counter:
        try:
            yield counter
        finally:
            _target.reset(token)
            if holder[0] is not None:
                ms = max(1, math.ceil((time.monotonic() - started) * 1000))
                if kind == "api":
                    counter.note("apigateway.requests", 1)
                _flush(holder[0], counter, ms, task_ms=kind == "task",
                       invocations=0 if kind == "share" else 1)


def bill_to(ev: TaskEvent | BulkEvent | SweepEvent | BackfillEvent) -> None:
    """Name the record the running API call's calls go to (the request, job or sweep it
    just filed); nothing outside a metered call, and nothing once one is named."""
    holder = _target.get()
    if holder is not None and holder[0] is None:
        holder[0] = target_of(ev)


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
    table, key, attribute = target
    try:
        with aws.counting():  # not counted twice by an open counter around this one
            if attribute is None:
                add_counts(table, key, counts)
            else:
                add_to_map(table, key, attribute, counts)
    except Exception as exc:  # noqa: BLE001 - the work stands; its count is what is lost
        logger.warning("calls not metered", extra={"table": table,
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


def reopen(ev: BulkEvent | SweepEvent | BackfillEvent) -> None:
    """A failed job, sweep or backfill run again: its `io` is not complete until the new
    attempt's last task has counted itself (the failed attempt's failure step said it was).
    The counts so far stay; a record from before the meter stays without one."""
    table, key, attribute = target_of(ev) or ("", {}, None)
    if attribute is not None:
        with contextlib.suppress(ConditionFailed):  # no meter: nothing to reopen
            add_to_map(table, key, attribute, {}, entries={"note:final": (attribute, 0)},
                       only_if_map=True)


def last_step(execution_arn: str | None, after: int = 0) -> None:
    """Note, with the running invocation's calls, that this is the record's last task (its
    `io` is complete once this invocation's counts land) and, for a Standard execution, its
    state transitions (`after`: the states still to come after this task)."""
    if execution_arn:
        workflows.transitions(execution_arn, after=after)
    aws.note("final")
