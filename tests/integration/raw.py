"""Reads of the local AWS as they are, for the tests' checks: items through boto3 (typed as
DynamoDB returns them), object versions, the files a subject's items point to (the keys come
from the search API, the pointers from the data map), and what moto's SES and SNS kept of the
messages sent. Nothing here calls oblio's code."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

_de, _ser = TypeDeserializer(), TypeSerializer()


def plain(raw: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item as Python values."""
    return {k: _de.deserialize(v) for k, v in raw.items()}


def typed(key: dict[str, Any]) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in key.items()}


def get_item(aws_client: Any, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
    raw = aws_client("dynamodb").get_item(TableName=table, Key=typed(key)).get("Item")
    return plain(raw) if raw else None


def query(aws_client: Any, table: str, attr: str, value: str,
          tenant: str = "demo") -> list[dict[str, Any]]:
    """The tenant's items of a demo table whose `attr` equals `value` (its `by_<attr>`
    index), every page."""
    pages = aws_client("dynamodb").get_paginator("query").paginate(
        TableName=table, IndexName=f"by_{attr}",
        KeyConditionExpression="tenant_id = :t AND #a = :v",
        ExpressionAttributeNames={"#a": attr},
        ExpressionAttributeValues={":t": {"S": tenant}, ":v": {"S": value}})
    return [plain(i) for page in pages for i in page["Items"]]


def scan(aws_client: Any, table: str, key: str, tenant: str = "demo",
         ) -> dict[str, dict[str, Any]]:
    """The tenant's items of a table by `key`, read with a Scan of the test's own."""
    out: dict[str, dict[str, Any]] = {}
    for page in aws_client("dynamodb").get_paginator("scan").paginate(TableName=table):
        for raw in page["Items"]:
            item = plain(raw)
            if item.get("tenant_id") == tenant:
                out[item[key]] = item
    return out


def versions(aws_client: Any, bucket: str, key: str) -> int:
    """Versions and delete markers of exactly `key`."""
    resp = aws_client("s3").list_object_versions(Bucket=bucket, Prefix=key)
    return len([v for v in resp.get("Versions", []) + resp.get("DeleteMarkers", [])
                if v["Key"] == key])


def versions_under(aws_client: Any, bucket: str, prefix: str) -> int:
    resp = aws_client("s3").list_object_versions(Bucket=bucket, Prefix=prefix)
    return len(resp.get("Versions", []) + resp.get("DeleteMarkers", []))


def pointed_files(api: Any, aws_client: Any, dm: Any, tenant: str = "demo",
                  **identities: str) -> list[tuple[str, str]]:
    """The (bucket, key) of every S3 object the subject's items point to: the items are the
    ones `GET /v1/subjects` names, read from their tables, and the pointer attributes are the
    ones the data map declares."""
    found = api.get("/v1/subjects", **identities).json()["tables"]
    out: list[tuple[str, str]] = []
    for name, where in found.items():
        t = dm.tables[name]
        for key in where["keys"]:
            item = get_item(aws_client, t.table, key) or {}
            for attr, bucket in t.s3_attributes().items():
                if isinstance(item.get(attr), str) and item[attr]:
                    out.append((dm.buckets[bucket], item[attr]))
    return out


def bodies(aws_client: Any, refs: list[tuple[str, str]]) -> list[bytes]:
    s3 = aws_client("s3")
    return [s3.get_object(Bucket=b, Key=k)["Body"].read() for b, k in refs]


def mails(settings: Any) -> list[Any]:
    """Every e-mail sent through the local SES (moto keeps them)."""
    from moto.ses.models import ses_backends

    return list(ses_backends[settings.account_id][settings.region].sent_messages)


def texts(settings: Any) -> list[Any]:
    """Every message published on the codes topic, as (id, message, ...) (moto keeps them)."""
    from moto.sns.models import sns_backends

    topic = sns_backends[settings.account_id][settings.region].topics[
        settings.topic_arn("verification-codes")]
    return list(topic.sent_notifications)
