"""A CSV landed under a tenant's bulk prefix (S3 -> EventBridge): start its job."""

from typing import Any

from oblio.control import metering
from oblio.core.observability import logger, tracer
from oblio.jobs import bulk


@logger.inject_lambda_context
@tracer.capture_lambda_handler(capture_response=False)  # the answer may name the upload
def handler(event: dict[str, Any], context: Any) -> dict:
    detail = event.get("detail") or {}
    with metering.invocation(kind="event"):  # its calls go to the job it starts
        return bulk.start_from_upload(detail["bucket"]["name"], detail["object"]["key"])
