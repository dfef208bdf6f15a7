"""AWS clients, created once per process, and the I/O counter behind a request's `io`.

Every client made here reports each call it makes to the counter of the current invocation
(a context variable, so parallel Map iterations in one process count apart).
"""

from __future__ import annotations

import contextvars
import threading
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import boto3
from botocore.config import Config

from oblio.core.settings import get_settings
from oblio.store import units

_io: contextvars.ContextVar[IoCounter | None] = contextvars.ContextVar("oblio_io", default=None)
_clients: dict[str, Any] = {}
_lock = threading.Lock()
_counted: set[int] = set()


class IoCounter:
    """AWS calls by `service.Operation`, each also under its owner (`tenant:` the data map's
    tables and buckets, `oblio:` everything else), and DynamoDB's units by owner and kind
    (`tenant:read`, `oblio:write`, ...): reported by DynamoDB on AWS, estimated by its
    item-size rules on a local endpoint (`estimated`)."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.owned: Counter[str] = Counter()
        self.units: defaultdict[str, float] = defaultdict(float)
        #: what is not a call but is billed (EventBridge entries, executions started by type)
        self.notes: defaultdict[str, float] = defaultdict(float)
        self.capacity: float = 0.0
        self.estimated = False
        self._lock = threading.Lock()

    def add(self, other: IoCounter) -> None:
        with self._lock:
            self.calls.update(other.calls)
            self.owned.update(other.owned)
            for mine, theirs in ((self.units, other.units), (self.notes, other.notes)):
                for k, v in theirs.items():
                    mine[k] += v
            self.capacity += other.capacity
            self.estimated |= other.estimated

    def record(self, service: str, operation: str, owner: str,
               units: list[tuple[str, float]], estimated: bool) -> None:
        # the threads of one invocation (a bounded pool of lookups) share its counter
        with self._lock:
            self.calls[f"{service}.{operation}"] += 1
            self.owned[f"{owner}:{service}.{operation}"] += 1
            for kind_owner, n in units:
                self.units[kind_owner] += n
                if not estimated:
                    self.capacity += n
            self.estimated |= estimated and bool(units)

    def note(self, name: str, n: float) -> None:
        with self._lock:
            self.notes[name] += n

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = dict(sorted(self.calls.items()))
        out.setdefault("dynamodb.Scan", 0)
        if self.capacity:
            out["dynamodb.capacity_units"] = round(self.capacity, 2)
        return out


@contextmanager
def counting(counter: IoCounter | None = None) -> Iterator[IoCounter]:
    """Count the AWS calls made inside the block (in this thread / task). Blocks nest: a
    call is counted by every counter open around it (a step's own and its invocation's)."""
    counter = counter or IoCounter()
    outer = _io.get()
    token = _io.set(counter if outer is None else _Both(counter, outer))
    try:
        yield counter
    finally:
        _io.reset(token)


class _Both(IoCounter):
    """The inner counter and every counter around it, as one."""

    def __init__(self, inner: IoCounter, outer: IoCounter) -> None:
        self.inner, self.outer = inner, outer

    def record(self, *args: Any, **kwargs: Any) -> None:
        self.inner.record(*args, **kwargs)
        self.outer.record(*args, **kwargs)

    def note(self, name: str, n: float) -> None:
        self.inner.note(name, n)
        self.outer.note(name, n)


def note(name: str, n: float = 1) -> None:
    """Count something billed that is not a call (an execution started, by type) with the
    calls of the running block; nothing when nothing is counting."""
    counter = _io.get()
    if counter is not None:
        counter.note(name, n)


def _before_parameters(local: bool) -> Any:
    def before(params: dict[str, Any], model: Any, context: dict[str, Any],
               **_: Any) -> None:
        context["oblio_params"] = params
        context["oblio_local"] = local
        if not local and model.service_model.service_name == "dynamodb" and \
                model.name in units.CAPACITY_OPERATIONS:
            params.setdefault("ReturnConsumedCapacity", "TOTAL")
    return before


def _after_call(http_response: Any, parsed: Any, model: Any, context: Any = None,
                **_: Any) -> None:
    counter = _io.get()
    if counter is None:
        return
    service, operation = model.service_model.service_name, model.name
    params = (context or {}).get("oblio_params") or {}
    own = get_settings().own_resource
    owner = units.owner_of(service, params, operation, own)
    used: list[tuple[str, float]] = []
    estimated = False
    if service == "dynamodb" and isinstance(parsed, dict):
        # a local endpoint's (moto's) reported capacity is not DynamoDB's: estimated there
        found = [] if (context or {}).get("oblio_local") else \
            list(units.reported(operation, parsed))
        if not found and operation in units.CAPACITY_OPERATIONS and \
                not (parsed.get("Error") or {}).get("Code"):
            found, estimated = list(units.estimate(operation, params, parsed)), True
        used = [(f"{'oblio' if own(t) else 'tenant'}:{kind}", n) for t, kind, n in found]
    counter.record(service, operation, owner, used, estimated)
    if service == "events" and operation == "PutEvents":  # billed per entry, not per call
        counter.note("events.entries", len(params.get("Entries") or []))


def _is_local(endpoint_url: str | None) -> bool:
    return bool(endpoint_url) and "amazonaws.com" not in str(endpoint_url)


def _meter(client: Any) -> None:
    client.meta.events.register("before-parameter-build",
                                _before_parameters(_is_local(client.meta.endpoint_url)))
    client.meta.events.register("after-call.*.*", _after_call)


def count_calls(client: Any) -> None:
    """Report the calls of a client made elsewhere (PynamoDB's, Powertools') to the counter
    too; once."""
    if id(client) not in _counted:
        with _lock:
            if id(client) not in _counted:
                _meter(client)
                _counted.add(id(client))


def data_client(service: str) -> Any:
    """The client for the tenant's own data (the data map's tables and buckets): the
    process's client, or, on a local stack attached to the user's own local AWS, a client of
    that endpoint."""
    endpoint = get_settings().data_endpoint_url
    return client(service) if not endpoint else client(service, endpoint)


def table_client(table: str) -> Any:
    """The DynamoDB client for `table`: oblio's own tables on oblio's AWS, the others (the
    data map's) where the tenant's data lives."""
    return client("dynamodb") if get_settings().own_resource(table) else \
        data_client("dynamodb")


def bucket_client(bucket: str) -> Any:
    """The S3 client for `bucket`: oblio's own buckets on oblio's AWS, the others (the data
    map's) where the tenant's data lives."""
    return client("s3") if get_settings().own_resource(bucket) else data_client("s3")


def client(service: str, endpoint_url: str | None = None) -> Any:
    """The process's client for `service` (follows AWS_ENDPOINT_URL like every boto3 client,
    or talks to `endpoint_url`)."""
    name = service if endpoint_url is None else f"{service}@{endpoint_url}"
    found = _clients.get(name)
    if found is not None:
        return found
    with _lock:
        if name not in _clients:
            s = get_settings()
            c = boto3.session.Session().client(
                service, region_name=s.region, endpoint_url=endpoint_url,
                # standard mode: exponential backoff with full jitter on throttles, 5xx and
                # connection errors; what outlasts 10 attempts is a TransientError for the
                # state machine's Retry
                config=Config(retries={"mode": "standard", "max_attempts": 10},
                              max_pool_connections=32),
            )
            _meter(c)
            _clients[name] = c
        return _clients[name]


def reset_clients() -> None:
    """Forget the cached clients (tests that switch endpoints)."""
    with _lock:
        _clients.clear()
