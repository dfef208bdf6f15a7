"""The local stack, started once for the integration suite on free ports, driven over HTTP.

Everything the stack's handlers log is captured, so that a test can prove no log line holds a
subject's identity."""

from __future__ import annotations

import io
import json
import logging
import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.stack import LocalStack, configure_environment, free_port
from tests.client import Api

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
    # Powertools' handler writes JSON to stdout: tee it into the capture as well
    from oblio.core.observability import logger

    for h in logger.handlers:
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
def dm(stack: LocalStack) -> Any:
    from oblio.core import datamap
    from oblio.core.settings import get_settings

    return datamap.load(get_settings().datamap)


@pytest.fixture
def subject(stack: LocalStack, dm: Any, request: pytest.FixtureRequest) -> dict[str, Any]:
    """A fresh subject with the full set of items in `demo`, unique to the test."""
    from infra.local import demo

    n = abs(hash(request.node.nodeid)) % 10**8
    email = f"subject.{n}@example.net"
    phone = f"+39347{n % 10**7:07d}"
    seeded = demo.seed_subject(dm, "demo", email, phone, external_id=f"EXT-{n}")
    return {"email": email, "phone": phone, "external_id": f"EXT-{n}", **seeded}


@pytest.fixture(scope="session")
def aws_client(stack: LocalStack) -> Any:
    from oblio.store import aws

    return aws.client


class EventLog:
    """Every oblio event so far (the local stack copies the bus to an SQS queue)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []

    def for_request(self, request_id: str) -> list[dict[str, Any]]:
        from oblio.core.settings import get_settings
        from oblio.store import aws

        sqs = aws.client("sqs")
        url = sqs.get_queue_url(QueueName=f"{get_settings().resource_prefix}-events")[
            "QueueUrl"]
        while True:
            msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages",
                                                                                 [])
            if not msgs:
                break
            self.seen += [json.loads(m["Body"]) for m in msgs]
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])
        return [e for e in self.seen if e["detail"].get("request_id") == request_id]


@pytest.fixture(scope="session")
def event_log(stack: LocalStack) -> EventLog:
    return EventLog()
