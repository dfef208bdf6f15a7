"""Silo tenancy over HTTP: a map whose table and bucket are named by the tenant
(`{tenant}-people`, `{tenant}-silo-files`); `oblio local up --tenant acme --tenant globex`
creates one of each per tenant, a search answers with the caller's own table only, and an
erasure in acme leaves globex's table and bucket, holding the same person, as they were."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.integration.mapstack import call

ROOT = Path(__file__).resolve().parents[2]
MAP = """
version: 2
name: silo
identities: [email]
buckets: {files: "{tenant}-silo-files"}
tables:
  people:
    table: "{tenant}-people"
    key: {partition: person_id}
    indexes:
      by_email: {partition: email}
    find:
      - {identity: email, index: by_email, attribute: email}
    attributes:
      person_id: {category: technical, anonymise: keep}
      email: {category: identity, identity: email, anonymise: "null"}
      cv: {category: content, s3: files, anonymise: "null"}
"""


@pytest.fixture(scope="module")
def silo(map_stack: Any, tmp_path_factory: pytest.TempPathFactory,
         ) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("silo")
    (d / "map.yaml").write_text(MAP)
    fx = d / "fixtures"
    for tenant in ("acme", "globex"):
        (fx / "s3" / f"{tenant}-silo-files" / "cv").mkdir(parents=True)
        (fx / "s3" / f"{tenant}-silo-files" / "cv" / "p1.pdf").write_bytes(b"cv")
        (fx / f"{tenant}-people.jsonl").write_text(
            json.dumps({"person_id": "p1", "email": "eve@example.com", "cv": "cv/p1.pdf"})
            + "\n" + json.dumps({"person_id": "p2", "email": "sam@example.com"}) + "\n")
    with map_stack(d / "map.yaml", fx, ("acme", "globex")) as world:
        yield world


def scan(silo: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return sorted(silo["ddb"].scan(TableName=table)["Items"], key=json.dumps)


def objects(silo: dict[str, Any], bucket: str) -> list[tuple[str, str]]:
    got = silo["s3"].list_object_versions(Bucket=bucket)
    return sorted((v["Key"], v["VersionId"])
                  for v in got.get("Versions", []) + got.get("DeleteMarkers", []))


def test_local_up_creates_one_table_and_bucket_per_tenant(silo):
    out = silo["output"]
    for tenant in ("acme", "globex"):
        assert f"created table {tenant}-people (1 index)" in out, out
        assert f"created bucket {tenant}-silo-files (versioned)" in out
    assert "fixtures: 4 items in 2 tables, 2 files" in out


def test_a_search_names_only_the_callers_own_table(silo):
    got = call(silo, "acme", "GET", "/v1/subjects", email="eve@example.com").json()
    assert got["tables"]["people"]["table"] == "acme-people"
    assert got["tables"]["people"]["count"] == 1 and got["tables"]["people"]["files"] == 1
    assert "globex" not in json.dumps(got)


def test_an_erasure_in_one_silo_leaves_the_other_tenants_as_it_was(silo):
    before = (scan(silo, "globex-people"), objects(silo, "globex-silo-files"))
    filed = call(silo, "acme", "POST", "/v1/requests", {
        "type": "erasure", "subject": {"email": "eve@example.com"}, "confirm": True})
    assert filed.status_code == 202, filed.text
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        got = call(silo, "acme", "GET", f"/v1/requests/{filed.json()['request_id']}").json()
        if got["status"] not in ("received", "queued", "running"):
            break
        time.sleep(0.5)
    assert got["status"] == "completed", got
    assert got["result"]["verification"]["passed"] is True
    acme = scan(silo, "acme-people")
    assert [i["person_id"]["S"] for i in acme] == ["p2"]           # 0 residue, Sam stays
    assert objects(silo, "acme-silo-files") == []                  # every version gone
    assert (scan(silo, "globex-people"), objects(silo, "globex-silo-files")) == before
    again = call(silo, "globex", "GET", "/v1/subjects", email="eve@example.com").json()
    assert again["tables"]["people"]["count"] == 1
