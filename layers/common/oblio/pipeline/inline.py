"""The Work step: plan, then (for a small request) apply every unit and verify, in one
invocation, so that a small request takes three state transitions (Work, the Choice, Finish)
and two Lambda invocations instead of one per table. A request with a table holding more
than `inline_unit_items` of the subject's items, or more than `inline_request_items` in all,
hands its units over to the state machine's Map (apply per table, then Verify).

Every step it runs is the one the Map path runs, and each is repeatable: a retried Work
reuses the plan, skips the units recorded done, and verifies again (so an Express
execution run twice changes nothing the second time)."""

from __future__ import annotations

from typing import Any

from oblio.control import records
from oblio.core.observability import logger
from oblio.core.settings import get_settings
from oblio.pipeline import apply, plan, verify


def small(units: list[dict[str, Any]], unit_items: int, request_items: int) -> bool:
    """Whether the planned units are applied inline: every unit's count within
    `unit_items`, their sum within `request_items` (a unit without a count, the subject's
    export archives, counts as none)."""
    counts = [int(u.get("count", 0)) for u in units]
    return all(c <= unit_items for c in counts) and sum(counts) <= request_items


def work(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """Plan; when small, apply each unit and verify here. Answers `inline` (the state
    machine goes straight to Finish) and the units (for the Map when not inline)."""
    planned = plan.plan(request_id, tenant_id, action)
    units: list[dict[str, str]] = planned["units"]
    if planned.get("cancelled"):
        return {"inline": True, "units": [], "cancelled": True}
    m = records.load(tenant_id, request_id)
    s = get_settings()
    if not small(records.plan_of(m).get("units") or [], s.inline_unit_items,
                 s.inline_request_items):
        logger.info("handed over", extra={"request_id": request_id, "units": len(units)})
        return {"inline": False, "units": units}
    for u in units:
        apply.apply(request_id, tenant_id, action, u)
    passed = verify.verify(request_id, tenant_id, action)
    return {"inline": True, "units": [], "verification": passed}
