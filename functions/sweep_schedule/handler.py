"""The nightly schedule (EventBridge): a retention sweep per tenant and enabled policy."""

from typing import Any

from oblio.core.observability import logger
from oblio.jobs import retention


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict:
    return retention.run_scheduled()
