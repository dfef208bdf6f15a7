"""Record on the job the failure the state machine caught."""

from oblio import bulk
from oblio.observability import logger
from oblio.tasks import BulkEvent, task


@logger.inject_lambda_context
@task(BulkEvent)
def handler(ev: BulkEvent) -> dict:
    return bulk.fail(ev.tenant_id, ev.job_id, ev.error or {})
