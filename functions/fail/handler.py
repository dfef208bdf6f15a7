"""Fail: record on the request the error the state machine caught."""

from oblio.core.boundary import TaskEvent, task
from oblio.core.observability import logger
from oblio.pipeline import evidence


@logger.inject_lambda_context
@task
def handler(ev: TaskEvent) -> dict:
    return evidence.fail(ev.request_id, ev.tenant_id, ev.error or {})
