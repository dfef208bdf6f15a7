"""Work of an access export: plan, and when it is small collect every table and package the
archive in this one invocation; a large one is handed over to the Standard twin."""

from oblio.access import work
from oblio.control.metering import task
from oblio.core.boundary import TaskEvent
from oblio.core.observability import logger, tracer


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@task
def handler(ev: TaskEvent) -> dict:
    return work.work(ev.request_id, ev.tenant_id)
