"""Record on the sweep the failure the state machine caught."""

from oblio.control.metering import task
from oblio.core.boundary import SweepEvent
from oblio.core.observability import logger, tracer
from oblio.jobs import retention


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task(SweepEvent)
def handler(ev: SweepEvent) -> dict:
    return retention.fail(ev.tenant_id, ev.sweep_id, ev.error or {}, attempt=ev.attempt)
