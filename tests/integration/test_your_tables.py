"""Your own tables in the local stack: `oblio local up --datamap FILE --no-demo --fixtures DIR
--tenant NAME` creates what the map names, loads the fixtures, and an erasure through the API
leaves nothing of the person in the raw tables and bucket (the README's example, as written
in examples/my-product)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests as http

from infra.local.stack import free_port
from tests.integration import mapstack

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "my-product"


def _up(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`oblio local up` that is expected to refuse (and so to end by itself)."""
    return subprocess.run(
        [sys.executable, "-m", "infra.cli", "local", "up", "--api-port", str(free_port()),
         "--aws-port", str(free_port()), *args], capture_output=True, text=True,
        timeout=timeout, env=mapstack.env(), cwd=ROOT)


@pytest.fixture(scope="module")
def yours(map_stack: Any) -> Iterator[dict[str, Any]]:
    with map_stack(EXAMPLE / "map.yaml", EXAMPLE / "fixtures", ("acme", "globex"),
                   timeout=120) as world:
        yield world


def _call(yours: dict[str, Any], tenant: str, method: str, path: str,
          body: Any = None, **params: str) -> http.Response:
    key = yours["info"]["tenants"][tenant]["api_key"]
    return http.request(method, yours["info"]["api_url"] + path, params=params or None,
                        json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _scan(yours: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return yours["ddb"].scan(TableName=table)["Items"]


def test_local_up_creates_the_tables_indexes_and_bucket_the_map_names(yours):
    out = yours["output"]
    assert "created table my-contacts (1 index)" in out
    assert "created table my-orders (1 index)" in out
    assert "created bucket my-files-bucket (versioned)" in out
    assert "fixtures: 6 items in 2 tables, 1 file" in out
    desc = yours["ddb"].describe_table(TableName="my-orders")["Table"]
    index = desc["GlobalSecondaryIndexes"][0]
    assert index["IndexName"] == "by_contact_id"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["tenant_id", "contact_id"]
    assert index["Projection"]["ProjectionType"] == "ALL"
    versioning = yours["s3"].get_bucket_versioning(Bucket="my-files-bucket")
    assert versioning["Status"] == "Enabled"


def test_fixtures_keep_numbers_and_nested_maps_as_they_are(yours):
    orders = {i["order_id"]["S"]: i for i in _scan(yours, "my-orders")}
    assert orders["o-1001"]["total"] == {"N": "129.5"}
    assert orders["o-1002"]["total"] == {"N": "18"}
    assert orders["o-1003"]["shipping_address"]["M"]["city"] == {"S": "Torino"}


def test_the_tenants_asked_for_get_admin_keys_and_see_only_their_own_data(yours):
    assert {"acme", "globex"} <= set(yours["info"]["tenants"])
    acme = _call(yours, "acme", "GET", "/v1/subjects", email="anna.berg@example.com").json()
    globex = _call(yours, "globex", "GET", "/v1/subjects", email="anna.berg@example.com").json()
    assert (acme["tables"]["contacts"]["count"], acme["tables"]["orders"]["count"]) == (1, 2)
    assert (globex["tables"]["contacts"]["count"], globex["tables"]["orders"]["count"]) == \
        (1, 0)


def test_an_erasure_on_your_tables_leaves_nothing_of_the_person(yours):
    before_other = [i for i in _scan(yours, "my-contacts") if i["tenant_id"]["S"] == "globex"]
    got = mapstack.erase(yours, "acme", "anna.berg@example.com")
    assert got["status"] == "completed", got
    assert got["result"]["verification"]["passed"] is True
    # the hard way: every item and object version left
    contacts = _scan(yours, "my-contacts")
    assert not [i for i in contacts if i["tenant_id"]["S"] == "acme"
                and i["contact_id"]["S"] == "c-001"]
    orders = {i["order_id"]["S"]: i for i in _scan(yours, "my-orders")}
    for shell in ("o-1001", "o-1002"):  # on_erase: anonymise keeps the shell for accounting
        assert "contact_id" not in orders[shell] and "shipping_address" not in orders[shell]
        assert orders[shell]["total"]["N"] in ("129.5", "18")
    assert orders["o-1003"]["contact_id"] == {"S": "c-002"}  # Bruno's order untouched
    versions = yours["s3"].list_object_versions(Bucket="my-files-bucket")
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    after_other = [i for i in contacts if i["tenant_id"]["S"] == "globex"]
    assert after_other == before_other  # the other tenant's Anna is untouched
    dump = json.dumps(_scan(yours, "my-contacts") + _scan(yours, "my-orders"))
    assert dump.count("anna.berg@example.com") == 1  # globex's copy only


def _fixtures(tmp_path: Path, files: dict[str, str]) -> Path:
    d = tmp_path / "fixtures"
    for name, text in files.items():
        p = d / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    d.mkdir(exist_ok=True)
    return d


@pytest.mark.parametrize("files, expected", [
    ({"my-contacts.jsonl": '{"tenant_id": "acme", "contact_id": "c-9"}\n{"tenant_id": \n'},
     ["my-contacts.jsonl:2: not a JSON object"]),
    ({"my-contacts.jsonl": '{"tenant_id": "acme", "email": "x@example.com"}\n'},
     ["my-contacts.jsonl:1: the item has no contact_id (the key of table my-contacts)"]),
    ({"their-table.jsonl": '{"a": 1}\n'},
     ["their-table.jsonl: the data map names no table 'their-table'"]),
    ({"s3/other-bucket/a.txt": "x"},
     ["other-bucket: the data map declares no bucket 'other-bucket'"]),
])
def test_bad_fixtures_are_refused_naming_the_file_and_line_and_nothing_starts(
        tmp_path, files, expected):
    done = _up("--datamap", str(EXAMPLE / "map.yaml"), "--no-demo", "--fixtures",
               str(_fixtures(tmp_path, files)), "--state", str(tmp_path / "state.json"))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "refusing to start: the fixtures cannot be loaded (nothing was loaded)" in \
        done.stderr
    for fragment in expected:
        assert fragment in done.stderr, done.stderr
    assert not (tmp_path / "state.json").exists()


def test_a_fixture_directory_that_does_not_exist_is_refused(tmp_path):
    done = _up("--datamap", str(EXAMPLE / "map.yaml"), "--no-demo", "--fixtures",
               str(tmp_path / "nope"), "--state", str(tmp_path / "state.json"))
    assert done.returncode == 2
    assert "no such directory" in done.stderr


def test_a_bad_tenant_name_is_refused(tmp_path):
    done = _up("--datamap", str(EXAMPLE / "map.yaml"), "--no-demo", "--tenant", "Not Valid!",
               "--state", str(tmp_path / "state.json"))
    assert done.returncode == 2
    assert "--tenant 'Not Valid!'" in done.stderr


def _cli(yours: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "infra.cli", "datamap", *args,
                           "--aws-endpoint", yours["info"]["aws_endpoint_url"]],
                          capture_output=True, text=True, timeout=60, env=mapstack.env(), cwd=ROOT)


def test_datamap_check_data_warns_about_what_the_map_misses(yours):
    clean = _cli(yours, "check", str(EXAMPLE / "map.yaml"), "--data")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "no warnings" in clean.stdout
    # the application writes what the map does not expect (as people typed it, an attribute
    # the map does not name, an e-mail in a "non-personal" field, a file nothing points to)
    yours["ddb"].put_item(TableName="my-contacts", Item={
        "tenant_id": {"S": "acme"}, "contact_id": {"S": "c-900"},
        "email": {"S": "  Carla.Neri@Example.COM "}, "nickname": {"S": "Carlie"},
        "backup": {"M": {"mail": {"S": "carla@home.example"}}}})
    yours["ddb"].put_item(TableName="my-orders", Item={
        "tenant_id": {"S": "acme"}, "order_id": {"S": "o-900"}, "contact_id": {"S": "c-900"},
        "total": {"S": "carla@pay.example"}})
    yours["s3"].put_object(Bucket="my-files-bucket", Key="scans/id-c-900.pdf", Body=b"%PDF")
    try:
        done = _cli(yours, "check", str(EXAMPLE / "map.yaml"), "--data")
        assert done.returncode == 1, done.stdout + done.stderr
        out = done.stdout
        assert "table my-contacts: attribute 'email' holds email values not stored " \
               "canonically in 1 of" in out
        assert "table my-contacts: attribute 'nickname' is in 1 of" in out
        assert "table my-contacts: attribute 'backup.mail' holds values that look like " \
               "emails" in out
        assert "table my-orders: attribute 'total' holds values that look like emails" in out
        assert "bucket my-files-bucket: 1 object(s) under scans/ are not pointed to" in out
        assert "carla" not in out.lower()  # a warning names the attribute, never a value
    finally:
        yours["ddb"].delete_item(TableName="my-contacts", Key={
            "tenant_id": {"S": "acme"}, "contact_id": {"S": "c-900"}})
        yours["ddb"].delete_item(TableName="my-orders", Key={
            "tenant_id": {"S": "acme"}, "order_id": {"S": "o-900"}})
        for v in yours["s3"].list_object_versions(Bucket="my-files-bucket",
                                                  Prefix="scans/").get("Versions", []):
            yours["s3"].delete_object(Bucket="my-files-bucket", Key=v["Key"],
                                      VersionId=v["VersionId"])


def test_datamap_draft_writes_a_first_map_that_check_accepts(yours, tmp_path):
    done = _cli(yours, "draft", "--table", "my-contacts", "--table", "my-orders",
                "--bucket", "my-files-bucket")
    assert done.returncode == 0, done.stderr
    draft = tmp_path / "draft.yaml"
    draft.write_text(done.stdout)
    assert "# review" in done.stdout
    checked = subprocess.run([sys.executable, "-m", "infra.cli", "datamap", "check",
                              str(draft)], capture_output=True, text=True, env=mapstack.env(), cwd=ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr + done.stdout
    import yaml

    dm = yaml.safe_load(done.stdout)
    contacts, orders = dm["tables"]["my_contacts"], dm["tables"]["my_orders"]
    assert contacts["find"] == [{"identity": "email", "index": "by_email",
                                 "attribute": "email"}]
    assert contacts["attributes"]["email"]["identity"] == "email"
    assert orders["find"][0]["from"] == "my_contacts.contact_id"
    assert orders["attributes"]["contact_id"]["category"] == "technical"
    assert "anna" not in done.stdout.lower()  # drafted from values, never printing them
