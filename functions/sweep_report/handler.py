"""A retention sweep's report, audit entry and RetentionSweepCompleted event."""

from oblio.control.metering import task
from oblio.core.boundary import SweepEvent
from oblio.core.observability import logger, tracer
from oblio.jobs import retention


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task(SweepEvent)
def handler(ev: SweepEvent) -> dict:
    return retention.report(ev.tenant_id, ev.sweep_id, attempt=ev.attempt)
