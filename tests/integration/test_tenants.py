"""Tenants and keys as a product, over HTTP: the operator key creates tenants and manages any
tenant's keys; a tenant admin manages its own; a revoked key is refused on its very next
call; a key is shown once and never stored or replayed (raw scans of the local AWS)."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer

from tests.client import Api


@pytest.fixture(scope="module")
def operator(stack: Any) -> Api:
    return Api(stack.info["api_url"], stack.info["operator_key"])


def _tenant_id() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _scan(aws_client: Any, table: str) -> list[dict[str, Any]]:
    ddb, out, start = aws_client("dynamodb"), [], None
    des = TypeDeserializer()
    while True:
        page = ddb.scan(TableName=table, **({"ExclusiveStartKey": start} if start else {}))
        out += [{k: des.deserialize(v) for k, v in i.items()} for i in page["Items"]]
        start = page.get("LastEvaluatedKey")
        if not start:
            return out


@pytest.fixture(scope="module")
def acme(operator: Api, stack: Any) -> dict[str, Any]:
    """A tenant the operator created, with its first admin key."""
    tid = _tenant_id()
    r = operator.post("/v1/tenants", {"tenant_id": tid, "name": "Acme Ltd",
                                      "settings": {"default_phone_region": "IT"}})
    assert r.status_code == 201, r.text
    made = r.json()
    return {**made, "api": Api(stack.info["api_url"], made["api_key"])}


def test_the_operator_creates_a_tenant_whose_admin_key_works_at_once(acme):
    assert acme["tenant"]["settings"]["default_phone_region"] == "IT"
    assert acme["scopes"] == ["admin"] and acme["api_key"].startswith("obl_")
    me = acme["api"].get("/v1/tenant")
    assert me.status_code == 200 and me.json()["tenant_id"] == acme["tenant"]["tenant_id"]
    audit = acme["api"].get("/v1/audit").json()["items"]
    assert audit[-1]["action"] == "tenant_created"
    assert acme["api_key"] not in json.dumps(audit)


def test_a_child_tenant_under_an_existing_parent(operator, acme, stack):
    parent = acme["tenant"]["tenant_id"]
    r = operator.post("/v1/tenants", {"tenant_id": f"{parent}-eu", "name": "Acme EU",
                                      "parent_id": parent})
    assert r.status_code == 201, r.text
    assert acme["api"].get("/v1/tenant").json()["children"] == [f"{parent}-eu"]
    listed = {t["tenant_id"]: t for t in operator.get("/v1/tenants").json()["items"]}
    assert listed[f"{parent}-eu"]["parent_id"] == parent and "demo" in listed
    missing = operator.post("/v1/tenants", {"tenant_id": _tenant_id(), "name": "x",
                                            "parent_id": "no-such-parent"})
    assert missing.status_code == 404


@pytest.mark.parametrize("body, field", [
    ({"tenant_id": "Acme!", "name": "x"}, "tenant_id"),
    ({"tenant_id": "acme-x", "name": "  "}, "name"),
    ({"tenant_id": "acme-x", "name": "x", "colour": "red"}, "body"),  # not repeated
    ({"tenant_id": "acme-x", "name": "x", "settings": {"export_ttl_days": 7}},
     "settings.export_ttl_days"),
])
def test_a_bad_tenant_is_422_naming_the_field(operator, body, field):
    r = operator.post("/v1/tenants", body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["details"]["field"] == field
    assert "Acme!" not in r.text and "colour" not in r.text


def test_a_tenant_id_in_use_is_409(operator, acme):
    r = operator.post("/v1/tenants", {"tenant_id": acme["tenant"]["tenant_id"], "name": "y"})
    assert r.status_code == 409 and r.json()["error"]["code"] == "tenant_exists"


def test_only_the_operator_key_manages_tenants_and_it_reads_no_tenant_data(operator, api):
    assert api.post("/v1/tenants", {"tenant_id": _tenant_id(), "name": "x"}).status_code == 403
    assert api.get("/v1/tenants").status_code == 403
    assert operator.get("/v1/subjects", email="mario.rossi@example.com").status_code == 403
    assert operator.get("/v1/tenant").status_code == 403


def test_a_revoked_key_gets_401_on_its_very_next_call(acme, stack):
    admin = acme["api"]
    made = admin.post("/v1/keys", {"scopes": ["dsr:read"], "name": "reporting"}).json()
    reader = Api(stack.info["api_url"], made["api_key"])
    assert reader.get("/v1/requests").status_code == 200
    r = admin.post(f"/v1/keys/{made['key_id']}/revoke")
    assert r.status_code == 200 and r.json()["revoked"] is True
    assert reader.get("/v1/requests").status_code == 401
    again = admin.post(f"/v1/keys/{made['key_id']}/revoke")  # twice is once
    assert again.status_code == 200
    actions = [e["action"] for e in admin.get("/v1/audit").json()["items"]]
    assert actions.count("api_key_revoked") == 1


def test_a_rotated_key_keeps_its_scopes_and_the_old_one_stops(acme, stack):
    admin = acme["api"]
    old = admin.post("/v1/keys", {"scopes": ["dsr:read", "consent:read"]}).json()
    r = admin.post(f"/v1/keys/{old['key_id']}/rotate")
    assert r.status_code == 201, r.text
    new = r.json()
    assert new["replaces"] == old["key_id"] and new["scopes"] == ["consent:read", "dsr:read"]
    assert Api(stack.info["api_url"], old["api_key"]).get("/v1/requests").status_code == 401
    assert Api(stack.info["api_url"], new["api_key"]).get("/v1/requests").status_code == 200
    twice = admin.post(f"/v1/keys/{old['key_id']}/rotate")
    assert twice.status_code == 409 and twice.json()["error"]["code"] == "key_revoked"


def test_the_key_making_the_call_cannot_revoke_itself(acme):
    admin = acme["api"]
    r = admin.post(f"/v1/keys/{acme['key_id']}/revoke")
    assert r.status_code == 409 and r.json()["error"]["code"] == "key_in_use"
    assert admin.get("/v1/tenant").status_code == 200


def test_another_tenants_key_is_not_found_and_a_bad_key_id_is_not_echoed(acme, api):
    theirs = api.get("/v1/keys").json()["items"][0]["key_id"]
    assert acme["api"].post(f"/v1/keys/{theirs}/revoke").status_code == 404
    r = acme["api"].post("/v1/keys/mario.rossi@example.com/revoke")
    assert r.status_code == 404 and "mario" not in r.text


def test_the_operator_manages_any_tenants_keys(operator, acme, stack):
    tid = acme["tenant"]["tenant_id"]
    r = operator.post(f"/v1/tenants/{tid}/keys", {"scopes": ["audit:read"], "name": "auditor"})
    assert r.status_code == 201, r.text
    made = r.json()
    auditor = Api(stack.info["api_url"], made["api_key"])
    assert auditor.get("/v1/audit").status_code == 200
    listed = operator.get(f"/v1/tenants/{tid}/keys").json()["items"]
    assert made["key_id"] in {k["key_id"] for k in listed}
    assert all("api_key" not in k and "key_hash" not in k for k in listed)
    rotated = operator.post(f"/v1/tenants/{tid}/keys/{made['key_id']}/rotate").json()
    assert auditor.get("/v1/audit").status_code == 401
    gone = operator.post(f"/v1/tenants/{tid}/keys/{rotated['key_id']}/revoke")
    assert gone.status_code == 200
    assert Api(stack.info["api_url"], rotated["api_key"]).get("/v1/audit").status_code == 401
    assert operator.get("/v1/tenants/no-such-tenant/keys").status_code == 404


def test_a_key_is_stored_only_as_its_hash_and_never_replayed(acme, aws_client, settings):
    admin = acme["api"]
    made = admin.post("/v1/keys", {"scopes": ["dsr:read"]},
                      headers={"Idempotency-Key": f"k-{uuid.uuid4()}"})
    key = made.json()["api_key"]
    rotated = admin.post(f"/v1/keys/{made.json()['key_id']}/rotate",
                         headers={"Idempotency-Key": "rotate-1"})
    replay = admin.post(f"/v1/keys/{made.json()['key_id']}/rotate",
                        headers={"Idempotency-Key": "rotate-1"})
    assert replay.status_code == 409 and replay.json()["error"]["code"] == "secret_not_replayed"
    assert rotated.json()["api_key"] not in replay.text
    secrets = [key, rotated.json()["api_key"], acme["api_key"]]
    stored = json.dumps(_scan(aws_client, settings.table("api_keys"))
                        + _scan(aws_client, settings.table("idempotency")), default=str)
    for secret in secrets:
        assert secret not in stored
    rows = [i for i in _scan(aws_client, settings.table("api_keys"))
            if i["key_id"] == made.json()["key_id"]]
    assert len(rows) == 1 and set(rows[0]) >= {"key_hash", "scopes"} and "api_key" not in rows[0]
