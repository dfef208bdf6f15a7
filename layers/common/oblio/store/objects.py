"""The adapter for S3: the tenants' objects (deleted with every version) and oblio's own
work files (plans and manifests, JSON, SSE-KMS)."""

from __future__ import annotations

import json
from collections import defaultdict
from decimal import Decimal
from typing import Any

from oblio import aws
from oblio.errors import TransientError
from oblio.settings import get_settings


def delete_all_versions(refs: list[tuple[str, str]]) -> int:
    """Delete every version and delete marker of each (bucket, key); returns the number of
    objects (keys) that had at least one version. DeleteObjects takes 1,000 a call."""
    s3 = aws.client("s3")
    by_bucket: dict[str, list[dict[str, str]]] = defaultdict(list)
    found = 0
    for bucket, key in refs:
        had = False
        paginator = s3.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=bucket, Prefix=key):
            for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
                if v["Key"] == key:
                    by_bucket[bucket].append({"Key": key, "VersionId": v["VersionId"]})
                    had = True
        found += had
    for bucket, objects in by_bucket.items():
        for start in range(0, len(objects), 1000):
            resp = s3.delete_objects(Bucket=bucket,
                                     Delete={"Objects": objects[start:start + 1000],
                                             "Quiet": True})
            if resp.get("Errors"):
                raise TransientError(f"S3 could not delete {len(resp['Errors'])} object "
                                     f"versions in bucket {bucket}")
    return found


def versions_left(refs: list[tuple[str, str]]) -> int:
    """How many of the (bucket, key) objects still have any version or delete marker."""
    s3 = aws.client("s3")
    left = 0
    for bucket, key in refs:
        resp = s3.list_object_versions(Bucket=bucket, Prefix=key, MaxKeys=10)
        if any(v["Key"] == key for v in resp.get("Versions", []) + resp.get("DeleteMarkers", [])):
            left += 1
    return left


def _work_bucket() -> str:
    return get_settings().bucket("work")


def _number(value: Any) -> Any:
    """DynamoDB numbers stay numbers in manifests (a key written as text would miss its item)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def put_json(key: str, data: Any) -> None:
    aws.client("s3").put_object(Bucket=_work_bucket(), Key=key,
                                Body=json.dumps(data, default=_number).encode(),
                                ServerSideEncryption="aws:kms",
                                SSEKMSKeyId=get_settings().kms_alias,
                                ContentType="application/json")


def get_json(key: str) -> Any:
    body = aws.client("s3").get_object(Bucket=_work_bucket(), Key=key)["Body"].read()
    # numbers come back as DynamoDB wants them (int or Decimal, never float): a numeric key
    # read from a manifest must address the same item
    return json.loads(body, parse_float=Decimal)


def exists(key: str) -> bool:
    s3 = aws.client("s3")
    try:
        s3.head_object(Bucket=_work_bucket(), Key=key)
    except s3.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return False
        raise
    return True


def delete_prefix(prefix: str) -> None:
    """Delete every version under a prefix of the work bucket (a finished request's files)."""
    s3 = aws.client("s3")
    objects: list[dict[str, str]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=_work_bucket(),
                                                                  Prefix=prefix):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            objects.append({"Key": v["Key"], "VersionId": v["VersionId"]})
    for start in range(0, len(objects), 1000):
        s3.delete_objects(Bucket=_work_bucket(),
                          Delete={"Objects": objects[start:start + 1000], "Quiet": True})
