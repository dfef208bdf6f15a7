"""Apply a retention policy's action to one chunk (a Distributed Map iteration)."""

from oblio import retention
from oblio.observability import logger
from oblio.tasks import SweepEvent, task


@logger.inject_lambda_context
@task(SweepEvent)
def handler(ev: SweepEvent) -> dict:
    return retention.apply_chunk(ev.tenant_id, ev.sweep_id, ev.chunk or "")
