"""Find a retention sweep's candidates, page by page, into chunk manifests."""

from oblio import retention
from oblio.observability import logger
from oblio.tasks import SweepEvent, task


@logger.inject_lambda_context
@task(SweepEvent)
def handler(ev: SweepEvent) -> dict:
    return retention.find(ev.tenant_id, ev.sweep_id)
