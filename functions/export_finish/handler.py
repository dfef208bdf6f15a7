"""Finish an access export: the result, audit entry, event and the requester's e-mail."""

from oblio.access import deliver
from oblio.control.metering import task
from oblio.core.boundary import TaskEvent
from oblio.core.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task
def handler(ev: TaskEvent) -> dict:
    return deliver.finish(ev.request_id, ev.tenant_id)
