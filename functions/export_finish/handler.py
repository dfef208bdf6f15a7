"""Finish an access export: the result, audit entry, event and the requester's e-mail."""

from oblio import exporter
from oblio.observability import logger
from oblio.tasks import TaskEvent, task


@logger.inject_lambda_context
@task
def handler(ev: TaskEvent) -> dict:
    return exporter.finish(ev.request_id, ev.tenant_id)
