"""`oblio local up --aws-endpoint URL`: a team that already runs a local AWS (a moto server)
holding its tables attaches oblio to it. The data map's tables and bucket are created there
when missing and the fixtures loaded there; oblio's own tables stay in the local AWS it
starts; an erasure through the API removes the person from the user's server and nothing
else."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from infra.local.stack import free_port
from tests.integration import mapstack
from tests.integration.test_your_tables import EXAMPLE, _up


@pytest.fixture(scope="module")
def theirs() -> Iterator[str]:
    """The user's own local AWS, running before oblio starts."""
    with mapstack.their_aws() as url:
        yield url


@pytest.fixture(scope="module")
def attached(map_stack: Any, theirs: str) -> Iterator[dict[str, Any]]:
    with map_stack(EXAMPLE / "map.yaml", EXAMPLE / "fixtures", ("acme", "globex"),
                   timeout=120, extra=("--aws-endpoint", theirs)) as world:
        yield world


def _scan(world: dict[str, Any], table: str) -> list[dict[str, Any]]:
    return world["ddb"].scan(TableName=table)["Items"]


def test_the_maps_tables_live_on_the_users_endpoint_and_oblios_own_do_not(attached, theirs):
    assert attached["info"]["data_endpoint_url"] == theirs
    assert attached["info"]["aws_endpoint_url"] != theirs
    assert f"created table my-contacts (1 index) on {theirs}" in attached["output"]
    mine = set(attached["ddb"].list_tables()["TableNames"])
    own = set(attached["own_ddb"].list_tables()["TableNames"])
    assert {"my-contacts", "my-orders"} <= mine
    assert not {"my-contacts", "my-orders"} & own
    assert not [t for t in mine if t.startswith("oblio-")]  # nothing of oblio's there
    assert len(_scan(attached, "my-orders")) == 3


def test_an_erasure_acts_on_the_users_endpoint(attached):
    got = mapstack.erase(attached, "acme", "anna.berg@example.com")
    assert got["status"] == "completed", json.dumps(got)[:3000]
    assert got["result"]["verification"]["passed"] is True
    contacts = _scan(attached, "my-contacts")
    assert not [i for i in contacts if i["tenant_id"]["S"] == "acme"
                and i["contact_id"]["S"] == "c-001"]
    orders = {i["order_id"]["S"]: i for i in _scan(attached, "my-orders")}
    assert "contact_id" not in orders["o-1001"] and orders["o-1003"]["contact_id"] == \
        {"S": "c-002"}
    versions = attached["s3"].list_object_versions(Bucket="my-files-bucket")
    assert not versions.get("Versions") and not versions.get("DeleteMarkers")
    dump = json.dumps(contacts + list(orders.values()))
    assert dump.count("anna.berg@example.com") == 1  # globex's copy only


def test_an_endpoint_where_nothing_answers_is_refused_before_anything_starts():
    dead = f"http://127.0.0.1:{free_port()}"
    done = _up("--datamap", str(EXAMPLE / "map.yaml"), "--no-demo", "--aws-endpoint", dead)
    assert done.returncode == 2, done.stdout + done.stderr
    assert f"--aws-endpoint {dead}: nothing answers there" in done.stderr
    assert "Traceback" not in done.stderr


def test_an_endpoint_that_is_not_a_url_is_refused():
    done = _up("--datamap", str(EXAMPLE / "map.yaml"), "--no-demo", "--aws-endpoint",
               "localhost:5000")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "give the endpoint's URL, such as http://127.0.0.1:5000" in done.stderr
