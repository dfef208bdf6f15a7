"""The local stack's direct JSON answers for moto's DynamoDB item operations
(infra/local/moto_json): the same calls, on the same data, answered with and without the
shim, parse to the same answers in boto3 (strings, numbers, binaries, sets, lists, maps,
empty results, pages, capacity, a transaction refused), and an answer holding data the
shim does not write itself goes through moto's serializer."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local import moto_json

PLAIN = {"pk": {"S": "t#1"}, "sk": {"S": "a"}, "n": {"N": "12.50"}, "ss": {"SS": ["x", "y"]},
         "ns": {"NS": ["1", "2"]},
         "l": {"L": [{"S": "é"}, {"N": "3"}, {"BOOL": True}, {"NULL": True}]},
         "m": {"M": {"inner": {"M": {"deep": {"S": "v"}}}, "flag": {"BOOL": False}}},
         "email": {"S": "mario@example.com"}}
BINARY = {**PLAIN, "b": {"B": b"\x00\xffbin"}, "bs": {"BS": [b"\x01", b"\x02"]}}


def _calls(client: Any, item: dict[str, Any]) -> list[Any]:
    t = "json-table"
    client.create_table(TableName=t, BillingMode="PAY_PER_REQUEST",
                        AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"}
                                              for n in ("pk", "sk", "email")],
                        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                                   {"AttributeName": "sk", "KeyType": "RANGE"}],
                        GlobalSecondaryIndexes=[{
                            "IndexName": "by_email", "Projection": {"ProjectionType": "ALL"},
                            "KeySchema": [{"AttributeName": "email", "KeyType": "HASH"}]}])
    key = {"pk": item["pk"], "sk": item["sk"]}
    steps: list[Callable[[], Any]] = [
        lambda: client.put_item(TableName=t, Item=item, ReturnConsumedCapacity="TOTAL"),
        lambda: client.put_item(TableName=t, Item={**item, "sk": {"S": "b"}},
                                ReturnValues="ALL_OLD"),
        lambda: client.put_item(TableName=t, Item={**item, "n": {"N": "7"}},
                                ReturnValues="ALL_OLD"),
        lambda: client.get_item(TableName=t, Key=key),
        lambda: client.get_item(TableName=t, Key={**key, "sk": {"S": "nothing"}}),
        lambda: client.get_item(TableName=t, Key=key, ProjectionExpression="m.inner, ss"),
        lambda: client.query(TableName=t, KeyConditionExpression="pk = :p",
                             ExpressionAttributeValues={":p": item["pk"]}, Limit=1,
                             ReturnConsumedCapacity="INDEXES"),
        lambda: client.query(TableName=t, KeyConditionExpression="pk = :p",
                             ExpressionAttributeValues={":p": {"S": "none"}}),
        lambda: client.query(TableName=t, IndexName="by_email", Select="COUNT",
                             KeyConditionExpression="email = :e",
                             ExpressionAttributeValues={":e": item["email"]}),
        lambda: client.scan(TableName=t),
        lambda: client.batch_get_item(RequestItems={t: {"Keys": [key, {**key, "sk": {"S": "z"}}]}}),
        lambda: client.update_item(TableName=t, Key=key, UpdateExpression="SET n = n + :one",
                                   ExpressionAttributeValues={":one": {"N": "1"}},
                                   ReturnValues="UPDATED_NEW"),
        lambda: client.batch_write_item(RequestItems={t: [
            {"PutRequest": {"Item": {**item, "sk": {"S": "c"}}}},
            {"DeleteRequest": {"Key": {**key, "sk": {"S": "b"}}}}]}),
        lambda: client.transact_write_items(TransactItems=[{"Put": {
            "TableName": t, "Item": {**item, "sk": {"S": "d"}}}}]),
        lambda: client.transact_write_items(TransactItems=[{"ConditionCheck": {
            "TableName": t, "Key": key, "ConditionExpression": "attribute_not_exists(pk)"}}]),
        lambda: client.delete_item(TableName=t, Key=key, ReturnValues="ALL_OLD"),
        lambda: client.describe_table(TableName=t)["Table"]["KeySchema"],
    ]
    out: list[Any] = []
    for step in steps:
        try:
            answer = step()
        except client.exceptions.ClientError as exc:
            answer = {"error": exc.response["Error"]["Code"]}
        if isinstance(answer, dict):
            answer.pop("ResponseMetadata", None)
        out.append(answer)
    return out


def _run(shim: bool, item: dict[str, Any]) -> list[Any]:
    with mock_aws():
        if shim:
            moto_json.install()
        try:
            return _calls(boto3.client("dynamodb", region_name="us-east-1"), item)
        finally:
            moto_json.uninstall()


@pytest.mark.parametrize("item", [PLAIN, BINARY], ids=["plain", "binary"])
def test_the_shim_answers_what_motos_serializer_answers(monkeypatch, item):
    served: list[str] = []
    real = moto_json._orig_execute

    def by_moto(result: Any, context: Any) -> Any:
        served.append(context.operation_model.name)
        return real(result, context)

    monkeypatch.setattr(moto_json, "_orig_execute", by_moto)
    shimmed = _run(True, item)
    if item is PLAIN:  # moto's serializer wrote only what is not item data
        assert set(served) <= {"CreateTable", "DescribeTable"}, served
    else:  # binary values are bytes to moto: its serializer encodes them
        assert "GetItem" in served
    monkeypatch.undo()
    assert shimmed == _run(False, item)


def test_data_that_is_not_plain_json_goes_through_motos_serializer():
    assert moto_json._plain({"Items": [{"s": {"S": "x"}, "n": {"N": "1"}}], "Count": 1})
    assert moto_json._plain({"CapacityUnits": 0.5, "ok": True})
    for not_plain in ({"b": b"\x00"}, {"v": None}, {"l": [base64]}, {1: "x"}, {"t": (1, 2)}):
        assert not moto_json._plain(not_plain)
