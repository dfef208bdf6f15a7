"""Lambda invocations of the local stack, answered in-process by the project's own handlers.

moto's Lambda would run functions in Docker; here its invoke is replaced by a dispatch to the
handler the catalogue names (`functions/<name>/handler.py`). An exception in the handler is
returned as AWS returns it (`X-Amz-Function-Error: Unhandled`, `{"errorType", "errorMessage"}`)
so that the state machine's Retry and Catch see what they would see in AWS. A fault plan
(infra/local/faults.py) may fail an invocation before its handler runs, or after it (the work
done, the answer lost). With a sandbox pool (infra/local/sandboxes.py) the handler runs in a
warm worker process instead of this one; the fault checks stay here.
"""

from __future__ import annotations

import importlib
import json
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from moto.awslambda.models import LambdaFunction

from infra.catalogue import CATALOGUE
from infra.local import faults as local_faults
from infra.local.sandboxes import Context as _Context

ROOT = Path(__file__).resolve().parents[2]
FUNCTIONS = ROOT / "functions"


@dataclass
class Fault:
    """An error to raise in a function's next invocations matching `when` (tests)."""

    function: str
    error: str | None = None
    message: str = ""
    times: int = 1
    when: dict[str, Any] = field(default_factory=dict)
    #: sleep this long first; with no `error`, only delay the invocation
    delay: float = 0.0
    #: raise the error after the handler ran: its work is done, its answer lost (a timeout)
    after: bool = False


class _Faults:
    def __init__(self) -> None:
        self._items: list[Fault] = []
        self._lock = threading.Lock()

    def inject(self, fault: Fault) -> None:
        with self._lock:
            self._items.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def take(self, function: str, event: dict[str, Any]) -> Fault | None:
        with self._lock:
            for f in self._items:
                if f.function == function and f.times > 0 and all(
                        _dig(event, k) == v for k, v in f.when.items()):
                    f.times -= 1
                    return f
        return None


def _dig(event: dict[str, Any], path: str) -> Any:
    cur: Any = event
    for part in path.split("."):
        cur = cur.get(part) if isinstance(cur, dict) else None
    return cur


faults = _Faults()


class Dispatcher:
    """Maps each deployed function name to its handler, imported once."""

    def __init__(self, prefix: str, pool: Any = None) -> None:
        #: infra/local/sandboxes.Pool: run each invocation in a warm worker process
        self.pool = pool
        for p in (str(FUNCTIONS), str(FUNCTIONS / "api")):
            if p not in sys.path:
                sys.path.insert(0, p)
        self.targets = {f"{prefix}-{f.name}": (f.name, f.handler)
                        for f in CATALOGUE.functions if f.name != "api"}
        self._handlers: dict[str, Any] = {}

    def handler(self, physical: str) -> tuple[str, Any]:
        logical, spec = self.targets[physical]
        if physical not in self._handlers:
            module, _, attr = spec.rpartition(".")
            self._handlers[physical] = getattr(importlib.import_module(module), attr)
        return logical, self._handlers[physical]

    def invoke(self, fn: LambdaFunction, body: str, request_headers: Any,
               response_headers: Any) -> bytes:
        event = json.loads(body) if body else {}
        logical, spec = self.targets[fn.function_name]
        try:
            plan = local_faults.active()
            if plan and plan.task_before(logical):  # the service failed before the handler
                raise type(plan.plan.before_error, (Exception,), {})(
                    "injected by the local fault plan: the invocation failed before the "
                    "handler ran")
            fault = faults.take(logical, event)
            if fault and fault.delay:
                time.sleep(fault.delay)
            if fault and fault.error and not fault.after:
                raise type(fault.error, (Exception,), {})(fault.message)
            if self.pool is not None:
                answer: bytes = self.pool.invoke(fn.function_name, spec, fn.function_arn,
                                                 event).encode()
            else:
                _, handler = self.handler(fn.function_name)
                answer = json.dumps(handler(event, _Context(fn.function_name,
                                                            fn.function_arn)),
                                    default=str).encode()
            if fault and fault.error and fault.after:
                raise type(fault.error, (Exception,), {})(fault.message)
            if plan and plan.task_after(logical):  # work done, answer lost (a timeout)
                raise type(plan.plan.after_error, (Exception,), {})(
                    "injected by the local fault plan: the handler ran, its answer was lost")
            return answer
        except Exception as exc:  # noqa: BLE001 - returned to the caller as AWS does
            response_headers["x-amz-function-error"] = "Unhandled"
            return json.dumps({"errorType": type(exc).__name__,
                               "errorMessage": str(exc)}).encode()


_original_invoke = LambdaFunction.invoke


def install(dispatcher: Dispatcher) -> None:
    """Route every moto Lambda invoke of this process to `dispatcher`."""

    def invoke(self: LambdaFunction, body: str, request_headers: Any,
               response_headers: Any) -> str | bytes:
        if self.function_name in dispatcher.targets:
            return dispatcher.invoke(self, body, request_headers, response_headers)
        return _original_invoke(self, body, request_headers, response_headers)

    LambdaFunction.invoke = invoke  # type: ignore[method-assign]


def uninstall() -> None:
    LambdaFunction.invoke = _original_invoke  # type: ignore[method-assign]
