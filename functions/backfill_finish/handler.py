"""A shadow backfill's totals, audit entry and status."""

from oblio.control.metering import task
from oblio.core.boundary import BackfillEvent
from oblio.core.observability import logger, tracer
from oblio.jobs import backfill


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task(BackfillEvent)
def handler(ev: BackfillEvent) -> dict:
    return backfill.finish(ev.tenant_id, ev.backfill_id, attempt=ev.attempt)
