"""Report: merge every line's outcome into the job's CSV report; the job completes."""

from oblio.control.metering import task
from oblio.core.boundary import BulkEvent
from oblio.core.observability import logger, tracer
from oblio.jobs import bulk


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task(BulkEvent)
def handler(ev: BulkEvent) -> dict:
    return bulk.report(ev.tenant_id, ev.job_id, attempt=ev.attempt)
