"""Work: plan the request, and when it is small apply every table and verify it in this one
invocation; a large one hands its tables over to the state machine's Map."""

from oblio.control.metering import task
from oblio.core.boundary import TaskEvent
from oblio.core.observability import logger, tracer
from oblio.pipeline import inline


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task
def handler(ev: TaskEvent) -> dict:
    return inline.work(ev.request_id, ev.tenant_id, ev.action)
