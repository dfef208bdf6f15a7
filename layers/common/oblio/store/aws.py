"""AWS clients, created once per process, and the I/O counter behind a request's `io`.

Every client made here reports each call it makes to the counter of the current invocation
(a context variable, so parallel Map iterations in one process count apart).
"""

from __future__ import annotations

import contextvars
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config

from oblio.core.settings import get_settings

_io: contextvars.ContextVar[IoCounter | None] = contextvars.ContextVar("oblio_io", default=None)
_clients: dict[str, Any] = {}
_lock = threading.Lock()
_counted: set[int] = set()


class IoCounter:
    """AWS calls by `service.Operation`, and DynamoDB capacity units consumed."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.capacity: float = 0.0

    def add(self, other: IoCounter) -> None:
        self.calls.update(other.calls)
        self.capacity += other.capacity

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(sorted(self.calls.items()))
        out.setdefault("dynamodb.Scan", 0)
        if self.capacity:
            out["dynamodb.capacity_units"] = round(self.capacity, 2)
        return out


@contextmanager
def counting(counter: IoCounter | None = None) -> Iterator[IoCounter]:
    """Count the AWS calls made inside the block (in this thread / task)."""
    counter = counter or IoCounter()
    token = _io.set(counter)
    try:
        yield counter
    finally:
        _io.reset(token)


def _after_call(http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
    counter = _io.get()
    if counter is None:
        return
    counter.calls[f"{model.service_model.service_name}.{model.name}"] += 1
    if isinstance(parsed, dict):
        cc = parsed.get("ConsumedCapacity")
        for entry in cc if isinstance(cc, list) else [cc] if cc else []:
            counter.capacity += float(entry.get("CapacityUnits", 0))


def count_calls(client: Any) -> None:
    """Report the calls of a client made elsewhere (PynamoDB's) to the counter too; once."""
    if id(client) not in _counted:
        with _lock:
            if id(client) not in _counted:
                client.meta.events.register("after-call.*.*", _after_call)
                _counted.add(id(client))


def client(service: str) -> Any:
    """The process's client for `service` (follows AWS_ENDPOINT_URL like every boto3 client)."""
    found = _clients.get(service)
    if found is not None:
        return found
    with _lock:
        if service not in _clients:
            s = get_settings()
            c = boto3.session.Session().client(
                service, region_name=s.region,
                # standard mode: exponential backoff with full jitter on throttles, 5xx and
                # connection errors; what outlasts 10 attempts is a TransientError for the
                # state machine's Retry
                config=Config(retries={"mode": "standard", "max_attempts": 10},
                              max_pool_connections=32),
            )
            c.meta.events.register("after-call.*.*", _after_call)
            _clients[service] = c
        return _clients[service]


def reset_clients() -> None:
    """Forget the cached clients (tests that switch endpoints)."""
    with _lock:
        _clients.clear()
