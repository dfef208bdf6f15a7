"""Apply a retention policy's action to one chunk (a Distributed Map iteration)."""

from oblio.control.metering import task
from oblio.core.boundary import SweepEvent
from oblio.core.observability import logger, tracer
from oblio.jobs import retention


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task(SweepEvent)
def handler(ev: SweepEvent) -> dict:
    return retention.apply_chunk(ev.tenant_id, ev.sweep_id, ev.chunk or "",
                                 attempt=ev.attempt)
