"""The local stack's candidate lists for moto's DynamoDB queries (infra/local/moto_speed): kept
up to date item by item as items are put, updated, deleted, written in batches and in
transactions (a transaction refused leaves its items as they were), every query answers
exactly what a query over all the table's items answers: random writes, then every kind of
query the shims serve, compared with the table's items read whole."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from infra.local import moto_speed

TABLE = "speed-contacts"


@contextlib.contextmanager
def shimmed_dynamodb() -> Iterator[Any]:
    """An in-process moto with the local stack's shims installed, and a DynamoDB client."""
    with mock_aws():
        moto_speed.install()
        try:
            yield boto3.client("dynamodb", region_name="us-east-1")
        finally:
            moto_speed.uninstall()


@pytest.fixture
def ddb() -> Iterator[Any]:
    with shimmed_dynamodb() as client:
        client.create_table(
            TableName=TABLE, BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": n, "AttributeType": "S"}
                                  for n in ("pk", "sk", "tenant_id", "email", "grp")],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"},
                       {"AttributeName": "sk", "KeyType": "RANGE"}],
            GlobalSecondaryIndexes=[
                {"IndexName": "by_email", "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": "tenant_id", "KeyType": "HASH"},
                               {"AttributeName": "email", "KeyType": "RANGE"}]},
                {"IndexName": "by_grp", "Projection": {"ProjectionType": "ALL"},
                 "KeySchema": [{"AttributeName": "grp", "KeyType": "HASH"},
                               {"AttributeName": "sk", "KeyType": "RANGE"}]}])
        yield client


def _query(client: Any, **kw: Any) -> list[tuple[str, str]]:
    out, start = [], None
    while True:
        page = client.query(TableName=TABLE, Limit=3, **kw,
                            **({"ExclusiveStartKey": start} if start else {}))
        out += [(i["pk"]["S"], i["sk"]["S"]) for i in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            return out


def _all(client: Any) -> list[dict[str, Any]]:
    items, start = [], None
    while True:
        page = client.scan(TableName=TABLE, **({"ExclusiveStartKey": start} if start else {}))
        items += page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return items


def _values(rng: random.Random) -> dict[str, str]:
    return {"email": f"e{rng.randrange(6)}", "grp": f"b{rng.randrange(3)}"}


def _write(client: Any, rng: random.Random) -> None:
    key = {"pk": {"S": f"t{rng.randrange(2)}#{rng.randrange(3)}"},
           "sk": {"S": f"s{rng.randrange(8)}"}}
    v = _values(rng)
    op = rng.randrange(6)
    if op == 0:
        client.put_item(TableName=TABLE, Item={**key, "tenant_id": {"S": key["pk"]["S"][:2]},
                                               **{k: {"S": x} for k, x in v.items()}})
    elif op == 1:  # in place, or a new item made by the update
        client.update_item(TableName=TABLE, Key=key, UpdateExpression="SET email = :e, "
                           "tenant_id = :t", ExpressionAttributeValues={
                               ":e": {"S": v["email"]}, ":t": {"S": key["pk"]["S"][:2]}})
    elif op == 2:  # an attribute removed: the item leaves that index
        client.update_item(TableName=TABLE, Key=key, UpdateExpression="REMOVE grp")
    elif op == 3:
        client.delete_item(TableName=TABLE, Key=key)
    elif op == 4:
        client.batch_write_item(RequestItems={TABLE: [
            {"PutRequest": {"Item": {**key, "tenant_id": {"S": "t1"}, "email": {"S": "e1"},
                                     "grp": {"S": v["grp"]}}}},
            {"DeleteRequest": {"Key": {"pk": {"S": "t0#0"}, "sk": {"S": f"s{rng.randrange(8)}"}}}},
        ]})
    else:  # a transaction, refused half the time: its first write is undone
        other = {"pk": {"S": "t0#1"}, "sk": {"S": f"s{rng.randrange(8)}"}}
        if other == key:
            return
        with contextlib.suppress(client.exceptions.TransactionCanceledException):
            client.transact_write_items(TransactItems=[
                {"Put": {"TableName": TABLE, "Item": {**key, "tenant_id": {"S": "t0"},
                                                      "email": {"S": v["email"]}}}},
                {"Update": {"TableName": TABLE, "Key": other,
                            "UpdateExpression": "SET grp = :b",
                            "ConditionExpression": "attribute_exists(pk)"
                            if rng.random() < 0.5 else "attribute_not_exists(nothing)",
                            "ExpressionAttributeValues": {":b": {"S": v["grp"]}}}}])


def _check(client: Any) -> None:
    items = _all(client)

    def want(**equal: str) -> list[tuple[str, str]]:
        return sorted((i["pk"]["S"], i["sk"]["S"]) for i in items
                      if all(i.get(k, {}).get("S") == v for k, v in equal.items()))

    for t in ("t0", "t1"):
        for e in (f"e{n}" for n in range(6)):
            got = _query(client, IndexName="by_email", KeyConditionExpression=
                         "tenant_id = :t AND email = :e", ExpressionAttributeValues={
                             ":t": {"S": t}, ":e": {"S": e}})
            assert sorted(got) == want(tenant_id=t, email=e)
    for g in ("b0", "b1", "b2"):
        got = _query(client, IndexName="by_grp", KeyConditionExpression="grp = :b",
                     ExpressionAttributeValues={":b": {"S": g}})
        assert sorted(got) == want(grp=g)
    for pk in (f"t{a}#{b}" for a in range(2) for b in range(3)):
        got = _query(client, KeyConditionExpression="pk = :p AND begins_with(sk, :s)",
                     ExpressionAttributeValues={":p": {"S": pk}, ":s": {"S": "s"}})
        assert got == want(pk=pk)  # in sort-key order
        got = _query(client, KeyConditionExpression="pk = :p AND sk = :s",
                     ExpressionAttributeValues={":p": {"S": pk}, ":s": {"S": "s3"}})
        assert got == want(pk=pk, sk="s3")


@pytest.mark.parametrize("seed", range(4))
def test_every_query_answers_what_the_whole_table_says_after_random_writes(ddb, seed):
    rng = random.Random(seed)
    for step in range(160):
        _write(ddb, rng)
        if step % 8 == 0:  # the lists are made, then kept up to date
            _check(ddb)
    _check(ddb)


def test_a_table_deleted_and_made_again_is_listed_afresh(ddb):
    ddb.put_item(TableName=TABLE, Item={"pk": {"S": "t0#0"}, "sk": {"S": "s0"},
                                        "tenant_id": {"S": "t0"}, "email": {"S": "e0"}})
    _check(ddb)
    desc = ddb.describe_table(TableName=TABLE)["Table"]
    ddb.delete_table(TableName=TABLE)
    ddb.create_table(TableName=TABLE, BillingMode="PAY_PER_REQUEST",
                     AttributeDefinitions=desc["AttributeDefinitions"],
                     KeySchema=desc["KeySchema"], GlobalSecondaryIndexes=[
                         {k: g[k] for k in ("IndexName", "KeySchema", "Projection")}
                         for g in desc["GlobalSecondaryIndexes"]])
    assert _query(ddb, IndexName="by_email", KeyConditionExpression=
                  "tenant_id = :t AND email = :e", ExpressionAttributeValues={
                      ":t": {"S": "t0"}, ":e": {"S": "e0"}}) == []
    _check(ddb)
