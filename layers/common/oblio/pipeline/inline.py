"""The Work step: plan, then (for a small request) apply every unit and verify, in one
invocation, so that a small request takes three state transitions (Work, the Choice, Finish)
and two Lambda invocations instead of one per table, in an execution short enough to be
Express in AWS. Its tables are claimed by one write of the request record, not one each
(`records.one_claim`), and their outcomes written by one more. A request with a table holding more than `inline_unit_items` of the
subject's items, or more than `inline_request_items` in all, is handed over to the Standard
twin of its state machine (`erasure_large`, `anonymisation_large`: Plan, which reuses the
frozen plan, the Map over tables, Verify, Finish), which may run as long as it takes; so is
one whose planning took longer than `inline_budget_seconds` (its Express execution must end
within 5 minutes).

Every step it runs is the one the Map path runs, and each is repeatable: a retried Work
reuses the plan, skips the units recorded done, and verifies again (so an Express
execution run twice changes nothing the second time)."""

from __future__ import annotations

import time
from typing import Any

from oblio.control import metering, records
from oblio.core import deadline
from oblio.core.boundary import current_attempt
from oblio.core.observability import logger
from oblio.core.settings import get_settings
from oblio.pipeline import apply, plan, verify
from oblio.store import workflows
from oblio.store.models import RequestModel

#: action -> the Standard state machine a large request is handed over to
LARGE = {"erase": "erasure_large", "anonymise": "anonymisation_large",
         "export": "access_export_large"}


def small(units: list[dict[str, Any]], unit_items: int, request_items: int) -> bool:
    """Whether the planned units are applied inline: every unit's count within
    `unit_items`, their sum within `request_items` (a unit without a count, the subject's
    export archives, counts as none)."""
    counts = [int(u.get("count", 0)) for u in units]
    return all(c <= unit_items for c in counts) and sum(counts) <= request_items


def is_small(m: RequestModel) -> bool:
    """Whether the planned request is applied inside Work (the settings' thresholds)."""
    s = get_settings()
    return small(records.plan_of(m).get("units") or [], s.inline_unit_items,
                 s.inline_request_items)


def deadline_of() -> float:
    """Work's deadline (`time.monotonic()`), `inline_budget_seconds` from now: past it, a
    plan still walking or an export still streaming its archive stops, and the request is
    handed over, so that its Express execution ends far inside its 5 minutes."""
    return time.monotonic() + get_settings().inline_budget_seconds


def stays_inline(m: RequestModel, action: str) -> bool:
    """Whether Work applies the planned request itself: small, planned before Work's
    deadline (the walk checks it between queries; this, what follows the walk), and not
    handed over already. A Work run again after it handed over (its answer lost, a record
    write throttled) hands over again, however fast it is now: never inline beside the
    twin."""
    return is_small(m) and not deadline.passed() and m.execution_arn != twin_arn(m, action)


def twin_arn(m: RequestModel, action: str) -> str:
    """The execution of the Standard twin of the request's current attempt."""
    attempt = current_attempt() or int(m.attempt or 1)
    return workflows.execution_arn(LARGE[action], f"{m.request_id}-{attempt}")


def hand_over(m: RequestModel, action: str, units: int, why: str = "large") -> dict[str, Any]:
    """Start the Standard twin for a large request (or one past Work's deadline: `why`) and
    record its execution on the request (a cancel stops it). Named after the attempt like
    the first execution: this step run again finds the twin started and starts nothing."""
    attempt = current_attempt() or int(m.attempt or 1)
    # the twin's last step may end before this invocation has counted itself: the
    # attempt's `io` waits for both
    metering.handing_over(attempt)
    # recorded before the start: a Work run again hands over again (`stays_inline`), and a
    # cancel stops the twin (one not started yet does nothing once it sees the cancel)
    arn = twin_arn(m, action)
    if m.execution_arn != arn:
        records.fenced_update(m, [RequestModel.execution_arn.set(arn)])
    workflows.start_once(LARGE[action], f"{m.request_id}-{attempt}", {
        "request_id": m.request_id, "tenant_id": m.tenant_id, "attempt": attempt,
        "action": action})
    logger.info("handed over", extra={"request_id": m.request_id, "units": units,
                                      "state_machine": LARGE[action], "why": why})
    return {"inline": False, "units": units}


def work(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """Plan; when small, apply each unit and verify here (`inline`: the state machine goes
    straight to Finish); when large, or still planning at Work's deadline, start the
    Standard twin and record its execution on the request (a cancel stops it)."""
    try:
        with records.outcomes_in_one_write(), records.one_claim():
            with deadline.until(deadline_of()):  # planning may stop; applying never does
                planned = plan.plan(request_id, tenant_id, action)
                units: list[dict[str, str]] = planned["units"]
                if planned.get("cancelled"):
                    return {"inline": True, "units": 0, "cancelled": True}
                m = records.load(tenant_id, request_id)
                if not stays_inline(m, action):
                    return hand_over(m, action, len(units))
            skipped = [f"{u['tenant_id']}/{u['table']}" for u in units
                       if apply.apply(request_id, tenant_id, action, u).get("cancelled")]
            if skipped:  # claimed at once, not begun: the request's progress says so
                records.not_begun(m, skipped)
            passed = verify.verify(request_id, tenant_id, action)
    except deadline.PastDeadline:  # the walk stopped: nothing was planned or applied
        return hand_over(records.load(tenant_id, request_id), action, 0,
                         why="past its deadline")
    return {"inline": True, "units": len(units), "verification": passed}
