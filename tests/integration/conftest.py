"""The local stack, started once for the integration suite on free ports, driven over HTTP.

Tests act as a client would: through the API (`api`, `child_api`, `anon`), and they check
what the local AWS holds with boto3 clients of their own (`aws_client`), never through
oblio's code. Configuration is read where a client would read it from the deployment: the
settings (names of tables, buckets, state machines) and the data map. Faults come from the
local runtime's fault injection (`faults`). Two levers have no HTTP or AWS path and reach
into the running stack: the clock (`clock_ahead`, for expiry) and a few limits of the
settings (`stack_settings`).

Everything the stack's handlers log is captured, so that a test can prove no log line holds a
subject's identity."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import boto3
import pytest

from infra.local import lambdas
from infra.local.stack import LocalStack, configure_environment, free_port
from tests.client import Api
from tests.integration import mapstack

os.environ["POWERTOOLS_LOG_LEVEL"] = "DEBUG"  # the strictest case for the no-PII-in-logs check
os.environ["OBLIO_LOCAL_SCHEDULE_SECONDS"] = "0"  # no nightly sweep behind the tests' backs


class LogCapture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(self.format(record) + " " + json.dumps(
                {k: str(v) for k, v in record.__dict__.items()}, default=str))
        except Exception:  # noqa: BLE001
            self.lines.append(str(record.msg))


@pytest.fixture(scope="session")
def logs() -> LogCapture:
    return LogCapture()


@pytest.fixture(scope="session")
def stack(logs: LogCapture) -> Iterator[LocalStack]:
    aws_port, api_port = free_port(), free_port()
    configure_environment(aws_port)
    stdout = io.StringIO()
    s = LocalStack(api_port=api_port, aws_port=aws_port, demo_contacts=400, quiet=True,
                   write_state=False)
    s.start()
    for name in ("oblio", ""):
        logging.getLogger(name).addHandler(logs)
    # Powertools' handler (on the service's logger, "oblio") writes JSON to stdout: tee it
    # into the capture as well
    for h in logging.getLogger("oblio").handlers:
        if isinstance(h, logging.StreamHandler):
            h.setStream(_Tee(sys.stdout, stdout, logs))
    yield s
    s.stop()


class _Tee(io.TextIOBase):
    def __init__(self, out: Any, buf: io.StringIO, logs: LogCapture) -> None:
        self.out, self.buf, self.logs = out, buf, logs

    def write(self, text: str) -> int:
        self.logs.lines.append(text)
        return len(text)


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> Api:
    return Api(stack.info["api_url"], stack.info["tenants"]["demo"]["api_key"])


@pytest.fixture(scope="session")
def child_api(stack: LocalStack) -> Api:
    return Api(stack.info["api_url"], stack.info["tenants"]["demo-child"]["api_key"])


@pytest.fixture(scope="session")
def anon(stack: LocalStack) -> Api:
    return Api(stack.info["api_url"], None)


@pytest.fixture(scope="session")
def settings(stack: LocalStack) -> Any:
    """The deployment's settings (configuration: physical names of tables, buckets, state
    machines, the account and region)."""
    from oblio.core.settings import get_settings

    return get_settings()


@pytest.fixture(scope="session")
def dm(stack: LocalStack, settings: Any) -> Any:
    """The tenant's data map (configuration: which tables, keys and pointers there are)."""
    from oblio.core import datamap

    return datamap.load(settings.datamap)


@pytest.fixture
def subject(stack: LocalStack, dm: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
    """A fresh subject with the full set of items in `demo`, unique to the test."""
    from infra.local import demo

    # the same subject for the same test in every run (str's hash is salted per process)
    n = zlib.crc32(request.node.nodeid.encode()) % 10**8
    email = f"subject.{n}@example.net"
    phone = f"+39347{n % 10**7:07d}"
    seeded = demo.seed_subject(dm, "demo", email, phone, external_id=f"EXT-{n}")
    return {"email": email, "phone": phone, "external_id": f"EXT-{n}", **seeded}


@pytest.fixture(scope="session")
def aws_client(stack: LocalStack) -> Callable[[str], Any]:
    """`aws_client("s3")`: a boto3 client of the local AWS, made as any client of it would
    make one (not oblio's, so that nothing a test reads is counted in a request's `io`)."""
    clients: dict[str, Any] = {}

    def client(service: str) -> Any:
        if service not in clients:
            clients[service] = boto3.session.Session().client(
                service, endpoint_url=stack.info["aws_endpoint_url"],
                region_name=stack.info["region"], aws_access_key_id="testing",
                aws_secret_access_key="testing")
        return clients[service]

    return client


@pytest.fixture
def faults(stack: LocalStack) -> Iterator[Any]:
    """The local runtime's fault injection: `faults.inject(Fault("apply", "TableUnavailable",
    ..., when={"unit.table": "tickets"}))` makes the function's next matching invocations
    fail (or wait) as a Lambda would. Whatever a test left unused is cleared after it."""
    yield lambdas.faults
    lambdas.faults.clear()


@pytest.fixture
def clock_ahead(stack: LocalStack) -> Iterator[Callable[[timedelta], Any]]:
    """`with clock_ahead(timedelta(days=15)): ...`: the stack's clock moved forward (expiry
    of exports and links). No HTTP path moves time, and the stack runs in this process, so
    this is the one lever on the domain the suite pulls."""
    from oblio.core import clock

    @contextmanager
    def ahead(delta: timedelta) -> Iterator[None]:
        clock.advance(delta)
        try:
            yield
        finally:
            clock.reset()

    yield ahead
    clock.reset()


@pytest.fixture
def stack_settings(settings: Any) -> Iterator[Callable[..., None]]:
    """`stack_settings(bulk_max_bytes=10)`: a limit of the running stack changed for one
    test (a deployment would set it in its environment), put back afterwards."""
    saved: dict[str, Any] = {}

    def change(**values: Any) -> None:
        for name, value in values.items():
            assert hasattr(settings, name), name
            saved.setdefault(name, getattr(settings, name))
            setattr(settings, name, value)

    yield change
    for name, value in saved.items():
        setattr(settings, name, value)


@pytest.fixture
def tenant_settings(api: Api, child_api: Api) -> Iterator[Callable[..., dict[str, Any]]]:
    """`tenant_settings(api, export_ttl_days=30)`: a tenant's settings changed over
    `PATCH /v1/tenant` for one test (returns the answer), and put back as they were
    afterwards."""
    changed: list[tuple[Api, dict[str, Any]]] = []

    def change(client: Api, **values: Any) -> dict[str, Any]:
        before = client.get("/v1/tenant").json()["settings"]
        changed.append((client, {k: before.get(k) for k in values}))
        r = client.patch("/v1/tenant", {"settings": values})
        assert r.status_code == 200, r.text
        return dict(r.json())

    yield change
    for client, values in reversed(changed):
        r = client.patch("/v1/tenant", {"settings": values})
        assert r.status_code == 200, r.text


class EventLog:
    """Every oblio event so far (the local stack copies the bus to an SQS queue)."""

    def __init__(self, sqs: Any, url: str) -> None:
        self.sqs, self.url = sqs, url
        self.seen: list[dict[str, Any]] = []

    def drain(self) -> list[dict[str, Any]]:
        """Read what the queue holds into `seen`; returns every event so far."""
        while True:
            msgs = self.sqs.receive_message(QueueUrl=self.url, MaxNumberOfMessages=10).get(
                "Messages", [])
            if not msgs:
                return self.seen
            self.seen += [json.loads(m["Body"]) for m in msgs]
            self.sqs.delete_message_batch(QueueUrl=self.url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])

    def for_request(self, request_id: str, timeout: float = 15) -> list[dict[str, Any]]:
        """The request's events, once its last one (RequestCompleted or RequestFailed) is in:
        a request is ended before its events go out (they leave from its outbox, once each),
        so a client that sees it completed may see them a moment later."""
        deadline = time.monotonic() + timeout
        while True:
            mine = [e for e in self.drain() if e["detail"].get("request_id") == request_id]
            last = {"RequestCompleted", "RequestFailed"} & {e["detail-type"] for e in mine}
            if last or time.monotonic() > deadline:
                return mine
            time.sleep(0.2)


@pytest.fixture(scope="session")
def event_log(stack: LocalStack, settings: Any, aws_client: Callable[[str], Any]) -> EventLog:
    sqs = aws_client("sqs")
    url = sqs.get_queue_url(QueueName=f"{settings.resource_prefix}-events")["QueueUrl"]
    return EventLog(sqs, url)


@pytest.fixture(scope="session")
def map_stack(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """`with map_stack(map_file, fixtures_dir, ("acme", "globex")) as world:` a stack of that
    data map in its own process, as `oblio local up --datamap ... --no-demo --fixtures ...
    --tenant ...` starts it (see tests/integration/mapstack.py); the test fails if it does
    not start."""

    @contextmanager
    def start(datamap: Any, fixtures: Any, tenants: tuple[str, ...] = ("acme", "globex"),
              timeout: float = 180, extra: tuple[str, ...] = ()) -> Iterator[dict[str, Any]]:
        try:
            with mapstack.running(datamap, fixtures, tenants,
                                  tmp_path_factory.mktemp("mapstack"), timeout,
                                  extra) as world:
                yield world
        except mapstack.StackDidNotStart as exc:
            pytest.fail(str(exc))

    return start
