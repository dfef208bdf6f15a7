"""Finish: certificate, audit entry, suppression, events; the request completes."""

from oblio import workflow
from oblio.observability import logger
from oblio.tasks import TaskEvent, task


@logger.inject_lambda_context
@task
def handler(ev: TaskEvent) -> dict:
    return workflow.finish(ev.request_id, ev.tenant_id, ev.action)
