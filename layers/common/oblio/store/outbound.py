"""What leaves oblio for other systems and people: events on oblio's bus (details name the
tenant, the request and the subject's HMAC reference, never an identity in clear), e-mails
(SES) and text messages (the codes topic that a tenant's SMS sender subscribes to)."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import ClientError

from oblio.core.errors import MessageRefused, TransientError
from oblio.core.settings import get_settings
from oblio.store import aws

#: the SNS topic of the catalogue that carries text messages to the tenants' SMS senders
CODES_TOPIC = "verification-codes"
_THROTTLED = ("Throttling", "ThrottlingException", "ServiceUnavailable")


def emit(detail_type: str, tenant_id: str, **detail: Any) -> None:
    resp = aws.client("events").put_events(Entries=[{
        "Source": "oblio",
        "DetailType": detail_type,
        "EventBusName": get_settings().event_bus,
        "Detail": json.dumps({"tenant_id": tenant_id, **detail}, default=str),
    }])
    if resp.get("FailedEntryCount"):
        raise TransientError(f"EventBridge refused the {detail_type} event")


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
