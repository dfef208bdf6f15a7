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
#: each tenant's bucket: Eve's CV (a pointer), the old applicant's CV (a pointer) and his
#: letter (under his prefix, no pointer)
FILES = ("cv/p1.pdf", "cv/p3.pdf", "people/p3/letter.pdf")
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
      by_sweep: {partition: sweep_bucket, sort: created_at}
    sweep: {index: by_sweep, bucket_attribute: sweep_bucket, date_attribute: created_at}
    files:
      - {bucket: files, prefix: "people/{person_id}/"}
    find:
      - {identity: email, index: by_email, attribute: email}
    attributes:
      person_id: {category: technical, anonymise: keep}
      email: {category: identity, identity: email, anonymise: "null"}
      cv: {category: content, s3: files, anonymise: "null"}
      created_at: {category: non_personal}
      sweep_bucket: {category: technical, anonymise: keep}
"""


@pytest.fixture(scope="module")
def silo(map_stack: Any, tmp_path_factory: pytest.TempPathFactory,
         ) -> Iterator[dict[str, Any]]:
    d = tmp_path_factory.mktemp("silo")
    (d / "map.yaml").write_text(MAP)
    fx = d / "fixtures"
    for tenant in ("acme", "globex"):
        files = fx / "s3" / f"{tenant}-silo-files"
        for key in FILES:
            (files / key).parent.mkdir(parents=True, exist_ok=True)
            (files / key).write_bytes(b"%PDF")
        people = [
            {"person_id": "p1", "email": "eve@example.com", "cv": "cv/p1.pdf",
             "created_at": "2026-01-10", "sweep_bucket": f"{tenant}#2026-01"},
            {"person_id": "p2", "email": "sam@example.com", "created_at": "2025-05-01",
             "sweep_bucket": f"{tenant}#2025-05"},
            # a former applicant, past any retention period: a sweep's work
            {"person_id": "p3", "email": "old@example.com", "cv": "cv/p3.pdf",
             "created_at": "2019-04-02", "sweep_bucket": f"{tenant}#2019-04"}]
        (fx / f"{tenant}-people.jsonl").write_text(
            "".join(json.dumps(p) + "\n" for p in people))
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
        assert f"created table {tenant}-people (2 indexes)" in out, out
        assert f"created bucket {tenant}-silo-files (versioned)" in out
    assert "fixtures: 6 items in 2 tables, 6 files" in out


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
        if got["status"] not in ("received", "queued", "running", "finishing"):
            break
        time.sleep(0.5)
    assert got["status"] == "completed", got
    assert got["result"]["verification"]["passed"] is True
    acme = scan(silo, "acme-people")
    assert [i["person_id"]["S"] for i in acme] == ["p2", "p3"]     # 0 residue, others stay
    assert [k for k, _ in objects(silo, "acme-silo-files")] == ["cv/p3.pdf",
                                                               "people/p3/letter.pdf"]
    assert (scan(silo, "globex-people"), objects(silo, "globex-silo-files")) == before
    again = call(silo, "globex", "GET", "/v1/subjects", email="eve@example.com").json()
    assert again["tables"]["people"]["count"] == 1


def test_a_retention_sweep_on_a_silo_table_acts_on_the_callers_table_only(silo):
    """acme's policy "delete people created before 2022": a dry run counts the old applicant
    and changes nothing; the confirmed run deletes him, his CV and the letter under his
    prefix, from acme's table and bucket; globex's, holding the same applicant, stay."""
    globex = (scan(silo, "globex-people"), objects(silo, "globex-silo-files"))
    acme = (scan(silo, "acme-people"), objects(silo, "acme-silo-files"))
    policy = {"table": "people", "older_than": "2022-01-01", "action": "delete"}
    r = call(silo, "acme", "PUT", "/v1/retention-policies/old-applicants", policy)
    assert r.status_code == 201, r.text
    dry = call(silo, "acme", "POST", "/v1/retention-policies/old-applicants/run",
               {"dry_run": True})
    assert dry.status_code == 200, dry.text
    assert dry.json()["tables"]["people"]["would_delete"] == 1, dry.json()
    assert (scan(silo, "acme-people"), objects(silo, "acme-silo-files")) == acme
    run = call(silo, "acme", "POST", "/v1/retention-policies/old-applicants/run",
               {"confirm": True})
    assert run.status_code == 202, run.text
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        sweep = call(silo, "acme", "GET", f"/v1/retention-sweeps/{run.json()['sweep_id']}").json()
        if sweep["status"] in ("completed", "completed_with_errors", "failed"):
            break
        time.sleep(0.5)
    assert sweep["status"] == "completed", sweep
    assert sweep["tables"]["people"]["deleted"] == 1, sweep
    assert [i["person_id"]["S"] for i in scan(silo, "acme-people")] == ["p2"]
    assert objects(silo, "acme-silo-files") == []                  # every version gone
    assert (scan(silo, "globex-people"), objects(silo, "globex-silo-files")) == globex
    assert sweep["io"]["dynamodb.Scan"] == 0
