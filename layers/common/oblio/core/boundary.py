"""What every task function shares: the event's shape and the error boundary.

An exception leaving a task becomes the state machine's error: its class name is the error
name that Retry and Catch match (TransientError is retried), its message lands in the
execution history and on the request. So the message is scrubbed of anything that looks
like an identity before it leaves."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from oblio.core.observability import annotate, logger

_EMAIL = re.compile(r"[^\s@'\"]+@[^\s@'\"]+")
_DIGITS = re.compile(r"\+?\d[\d ().-]{6,}\d")


class TaskEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    request_id: str
    tenant_id: str
    action: str = "erase"
    unit: dict[str, str] | None = None
    error: dict[str, Any] | None = None


def caught(error: dict[str, Any]) -> tuple[str, str]:
    """(error name, message) of what a state machine's Catch put in `$.error`: a Lambda's
    error arrives as {"Error", "Cause": "{\"errorType\", \"errorMessage\"}"}."""
    code, message = str(error.get("Error", "Error")), str(error.get("Cause", ""))
    try:
        cause = json.loads(message)
        code = str(cause.get("errorType", code))
        message = str(cause.get("errorMessage", ""))
    except (ValueError, AttributeError):
        pass
    return code, message[:500]


def scrub(message: str) -> str:
    return _DIGITS.sub("[number]", _EMAIL.sub("[email]", message))[:1000]


class BulkEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tenant_id: str
    job_id: str
    bucket: str | None = None
    key: str | None = None
    chunk: str | None = None
    error: dict[str, Any] | None = None


class SweepEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tenant_id: str
    sweep_id: str
    chunk: str | None = None
    error: dict[str, Any] | None = None


def _boundary(fn: Callable[[Any], dict[str, Any]], model: type[BaseModel],
              ) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    @functools.wraps(fn)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ev = model.model_validate(event)
        ids = {k: getattr(ev, k) for k in ("request_id", "job_id", "sweep_id", "tenant_id")
               if hasattr(ev, k)}
        # this invocation's ids on this thread's lines only, and gone after it: the local
        # stack runs many invocations at once on threads of one process, and a warm Lambda
        # runs one after another; neither may print a job id on an unrelated request
        logger.thread_safe_append_keys(**ids)
        unit, chunk = getattr(ev, "unit", None) or {}, getattr(ev, "chunk", None) or ""
        # the trace of a Map iteration says which table or chunk it was
        annotate(**ids, action=getattr(ev, "action", None), table=unit.get("table"),
                 chunk=chunk.rsplit("/", 1)[-1].split(".")[0])
        try:
            return fn(ev)
        except Exception as exc:  # noqa: BLE001 - re-raised, scrubbed
            name = type(exc).__name__
            logger.warning("task failed", extra={"error": name})
            raise type(name, (Exception,), {})(scrub(str(exc))) from None
        finally:
            logger.thread_safe_remove_keys(list(ids))

    return handler


def task(arg: Any) -> Any:
    """Parse the event into a model (TaskEvent unless given, as `@task(BulkEvent)`), call
    the step, scrub what escapes."""
    if isinstance(arg, type) and issubclass(arg, BaseModel):
        return lambda fn: _boundary(fn, arg)
    return _boundary(arg, TaskEvent)
