"""The nightly schedule (EventBridge): a retention sweep per tenant and enabled policy."""

from typing import Any

from oblio.core.observability import logger, tracer
from oblio.jobs import retention


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def handler(event: dict[str, Any], context: Any) -> dict:
    return retention.run_scheduled()
