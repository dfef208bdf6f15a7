"""Starting and stopping Step Functions executions: the one place that does."""

from __future__ import annotations

import contextlib
import json
from typing import Any

from oblio.core.settings import get_settings
from oblio.store import aws


class AlreadyStarted(Exception):
    """An execution of this name exists already (a concurrent caller started it)."""


def start(state_machine: str, name: str, payload: dict[str, Any]) -> str:
    """Start an execution of the catalogue's state machine `state_machine`, named `name`
    (unique per state machine: a second start of the same name is refused by AWS, and
    raises AlreadyStarted), with a payload of references only. Returns the execution's ARN."""
    sfn = aws.client("stepfunctions")
    try:
        resp = sfn.start_execution(
            stateMachineArn=get_settings().state_machine_arn(state_machine), name=name,
            input=json.dumps(payload))
    except sfn.exceptions.ExecutionAlreadyExists:
        raise AlreadyStarted(name) from None
    except Exception:
        # a call that raised after AWS had made the execution (its answer lost) started it:
        # the caller must not take the run for one that never began
        if express(state_machine) or not _exists(execution_arn(state_machine, name)):
            raise
        resp = {"executionArn": execution_arn(state_machine, name)}
    arn: str = resp["executionArn"]
    aws.note("stepfunctions.express_executions" if express(state_machine)
             else "stepfunctions.standard_executions")
    return arn


def express(state_machine: str) -> bool:
    """Whether the catalogue's state machine runs as Express on AWS."""
    return state_machine in get_settings().express_workflows


def transitions(execution_arn: str, after: int = 0) -> int:
    """The state transitions of a Standard execution so far (its history's state entries),
    plus `after` still to come (the states its running task leads to); 0 for an Express
    execution (priced per execution and duration) or one whose history cannot be read."""
    sm = execution_arn.split(":")[6:7]
    s = get_settings()
    if is_express(execution_arn) or not sm or any(
            s.state_machine_arn(name).rsplit(":", 1)[-1] == sm[0]
            for name in s.express_workflows):
        return 0
    sfn = aws.client("stepfunctions")
    kwargs: dict[str, Any] = {"executionArn": execution_arn, "maxResults": 1000}
    n = after
    try:
        while True:
            page = sfn.get_execution_history(**kwargs)
            n += sum(1 for e in page["events"] if e["type"].endswith("StateEntered"))
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
    except sfn.exceptions.ExecutionDoesNotExist:
        return 0
    return n


def start_once(state_machine: str, name: str, payload: dict[str, Any]) -> str:
    """`start`, where an execution of that name already started (this caller run twice)
    is the one: its ARN is returned and nothing else starts."""
    try:
        return start(state_machine, name, payload)
    except AlreadyStarted:
        return execution_arn(state_machine, name)


def _exists(execution_arn: str) -> bool:
    """Whether the (Standard) execution exists; False when it cannot be told."""
    try:
        aws.client("stepfunctions").describe_execution(executionArn=execution_arn)
    except Exception:  # noqa: BLE001 - cannot be told: the caller's error stands
        return False
    return True


def execution_arn(state_machine: str, name: str) -> str:
    """The ARN of the (Standard) execution `name` of the catalogue's state machine."""
    return get_settings().state_machine_arn(state_machine).replace(
        ":stateMachine:", ":execution:") + f":{name}"


def is_express(execution_arn: str) -> bool:
    """Whether the ARN is an Express execution's (`arn:aws:states:...:express:...`)."""
    return execution_arn.split(":")[5:6] == ["express"]


def stop(execution_arn: str, cause: str) -> None:
    """Stop an execution; one that has ended or never existed is left as it is.

    An Express execution cannot be stopped (StopExecution is for Standard executions only):
    it is left to run to its next step, where the request's fence (cancelled, or a newer
    attempt) refuses its writes."""
    if is_express(execution_arn):
        return
    sfn = aws.client("stepfunctions")
    with contextlib.suppress(sfn.exceptions.ExecutionDoesNotExist):
        sfn.stop_execution(executionArn=execution_arn, cause=cause)
