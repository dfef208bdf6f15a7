"""Tenants and keys as a product: a tenant created with its first admin key, keys rotated and
revoked at once, and the operator key whose scope is above tenants (and reads no tenant's
data)."""

from __future__ import annotations

import pytest

from oblio.control import tenants
from oblio.core.bodies import TenantBody, parse
from oblio.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from oblio.core.settings import get_settings
from oblio.store import secrets as secrets_store


def _bearer(key: str) -> str:
    return f"Bearer {key}"


def test_a_new_tenant_comes_with_an_admin_key_shown_once(aws):
    tenant, key_id, key = tenants.new_tenant("acme", "Acme Ltd")
    assert tenant.tenant_id == "acme" and key.startswith("obl_")
    principal = tenants.authenticate(_bearer(key))
    assert (principal.tenant_id, principal.key_id) == ("acme", key_id)
    listed = tenants.list_api_keys("acme")
    assert [k["key_id"] for k in listed] == [key_id]
    assert key not in str(listed) and tenants.hash_key(key) not in str(listed)


def test_a_child_tenant_is_linked_to_its_parent(aws):
    tenants.new_tenant("acme", "Acme Ltd")
    tenants.new_tenant("acme-eu", "Acme Europe", parent_id="acme")
    assert tenants.get_tenant("acme").children == ("acme-eu",)
    assert [t["tenant_id"] for t in tenants.list_tenants("acme")] == ["acme-eu"]
    with pytest.raises(NotFound):
        tenants.new_tenant("orphan", "Orphan", parent_id="nope")


def test_tenant_ids_are_checked_and_unique(aws):
    tenants.new_tenant("acme", "Acme Ltd")
    with pytest.raises(Conflict) as err:
        tenants.new_tenant("acme", "Acme again")
    assert err.value.code == "tenant_exists"
    for bad in ("A", "Acme", "-acme", "acme_", "a" * 64, 5, None):
        with pytest.raises(Invalid) as inv:
            parse(TenantBody, {"tenant_id": bad, "name": "x"})
        assert inv.value.field == "tenant_id" and str(bad) not in inv.value.message
    for name in ("", "   ", "x" * 201):
        with pytest.raises(Invalid) as inv:
            parse(TenantBody, {"tenant_id": "acme-eu", "name": name})
        assert inv.value.field == "name"


def test_a_revoked_key_is_refused_on_its_very_next_call(aws):
    _, key_id, key = tenants.new_tenant("acme", "Acme Ltd")
    tenants.authenticate(_bearer(key))  # known, and it would have been cached before
    tenants.revoke_api_key("acme", key_id)
    with pytest.raises(Unauthorized, match="revoked"):
        tenants.authenticate(_bearer(key))
    assert tenants.revoke_api_key("acme", key_id)["revoked"] is True  # twice is once


def test_a_rotated_key_keeps_its_scopes_and_the_old_one_stops(aws):
    tenants.new_tenant("acme", "Acme Ltd")
    old_id, old = tenants.create_api_key("acme", ["dsr:read"], name="reporting")
    record, new = tenants.rotate_api_key("acme", old_id)
    assert record["replaces"] == old_id and record["scopes"] == ["dsr:read"]
    assert record["name"] == "reporting" and new != old
    assert tenants.authenticate(_bearer(new)).scopes == frozenset({"dsr:read"})
    with pytest.raises(Unauthorized):
        tenants.authenticate(_bearer(old))
    with pytest.raises(Conflict):
        tenants.rotate_api_key("acme", old_id)
    with pytest.raises(NotFound):
        tenants.revoke_api_key("acme", "key_nope")


def test_another_tenants_key_is_not_found(aws):
    tenants.new_tenant("acme", "Acme Ltd")
    _, globex_key_id, _ = tenants.new_tenant("globex", "Globex")
    with pytest.raises(NotFound):
        tenants.revoke_api_key("acme", globex_key_id)


def test_the_operator_key_opens_the_operator_scope_and_nothing_else(aws):
    secrets_store.write(get_settings().operator_secret_name, "obl_operator_secret")
    tenants.forget_operator_key()
    op = tenants.authenticate(_bearer("obl_operator_secret"))
    op.require(tenants.OPERATOR)
    with pytest.raises(Forbidden):
        op.require("dsr:read")  # it reads no tenant's data
    _, _, admin = tenants.new_tenant("acme", "Acme Ltd")
    with pytest.raises(Forbidden, match="operator key"):
        tenants.authenticate(_bearer(admin)).require(tenants.OPERATOR)
    # a tenant key can never be given the operator scope
    with pytest.raises(Invalid):
        tenants.create_api_key("acme", [tenants.OPERATOR])
