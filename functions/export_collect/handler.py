"""Collect: one table's items of an access export into its part in the work bucket (a Map
iteration)."""

from oblio.access import collect
from oblio.control.metering import task
from oblio.core.boundary import TaskEvent
from oblio.core.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task
def handler(ev: TaskEvent) -> dict:
    return collect.collect(ev.request_id, ev.tenant_id, ev.unit or {})
