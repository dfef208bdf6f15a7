"""Erase one chunk of a bulk job (a Distributed Map iteration)."""

from oblio.control.metering import task
from oblio.core.boundary import BulkEvent
from oblio.core.observability import logger, tracer
from oblio.jobs import bulk


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task(BulkEvent)
def handler(ev: BulkEvent) -> dict:
    return bulk.erase_chunk(ev.tenant_id, ev.job_id, ev.chunk or "", attempt=ev.attempt)
