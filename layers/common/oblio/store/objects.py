"""The adapter for S3: the tenants' objects (deleted with every version), oblio's own files
(plans, manifests, reports: always SSE-KMS under the deployment's key, written by
`put_encrypted` alone) and presigned URLs."""

from __future__ import annotations

import json
import random
import time
from collections import defaultdict
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from typing import IO, Any
from urllib.parse import quote

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from oblio.core.errors import TransientError
from oblio.core.settings import get_settings
from oblio.store import aws


def delete_all_versions(refs: list[tuple[str, str]],
                        seen: Callable[[int], int] | None = None) -> int:
    """Delete every version and delete marker of each (bucket, key); returns the number of
    objects (keys) that had at least one version. DeleteObjects takes 1,000 a call; versions
    it reports as not deleted are tried again (`_delete_versions`), and any left after that
    raise TransientError (a retry of the step finds and deletes them).

    `seen(found)`, when given, is called with the count found before anything is deleted, and
    its answer is what this returns: a caller records the count first, so that a retry that
    finds the objects already gone still reports them."""
    by_bucket: dict[str, list[dict[str, str]]] = defaultdict(list)
    found = 0
    for bucket, key in refs:
        versions = [v for v in _versions_under(bucket, key) if v["Key"] == key]
        by_bucket[bucket] += versions
        found += bool(versions)
    reported = seen(found) if seen is not None else found
    for bucket, objects in by_bucket.items():
        _delete_or_raise(bucket, objects)
    return reported


def _delete_or_raise(bucket: str, versions: list[dict[str, str]]) -> None:
    """`_delete_versions`, raising TransientError for any version still there after it."""
    left = _delete_versions(aws.bucket_client(bucket), bucket, versions)
    if left:
        raise TransientError(f"S3 could not delete {len(left)} object versions in "
                             f"bucket {bucket}")


#: up to this many versions are deleted with one DeleteObject each: S3 does not bill a
#: DELETE, while DeleteObjects is a POST billed as a PUT-class request (a request's few
#: files and work files cost nothing to delete); more go in DeleteObjects calls of 1,000
SINGLE_DELETES = 8


def _delete_versions(s3: Any, bucket: str, objects: list[dict[str, str]],
                     attempts: int = 4) -> list[dict[str, str]]:
    """Delete `objects` (each a Key and VersionId), trying again, after a jittered backoff,
    those S3 reports as not deleted (per-key SlowDown, InternalError...), up to `attempts`
    rounds; returns those still not deleted."""
    for n in range(attempts):
        if not objects:
            break
        if n:
            time.sleep(random.uniform(0, 0.05 * 2 ** n))
        objects = (_delete_one_by_one if len(objects) <= SINGLE_DELETES
                   else _delete_in_batches)(s3, bucket, objects)
    return objects


def _delete_one_by_one(s3: Any, bucket: str, objects: list[dict[str, str]],
                       ) -> list[dict[str, str]]:
    left: list[dict[str, str]] = []
    for o in objects:
        try:
            s3.delete_object(Bucket=bucket, **o)
        except ClientError:  # as DeleteObjects reports a key it could not delete
            left.append(o)
    return left


def _delete_in_batches(s3: Any, bucket: str, objects: list[dict[str, str]],
                       ) -> list[dict[str, str]]:
    left: list[dict[str, str]] = []
    for start in range(0, len(objects), 1000):
        batch = objects[start:start + 1000]
        resp = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        # what is tried again is what was asked, version and all (a key alone would only
        # put a delete marker over the versions): an error naming no version is each of
        # its key's versions in the batch
        for e in resp.get("Errors", []):
            left += [o for o in batch if o["Key"] == e["Key"]
                     and (not e.get("VersionId") or o.get("VersionId") == e["VersionId"])]
    return left


def versions_left(refs: list[tuple[str, str]]) -> int:
    """How many of the (bucket, key) objects still have any version or delete marker.

    One HEAD a key settles most: a GET-class request, a twelfth of a listing's price (a
    subject's file was listed twice, before its deletion and here: $0.00001). In a versioned
    bucket a key's newest version or delete marker is always its current one, so a 404 that
    names no delete marker means neither is left; in an unversioned bucket it means the object
    is gone; a 200 is an object left. Any other answer (a delete marker on top, which may hide
    versions; a refusal; an object encrypted with a customer key, whose HEAD needs that key)
    is settled by listing the key's versions, as before."""
    left = 0
    for bucket, key in refs:
        s3 = aws.bucket_client(bucket)
        try:
            s3.head_object(Bucket=bucket, Key=key)
            left += 1  # a current version
            continue
        except ClientError as exc:
            meta = exc.response.get("ResponseMetadata", {})
            if meta.get("HTTPStatusCode") == 404 and \
                    meta.get("HTTPHeaders", {}).get("x-amz-delete-marker") != "true":
                continue  # no version and no delete marker under this key
        resp = s3.list_object_versions(Bucket=bucket, Prefix=key, MaxKeys=10)
        if any(v["Key"] == key for v in resp.get("Versions", []) + resp.get("DeleteMarkers", [])):
            left += 1
    return left


def _versions_under(bucket: str, prefix: str) -> list[dict[str, str]]:
    s3 = aws.bucket_client(bucket)
    out: list[dict[str, str]] = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket,
                                                                  Prefix=prefix):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            out.append({"Key": v["Key"], "VersionId": v["VersionId"]})
    return out


def delete_prefixes(refs: list[tuple[str, str]]) -> int:
    """Delete every version and delete marker of every object under each (bucket, prefix);
    returns the number of objects (keys) that had any version."""
    found = 0
    for bucket, prefix in refs:
        versions = _versions_under(bucket, prefix)
        found += len({v["Key"] for v in versions})
        _delete_or_raise(bucket, versions)
    return found


def left_under(refs: list[tuple[str, str]]) -> int:
    """How many objects (keys) under the (bucket, prefix)es still have any version or
    delete marker."""
    left = 0
    for bucket, prefix in refs:
        keys: set[str] = set()
        resp = aws.bucket_client(bucket).list_object_versions(Bucket=bucket, Prefix=prefix, MaxKeys=1000)
        for v in resp.get("Versions", []) + resp.get("DeleteMarkers", []):
            keys.add(v["Key"])
        left += len(keys) if not resp.get("IsTruncated") else max(len(keys), 1000)
    return left


def current_keys(bucket: str, prefix: str) -> list[str]:
    """The keys of the current objects under a prefix (ListObjectsV2, paginated)."""
    s3 = aws.bucket_client(bucket)
    out: list[str] = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out


def size_of(bucket: str, key: str) -> int:
    """The object's size in bytes (HeadObject)."""
    return int(aws.bucket_client(bucket).head_object(Bucket=bucket, Key=key)["ContentLength"])


def version_of(bucket: str, key: str) -> tuple[float, str] | None:
    """What tells this upload of the object from another (HeadObject): when it was written
    (epoch seconds) and its version id (its ETag where the bucket keeps no versions); None
    when there is no such object (deleted, or never written)."""
    s3 = aws.bucket_client(bucket)
    try:
        head = s3.head_object(Bucket=bucket, Key=key)
    except s3.exceptions.ClientError as exc:
        if exc.response["Error"]["Code"] in ("404", "NoSuchKey", "NotFound"):
            return None
        raise
    version = head.get("VersionId")
    return (head["LastModified"].timestamp(),
            str(version if version and version != "null" else head.get("ETag", "")))


def read_head(bucket: str, key: str, length: int) -> bytes:
    """The object's first `length` bytes (a ranged GetObject)."""
    resp = aws.bucket_client(bucket).get_object(Bucket=bucket, Key=key, Range=f"bytes=0-{length - 1}")
    data: bytes = resp["Body"].read()
    return data


def stream(bucket: str, key: str) -> Any:
    """The object's body, a stream read as it is consumed (never held whole in memory)."""
    return aws.bucket_client(bucket).get_object(Bucket=bucket, Key=key)["Body"]


def _work_bucket() -> str:
    return get_settings().bucket("work")


def _number(value: Any) -> Any:
    """DynamoDB numbers stay numbers in manifests (a key written as text would miss its item)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def encryption_args(content_type: str, tags: dict[str, str] | None = None,
                    filename: str | None = None) -> dict[str, Any]:
    """The arguments of every object oblio writes: SSE-KMS under the deployment's key, its
    type, its tags (an `oblio-ttl` tag is what the lifecycle rules expire by), and the name a
    browser saves it under."""
    extra: dict[str, Any] = {"ServerSideEncryption": "aws:kms",
                             "SSEKMSKeyId": get_settings().kms_alias,
                             "ContentType": content_type}
    if tags:
        extra["Tagging"] = "&".join(f"{quote(k)}={quote(v)}" for k, v in tags.items())
    if filename:
        extra["ContentDisposition"] = f'attachment; filename="{filename}"'
    return extra


def put_encrypted(bucket: str, key: str, body: bytes | IO[bytes], *, content_type: str,
                  tags: dict[str, str] | None = None, size: int | None = None) -> None:
    """Write one object, encrypted. `body` is bytes, or a file read from its start: with its
    `size`, in one PutObject; without, streamed (S3's managed upload, in parts when large)."""
    s3 = aws.bucket_client(bucket)
    extra = encryption_args(content_type, tags)
    if isinstance(body, bytes):
        s3.put_object(Bucket=bucket, Key=key, Body=body, **extra)
        return
    body.seek(0)
    if size is not None:
        s3.put_object(Bucket=bucket, Key=key, Body=body, ContentLength=size, **extra)
    else:
        s3.upload_fileobj(body, bucket, key, ExtraArgs=extra)


def put_json(key: str, data: Any) -> None:
    """A JSON work file (a plan, a manifest) into the work bucket."""
    put_encrypted(_work_bucket(), key, json.dumps(data, default=_number).encode(),
                  content_type="application/json")


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


def delete_prefix(prefix: str) -> int:
    """Delete every version under a prefix of the work bucket (a finished request's files,
    a job's chunk manifests), retrying per-key errors; returns how many versions are left
    (0: the prefix is empty), so that a caller can say so rather than assume it."""
    bucket = _work_bucket()
    return len(_delete_versions(aws.bucket_client(bucket), bucket,
                                _versions_under(bucket, prefix)))


@lru_cache(maxsize=1)
def _signer() -> Any:
    # presigning makes no call: a client of its own, signing with SigV4 (S3 refuses any other
    # signature for an SSE-KMS object)
    return boto3.session.Session().client(
        "s3", region_name=get_settings().region, config=Config(signature_version="s3v4"))


def presign(method: str, bucket: str, key: str, seconds: int | None = None,
            filename: str | None = None) -> str:
    """A URL that GETs (`get_object`) or PUTs (`put_object`) the object for `seconds`
    (default: the `presign_seconds` setting); a GET saves it under `filename`."""
    params: dict[str, Any] = {"Bucket": bucket, "Key": key}
    if filename:
        params["ResponseContentDisposition"] = f'attachment; filename="{filename}"'
    url: str = _signer().generate_presigned_url(
        method, Params=params,
        ExpiresIn=max(1, seconds if seconds is not None else get_settings().presign_seconds))
    return url
