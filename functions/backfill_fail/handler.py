"""Record on the backfill the failure the state machine caught."""

from oblio.control.metering import task
from oblio.core.boundary import BackfillEvent
from oblio.core.observability import logger, tracer
from oblio.jobs import backfill


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task(BackfillEvent)
def handler(ev: BackfillEvent) -> dict:
    return backfill.fail(ev.tenant_id, ev.backfill_id, ev.error or {}, attempt=ev.attempt)
