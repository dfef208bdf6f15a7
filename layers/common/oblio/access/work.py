"""The Work step of an access export: plan, then (for a small request) collect every table's
part and package the archive in the same invocation, so that a small export takes three
state transitions (Work, the Choice, Finish) and two Lambda invocations; a large one is
handed over to the Standard twin `access_export_large` (Plan, which reuses the frozen plan,
the Map collecting table by table, Package, Finish). Each step is repeatable: a collected
table and a made package are not made again."""

from __future__ import annotations

from typing import Any

from oblio.access import collect, package
from oblio.control import records
from oblio.core import deadline
from oblio.pipeline import inline, plan
from oblio.store import archives


def work(request_id: str, tenant_id: str) -> dict[str, Any]:
    """Plan; when small, collect every table and package here; when large, or still planning
    or packaging at Work's deadline (`inline.deadline_of`: its Express execution must end
    within 5 minutes), hand over to the Standard twin."""
    try:
        # a small export's parts stay in memory, from collection to the package (no work
        # file PUT and GET per table); their outcomes and the package's are written in one
        # update once it is made, or not at all: a failed invocation's retry collects them
        # again, and so does the twin of an export handed over at its deadline
        with deadline.until(inline.deadline_of()), \
                records.outcomes_in_one_write(keep_on_failure=False), \
                archives.holding_work_files():
            planned = plan.plan(request_id, tenant_id, "export")
            units: list[dict[str, str]] = planned["units"]
            if planned.get("cancelled"):
                return {"inline": True, "units": 0, "cancelled": True}
            m = records.load(tenant_id, request_id)
            if not inline.stays_inline(m, "export"):
                return inline.hand_over(m, "export", len(units))
            for u in units:
                collect.collect(request_id, tenant_id, u)
            made = package.package(request_id, tenant_id)  # reads the outcomes held above
    except deadline.PastDeadline:
        return inline.hand_over(records.load(tenant_id, request_id), "export", 0,
                                why="past its deadline")
    return {"inline": True, "units": len(units), "size": made["size"]}
