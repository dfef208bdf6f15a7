"""Search (where one subject appears) in-process against the in-process AWS: every table the
subject is in with its counts and keys, the pending deliveries, the restriction, consents and
suppression; child tenants only when asked and allowed; nothing changed but one audit entry
that names the subject by its HMAC; bad input names the field."""

from __future__ import annotations

from typing import Any

import pytest

from oblio.control import audit, ledger, suppression
from oblio.control.tenants import Principal
from oblio.core.bodies import SubjectQuery, parse
from oblio.core.errors import Forbidden, Invalid
from oblio.rights import search
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")

MARIO = {"email": "mario@example.com"}


def _search(principal: Principal, params: dict[str, Any]) -> dict[str, Any]:
    """A search as the route makes it: the query string parsed, then searched."""
    return search.search(principal, parse(SubjectQuery, params))


@pytest.fixture(scope="module")
def family(provisioned, demo_map) -> dict[str, Any]:
    """A parent tenant with Mario and Luigi, and a child tenant with its own copy of Mario."""
    parent = world.new_tenant("search-parent")
    from oblio.control import tenants

    child = tenants.create_tenant("search-child", "Child", parent_id="search-parent",
                                  settings={"default_phone_region": "IT"})
    mario = world.seed(demo_map, "search-parent", "mario@example.com", "+393331234567",
                       "CRM-1")
    luigi = world.seed(demo_map, "search-parent", "luigi@example.com", "+393339876543")
    world.seed(demo_map, "search-child", "mario@example.com", "+393331234567")
    return {"parent": parent, "child": child, "mario": mario, "luigi": luigi}


def who(tenant_id: str, children: bool = False) -> Principal:
    return Principal(tenant_id, "key_search", frozenset({"dsr:read"}), children)


def test_search_counts_the_subject_in_every_table_it_is_in(family):
    found = _search(who("search-parent"), MARIO)
    counts = {n: v["count"] for n, v in found["tables"].items()}
    assert counts == {n: c for n, c in family["mario"]["counts"].items() if n != "files"}
    assert found["found"] is True and found["total"] == sum(counts.values())
    assert found["tables_found"] == 9


def test_search_lists_each_items_key_and_the_files_it_points_to(family):
    found = _search(who("search-parent"), MARIO)
    contacts = found["tables"]["contacts"]
    assert contacts["files"] == 1 and list(contacts["keys"][0]) == ["tenant_id", "contact_id"]
    assert contacts["keys"][0]["tenant_id"] == "search-parent"
    assert sum(v["files"] for v in found["tables"].values()) == 3
    tickets = found["tables"]["tickets"]
    assert len(tickets["keys"]) == tickets["count"] == family["mario"]["counts"]["tickets"]


def test_search_by_a_national_phone_uses_the_tenants_region(family):
    by_phone = _search(who("search-parent"), {"phone": "333 123 4567"})
    assert by_phone["tables"]["contacts"]["count"] == 1
    assert by_phone["subject_ref"] == family["parent"].keys.subject_ref(
        {"phone": "+393331234567"})


def test_search_lists_the_pending_deliveries(family):
    found = _search(who("search-parent"), MARIO)
    assert [(p["table"], p["count"]) for p in found["pending_deliveries"]] == [
        ("subscriptions", 1), ("scheduled_recipients", 1)]
    assert found["pending_deliveries"][0]["keys"] == found["tables"]["subscriptions"]["keys"]


def test_search_of_someone_unknown_finds_nothing_anywhere(family):
    found = _search(who("search-parent"), {"email": "nobody@example.com"})
    assert found["found"] is False and found["total"] == 0 and found["tables_found"] == 0
    assert found["pending_deliveries"] == [] and found["suppressed"] is False


def test_search_sees_the_keys_tenant_only(family):
    found = _search(who("search-parent"), MARIO)
    assert found["children"] == {}
    in_child = _search(who("search-child"), {"email": "luigi@example.com"})
    assert in_child["found"] is False


def test_search_with_children_answers_for_each_child_tenant(family):
    found = _search(who("search-parent", children=True),
                          {**MARIO, "include_children": "true"})
    assert set(found["children"]) == {"search-child"}
    child = found["children"]["search-child"]
    assert child["found"] is True and child["tables"]["contacts"]["count"] == 1
    assert child["tables"]["contacts"]["keys"][0]["tenant_id"] == "search-child"
    assert child["subject_ref"] == family["child"].keys.subject_ref(MARIO)
    assert child["subject_ref"] != found["subject_ref"]  # each tenant has its own key


def test_a_key_without_children_access_may_not_search_them(family):
    with pytest.raises(Forbidden) as err:
        _search(who("search-parent"), {**MARIO, "include_children": "true"})
    assert err.value.details["field"] == "include_children"


def test_search_changes_nothing_and_writes_one_audit_entry_without_identity(family,
                                                                            demo_map):
    before = {n: world.items(t.table, "search-parent") for n, t in demo_map.tables.items()}
    head = [m.seq for m in audit.entries("search-parent", limit=1)[0]]
    found = _search(who("search-parent"), MARIO)
    after = {n: world.items(t.table, "search-parent") for n, t in demo_map.tables.items()}
    assert after == before
    newest, _ = audit.entries("search-parent", limit=2)
    assert [m.seq for m in newest[1:]] == head  # one entry more, no other
    entry = audit.to_json(newest[0])
    assert entry["action"] == "subject_searched" and entry["actor"] == "key_search"
    assert entry["subject_ref"] == found["subject_ref"]
    assert entry["details"] == {"found": found["total"], "children": []}
    assert "mario" not in repr(entry)


def test_search_shows_a_restriction_consents_and_suppression(family, demo_map):
    from oblio.store import tables as store

    world.seed(demo_map, "search-parent", "anna@example.com")
    anna = {"email": "anna@example.com"}
    (contact,) = [i for i in world.items("demo-contacts", "search-parent")
                  if i.get("email") == "anna@example.com"]
    first = _search(who("search-parent"), anna)
    assert (first["restricted"], first["suppressed"], first["consents"]) == (
        False, False, {"marketing": "none", "newsletter": "none", "analytics": "none",
                       "profiling": "none"})
    store.update("demo-contacts", {"tenant_id": "search-parent",
                                   "contact_id": contact["contact_id"]}, {"restricted": True}, [])
    t = family["parent"]
    fields = ledger.validate(t, {"purpose": "newsletter", "channel": "web",
                                 "status": "granted"})
    ledger.append(t, ledger.subject_keys(t, anna), t.keys.subject_ref(anna), fields,
                  recorded_by="key_test", emit=False)
    suppression.add("search-parent", {"email": [t.keys.hmac("email", "anna@example.com")]},
                    reason="objection:marketing", request_id="r1")
    now = _search(who("search-parent"), anna)
    assert now["restricted"] is True and now["suppressed"] is True
    assert [s["reason"] for s in now["suppression"]] == ["objection:marketing"]
    assert now["consents"]["newsletter"] == "granted"
    assert [e["purpose"] for e in now["consent_history"]] == ["newsletter"]


@pytest.mark.parametrize("params, field", [
    ({}, "email"), ({"name": "Mario"}, "name"),  # a name of the API: repeated
    ({"email": "not-an-email"}, "subject.email"), ({"phone": "12"}, "subject.phone"),
    ({**MARIO, "include_children": "yes"}, "include_children"),
])
def test_bad_search_input_names_the_field_and_not_the_value(family, params, field):
    with pytest.raises(Invalid) as err:
        _search(who("search-parent"), params)
    assert err.value.field == field and isinstance(err.value, Invalid)
    assert "not-an-email" not in err.value.message
