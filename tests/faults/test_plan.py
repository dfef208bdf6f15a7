"""The fault plan of the local stack: how it is read, and what its hook answers the SDK (a moto
server of the test's own, plain boto3 clients)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from moto.server import ThreadedMotoServer

from infra.local import faults
from infra.local.stack import free_port


def test_a_plan_is_read_from_inline_json_or_a_file(tmp_path: Any) -> None:
    text = '{"seed": 7, "task": {"before": 0.1, "after": 0.1, "functions": ["apply"]}, ' \
           '"dynamodb": {"throttle": 0.2, "partial_batch": 0.1}, ' \
           '"s3": {"slowdown": 0.1, "partial_delete": 0.1, "operations": ["GetObject"]}}'
    plan = faults.load(text)
    assert plan is not None and plan.seed == 7
    assert plan.rate("task", "before", "apply") == 0.1
    assert plan.rate("task", "before", "finish") == 0.0  # not in the filter
    assert plan.rate("s3", "slowdown", "PutObject") == 0.0
    assert plan.rate("dynamodb", "throttle", "Query") == 0.2
    path = tmp_path / "plan.json"
    path.write_text(text)
    assert faults.load(str(path)).as_dict() == plan.as_dict()  # type: ignore[union-attr]


@pytest.mark.parametrize("text, says", [
    ('{"dynamodb": {"throttle": 2}}', "rate from 0 to 1"),
    ('{"lambda": {"before": 0.1}}', "unknown group"),
    ('{"s3": {"slow": 0.1}}', "unknown s3 fault"),
    ('{"task": {"after_error": "States.Timeout"}}', "not States."),
    ('{not json', "not JSON"),
    ('/no/such/plan.json', "no such file"),
])
def test_a_bad_plan_is_refused_with_what_to_fix(text: str, says: str) -> None:
    with pytest.raises(faults.PlanError, match=says):
        faults.load(text)


def test_no_plan_without_an_option_or_the_environment(monkeypatch: Any) -> None:
    monkeypatch.delenv("OBLIO_LOCAL_FAULTS", raising=False)
    assert faults.load(None) is None
    monkeypatch.setenv("OBLIO_LOCAL_FAULTS", '{"s3": {"slowdown": 1}}')
    assert faults.load(None).rate("s3", "slowdown", "GetObject") == 1.0  # type: ignore[union-attr]


def test_no_module_that_runs_in_lambda_reads_the_plan() -> None:
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    for folder in ("layers", "functions"):
        for f in (root / folder).rglob("*.py"):
            text = f.read_text(encoding="utf-8")
            assert "OBLIO_LOCAL_FAULTS" not in text and "infra.local" not in text, f


@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    faults.patch_sessions()
    url = f"http://127.0.0.1:{port}"
    # moto's servers of one process share their backends: start from an empty AWS
    import requests

    requests.post(f"{url}/moto-api/reset", timeout=10)

    def client(service: str, extra: str = "", attempts: int = 1) -> Any:
        return boto3.session.Session().client(
            service, endpoint_url=url, region_name="eu-west-1", aws_access_key_id="t",
            aws_secret_access_key="t", config=Config(user_agent_extra=extra or None,
                                                     retries={"mode": "standard",
                                                              "max_attempts": attempts}))
    try:
        yield {"client": client}
    finally:
        faults.uninstall()
        server.stop()


def _table(ddb: Any, name: str) -> None:
    ddb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST",
                     KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
                     AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}])


def test_throttles_and_slowdowns_are_answered_as_aws_answers_them(aws: Any) -> None:
    setup = aws["client"]("dynamodb")
    _table(setup, "t")
    faults.activate(faults.parse('{"dynamodb": {"throttle": 1}, "s3": {"slowdown": 1}}'))
    with pytest.raises(ClientError) as err:
        aws["client"]("dynamodb").get_item(TableName="t", Key={"k": {"S": "a"}})
    assert err.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    with pytest.raises(ClientError) as err:
        aws["client"]("s3").list_buckets()
    assert err.value.response["Error"]["Code"] == "SlowDown"
    assert err.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    # a client of a test's own raw reads is never faulted
    aws["client"]("dynamodb", extra=faults.EXEMPT).get_item(TableName="t",
                                                             Key={"k": {"S": "a"}})
    injector = faults.active()
    assert injector is not None
    injected = injector.snapshot()["injected"]
    assert set(injected) == {"dynamodb.throttle", "s3.slowdown"}  # one per attempt the SDK made
    assert all(n >= 1 for n in injected.values())


def test_the_sdk_retries_absorb_what_the_plan_injects(aws: Any) -> None:
    _table(aws["client"]("dynamodb"), "t")
    faults.activate(faults.parse('{"seed": 3, "dynamodb": {"throttle": 0.5}}'))
    ddb = aws["client"]("dynamodb", attempts=20)
    for i in range(20):
        ddb.put_item(TableName="t", Item={"k": {"S": str(i)}})
    assert faults.active().counts["dynamodb.throttle"] > 0  # type: ignore[union-attr]
    raw = aws["client"]("dynamodb", extra=faults.EXEMPT)
    assert raw.scan(TableName="t")["Count"] == 20


def test_a_partial_batch_writes_the_part_it_reports_processed(aws: Any) -> None:
    _table(aws["client"]("dynamodb"), "t")
    faults.activate(faults.parse('{"seed": 1, "dynamodb": {"partial_batch": 1}}'))
    out = aws["client"]("dynamodb").batch_write_item(RequestItems={"t": [
        {"PutRequest": {"Item": {"k": {"S": str(i)}}}} for i in range(10)]})
    left = out["UnprocessedItems"]["t"]
    assert 1 <= len(left) <= 9
    raw = aws["client"]("dynamodb", extra=faults.EXEMPT)
    stored = {i["k"]["S"] for i in raw.scan(TableName="t")["Items"]}
    assert stored == {str(i) for i in range(10)} - {e["PutRequest"]["Item"]["k"]["S"]
                                                    for e in left}
    got = aws["client"]("dynamodb").batch_get_item(RequestItems={"t": {"Keys": [
        {"k": {"S": str(i)}} for i in range(10)]}})
    keys = got["UnprocessedKeys"]["t"]["Keys"]
    assert 1 <= len(keys) <= 9
    assert len(got["Responses"].get("t", [])) + len(keys) <= 10


def test_a_partial_delete_names_the_keys_it_did_not_delete(aws: Any) -> None:
    s3 = aws["client"]("s3", extra=faults.EXEMPT)
    s3.create_bucket(Bucket="fault-test", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    for i in range(6):
        s3.put_object(Bucket="fault-test", Key=f"k{i}", Body=b"x")
    faults.activate(faults.parse('{"seed": 2, "s3": {"partial_delete": 1}}'))
    out = aws["client"]("s3").delete_objects(Bucket="fault-test", Delete={"Objects": [
        {"Key": f"k{i}"} for i in range(6)]})
    failed = {e["Key"] for e in out.get("Errors", [])}
    deleted = {d["Key"] for d in out.get("Deleted", [])}
    assert failed and deleted and failed | deleted == {f"k{i}" for i in range(6)}
    left = {o["Key"] for o in s3.list_objects_v2(Bucket="fault-test").get("Contents", [])}
    assert left == failed
    assert json.loads(json.dumps(faults.active().snapshot()))["injected"] == {  # type: ignore[union-attr]
        "s3.partial_delete": 1}
