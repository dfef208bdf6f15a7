"""Fail: record on the request the error the state machine caught."""

from oblio.control.metering import task
from oblio.core.boundary import TaskEvent
from oblio.core.observability import logger, tracer
from oblio.pipeline import evidence


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task
def handler(ev: TaskEvent) -> dict:
    return evidence.fail(ev.request_id, ev.tenant_id, ev.error or {})
