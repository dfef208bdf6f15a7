"""Fail: record on the request the error the state machine caught."""

from oblio import workflow
from oblio.observability import logger
from oblio.tasks import TaskEvent, task


@logger.inject_lambda_context
@task
def handler(ev: TaskEvent) -> dict:
    return workflow.fail(ev.request_id, ev.tenant_id, ev.error or {})
