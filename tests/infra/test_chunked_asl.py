"""The chunked state machines (bulk erasure, retention sweeps): no chunk failure is
tolerated, and the threshold is declared rather than left to a default; the local AWS's
parser accepts the declaration (it refused an integer 0 before); a failed chunk still leads
to the report, which checks every chunk itself; a failing failure-recorder ends the
execution with a named error instead of passing as success; every task of a bulk job, a
sweep and a backfill is handed its run (`attempt`)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

ROOT = Path(__file__).parents[2] / "statemachines"
CHUNKED = ("bulk_erasure.asl.json", "retention_sweep.asl.json")


def _load(name: str) -> dict[str, Any]:
    return json.loads((ROOT / name).read_text())


def _map(d: dict[str, Any]) -> dict[str, Any]:
    (m,) = [s for s in d["States"].values() if s["Type"] == "Map"]
    return m


@pytest.mark.parametrize("name", CHUNKED)
def test_the_distributed_map_tolerates_no_failed_chunk_explicitly(name):
    m = _map(_load(name))
    assert m["ItemProcessor"]["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
    assert m["ToleratedFailurePercentage"] == 0
    assert "ToleratedFailureCount" not in m or m["ToleratedFailureCount"] == 0


@pytest.mark.parametrize("name", CHUNKED)
def test_the_local_aws_parses_the_definition_as_the_local_stack_fills_it(name):
    text = (ROOT / name).read_text().replace("${ChildExecutionType}", "STANDARD")
    text = re.sub(r"\$\{\w+\}", "arn:aws:lambda:eu-west-1:123456789012:function:f", text)
    AmazonStateLanguageParser.parse(text)


@pytest.mark.parametrize("name", CHUNKED)
def test_a_failed_chunk_goes_to_the_report_which_checks_every_chunk(name):
    d = _load(name)
    (catch,) = _map(d)["Catch"]
    assert catch["ErrorEquals"] == ["States.ALL"] and catch["Next"] == "Report"
    assert catch["ResultPath"] != "$"  # the job's references stay for the report


@pytest.mark.parametrize("name", CHUNKED)
def test_the_failure_recorder_retries_with_jitter_and_is_caught(name):
    rec = _load(name)["States"]["RecordFailure"]
    (retry,) = rec["Retry"]
    assert retry["MaxAttempts"] >= 5 and retry["JitterStrategy"] == "FULL"
    (catch,) = rec["Catch"]
    assert _load(name)["States"][catch["Next"]]["Type"] == "Fail"


#: the tasks that run before a run has anything to fence (a bulk job's validation runs once,
#: on its first run: a retry starts from the saved chunks)
UNFENCED = {("bulk_erasure.asl.json", "Validate")}


def _tasks(states: dict[str, Any], selector: dict[str, Any] | None = None,
           ) -> list[tuple[str, dict[str, Any], dict[str, Any] | None]]:
    """Every Task state, with the ItemSelector of the Map it runs in (None: top level)."""
    out = []
    for name, st in states.items():
        if st["Type"] == "Task":
            out.append((name, st, selector))
        elif st["Type"] == "Map":
            out += _tasks(st["ItemProcessor"]["States"], st.get("ItemSelector"))
    return out


@pytest.mark.parametrize("name", (*CHUNKED, "shadow_backfill.asl.json"))
def test_every_task_of_a_job_carries_its_run(name):
    """A task of an earlier run writes nothing to the job: each task must be handed the
    run's `attempt` (its own Parameters, or the Map's ItemSelector when it takes the item
    whole), or a failure step run again after a resume acts on the new run."""
    tasks = _tasks(_load(name)["States"])
    assert tasks
    for state, st, selector in tasks:
        if (name, state) in UNFENCED:
            continue
        given = st.get("Parameters", selector)
        assert given is not None and given.get("attempt.$") == "$.attempt", state
