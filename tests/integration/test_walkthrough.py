"""The README's "From your existing tables to a first erasure", command by command, as a
newcomer types them (other ports): a local AWS of theirs holding their application's tables
(examples/my-product/app_tables.py), `oblio datamap draft` from those tables, `oblio datamap
check --data`, `oblio local up --aws-endpoint` on the drafted map, then the first erasure
through the API; the person is gone from their tables and bucket, the others are not."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from tests.integration import mapstack
from tests.integration.mapstack import call

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=120,
                          env=mapstack.env(), cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    return done


@pytest.fixture(scope="module")
def theirs() -> Iterator[str]:
    """The user's own local AWS, running before oblio starts."""
    with mapstack.their_aws() as url:
        yield url


@pytest.fixture(scope="module")
def walked(theirs: str, map_stack: Any, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[dict[str, Any]]:
    oblio = [sys.executable, "-m", "infra.cli"]
    seeded = run(sys.executable, "examples/my-product/app_tables.py", theirs)
    draft = run(*oblio, "datamap", "draft", "--aws-endpoint", theirs, "--table", "my-contacts",
                "--table", "my-orders", "--bucket", "my-files-bucket")
    path = tmp_path_factory.mktemp("walk") / "my-map.yaml"
    path.write_text(draft.stdout)
    check = run(*oblio, "datamap", "check", str(path), "--data", "--aws-endpoint", theirs)
    with map_stack(path, None, ("acme",), timeout=120,
                   extra=("--aws-endpoint", theirs)) as world:
        yield {"world": world, "seeded": seeded.stdout, "check": check.stdout,
               "map": draft.stdout}


def test_the_draft_from_their_tables_checks_and_starts_a_stack(walked):
    assert "my-contacts" in walked["seeded"]
    assert "find:" in walked["map"] and "index: by_email" in walked["map"]
    assert "# review" in walked["map"]  # every guess is marked for review
    assert "my-map.yaml: valid; 2 tables" in walked["check"], walked["check"]
    assert "created table" not in walked["world"]["output"]  # theirs existed: nothing made


def test_the_first_erasure_removes_the_person_from_their_tables(walked, theirs):
    world = walked["world"]
    found = call(world, "acme", "GET", "/v1/subjects", email="anna.berg@example.com").json()
    assert found["found"] is True, found
    got = mapstack.erase(world, "acme", "anna.berg@example.com")
    assert got["status"] == "completed", json.dumps(got)[:2000]
    kw = {"endpoint_url": theirs, "region_name": "eu-west-1",
          "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}
    ddb, s3 = boto3.client("dynamodb", **kw), boto3.client("s3", **kw)
    left = json.dumps(ddb.scan(TableName="my-contacts")["Items"]
                      + ddb.scan(TableName="my-orders")["Items"])
    assert left.count("anna.berg@example.com") == 1  # globex's Anna only
    assert '"c-002"' in left and "bruno.costa@example.com" in left  # Bruno stays
    orders = {i["order_id"]["S"] for i in ddb.scan(TableName="my-orders")["Items"]}
    assert orders == {"o-1003"}  # the draft deletes orders with her (on_erase: delete)
    versions = s3.list_object_versions(Bucket="my-files-bucket")
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")
