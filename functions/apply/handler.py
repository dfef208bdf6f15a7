"""Apply: the request's action on one table of the plan (a Map iteration)."""

from oblio.control.metering import task
from oblio.core.boundary import TaskEvent
from oblio.core.observability import logger, tracer
from oblio.pipeline import apply


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task
def handler(ev: TaskEvent) -> dict:
    return apply.apply(ev.request_id, ev.tenant_id, ev.action, ev.unit or {})
