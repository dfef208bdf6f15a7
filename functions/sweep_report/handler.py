"""A retention sweep's report, audit entry and RetentionSweepCompleted event."""

from oblio import retention
from oblio.observability import logger
from oblio.tasks import SweepEvent, task


@logger.inject_lambda_context
@task(SweepEvent)
def handler(ev: SweepEvent) -> dict:
    return retention.report(ev.tenant_id, ev.sweep_id)
