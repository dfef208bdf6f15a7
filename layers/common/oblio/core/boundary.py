"""What every task function shares: the event's shape and the error boundary.

An exception leaving a task becomes the state machine's error: its class name is the error
name that Retry and Catch match (TransientError is retried), its message lands in the
execution history and on the request. So the message is scrubbed of anything that looks
like an identity before it leaves."""

from __future__ import annotations

import contextvars
import functools
import json
import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from oblio.core.observability import annotate, logger

_EMAIL = re.compile(r"[^\s@'\"]+@[^\s@'\"]+")
_DIGITS = re.compile(r"\+?\d[\d ().-]{6,}\d")
#: the attempt of the request that the running task belongs to (None: not a request's task)
_attempt: contextvars.ContextVar[int | None] = contextvars.ContextVar("oblio_attempt",
                                                                       default=None)


def current_attempt() -> int | None:
    """The attempt number the execution of the running task carries (its input's `attempt`),
    or None outside a request's task: every write of a request's status, counts or evidence
    is fenced on it (`oblio.control.records.fenced`)."""
    return _attempt.get()


class TaskEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    request_id: str
    tenant_id: str
    action: str = "erase"
    unit: dict[str, str] | None = None
    error: dict[str, Any] | None = None
    #: the attempt of the request this execution carries out (set by `records.start`)
    attempt: int | None = None


#: AWS error codes that say "try again later", whatever library raised them
TRANSIENT_CODES = frozenset({
    "ProvisionedThroughputExceededException", "ThrottlingException", "Throttling",
    "RequestLimitExceeded", "TooManyRequestsException", "SlowDown", "ServiceUnavailable",
    "InternalServerError", "InternalError", "RequestTimeout", "RequestTimeoutException",
    "TransactionConflictException", "TransactionInProgressException"})


#: why DynamoDB cancels a transaction when trying again later would do
TRANSIENT_REASONS = frozenset({"ThrottlingError", "ProvisionedThroughputExceeded",
                               "TransactionConflict"})


def transient(exc: BaseException) -> bool:
    """Whether `exc` is a fault worth retrying: a throttle, a 5xx or a connection error that
    outlasted the SDK's own retries, raised by boto3 or wrapped by PynamoDB (`GetError`,
    `QueryError`, `PutError`, ...: the AWS error is in its cause)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if type(cur).__name__ in ("TransientError", "EndpointConnectionError",
                                  "ConnectionClosedError", "ReadTimeoutError",
                                  "ConnectTimeoutError"):
            return True
        response = getattr(cur, "response", None)
        if isinstance(response, dict):
            error = response.get("Error") or {}
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode") or 0
            if error.get("Code") in TRANSIENT_CODES or int(status) >= 500:
                return True
        code = getattr(cur, "cause_response_code", None)  # PynamoDB's view of its cause
        if code in TRANSIENT_CODES:
            return True
        if code == "TransactionCanceledException" and any(
                getattr(r, "code", None) in TRANSIENT_REASONS
                for r in getattr(cur, "cancellation_reasons", None) or []):
            return True  # a transaction refused for a throttle or a conflict, not a condition
        cur = cur.__cause__ or getattr(cur, "cause", None) or cur.__context__
    return False


def fault_of(exc: BaseException) -> dict[str, Any]:
    """What a log line may say of a fault that outlasted the SDK's retries: the class raised,
    the AWS error code and operation, and botocore's retry account (how many attempts, and
    whether it stopped at its attempt limit or because the client's retry quota was spent).
    Never the error's message: it can quote a key's value."""
    out: dict[str, Any] = {"raised": type(exc).__name__}
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if cur is not exc:
            out.setdefault("cause", type(cur).__name__)
        response = getattr(cur, "response", None)
        if isinstance(response, dict):
            error = response.get("Error") or {}
            meta = response.get("ResponseMetadata") or {}
            out.update(code=error.get("Code"), operation=getattr(cur, "operation_name", None),
                       status=meta.get("HTTPStatusCode"), attempts=meta.get("RetryAttempts"),
                       max_attempts_reached=bool(meta.get("MaxAttemptsReached")),
                       retry_quota_reached=bool(meta.get("RetryQuotaReached")))
            return out
        # what it was raised from, or while handling (unless the raise said not to)
        cur = cur.__cause__ or getattr(cur, "cause", None) or (
            None if cur.__suppress_context__ else cur.__context__)
    return out


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
    #: the job's run the task belongs to (absent: the first)
    attempt: int | None = None


class SweepEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tenant_id: str
    sweep_id: str
    chunk: str | None = None
    error: dict[str, Any] | None = None
    #: the sweep's run the task belongs to (absent: trust the record's)
    attempt: int | None = None


class BackfillEvent(BaseModel):
    model_config = ConfigDict(extra="ignore")

    tenant_id: str
    backfill_id: str
    table: str | None = None
    segment: int | None = None
    error: dict[str, Any] | None = None
    #: the backfill's run the task belongs to (absent: trust the record's)
    attempt: int | None = None


def _boundary(fn: Callable[[Any], dict[str, Any]], model: type[BaseModel],
              ) -> Callable[[dict[str, Any], Any], dict[str, Any]]:
    @functools.wraps(fn)
    def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
        ev = model.model_validate(event)
        ids = {k: getattr(ev, k) for k in ("request_id", "job_id", "sweep_id", "backfill_id",
                                                  "tenant_id")
               if hasattr(ev, k)}
        # this invocation's ids on this thread's lines only, and gone after it: the local
        # stack runs many invocations at once on threads of one process, and a warm Lambda
        # runs one after another; neither may print a job id on an unrelated request
        logger.thread_safe_append_keys(**ids)
        unit, chunk = getattr(ev, "unit", None) or {}, getattr(ev, "chunk", None) or ""
        # the trace of a Map iteration says which table or chunk it was
        annotate(**ids, action=getattr(ev, "action", None), table=unit.get("table"),
                 chunk=chunk.rsplit("/", 1)[-1].split(".")[0])
        # a request's attempt fences its writes; a job's, sweep's or backfill's is the
        # step's own business (it is passed on), never a request's fence
        token = _attempt.set(ev.attempt if isinstance(ev, TaskEvent) else None)
        try:
            return fn(ev)
        except Exception as exc:  # noqa: BLE001 - re-raised, scrubbed
            # a throttle or 5xx that outlasted the SDK's retries is retried by the state
            # machine (its Retry matches TransientError), whichever library raised it
            name = "TransientError" if transient(exc) else type(exc).__name__
            logger.warning("task failed", extra={"error": name, **fault_of(exc)})
            raise type(name, (Exception,), {})(scrub(str(exc))) from None
        finally:
            logger.thread_safe_remove_keys(list(ids))
            _attempt.reset(token)

    return handler


def task(arg: Any) -> Any:
    """Parse the event into a model (TaskEvent unless given, as `@task(BulkEvent)`), call
    the step, scrub what escapes."""
    if isinstance(arg, type) and issubclass(arg, BaseModel):
        return lambda fn: _boundary(fn, arg)
    return _boundary(arg, TaskEvent)
