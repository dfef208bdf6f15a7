"""The chunked state machines (bulk erasure, retention sweeps): no chunk failure is
tolerated, and the threshold is declared rather than left to a default; the local AWS's
parser accepts the declaration (it refused an integer 0 before); a failed chunk still leads
to the report, which checks every chunk itself; a failing failure-recorder ends the
execution with a named error instead of passing as success."""

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


def test_every_bulk_task_carries_the_job_s_attempt():
    d = _load("bulk_erasure.asl.json")
    m = _map(d)
    assert m["ItemSelector"]["attempt.$"] == "$.attempt"
    for state in ("Report", "RecordFailure"):
        assert d["States"][state]["Parameters"]["attempt.$"] == "$.attempt"
