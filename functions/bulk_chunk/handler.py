"""Erase one chunk of a bulk job (a Distributed Map iteration)."""

from oblio import bulk
from oblio.observability import logger
from oblio.tasks import BulkEvent, task


@logger.inject_lambda_context
@task(BulkEvent)
def handler(ev: BulkEvent) -> dict:
    return bulk.erase_chunk(ev.tenant_id, ev.job_id, ev.chunk or "")
