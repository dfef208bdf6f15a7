"""Identities stored as typed, the write side, as a client sees it: `oblio local up` on a map
whose contacts hold e-mails and phones as people typed them, their items loaded raw (no
shadows); POST /v1/backfills writes every shadow once (raw scan), its counters say what it
did, a re-run writes nothing; an item put raw afterwards gets its shadow from the stream
consumer within seconds."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests as http

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "typed"
TABLE = "typed-contacts"
LEADS = "acme-typed-leads"
EXPECTED = {  # (tenant, contact) -> the shadows it must carry (None: none)
    ("acme", "c-001"): ("anna.berg@example.com", "+33612345678"),
    ("acme", "c-002"): ("bruno.costa@example.com", "+33698765432"),
    ("acme", "c-003"): ("carla@example.org", None),  # its phone does not parse
    ("acme", "c-004"): ("dora.diaz@example.com", None),  # it has no phone
}


@pytest.fixture(scope="module")
def typed(map_stack: Any) -> Iterator[dict[str, Any]]:
    with map_stack(EXAMPLE / "map.yaml", EXAMPLE / "fixtures", ("acme", "globex"),
                   timeout=120) as world:
        yield world


def _call(world: dict[str, Any], tenant: str, method: str, path: str, body: Any = None,
          **headers: str) -> http.Response:
    key = world["info"]["tenants"][tenant]["api_key"]
    return http.request(method, world["info"]["api_url"] + path, json=body, timeout=30,
                        headers={"Authorization": f"Bearer {key}", **headers})


def _items(world: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    from boto3.dynamodb.types import TypeDeserializer

    de = TypeDeserializer()
    out = {}
    for raw in world["ddb"].scan(TableName=TABLE)["Items"]:
        item = {k: de.deserialize(v) for k, v in raw.items()}
        out[(item["tenant_id"], item["contact_id"])] = item
    return out


def _finished(world: dict[str, Any], tenant: str, backfill_id: str,
              timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = _call(world, tenant, "GET", f"/v1/backfills/{backfill_id}").json()
        # ended, and its last task's counts landed (they are added once its task returns)
        if out["status"] in ("completed", "completed_with_errors", "failed") and \
                out["io"].get("complete"):
            return out
        time.sleep(0.5)
    raise AssertionError(f"backfill {backfill_id} did not finish: {out}")


def test_the_stack_streams_the_typed_table_and_loads_fixtures_without_shadows(typed):
    for name in (TABLE, LEADS, "globex-typed-leads"):
        assert f"enabled the stream of table {name}" in typed["output"]
    spec = typed["ddb"].describe_table(TableName=TABLE)["Table"]["StreamSpecification"]
    assert spec == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert not any(k.startswith("_oblio_") for i in _items(typed).values() for k in i)


def test_a_backfill_writes_every_shadow_of_the_tenant_once_and_says_what_it_did(typed):
    r = _call(typed, "acme", "POST", "/v1/backfills", {}, **{"Idempotency-Key": "bf-1"})
    assert r.status_code == 202, r.text
    started = r.json()
    # contacts: the tenant's partition of a pooled table, one Query segment; leads: the
    # tenant's own (silo) table, a Scan in 4 parallel segments
    assert started["tables"] == ["contacts", "leads"] and started["segments"]["total"] == 5
    again = _call(typed, "acme", "POST", "/v1/backfills", {}, **{"Idempotency-Key": "bf-1"})
    assert again.json()["backfill_id"] == started["backfill_id"]  # one backfill, not two
    out = _finished(typed, "acme", started["backfill_id"])
    assert out["status"] == "completed", out
    items = _items(typed)
    for key, (email, phone) in EXPECTED.items():
        assert items[key].get("_oblio_email") == email, key
        assert items[key].get("_oblio_phone") == phone, key
    # globex's item sits in the same (pooled) table: acme's backfill leaves it alone
    assert not any(k.startswith("_oblio_") for k in items[("globex", "c-001")])
    leads = {i["lead_id"]["S"]: i for i in typed["ddb"].scan(TableName=LEADS)["Items"]}
    for lead_id, item in leads.items():
        if lead_id == "l-003":  # "not an address": no shadow
            assert "_oblio_email" not in item
        else:
            assert item["_oblio_email"] == {"S": f"lead.{int(lead_id[2:])}@example.com"}
    globex_leads = typed["ddb"].scan(TableName="globex-typed-leads")["Items"]
    assert not any(k.startswith("_oblio_") for i in globex_leads for k in i)
    c = out["counts"]
    per = out["physical_tables"]
    # the pooled table: only acme's partition read (a Query), globex's item never
    assert per[TABLE]["counts"]["items_scanned"] == 4
    assert per[LEADS]["counts"]["items_scanned"] == 12 and per[LEADS]["segments_done"] == 4
    # l-003's only identity does not parse: it needs no shadow, and has none: already right
    assert (c["items_read"], c["items_written"], c["already_right"]) == (16, 15, 1)
    assert c["values_unparsable"] == 2 and c["items_left"] == 0
    assert out["segments"] == {"done": 5, "total": 5}
    assert out["io"]["dynamodb.Query"] >= 1 and out["io"]["dynamodb.Scan"] >= 4
    assert out["io"]["dynamodb.UpdateItem"] >= 15  # the shadow writes (and checkpoints)
    # every call of the run by owner, priced, per item read: the API's, the segments', Finish's
    io = out["io"]
    tenant, oblio = io["by_owner"]["tenant"], io["by_owner"]["oblio"]
    assert tenant["dynamodb.Scan"] == 4 and tenant["dynamodb.Query"] == 1
    assert tenant["dynamodb.UpdateItem"] == 15  # one a shadow written
    assert oblio["dynamodb.UpdateItem"] >= 5  # a checkpoint a page of each segment, at least
    assert oblio["stepfunctions.StartExecution"] == 1
    assert io["lambda"]["invocations"] >= 7  # the API call, five segments, Finish
    assert io["stepfunctions"]["transitions"] >= 3  # read from the execution's history
    assert io["cost_usd"]["total"] > io["cost_usd"]["tenant"] > 0
    assert io["per_item"]["of"] == 16 and io["complete"] is True
    assert out["elapsed_seconds"] > 0
    assert "not a number" not in json.dumps(out)  # a value that does not parse: counted only
    listed = _call(typed, "acme", "GET", "/v1/backfills").json()["items"]
    assert listed[0]["backfill_id"] == started["backfill_id"]
    # a re-run finds every shadow right and writes nothing
    rerun = _call(typed, "acme", "POST", "/v1/backfills", {},
                  **{"Idempotency-Key": "bf-2"}).json()
    done = _finished(typed, "acme", rerun["backfill_id"])
    assert done["status"] == "completed"
    assert (done["counts"]["items_written"], done["counts"]["already_right"]) == (0, 16)


def test_an_item_put_raw_gets_its_shadow_from_the_stream_within_seconds(typed):
    typed["ddb"].put_item(TableName=TABLE, Item={
        "tenant_id": {"S": "acme"}, "contact_id": {"S": "c-100"},
        "email": {"S": "  Eva.Stream@Example.COM "}, "phone": {"S": "06 55 44 33 22"}})
    deadline, item = time.monotonic() + 10, {}
    while time.monotonic() < deadline:
        item = _items(typed)[("acme", "c-100")]
        if "_oblio_email" in item and "_oblio_phone" in item:
            break
        time.sleep(0.2)
    assert item.get("_oblio_email") == "eva.stream@example.com"
    assert item.get("_oblio_phone") == "+33655443322"
    # the application changes the value: the shadow follows
    typed["ddb"].update_item(TableName=TABLE, Key={"tenant_id": {"S": "acme"},
                                                   "contact_id": {"S": "c-100"}},
                             UpdateExpression="SET email = :e",
                             ExpressionAttributeValues={":e": {"S": "EVA.NEW@example.com"}})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        item = _items(typed)[("acme", "c-100")]
        if item.get("_oblio_email") == "eva.new@example.com":
            break
        time.sleep(0.2)
    assert item["_oblio_email"] == "eva.new@example.com"
    # and no loop: the consumer's own writes come back needing nothing, the stream goes quiet
    seen = _stream_records(typed)
    time.sleep(1.5)
    assert _stream_records(typed) == seen


def _stream_records(world: dict[str, Any]) -> int:
    import boto3

    info = world["info"]
    s = boto3.client("dynamodbstreams", endpoint_url=info["aws_endpoint_url"],
                     region_name=info["region"], aws_access_key_id="testing",
                     aws_secret_access_key="testing")
    arn = world["ddb"].describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    n = 0
    for shard in s.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        it = s.get_shard_iterator(StreamArn=arn, ShardId=shard["ShardId"],
                                  ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            page = s.get_records(ShardIterator=it, Limit=1000)
            n += len(page["Records"])
            if not page["Records"]:
                break
            it = page.get("NextShardIterator")
    return n


def test_bad_backfill_bodies_say_what_is_wrong_and_never_echo_it(typed):
    r = _call(typed, "acme", "POST", "/v1/backfills", {"tables": ["anna@example.com"]},
              **{"Idempotency-Key": "bf-bad-1"})
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "unmapped_table" and "anna@example.com" not in r.text
    assert "contacts" in err["message"]
    r = _call(typed, "acme", "POST", "/v1/backfills", {"segments": 0},
              **{"Idempotency-Key": "bf-bad-2"})
    assert r.status_code == 422 and "segments" in r.json()["error"]["message"]
    r = _call(typed, "acme", "GET", "/v1/backfills/not-an-id")
    assert r.status_code == 404
    r = _call(typed, "globex", "GET", "/v1/backfills")
    assert r.json()["items"] == []  # acme's backfills are acme's


def test_oblio_backfill_start_wait_and_status_follow_a_backfill_to_its_end(typed):
    import subprocess
    import sys

    from tests.integration import mapstack

    key = typed["info"]["tenants"]["acme"]["api_key"]
    api = ["--api-url", typed["info"]["api_url"], "--api-key", key]
    out = subprocess.run(
        [sys.executable, "-m", "infra.cli", "backfill", "start", "--table", "leads", "--wait",
         *api], capture_output=True, text=True, timeout=120, env=mapstack.env(), cwd=ROOT)
    assert out.returncode == 0, out.stderr
    body = json.loads(out.stdout[out.stdout.index("{"):])
    assert body["status"] == "completed" and body["tables"] == ["leads"]
    assert body["counts"]["items_written"] == 0  # every lead's shadow is right by now
    status = subprocess.run(
        [sys.executable, "-m", "infra.cli", "backfill", "status", body["backfill_id"], *api],
        capture_output=True, text=True, timeout=60, env=mapstack.env(), cwd=ROOT)
    assert status.returncode == 0 and json.loads(status.stdout)["backfill_id"] == \
        body["backfill_id"]
    # another tenant's key does not see it
    r = _call(typed, "globex", "GET", f"/v1/backfills/{body['backfill_id']}")
    assert r.status_code == 404
