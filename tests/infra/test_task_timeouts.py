"""Every Task state of every state machine has its own timeout, a little longer than its
function's: a task whose invocation never answers (a lost response, an outage) fails with
States.Timeout, which its Retry takes, instead of holding the execution for the default of
a year; and since Lambda's own timeout fires first, a retry never overlaps an invocation
still running."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.catalogue import CATALOGUE

ROOT = Path(__file__).parents[2] / "statemachines"
#: how much longer than its function's timeout a task waits (Lambda's own start-up and
#: answer), at most
MARGIN = (1, 120)


def _tasks(states: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, st in states.items():
        if st["Type"] == "Task":
            out.append((name, st))
        elif st["Type"] == "Map":
            out += _tasks(st["ItemProcessor"]["States"])
        elif st["Type"] == "Parallel":
            for branch in st["Branches"]:
                out += _tasks(branch["States"])
    return out


@pytest.mark.parametrize("sm", CATALOGUE.state_machines, ids=lambda sm: sm.name)
def test_every_task_waits_a_little_longer_than_its_function_may_run(sm):
    timeouts = {f.name: f.timeout_seconds for f in CATALOGUE.functions}
    tasks = _tasks(json.loads((ROOT / sm.definition).read_text())["States"])
    assert tasks
    for state, st in tasks:
        placeholder = re.fullmatch(r"\$\{(\w+)\}", st["Resource"])
        assert placeholder, f"{sm.name}.{state}: a Task of a catalogue function"
        function = sm.functions[placeholder.group(1)]
        margin = st.get("TimeoutSeconds", 0) - timeouts[function]
        assert MARGIN[0] <= margin <= MARGIN[1], (
            f"{sm.name}.{state}: TimeoutSeconds {st.get('TimeoutSeconds')} for {function}, "
            f"whose Lambda timeout is {timeouts[function]} s")
        retried = {e for r in st.get("Retry", []) for e in r["ErrorEquals"]}
        assert retried & {"States.Timeout", "States.ALL"}, f"{sm.name}.{state}"
