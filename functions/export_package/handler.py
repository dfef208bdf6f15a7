"""Package: stream an access export's parts and the subject's files into one ZIP in S3."""

from oblio import exporter
from oblio.observability import logger
from oblio.tasks import TaskEvent, task


@logger.inject_lambda_context
@task
def handler(ev: TaskEvent) -> dict:
    return exporter.package(ev.request_id, ev.tenant_id)
