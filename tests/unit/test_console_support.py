"""What the console asks of the domain: the data map summarised for its forms, and a key
revoked for good."""

from __future__ import annotations

import json

import pytest

from oblio.core import datamap
from oblio.core.errors import Conflict, NotFound, Unauthorized
from oblio.core.settings import DEMO_DATAMAP


def test_datamap_summary_lists_tables_in_walk_order_without_physical_names():
    dm = datamap.load(DEMO_DATAMAP)
    s = datamap.summary(dm)
    assert [t["name"] for t in s["tables"]] == dm.order
    text = json.dumps(s)
    assert not any(f'"{t.table}"' in text for t in dm.tables.values() if t.table not in dm.tables)
    assert not any(b in text for b in dm.buckets.values())
    tickets = next(t for t in s["tables"] if t["name"] == "tickets")
    assert tickets["on_erase"] == "anonymise"  # the shell is kept for reporting
    assert s["objection_purposes"] == ["marketing"]
    pending = {t["name"] for t in s["tables"] if t["pending_deliveries"]}
    assert pending == {"subscriptions", "scheduled_recipients"}


def test_datamap_summary_offers_identities_and_contact_attributes_to_rectify():
    s = datamap.summary(datamap.load(DEMO_DATAMAP))
    assert s["rectifiable"][:3] == ["email", "phone", "external_id"]
    assert {"city", "last_name", "address"} <= set(s["rectifiable"])
    assert "contact_id" not in s["rectifiable"] and "status" not in s["rectifiable"]


def test_a_revoked_key_no_longer_authenticates_and_a_repeat_answers_the_same(aws):
    from oblio.control import tenants

    tenants.create_tenant("acme", "Acme")
    _, admin = tenants.create_api_key("acme", ["admin"], name="admin")
    key_id, key = tenants.create_api_key("acme", ["dsr:read"], name="helpdesk")
    principal = tenants.authenticate(f"Bearer {admin}")
    assert tenants.authenticate(f"Bearer {key}").key_id == key_id  # cached now
    first = tenants.revoke_api_key(principal, key_id)
    assert first["revoked"] is True and first["name"] == "helpdesk"
    assert tenants.revoke_api_key(principal, key_id) == first
    with pytest.raises(Unauthorized, match="revoked"):
        tenants.authenticate(f"Bearer {key}")  # at once in this process, cache or not
    assert [k["revoked"] for k in tenants.list_api_keys("acme")
            if k["key_id"] == key_id] == [True]


def test_a_key_cannot_revoke_itself_nor_another_tenants_key(aws):
    from oblio.control import tenants

    tenants.create_tenant("acme", "Acme")
    tenants.create_tenant("other", "Other")
    _, admin = tenants.create_api_key("acme", ["admin"])
    foreign_id, _ = tenants.create_api_key("other", ["admin"])
    principal = tenants.authenticate(f"Bearer {admin}")
    with pytest.raises(Conflict, match="signed in with"):
        tenants.revoke_api_key(principal, principal.key_id)
    with pytest.raises(NotFound):
        tenants.revoke_api_key(principal, foreign_id)
