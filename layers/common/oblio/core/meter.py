"""A record's `io`: what its meter counted (`control.metering`), as the API shows it.

Every call by `service.Operation` (as API.md names them), then the same by owner (the
tenant's tables and buckets; oblio's own resources and services), DynamoDB's units, Lambda,
Step Functions, and `cost_usd` priced by `core.prices`; `complete` and `not_counted` say what
the figures leave out."""

from __future__ import annotations

from typing import Any

from oblio.core import prices

#: what no record's meter counts, whatever the request
NOT_COUNTED = (
    "CloudWatch Logs and X-Ray (written by the Lambda runtime, not by oblio's calls)",
    "what EventBridge rules and API destinations do with oblio's events after PutEvents",
    "the client's own polling of the API (GET /v1/requests/{id})",
)


def view(meter: dict[str, Any] | None, io: dict[str, Any] | None = None,
         per: int = 0, per_name: str = "per_subject",
         not_counted: tuple[str, ...] = (), attempt: int = 1) -> dict[str, Any]:
    """A record's `io`: every call by `service.Operation` (as the API names them), then the
    same by owner, DynamoDB's units, Lambda, Step Functions, `cost_usd` (and per subject when
    `per` subjects were worked on; `per_name` names that part: a sweep's is per item;
    `not_counted`: what else this record's figures leave out). `complete`: the record's
    current `attempt` has ended and both its last task and the call that started it have
    counted themselves (a meter with no note by attempt: its last task, `_landed`). A
    record from before the meter (`meter` empty) shows the step counts it kept (`io`),
    `complete: false`."""
    left_out = (*NOT_COUNTED, *not_counted)
    if not meter:
        legacy: dict[str, Any] = dict(io or {})
        legacy.setdefault("dynamodb.Scan", 0)
        legacy["complete"] = False
        legacy["not_counted"] = ["oblio's own tables, S3 work files, KMS, EventBridge, Step "
                                 "Functions and Lambda: this record predates the meter",
                                 *left_out]
        return legacy
    calls: dict[str, int] = {}
    owned: dict[str, dict[str, int]] = {"tenant": {}, "oblio": {}}
    for k, v in meter.items():
        owner, _, op = k.partition(":")
        if owner in owned and "." in op:
            owned[owner][op] = owned[owner].get(op, 0) + int(v)
            calls[op] = calls.get(op, 0) + int(v)
    units = {o: {kind: round(float(meter.get(f"units:{o}:{kind}", 0)), 2)
                 for kind in ("read", "write")} for o in owned}
    estimated = bool(meter.get("units:estimated"))
    ended, started = _landed(meter, attempt)
    handed = _handed(meter, attempt)
    done = ended and started and handed
    lam = {"invocations": int(meter.get("lambda:invocations", 0)),
           "ms": int(meter.get("lambda:ms", 0)),
           "gb_seconds": round(float(meter.get("lambda:mb_ms", 0)) / 1024 / 1000, 4)}
    sfn = {k: int(meter.get(f"note:stepfunctions.{k}", 0))
           for k in ("standard_executions", "express_executions", "transitions")}
    # an Express execution's duration: its task invocations' measured time (an upper bound
    # when a request handed over to its Standard twin, whose tasks are counted with it)
    sfn["express_ms"] = int(meter.get("note:stepfunctions.task_ms", 0)) \
        if sfn["express_executions"] else 0
    entries = int(meter.get("note:events.entries", 0))
    cost = prices.cost(owned, units, lam, sfn, events_entries=entries,
                       api_requests=int(meter.get("note:apigateway.requests", 0)))
    out: dict[str, Any] = dict(sorted(calls.items()))
    out.setdefault("dynamodb.Scan", 0)
    out.update({
        "by_owner": {o: dict(sorted(c.items())) for o, c in owned.items()},
        "dynamodb_units": {**units, "source": "estimated from item sizes (local stack)"
                           if estimated else "reported by DynamoDB"},
        "lambda": lam, "stepfunctions": sfn, "cost_usd": cost,
        "complete": done, "not_counted": [*_pending(ended, started, handed), *left_out]})
    if per:
        out[per_name] = {
            "of": per,
            "calls": {k: round(v / per, 3) for k, v in sorted(calls.items())},
            "cost_usd": {k: v / per for k, v in cost.items() if isinstance(v, float)}}
    return out


def _pending(ended: bool, started: bool, handed: bool = True) -> list[str]:
    """What a meter whose run is not all counted yet leaves out."""
    return [*([] if ended else ["the calls of steps not recorded yet (still running, or the "
                                "last step has not ended)"]),
            *([] if started else ["the calls of the API call or event that started this run "
                                  "(not recorded yet)"]),
            *([] if handed else ["the calls of the step that handed this run over to its "
                                 "Standard workflow (not recorded yet)"])]


def _handed(meter: dict[str, Any], attempt: int) -> bool:
    """Whether the step that handed the attempt over to another execution (noted before it
    started it) has counted itself; True when none did."""
    return not meter.get(f"note:handover:{attempt}") or \
        bool(meter.get(f"note:handed:{attempt}"))


def _landed(meter: dict[str, Any], attempt: int) -> tuple[bool, bool]:
    """Whether the counts of the attempt's last task, and of the call that started it,
    have landed (noted by attempt: a late count of an earlier attempt says nothing of this
    one). A meter from before the notes were kept by attempt noted only its last task."""
    if any(k.startswith(("note:final:", "note:started:")) for k in meter):
        return (bool(meter.get(f"note:final:{attempt}")),
                bool(meter.get(f"note:started:{attempt}")))
    return bool(meter.get("note:final")), bool(meter.get("note:final"))
