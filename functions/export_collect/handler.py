"""Collect: one table's items of an access export into its part in the work bucket (a Map
iteration)."""

from oblio import exporter
from oblio.observability import logger
from oblio.tasks import TaskEvent, task


@logger.inject_lambda_context
@task
def handler(ev: TaskEvent) -> dict:
    return exporter.collect(ev.request_id, ev.tenant_id, ev.unit or {})
