"""Identities stored as people typed them (issue 17 part 3), over HTTP as a client: `oblio
local up --datamap tests/integration/typed/map.yaml --no-demo --fixtures ...` keys the
indexes by the shadows; search finds Anna stored as "  Anna.Berg@Example.COM " and
"06 12 34 56 78" from anna.berg@example.com and +33 6 12 34 56 78; her export holds her
items without oblio's shadows; Clara's anonymisation leaves no shadow holding her canonical
values; Anna's erasure leaves 0 residue in raw scans (no item, no shadow value, no file
version) and 0 collateral (Bruno, Dora, globex's Anna untouched).

The fixtures carry the shadow attributes as the shadow backfill and the stream consumer of
branch typed-write write them (see tests/integration/typed/FIXTURES.md)."""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests as http
from boto3.dynamodb.types import TypeDeserializer

from tests.integration.mapstack import call

TYPED = Path(__file__).resolve().parent / "typed"
ANNA_EMAIL, ANNA_PHONE = "anna.berg@example.com", "+33612345678"
CLARA_EMAIL, CLARA_PHONE = "clara.rossi@example.it", "+33698765432"
_de = TypeDeserializer()


@pytest.fixture(scope="module")
def typed(map_stack: Any) -> Iterator[dict[str, Any]]:
    with map_stack(TYPED / "map.yaml", TYPED / "fixtures", ("acme", "globex")) as world:
        world["items0"], world["versions0"] = items(world), versions(world)
        yield world


def run(world: dict[str, Any], tenant: str, body: dict[str, Any]) -> dict[str, Any]:
    filed = call(world, tenant, "POST", "/v1/requests", body)
    assert filed.status_code == 202, filed.text
    request_id = filed.json()["request_id"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        got: dict[str, Any] = call(world, tenant, "GET", f"/v1/requests/{request_id}").json()
        if got["status"] not in ("received", "queued", "running", "finishing"):
            return got
        time.sleep(0.5)
    pytest.fail(f"request {request_id} did not end")


def items(world: dict[str, Any]) -> dict[tuple[str, str, str], dict[str, Any]]:
    """Every item of both tables, by (table, tenant, id), from raw scans."""
    out = {}
    for table, key in (("typed-people", "person_id"), ("typed-orders", "order_id")):
        for page in world["ddb"].get_paginator("scan").paginate(TableName=table):
            for raw in page["Items"]:
                item = {k: _de.deserialize(v) for k, v in raw.items()}
                out[(table, item["tenant_id"], item[key])] = item
    return out


def versions(world: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    pages = world["s3"].get_paginator("list_object_versions").paginate(
        Bucket="typed-files-bucket")
    for page in pages:
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            out[v["Key"]] = out.get(v["Key"], 0) + 1
    return out


def _text(values: Any) -> str:
    return json.dumps(values, default=str).lower()


def test_local_up_keys_the_indexes_by_the_shadows(typed):
    assert "created table typed-people (2 indexes)" in typed["output"], typed["output"]
    desc = typed["ddb"].describe_table(TableName="typed-people")["Table"]
    keys = {i["IndexName"]: [k["AttributeName"] for k in i["KeySchema"]]
            for i in desc["GlobalSecondaryIndexes"]}
    assert keys == {"by_email": ["tenant_id", "_oblio_email"],
                    "by_phone": ["tenant_id", "_oblio_phone"]}


@pytest.mark.parametrize("query", [{"email": ANNA_EMAIL}, {"email": "  Anna.BERG@example.com"},
                                   {"phone": "+33 6 12 34 56 78"}])
def test_search_finds_the_person_stored_as_typed(typed, query):
    got = call(typed, "acme", "GET", "/v1/subjects", **query)
    assert got.status_code == 200, got.text
    t = got.json()["tables"]
    assert t["people"]["keys"] == [{"tenant_id": "acme", "person_id": "p-1"}]
    orders = sorted(k["order_id"] for k in t["orders"]["keys"])
    # o-2 was placed as a guest: found only through its typed buyer e-mail
    assert orders == (["o-1", "o-2"] if "email" in query else ["o-1"])


def test_her_export_holds_her_typed_items_without_oblios_shadows(typed):
    done = run(typed, "acme", {"type": "access", "subject": {"email": ANNA_EMAIL}})
    assert done["status"] == "completed", done
    d = call(typed, "acme", "GET", f"/v1/requests/{done['id']}/download")
    assert d.status_code == 200, d.text
    z = zipfile.ZipFile(io.BytesIO(http.get(d.json()["url"], timeout=30).content))
    subject = json.loads(z.read("subject.json"))
    people = subject["tables"]["people"]
    assert [i["person_id"] for i in people["items"]] == ["p-1"]
    assert people["items"][0]["email"] == "  Anna.Berg@Example.COM "
    assert people["items"][0]["phone"] == "06 12 34 56 78"
    assert sorted(i["order_id"] for i in subject["tables"]["orders"]["items"]) == ["o-1", "o-2"]
    # the shadows are oblio's: out of her items, named with what they hold
    assert not [a for t in subject["tables"].values() for i in t["items"] for a in i
                if a.startswith("_oblio_")]
    assert set(people["derived_by_oblio"]) == {"_oblio_email", "_oblio_phone"}
    assert any(n.endswith("p-1.jpg") for n in z.namelist())


def test_anonymisation_leaves_no_shadow_holding_her_canonical_values(typed):
    before = items(typed)
    done = run(typed, "acme", {"type": "anonymisation", "subject": {"email": CLARA_EMAIL},
                               "confirm": True})
    assert done["status"] == "completed", json.dumps(done["result"])
    assert done["result"]["verification"]["passed"] is True
    after = items(typed)
    clara = after[("typed-people", "acme", "p-3")]
    assert "email" not in clara and "_oblio_email" not in clara and "_oblio_phone" not in clara
    assert clara["phone"] == "xxx" and clara["name"].startswith("P_")
    order = after[("typed-orders", "acme", "o-4")]
    assert order["buyer_email"].startswith("h_") and "_oblio_buyer_email" not in order
    text = _text([i for k, i in after.items() if k[1] == "acme"])
    for value in (CLARA_EMAIL, CLARA_PHONE, "06 98 76 54 32"):
        assert value not in text
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {("typed-people", "acme", "p-3"), ("typed-orders", "acme", "o-4")}


def test_erasure_of_the_typed_person_leaves_nothing_and_touches_nobody_else(typed):
    before = items(typed)
    done = run(typed, "acme", {"type": "erasure", "subject": {
        "email": "  Anna.Berg@Example.COM", "phone": "+33 6 12 34 56 78"},
                               "confirm": True})
    assert done["status"] == "completed", json.dumps(done["result"])
    assert done["result"]["verification"]["passed"] is True
    after, va = items(typed), versions(typed)
    assert ("typed-people", "acme", "p-1") not in after
    for shell in ("o-1", "o-2"):  # the accounting shells, without her
        order = after[("typed-orders", "acme", shell)]
        assert "person_id" not in order and "_oblio_buyer_email" not in order
        assert order["buyer_email"].startswith("h_") and order["total"]
    # 0 residue: no value of hers anywhere in acme, typed, canonical or in a shadow
    text = _text([i for k, i in after.items() if k[1] == "acme"])
    for value in (ANNA_EMAIL, ANNA_PHONE, "06 12 34 56 78", "anna berg"):
        assert value not in text, value
    assert "photos/p-1.jpg" not in va  # no version, no delete marker
    # 0 collateral: everyone else's items as they were (Clara's from her anonymisation)
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {("typed-people", "acme", "p-1"), ("typed-orders", "acme", "o-1"),
                       ("typed-orders", "acme", "o-2")}, changed
    assert after[("typed-people", "globex", "p-1")]["_oblio_email"] == ANNA_EMAIL
    again = call(typed, "acme", "GET", "/v1/subjects", email=ANNA_EMAIL).json()
    assert again["found"] is False


def test_a_bulk_erasure_finds_the_typed_phone_through_its_shadow(typed):
    """Bruno's phone is stored "+39 333 123 4567"; the CSV names it "+393331234567"."""
    import csv

    before = items(typed)
    r = call(typed, "acme", "POST", "/v1/bulk-erasures", {})
    assert r.status_code == 201, r.text
    content = b"phone\n+393331234567\n+33 6 00 00 00 00\n"
    assert http.put(r.json()["upload_url"], data=content, timeout=60).status_code == 200
    path = f"/v1/bulk-erasures/{r.json()['job_id']}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        job = call(typed, "acme", "GET", path).json()
        if job["status"] in ("completed", "completed_with_errors", "failed"):
            break
        time.sleep(0.5)
    assert job["status"] == "completed", job
    rows = list(csv.DictReader(io.StringIO(http.get(job["report_url"], timeout=60).text)))
    assert [x["outcome"] for x in rows] == ["erased", "not_found"], rows
    after = items(typed)
    assert ("typed-people", "acme", "p-2") not in after
    shell = after[("typed-orders", "acme", "o-3")]
    assert "person_id" not in shell and "_oblio_buyer_email" not in shell
    text = _text([i for k, i in after.items() if k[1] == "acme"])
    for value in ("bruno.costa@example.com", "+393331234567", "333 123 4567", "bruno"):
        assert value not in text, value
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {("typed-people", "acme", "p-2"), ("typed-orders", "acme", "o-3")}
