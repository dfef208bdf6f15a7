"""Record on the sweep the failure the state machine caught."""

from oblio import retention
from oblio.observability import logger
from oblio.tasks import SweepEvent, task


@logger.inject_lambda_context
@task(SweepEvent)
def handler(ev: SweepEvent) -> dict:
    return retention.fail(ev.tenant_id, ev.sweep_id, ev.error or {})
