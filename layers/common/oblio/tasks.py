"""What every task function shares: the event's shape and the error boundary.

An exception leaving a task becomes the state machine's error: its class name is the error
name that Retry and Catch match (TransientError is retried), its message lands in the
execution history and on the request. So the message is scrubbed of anything that looks
like an identity before it leaves."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from oblio.observability import logger

_EMAIL = re.compile(r"[^\s@'\"]+@[^\s@'\"]+")
_DIGITS = re.compile(r"\+?\d[\d ().-]{6,}\d")


class TaskEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    request_id: str
    tenant_id: str
    action: str = "erase"
    unit: dict[str, str] | None = None
    error: dict[str, Any] | None = None


def scrub(message: str) -> str:
    return _DIGITS.sub("[number]", _EMAIL.sub("[email]", message))[:1000]


def task(fn: Callable[[TaskEvent], dict[str, Any]]) -> Callable[[dict[str, Any], Any],
                                                                 dict[str, Any]]:
    """Parse the event into a TaskEvent, call the step, scrub what escapes."""

    @functools.wraps(fn)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ev = TaskEvent.model_validate(event)
        logger.append_keys(request_id=ev.request_id, tenant_id=ev.tenant_id)
        try:
            return fn(ev)
        except Exception as exc:  # noqa: BLE001 - re-raised, scrubbed
            name = type(exc).__name__
            logger.warning("task failed", extra={"error": name})
            raise type(name, (Exception,), {})(scrub(str(exc))) from None

    return handler
