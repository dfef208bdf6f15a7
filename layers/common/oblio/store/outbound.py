"""What leaves oblio for other systems and people: events on oblio's bus (details name the
tenant, the request and the subject's HMAC reference, never an identity in clear), e-mails
(SES) and text messages (the codes topic that a tenant's SMS sender subscribes to)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from oblio.core.errors import MessageRefused, TransientError
from oblio.core.settings import get_settings
from oblio.store import aws, objects

#: the SNS topic of the catalogue that carries text messages to the tenants' SMS senders
CODES_TOPIC = "verification-codes"
_THROTTLED = ("Throttling", "ThrottlingException", "ServiceUnavailable")


def emit(detail_type: str, tenant_id: str, **detail: Any) -> None:
    resp = aws.client("events").put_events(Entries=[_entry(detail_type, tenant_id, detail)])
    if resp.get("FailedEntryCount"):
        raise TransientError(f"EventBridge refused the {detail_type} event")


#: PutEvents takes at most 10 entries
EVENTS_PER_CALL = 10
#: PutEvents between two records of a chunk's outbox (see `emit_many`)
OUTBOX_EVERY = 10
_PUT_ATTEMPTS = 4


def _entry(detail_type: str, tenant_id: str, detail: dict[str, Any]) -> dict[str, Any]:
    return {"Source": "oblio", "DetailType": detail_type,
            "EventBusName": get_settings().event_bus,
            "Detail": json.dumps({"tenant_id": tenant_id, **detail}, default=str)}


class NotAllSent(TransientError):
    """EventBridge kept refusing some events; `accepted` are the positions of those it took."""

    def __init__(self, message: str, accepted: list[int]) -> None:
        super().__init__(message)
        self.accepted = accepted


def _put_batch(entries: list[dict[str, Any]]) -> None:
    """One PutEvents; entries EventBridge refused are sent again (only they), a few times;
    NotAllSent names the entries it took when some are still refused."""
    events = aws.client("events")
    todo = list(range(len(entries)))
    for _ in range(_PUT_ATTEMPTS):
        resp = events.put_events(Entries=[entries[i] for i in todo])
        if not resp.get("FailedEntryCount"):
            return
        todo = [i for i, got in zip(todo, resp.get("Entries", []), strict=False)
                if got.get("ErrorCode")]
    raise NotAllSent(f"EventBridge refused {len(todo)} events",
                     [i for i in range(len(entries)) if i not in todo])


def emit_all(events: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
    """Put `(detail_type, tenant_id, detail)` events, each tenant's its own, in PutEvents of
    10 (entries EventBridge refused are sent again, a few times); NotAllSent names the
    positions of the events it did take when others are still refused."""
    accepted: list[int] = []
    for start in range(0, len(events), EVENTS_PER_CALL):
        batch = events[start:start + EVENTS_PER_CALL]
        try:
            _put_batch([_entry(t, tenant, d) for t, tenant, d in batch])
        except NotAllSent as exc:
            raise NotAllSent(str(exc), accepted + [start + i for i in exc.accepted]) from None
        accepted += range(start, start + len(batch))


def emit_many(tenant_id: str, events: Sequence[tuple[str, dict[str, Any]]], *,
              outbox: str | None = None) -> int:
    """Put `(detail_type, detail)` events in batches of 10 (PutEvents); returns how many were
    sent by this call.

    With `outbox` (a key of the work bucket), the numbers of the batches EventBridge accepted
    are recorded there after every `OUTBOX_EVERY` PutEvents, when the sending ends, and when
    it fails; a repeated call with the same events sends only the batches not recorded yet.
    What stays at-least-once: a worker killed outright (its time up, its process gone) sends
    the batches since the last record again, at most `OUTBOX_EVERY` x 10 events. (A record
    after each batch cost a PutObject, $0.000005, for every ten events: half again what their
    PutEvents costs.)"""
    done: set[int] = set(objects.get_json(outbox)) if outbox and objects.exists(outbox) \
        else set()
    recorded, sent = len(done), 0

    def record() -> None:
        nonlocal recorded
        if outbox and len(done) > recorded:
            objects.put_json(outbox, sorted(done))
            recorded = len(done)

    try:
        for n, start in enumerate(range(0, len(events), EVENTS_PER_CALL)):
            if n in done:
                continue
            batch = events[start:start + EVENTS_PER_CALL]
            _put_batch([_entry(t, tenant_id, d) for t, d in batch])
            sent += len(batch)
            done.add(n)
            if len(done) - recorded >= OUTBOX_EVERY:
                record()
    except Exception:
        # what went out, so that the retry skips it; the failure is what is raised (a record
        # that fails too leaves the batches since the last one to go out again)
        with contextlib.suppress(ClientError, BotoCoreError):
            record()
        raise
    record()
    return sent


def _refused(exc: ClientError, what: str) -> Exception:
    code = str(exc.response["Error"]["Code"])
    if code in _THROTTLED:
        return TransientError(f"{what} is throttling: the message will be retried")
    return MessageRefused(code)


def send_mail(to: str, subject: str, text: str) -> None:
    """One plain-text e-mail from the configured sender. Raises TransientError when SES
    throttles, MessageRefused (with SES's error code) when it refuses the message."""
    try:
        aws.client("ses").send_email(
            Source=get_settings().ses_sender, Destination={"ToAddresses": [to]},
            Message={"Subject": {"Data": subject, "Charset": "UTF-8"},
                     "Body": {"Text": {"Data": text, "Charset": "UTF-8"}}})
    except ClientError as exc:
        raise _refused(exc, "SES") from None


def send_sms(tenant_id: str, request_id: str, phone: str, text: str) -> None:
    """One text message, published on the codes topic with a `tenant_id` attribute that the
    tenant's SMS sender filters on. Raises like `send_mail`."""
    try:
        aws.client("sns").publish(
            TopicArn=get_settings().topic_arn(CODES_TOPIC),
            Message=json.dumps({"tenant_id": tenant_id, "request_id": request_id,
                                "phone": phone, "text": text}),
            MessageAttributes={"tenant_id": {"DataType": "String", "StringValue": tenant_id}})
    except ClientError as exc:
        raise _refused(exc, "SNS") from None


def tell(kind: str, address: str, subject: str, text: str, *, tenant_id: str,
         request_id: str) -> None:
    """A message to a person at an identity they proved: an e-mail for `email`, a text
    message for `phone`."""
    if kind == "email":
        send_mail(address, subject, text)
    else:
        send_sms(tenant_id, request_id, address, text)
