"""Finish: certificate, audit entry, suppression, events; the request completes."""

from oblio.core.boundary import TaskEvent, task
from oblio.core.observability import logger
from oblio.pipeline import evidence


@logger.inject_lambda_context
@task
def handler(ev: TaskEvent) -> dict:
    return evidence.finish(ev.request_id, ev.tenant_id, ev.action)
