"""Verify: read back what was planned and search again; nothing of the subject may be left."""

from oblio.control.metering import task
from oblio.core.boundary import TaskEvent
from oblio.core.observability import logger, tracer
from oblio.pipeline import verify


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task
def handler(ev: TaskEvent) -> dict:
    return verify.verify(ev.request_id, ev.tenant_id, ev.action)
