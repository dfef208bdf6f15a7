"""The local stack reads an item whole (infra/local/moto_speed): moto changes an item in place,
one action of an UpdateItem after the other, so without the shim a GetItem or a Query on
another thread could answer half an update (a request's status `completed` without its
result, as a CI run once saw). DynamoDB never does: every read here must see all of an
update or none of it."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from tests.unit.test_moto_index import shimmed_dynamodb

TABLE = "speed-reads"
FIELDS = [f"f{i}" for i in range(8)]


@pytest.fixture
def ddb() -> Iterator[Any]:
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can: a torn read shows
    try:
        with shimmed_dynamodb() as client:
            client.create_table(
                TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}])
            client.put_item(TableName=TABLE, Item={"pk": {"S": "x"},
                                                   **{f: {"N": "0"} for f in FIELDS}})
            yield client
    finally:
        sys.setswitchinterval(interval)


def _updates(count: int) -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    for i in range(1, count + 1):
        client.update_item(
            TableName=TABLE, Key={"pk": {"S": "x"}},
            UpdateExpression="SET " + ", ".join(f"{f} = :v" for f in FIELDS),
            ExpressionAttributeValues={":v": {"N": str(i)}})


@pytest.mark.parametrize("read", ["get_item", "query", "batch_get_item"])
def test_a_read_sees_all_of_an_update_or_none_of_it(ddb, read):
    def item() -> dict[str, Any]:
        if read == "get_item":
            return ddb.get_item(TableName=TABLE, Key={"pk": {"S": "x"}})["Item"]
        if read == "query":
            return ddb.query(TableName=TABLE, KeyConditionExpression="pk = :p",
                             ExpressionAttributeValues={":p": {"S": "x"}})["Items"][0]
        got = ddb.batch_get_item(RequestItems={TABLE: {"Keys": [{"pk": {"S": "x"}}]}})
        return got["Responses"][TABLE][0]

    writer = threading.Thread(target=_updates, args=(100,))
    writer.start()
    reads, torn = 0, []
    while writer.is_alive():
        got = item()
        reads += 1
        values = {got[f]["N"] for f in FIELDS}
        if len(values) > 1:
            torn.append(sorted(values))
    writer.join()
    assert reads > 20, reads  # the reads ran while the updates did
    assert torn == [], f"{len(torn)} of {reads} reads saw half an update: {torn[:3]}"
    assert {item()[f]["N"] for f in FIELDS} == {"100"}
