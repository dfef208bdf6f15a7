"""Plan: walk the data map from the subject's identities; one manifest per table."""

from oblio import workflow
from oblio.observability import logger
from oblio.tasks import TaskEvent, task


@logger.inject_lambda_context
@task
def handler(ev: TaskEvent) -> dict:
    return workflow.plan(ev.request_id, ev.tenant_id, ev.action)
