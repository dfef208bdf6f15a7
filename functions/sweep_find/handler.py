"""Find a retention sweep's candidates, page by page, into chunk manifests."""

from oblio.control.metering import task
from oblio.core.boundary import SweepEvent
from oblio.core.observability import logger, tracer
from oblio.jobs import retention


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task(SweepEvent)
def handler(ev: SweepEvent) -> dict:
    return retention.find_candidates(ev.tenant_id, ev.sweep_id, attempt=ev.attempt)
