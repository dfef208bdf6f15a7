"""Verify: read back what was planned and search again; nothing of the subject may be left."""

from oblio import workflow
from oblio.observability import logger
from oblio.tasks import TaskEvent, task


@logger.inject_lambda_context
@task
def handler(ev: TaskEvent) -> dict:
    return workflow.verify(ev.request_id, ev.tenant_id, ev.action)
