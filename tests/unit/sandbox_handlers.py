"""Handlers that tests/unit/test_sandboxes.py runs in Lambda sandbox processes."""

from __future__ import annotations

import os
import time
from typing import Any


def echo(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return {"event": event, "function": context.function_name, "pid": os.getpid()}


def slow(event: dict[str, Any], context: Any) -> dict[str, Any]:
    time.sleep(float(event.get("seconds", 0.5)))
    return {"pid": os.getpid()}


def boom(event: dict[str, Any], context: Any) -> None:
    raise ValueError("the field 'email' is not an e-mail address")


def die(event: dict[str, Any], context: Any) -> None:
    os._exit(3)


def calls(event: dict[str, Any], context: Any) -> int:
    """Two S3 calls, answered by a stubber (nothing leaves the process)."""
    import boto3
    from botocore.stub import Stubber

    s3 = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x",
                      aws_secret_access_key="x", endpoint_url="http://127.0.0.1:9")
    with Stubber(s3) as stub:
        stub.add_response("list_buckets", {"Buckets": []})
        stub.add_response("list_buckets", {"Buckets": []})
        s3.list_buckets()
        s3.list_buckets()
    return 2
