"""Apply: the request's action on one table of the plan (a Map iteration)."""

from oblio import workflow
from oblio.observability import logger
from oblio.tasks import TaskEvent, task


@logger.inject_lambda_context
@task
def handler(ev: TaskEvent) -> dict:
    return workflow.apply(ev.request_id, ev.tenant_id, ev.action, ev.unit or {})
