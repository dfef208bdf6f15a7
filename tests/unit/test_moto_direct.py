"""The local stack's direct path to moto's DynamoDB handler (infra/local/moto_http.py,
`DirectDynamoDB`): a DynamoDB call answered past Flask gets what moto's own Flask app answers
(status, body, content type), errors and refusals alike, and every other call still goes
through moto's app."""

from __future__ import annotations

import json
from typing import Any

import pytest
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from werkzeug.test import Client

from infra.local.moto_http import DirectDynamoDB

AUTH = ("AWS4-HMAC-SHA256 Credential=testing/20261207/us-east-1/dynamodb/aws4_request, "
        "SignedHeaders=host;x-amz-target, Signature=0")


@pytest.fixture(scope="module")
def apps() -> tuple[Client, Client]:
    moto_app = DomainDispatcherApplication(create_backend_app)
    return Client(moto_app), Client(DirectDynamoDB(moto_app))


def call(client: Client, operation: str, body: dict[str, Any]) -> tuple[int, Any, str]:
    r = client.post("/", data=json.dumps(body), headers={
        "X-Amz-Target": f"DynamoDB_20120810.{operation}", "Authorization": AUTH,
        "Content-Type": "application/x-amz-json-1.0", "Host": "127.0.0.1"})
    return r.status_code, json.loads(r.get_data(as_text=True) or "null"), r.content_type


def same(apps: tuple[Client, Client], operation: str, body: dict[str, Any]) -> Any:
    """The answer of both paths to a read (or a refused write): asserted equal."""
    moto_answer, direct_answer = (call(c, operation, body) for c in apps)
    assert direct_answer == moto_answer
    return direct_answer


def test_a_dynamodb_call_answered_directly_is_what_motos_app_answers(apps):
    moto_app, direct = apps
    for client, table in ((moto_app, "direct-a"), (direct, "direct-b")):
        assert call(client, "CreateTable", {
            "TableName": table, "BillingMode": "PAY_PER_REQUEST",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"},
                          {"AttributeName": "sk", "KeyType": "RANGE"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"},
                                     {"AttributeName": "sk", "AttributeType": "S"}]})[0] == 200
        for n in range(3):
            assert call(client, "PutItem", {"TableName": table, "Item": {
                "pk": {"S": "t"}, "sk": {"S": f"{n}"}, "b": {"B": "aGk="},
                "n": {"N": str(n)}}})[0] == 200
    for table in ("direct-a", "direct-b"):
        status, body, ctype = same(apps, "Query", {
            "TableName": table, "KeyConditionExpression": "pk = :p",
            "ExpressionAttributeValues": {":p": {"S": "t"}}, "ReturnConsumedCapacity": "TOTAL"})
        assert status == 200 and body["Count"] == 3 and "json" in ctype
        assert same(apps, "GetItem", {"TableName": table, "Key": {
            "pk": {"S": "t"}, "sk": {"S": "1"}}})[1]["Item"]["b"] == {"B": "aGk="}
        # a refused write: the same error, and nothing written by either
        status, body, _ = same(apps, "PutItem", {
            "TableName": table, "Item": {"pk": {"S": "t"}, "sk": {"S": "1"}},
            "ConditionExpression": "attribute_not_exists(pk)"})
        assert status == 400 and "ConditionalCheckFailed" in body["__type"]
    # both tables hold the same items (the writes of each path did the same)
    scans = [call(c, "Scan", {"TableName": t})[1]["Items"]
             for c, t in ((moto_app, "direct-a"), (direct, "direct-b"))]
    assert sorted(map(json.dumps, scans[0])) == sorted(map(json.dumps, scans[1]))
    status, body, _ = same(apps, "GetItem", {"TableName": "no-such-table",
                                             "Key": {"pk": {"S": "t"}}})
    assert status == 400 and "ResourceNotFoundException" in body["__type"]
    for client, table in ((moto_app, "direct-a"), (direct, "direct-b")):
        call(client, "DeleteTable", {"TableName": table})


def test_every_other_call_goes_through_motos_app():
    seen: list[str] = []

    def moto_app(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.append(environ.get("HTTP_X_AMZ_TARGET", environ["PATH_INFO"]))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"moto"]

    client = Client(DirectDynamoDB(moto_app))
    client.post("/", headers={"X-Amz-Target": "DynamoDBStreams_20120810.GetRecords"})
    client.post("/", headers={"X-Amz-Target": "AWSStepFunctions.StartExecution"})
    client.get("/", headers={"X-Amz-Target": "DynamoDB_20120810.GetItem"})
    client.put("/bucket/key", data=b"x")
    assert seen == ["DynamoDBStreams_20120810.GetRecords", "AWSStepFunctions.StartExecution",
                    "DynamoDB_20120810.GetItem", "/bucket/key"]
