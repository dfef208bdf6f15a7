"""Plan: walk the data map from the subject's identities; one manifest per table."""

from oblio.control.metering import task
from oblio.core.boundary import TaskEvent
from oblio.core.observability import logger, tracer
from oblio.pipeline import plan


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task
def handler(ev: TaskEvent) -> dict:
    return plan.plan(ev.request_id, ev.tenant_id, ev.action)
