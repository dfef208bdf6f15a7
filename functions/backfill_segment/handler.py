"""Scan one segment of a shadow backfill from its checkpoint, page by page."""

from oblio.control.metering import task
from oblio.core.boundary import BackfillEvent
from oblio.core.observability import logger, tracer
from oblio.jobs import backfill


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task(BackfillEvent)
def handler(ev: BackfillEvent) -> dict:
    return backfill.run_segment(ev.tenant_id, ev.backfill_id, ev.table or "", ev.segment or 0,
                                attempt=ev.attempt)
