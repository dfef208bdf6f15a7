"""A CSV landed under a tenant's bulk prefix (S3 -> EventBridge): start its job."""

from typing import Any

from oblio.core.observability import logger
from oblio.jobs import bulk


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict:
    detail = event.get("detail") or {}
    return bulk.start_from_upload(detail["bucket"]["name"], detail["object"]["key"])
