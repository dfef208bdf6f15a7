"""Retries are declared where they belong: every Task of every workflow retries timeouts,
Lambda's throttles and service errors and oblio's TransientError with backoff and full
jitter, and every AWS client (boto3's and PynamoDB's) uses the SDK's standard retry mode
with at least 10 attempts, so that a transient fault never surfaces as `failed`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = sorted((ROOT / "statemachines").glob("*.asl.json"))
TRANSIENT = {"States.Timeout", "Sandbox.Timedout", "Lambda.ServiceException",
             "Lambda.AWSLambdaException", "Lambda.SdkClientException",
             "Lambda.TooManyRequestsException", "Lambda.ClientExecutionTimeoutException",
             "TransientError"}


def tasks(states: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, state in states.items():
        if state.get("Type") == "Task":
            out.append((f"{path}{name}", state))
        for key in ("ItemProcessor", "Iterator"):
            if key in state:
                out += tasks(state[key]["States"], f"{path}{name}/")
        for i, branch in enumerate(state.get("Branches", [])):
            out += tasks(branch["States"], f"{path}{name}[{i}]/")
    return out


ALL_TASKS = [(wf.name, name, state) for wf in WORKFLOWS
             for name, state in tasks(json.loads(wf.read_text())["States"])]


def test_every_workflow_is_checked() -> None:
    assert len(WORKFLOWS) >= 7
    assert {wf for wf, _, _ in ALL_TASKS} == {wf.name for wf in WORKFLOWS}


@pytest.mark.parametrize(("workflow", "task", "state"), ALL_TASKS,
                         ids=[f"{w}:{t}" for w, t, _ in ALL_TASKS])
def test_every_task_retries_transient_faults_with_backoff_and_jitter(
        workflow: str, task: str, state: dict[str, Any]) -> None:
    retries = state.get("Retry") or []
    assert retries, f"{workflow} {task} has no Retry"
    covered: set[str] = set()
    for r in retries:
        errors = set(r["ErrorEquals"])
        if "States.ALL" in errors:
            errors = set(TRANSIENT)
        covered |= errors & TRANSIENT
        assert r.get("BackoffRate") == 2, f"{workflow} {task}: backoff {r.get('BackoffRate')}"
        assert r.get("JitterStrategy") == "FULL", f"{workflow} {task}: no full jitter"
        assert r.get("MaxAttempts", 3) >= 5, f"{workflow} {task}: {r.get('MaxAttempts')} attempts"
    assert covered == TRANSIENT, f"{workflow} {task} does not retry {sorted(TRANSIENT - covered)}"


def test_boto3_clients_use_standard_retries_with_ten_attempts() -> None:
    from oblio.store import aws

    aws.reset_clients()
    for service in ("dynamodb", "s3", "stepfunctions", "events"):
        retries = aws.client(service).meta.config.retries
        assert retries["mode"] in ("standard", "adaptive"), service
        # botocore keeps max_attempts as total_max_attempts (attempts including the first)
        assert retries.get("total_max_attempts", retries.get("max_attempts", 0)) >= 10, service
    aws.reset_clients()


def test_pynamodb_models_use_standard_retries_with_ten_attempts() -> None:
    from oblio.store import models

    for model in (models.RequestModel, models.AuditModel, models.TenantModel):
        client = model._get_connection().connection.client
        retries = client.meta.config.retries
        assert retries["mode"] in ("standard", "adaptive"), model.__name__
        assert retries["total_max_attempts"] >= 10, model.__name__
