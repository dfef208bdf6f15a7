"""Validate: stream the CSV, check each row, cut the good ones into chunk manifests."""

from oblio.control.metering import task
from oblio.core.boundary import BulkEvent
from oblio.core.observability import logger, tracer
from oblio.jobs import bulk


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task(BulkEvent)
def handler(ev: BulkEvent) -> dict:
    return bulk.validate(ev.tenant_id, ev.job_id, ev.bucket or "", ev.key or "")
