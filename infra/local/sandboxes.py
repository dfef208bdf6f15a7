"""Lambda sandboxes of the local stack: each invocation runs in a warm worker process.

By default the local stack runs every handler in its own process, beside moto's server, the
state machines and the API: one Python process, so one core whatever the machine has. With
`LocalStack(sandboxes=True)` (or `OBLIO_LOCAL_SANDBOXES=1`) an invocation is handed to a worker
process instead, as AWS runs each concurrent invocation in a sandbox of its own: an idle warm
worker when there is one, a new one (a cold start: it imports the handlers) when all are busy.
A worker runs one invocation at a time and is kept for the next; it talks to the same moto
server as everyone else, over HTTP.

What stays in the stack's process: moto (its tables, buckets, queues, workflows), the fault
checks of infra/local/lambdas.py (made before and after the worker's answer), the API. What a
worker cannot see: a monkeypatch or a fault plan's botocore hook of the stack's process, so
the stack refuses sandboxes with a fault plan, and tests that patch handlers keep the default.

A worker counts the botocore calls an invocation made and returns them with its answer;
`on_calls` listeners of the stack's process receive them (the bulk benchmark's "every call the
process made" sums the workers' in).

The protocol is one JSON line each way over two pipes of the worker's own (its stdout and
stderr stay the handlers' logs): `{"function", "handler", "arn", "event"}` in,
`{"result"}` or `{"error", "message"}` out, with `"calls": {"service.Operation": [n, s]}`.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]

#: listeners of the calls each sandboxed invocation made: f({"service.Operation": [n, s]})
on_calls: list[Callable[[dict[str, list[float]]], None]] = []


class SandboxDied(Exception):
    """A worker ended (or broke its protocol) during an invocation."""


class _Worker:
    def __init__(self) -> None:
        req_r, self._req_w = os.pipe()
        self._resp_r, resp_w = os.pipe()
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "infra.local.sandboxes", str(req_r), str(resp_w)],
            cwd=ROOT, env=env, pass_fds=(req_r, resp_w), stdin=subprocess.DEVNULL)
        os.close(req_r)
        os.close(resp_w)
        self._out: IO[bytes] = os.fdopen(self._req_w, "wb")
        self._in: IO[bytes] = os.fdopen(self._resp_r, "rb")

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            self._out.write(json.dumps(request).encode() + b"\n")
            self._out.flush()
            line = self._in.readline()
        except (BrokenPipeError, ValueError, OSError) as exc:
            raise SandboxDied(f"the sandbox process ended ({type(exc).__name__})") from None
        if not line:
            try:
                code: int | str = self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                code = "unknown (it closed its pipe and is still running)"
            raise SandboxDied(f"the sandbox process ended with exit code {code}")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._out.close()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)
        self._in.close()


class Pool:
    """Warm workers, one invocation each at a time; grows when all are busy."""

    def __init__(self) -> None:
        self._idle: list[_Worker] = []
        self._all: list[_Worker] = []
        self._lock = threading.Lock()
        self._closed = False
        self.started = 0

    def invoke(self, function: str, handler: str, arn: str, event: Any) -> Any:
        """The handler's result, as the JSON text it returned; raises its error."""
        worker = self._take()
        try:
            answer = worker.call({"function": function, "handler": handler, "arn": arn,
                                  "event": event})
        except SandboxDied:
            self._drop(worker)
            raise
        self._give(worker)
        calls = answer.get("calls") or {}
        for listener in list(on_calls):
            listener(calls)
        if "error" in answer:
            raise type(answer["error"], (Exception,), {})(answer.get("message", ""))
        return answer["result"]

    def _take(self) -> _Worker:
        with self._lock:
            if self._closed:
                raise SandboxDied("the local stack's sandboxes are closed")
            if self._idle:
                return self._idle.pop()
            self.started += 1
        worker = _Worker()
        with self._lock:
            if not self._closed:
                self._all.append(worker)
                return worker
        worker.close()  # the pool closed while this one started
        raise SandboxDied("the local stack's sandboxes are closed")

    def _give(self, worker: _Worker) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(worker)
                return
        worker.close()

    def _drop(self, worker: _Worker) -> None:
        with self._lock:
            if worker in self._all:
                self._all.remove(worker)
        worker.close()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers, self._all, self._idle = self._all, [], []
        for w in workers:
            w.close()


class Context:
    """The Lambda context a handler is given, locally."""

    def __init__(self, name: str, arn: str) -> None:
        self.function_name = name
        self.function_version = "$LATEST"
        self.invoked_function_arn = arn
        self.memory_limit_in_mb = 512
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{name}"
        self.log_stream_name = "local"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def hook_calls(record: Callable[[str, float], None]) -> Callable[[], None]:
    """Hand every botocore call of this process from now on (boto3's and PynamoDB's clients
    alike) to `record("service.Operation", seconds it took)`; returns what undoes the hook."""
    from botocore.client import BaseClient

    real = BaseClient._make_api_call

    def recorded(self: Any, operation: str, params: Any) -> Any:
        began = time.perf_counter()
        try:
            return real(self, operation, params)
        finally:
            record(f"{self.meta.service_model.endpoint_prefix}.{operation}",
                   time.perf_counter() - began)

    def undo() -> None:
        BaseClient._make_api_call = real

    BaseClient._make_api_call = recorded
    return undo


def serve(requests: IO[bytes], answers: IO[bytes]) -> None:
    for p in (str(ROOT / "functions"), str(ROOT / "functions" / "api")):
        if p not in sys.path:
            sys.path.insert(0, p)
    handlers: dict[str, Any] = {}
    # one invocation at a time: one table of its calls, cleared before the next
    calls: dict[str, list[float]] = {}
    lock = threading.Lock()

    def record(name: str, seconds: float) -> None:
        with lock:
            entry = calls.setdefault(name, [0, 0.0])
            entry[0] += 1
            entry[1] += seconds

    hook_calls(record)
    for line in requests:
        req = json.loads(line)
        calls.clear()
        spec = req["handler"]
        try:
            if spec not in handlers:
                module, _, attr = spec.rpartition(".")
                handlers[spec] = getattr(importlib.import_module(module), attr)
            result = handlers[spec](req["event"], Context(req["function"], req["arn"]))
            answer: dict[str, Any] = {"result": json.dumps(result, default=str)}
        except Exception as exc:  # noqa: BLE001 - returned to the caller as AWS does
            answer = {"error": type(exc).__name__, "message": str(exc)}
        with lock:
            answer["calls"] = {k: list(v) for k, v in calls.items()}
        answers.write(json.dumps(answer).encode() + b"\n")
        answers.flush()


if __name__ == "__main__":
    serve(os.fdopen(int(sys.argv[1]), "rb"), os.fdopen(int(sys.argv[2]), "wb"))
