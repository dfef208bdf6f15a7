"""A fault plan for the local stack only: `oblio local up --faults plan.json`, or the
environment variable OBLIO_LOCAL_FAULTS (a path or inline JSON). Read here, by the local
runtime; nothing that runs in AWS Lambda imports this module.

    {"seed": 7,
     "task": {"before": 0.1, "after": 0.1, "functions": ["apply", "finish"]},
     "dynamodb": {"throttle": 0.2, "partial_batch": 0.1, "operations": ["Query"]},
     "s3": {"slowdown": 0.1, "partial_delete": 0.1}}

- task faults (infra/local/lambdas.py): `before` fails an invocation before its handler runs,
  `after` runs the handler and then fails it (its work done, its answer lost), both returned
  as a Lambda error the state machine sees (`task.before_error`, default
  Lambda.ServiceException; `task.after_error`, default Lambda.SdkClientException: the answer
  lost on its way back; "Sandbox.Timedout" is what a function past its timeout answers);
- DynamoDB and S3 faults: a botocore `before-send` hook on every client the local runtime's
  sessions make answers the request itself with a real-looking AWS answer (400
  ProvisionedThroughputExceededException / ThrottlingException, 503 SlowDown, a BatchWriteItem
  with UnprocessedItems, a BatchGetItem with UnprocessedKeys, a DeleteObjects with some keys
  under Errors), so that the SDK's own retries, PynamoDB's and the product's see them.

`functions` / `operations` limit a kind to those names (every one when absent). Clients whose
user agent carries `oblio-no-faults` (a test's own raw reads) are never faulted. Every injected
fault is counted; the counts are written to `.oblio/faults.json` (OBLIO_LOCAL_FAULTS_COUNTS)
while the stack runs and when it stops.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import botocore.session
from botocore.awsrequest import AWSResponse

ROOT = Path(__file__).resolve().parents[2]
EXEMPT = "oblio-no-faults"
KINDS = {"task": ("before", "after"), "dynamodb": ("throttle", "partial_batch"),
         "s3": ("slowdown", "partial_delete")}
FILTERS = {"task": "functions", "dynamodb": "operations", "s3": "operations"}


class PlanError(ValueError):
    """A fault plan that cannot be read (its message says what to fix)."""


@dataclass
class Plan:
    seed: int | None = None
    rates: dict[str, dict[str, float]] = field(default_factory=dict)
    only: dict[str, set[str]] = field(default_factory=dict)
    #: the Lambda error types the task faults answer with (the state machine's Retry sees them)
    before_error: str = "Lambda.ServiceException"
    after_error: str = "Lambda.SdkClientException"

    def rate(self, group: str, kind: str, name: str) -> float:
        only = self.only.get(group)
        if only and name not in only:
            return 0.0
        return self.rates.get(group, {}).get(kind, 0.0)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"seed": self.seed}
        for group, rates in self.rates.items():
            out[group] = dict(rates)
            if group in self.only:
                out[group][FILTERS[group]] = sorted(self.only[group])
        if "task" in out:
            out["task"].update(before_error=self.before_error, after_error=self.after_error)
        return out


def parse(text: str) -> Plan:
    """A plan from its JSON text; refuses unknown groups, kinds and rates outside [0, 1]."""
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise PlanError(f"fault plan: not JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise PlanError("fault plan: a JSON object such as {\"seed\": 7, \"task\": "
                        "{\"before\": 0.1}}")
    plan = Plan(seed=raw.get("seed"))
    if plan.seed is not None and not isinstance(plan.seed, int):
        raise PlanError("fault plan: seed is an integer")
    for group, body in raw.items():
        if group == "seed":
            continue
        if group not in KINDS or not isinstance(body, dict):
            raise PlanError(f"fault plan: unknown group {group!r} (task, dynamodb, s3)")
        for kind, value in body.items():
            if group == "task" and kind in ("before_error", "after_error"):
                if not isinstance(value, str) or not value or value.startswith("States."):
                    raise PlanError(f"fault plan: task.{kind} is a Lambda error type, such "
                                    "as Sandbox.Timedout (not States.*: a function cannot "
                                    "answer those)")
                setattr(plan, kind, value)
                continue
            if kind == FILTERS[group]:
                if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                    raise PlanError(f"fault plan: {group}.{kind} is a list of names")
                plan.only[group] = set(value)
                continue
            if kind not in KINDS[group]:
                raise PlanError(f"fault plan: unknown {group} fault {kind!r} "
                                f"({', '.join(KINDS[group])}, {FILTERS[group]})")
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise PlanError(f"fault plan: {group}.{kind} is a rate from 0 to 1")
            plan.rates.setdefault(group, {})[kind] = float(value)
    return plan


def load(source: str | os.PathLike[str] | None) -> Plan | None:
    """The plan named by `source` (a path, or inline JSON), else by OBLIO_LOCAL_FAULTS."""
    value = str(source) if source else os.environ.get("OBLIO_LOCAL_FAULTS", "")
    if not value.strip():
        return None
    if value.lstrip().startswith("{"):
        return parse(value)
    path = Path(value)
    if not path.is_file():
        raise PlanError(f"fault plan {value}: no such file (give a path or inline JSON)")
    return parse(path.read_text(encoding="utf-8"))


class Injector:
    """Decides, draws and counts the faults of one plan (thread-safe)."""

    def __init__(self, plan: Plan, counts_file: Path | None = None) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.counts_file = counts_file
        self._written = 0.0

    def draw(self, group: str, kind: str, name: str) -> bool:
        rate = self.plan.rate(group, kind, name)
        if rate <= 0:
            return False
        with self._lock:
            hit = self._rng.random() < rate
            if hit:
                self.counts[f"{group}.{kind}"] += 1
        if hit:
            self.write(force=False)
        return hit

    def pick(self, n: int) -> list[int]:
        """Indexes of a non-empty, not-complete part of n entries (n >= 2)."""
        with self._lock:
            k = self._rng.randint(1, n - 1)
            return sorted(self._rng.sample(range(n), k))

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            injected = dict(sorted(self.counts.items()))
        return {"plan": self.plan.as_dict(), "injected": injected,
                "total": sum(injected.values())}

    def write(self, force: bool = True) -> None:
        if self.counts_file is None:
            return
        now = time.monotonic()
        if not force and now - self._written < 0.5:
            return
        self._written = now
        self.counts_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.counts_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.snapshot(), indent=2))
        tmp.replace(self.counts_file)

    # -- task faults (the local Lambda runner asks before and after the handler) ---------

    def task_before(self, function: str) -> bool:
        return self.draw("task", "before", function)

    def task_after(self, function: str) -> bool:
        return self.draw("task", "after", function)

    # -- AWS faults (botocore before-send) -------------------------------------------------

    def before_send(self, request: Any, **kwargs: Any) -> AWSResponse | None:
        agent = request.headers.get("User-Agent", b"")
        if EXEMPT in (agent.decode() if isinstance(agent, bytes) else str(agent)):
            return None
        # before-send.<service id>.<operation>
        _, _, rest = str(kwargs.get("event_name", "")).partition(".")
        service, _, op = rest.partition(".")
        if service == "dynamodb" and op:
            return self._dynamodb(request, op)
        if service == "s3" and op:
            return self._s3(request, op)
        return None

    def _dynamodb(self, request: Any, op: str) -> AWSResponse | None:
        if self.draw("dynamodb", "throttle", op):
            code = "ThrottlingException" if op in ("TransactWriteItems",
                                                   "TransactGetItems") else \
                "ProvisionedThroughputExceededException"
            return _response(request, 400, {"Content-Type": "application/x-amz-json-1.0",
                                            "x-amzn-ErrorType": code},
                             json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}",
                                         "message": "Rate of requests exceeds the allowed "
                                         "throughput (injected by the local fault plan)"}))
        if op in ("BatchWriteItem", "BatchGetItem"):
            return self._partial_batch(request, op)
        return None

    def _partial_batch(self, request: Any, op: str) -> AWSResponse | None:
        body = json.loads(_bytes(request.body) or b"{}")
        entries = [(t, e) for t, es in body.get("RequestItems", {}).items()
                   for e in (es if op == "BatchWriteItem" else [{"Key": k} for k in
                                                                 es.get("Keys", [])])]
        if len(entries) < 2 or not self.draw("dynamodb", "partial_batch", op):
            return None
        left = set(self.pick(len(entries)))  # these stay unprocessed
        done: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for i, (table, entry) in enumerate(entries):
            (rest if i in left else done).setdefault(table, []).append(entry)
        if done:  # the part processed is really processed, by the local AWS
            sub = dict(body)
            if op == "BatchWriteItem":
                sub["RequestItems"] = done
            else:
                sub["RequestItems"] = {t: {**body["RequestItems"][t],
                                           "Keys": [e["Key"] for e in es]}
                                       for t, es in done.items()}
            answer = _forward(request, json.dumps(sub).encode())
            if answer.status_code != 200:
                return answer
            parsed = json.loads(answer.content or b"{}")
        else:
            parsed = {"UnprocessedItems": {}} if op == "BatchWriteItem" else \
                {"Responses": {}, "UnprocessedKeys": {}}
        if op == "BatchWriteItem":
            unprocessed = parsed.setdefault("UnprocessedItems", {})
            for table, es in rest.items():
                unprocessed.setdefault(table, []).extend(es)
        else:
            unprocessed = parsed.setdefault("UnprocessedKeys", {})
            for table, es in rest.items():
                spec = {k: v for k, v in body["RequestItems"][table].items() if k != "Keys"}
                unprocessed.setdefault(table, {**spec, "Keys": []})["Keys"].extend(
                    e["Key"] for e in es)
        return _response(request, 200, {"Content-Type": "application/x-amz-json-1.0"},
                         json.dumps(parsed))

    def _s3(self, request: Any, op: str) -> AWSResponse | None:
        if self.draw("s3", "slowdown", op):
            return _response(request, 503, {"Content-Type": "application/xml"},
                             "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>SlowDown"
                             "</Code><Message>Please reduce your request rate (injected by "
                             "the local fault plan).</Message></Error>")
        if op == "DeleteObjects":
            return self._partial_delete(request)
        return None

    def _partial_delete(self, request: Any) -> AWSResponse | None:
        import xml.etree.ElementTree as ET

        body = _bytes(request.body)
        root = ET.fromstring(body)
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        if ns:  # written back with the default namespace, as the SDK wrote it
            ET.register_namespace("", ns[1:-1])
        objects = root.findall(f"{ns}Object")
        if len(objects) < 2 or not self.draw("s3", "partial_delete", "DeleteObjects"):
            return None
        failed = set(self.pick(len(objects)))
        errors = []
        for i in sorted(failed, reverse=True):
            obj = objects[i]
            key = obj.findtext(f"{ns}Key") or ""
            version = obj.findtext(f"{ns}VersionId")
            errors.append((key, version))
            root.remove(obj)
        answer = _forward(request, ET.tostring(root, xml_declaration=True, encoding="UTF-8"),
                          md5=True)
        if answer.status_code != 200:
            return answer
        text = answer.content.decode()
        extra = "".join(
            f"<Error><Key>{escape(k)}</Key>"
            + (f"<VersionId>{escape(v)}</VersionId>" if v else "")
            + "<Code>InternalError</Code><Message>We encountered an internal error. Please "
            "try again (injected by the local fault plan).</Message></Error>"
            for k, v in errors)
        close = text.rfind("</DeleteResult>")
        text = text[:close] + extra + text[close:] if close >= 0 else text
        return _response(request, 200, {"Content-Type": "application/xml"}, text)


def _bytes(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, str):
        return body.encode()
    if hasattr(body, "read"):
        pos = body.tell() if hasattr(body, "tell") else None
        data = body.read()
        if pos is not None:
            body.seek(pos)
        return bytes(data)
    return bytes(body)


def _response(request: Any, status: int, headers: dict[str, str], body: str) -> AWSResponse:
    class _Raw:
        def __init__(self, data: bytes) -> None:
            self._data = data

        def stream(self, **_: Any) -> Any:
            yield self._data

        def read(self, *_: Any, **__: Any) -> bytes:
            data, self._data = self._data, b""
            return data

    data = body.encode()
    resp = AWSResponse(request.url, status, {**headers, "Content-Length": str(len(data))},
                       _Raw(data))
    resp._content = data  # type: ignore[attr-defined]
    return resp


def _forward(request: Any, body: bytes, md5: bool = False) -> Any:
    """Send the processed part of a batch to the local AWS itself (the endpoint only checks
    the signature's form, so the original headers do, with the new length and checksum)."""
    import base64
    import hashlib

    import requests

    headers = {k: (v.decode() if isinstance(v, bytes) else v)
               for k, v in request.headers.items()}
    headers["Content-Length"] = str(len(body))
    for h in list(headers):
        if h.lower().startswith("x-amz-checksum") or h.lower() in ("content-md5",
                                                                 "x-amz-sdk-checksum-algorithm",
                                                                 "x-amz-trailer"):
            headers.pop(h)
    if md5:
        headers["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    resp = requests.request(request.method, request.url, data=body, headers=headers,
                            timeout=60)
    answer = AWSResponse(request.url, resp.status_code, dict(resp.headers), None)
    answer._content = resp.content  # type: ignore[attr-defined]
    return answer


_active: Injector | None = None
_original_create_client = botocore.session.Session.create_client


def active() -> Injector | None:
    return _active


def patch_sessions() -> None:
    """Give every client any botocore session of this process makes from now on (boto3's,
    PynamoDB's, the product's own) the fault hook; a no-op until a plan is activated."""
    def create_client(self: Any, *args: Any, **kwargs: Any) -> Any:
        c = _original_create_client(self, *args, **kwargs)
        if not _made_by_the_emulator():
            c.meta.events.register("before-send", _hook, unique_id="oblio-local-faults")
        return c

    botocore.session.Session.create_client = create_client  # type: ignore[method-assign]


def _made_by_the_emulator() -> bool:
    """Whether the client being made is the local AWS's own (moto's Step Functions reading a
    Distributed Map's items from S3 with no retries): AWS does that inside the service, where
    the fault plan has no business."""
    import sys

    frame = sys._getframe(2)
    while frame is not None:
        if f"{os.sep}moto{os.sep}" in frame.f_code.co_filename:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def activate(plan: Plan, counts_file: Path | None = None) -> Injector:
    """Start injecting `plan`'s faults (after patch_sessions, once the stack is set up)."""
    global _active
    injector = Injector(plan, counts_file)
    _active = injector
    injector.write()
    return injector


def _hook(request: Any, **kwargs: Any) -> AWSResponse | None:
    injector = _active
    return injector.before_send(request, **kwargs) if injector else None


def uninstall() -> dict[str, Any] | None:
    global _active
    injector, _active = _active, None
    botocore.session.Session.create_client = _original_create_client  # type: ignore[method-assign]
    if injector is None:
        return None
    injector.write()
    return injector.snapshot()


@contextmanager
def suspended() -> Iterator[None]:
    """No fault drawn inside the block (a test's own setup and checks on a running stack)."""
    global _active
    saved, _active = _active, None
    try:
        yield
    finally:
        _active = saved
