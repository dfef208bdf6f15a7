"""Events on oblio's bus. Details name the tenant, the request and the subject's HMAC
reference, never an identity in clear."""

from __future__ import annotations

import json
from typing import Any

from oblio import aws
from oblio.errors import TransientError
from oblio.settings import get_settings


def emit(detail_type: str, tenant_id: str, **detail: Any) -> None:
    resp = aws.client("events").put_events(Entries=[{
        "Source": "oblio",
        "DetailType": detail_type,
        "EventBusName": get_settings().event_bus,
        "Detail": json.dumps({"tenant_id": tenant_id, **detail}, default=str),
    }])
    if resp.get("FailedEntryCount"):
        raise TransientError(f"EventBridge refused the {detail_type} event")
