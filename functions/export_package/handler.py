"""Package: stream an access export's parts and the subject's files into one ZIP in S3."""

from oblio.access import package
from oblio.control.metering import task
from oblio.core.boundary import TaskEvent
from oblio.core.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task
def handler(ev: TaskEvent) -> dict:
    return package.package(ev.request_id, ev.tenant_id)
