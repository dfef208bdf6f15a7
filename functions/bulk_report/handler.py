"""Report: merge every line's outcome into the job's CSV report; the job completes."""

from oblio import bulk
from oblio.observability import logger
from oblio.tasks import BulkEvent, task


@logger.inject_lambda_context
@task(BulkEvent)
def handler(ev: BulkEvent) -> dict:
    return bulk.report(ev.tenant_id, ev.job_id)
