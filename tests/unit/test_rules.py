"""The rules of every action, as pure decisions over the demo data map (no AWS at all): what
each action does to each table, which attributes a rectification reaches, what a rewrite
leaves of an item, and which values identify the subject."""

from __future__ import annotations

import pytest

from oblio.control.crypto import TenantKeys
from oblio.pipeline import rules

SUBJECT = "s_" + "3" * 40
TABLES = ("contacts", "tickets", "ticket_messages", "email_sends", "email_events",
          "subscriptions", "blacklist", "documents", "scheduled_recipients")
PENDING = {"subscriptions", "scheduled_recipients"}  # pending deliveries, purpose marketing
#: the tables holding an e-mail address (as `email` or `recipient_email`)
HOLD_AN_EMAIL = {"contacts", "email_sends", "subscriptions", "blacklist",
                 "scheduled_recipients"}


def modes(dm, action, params=None):
    return {name: rules.table_mode(dm, name, action, params) for name in TABLES}


# -- what each action does to each table -------------------------------------------------------

def test_the_demo_map_has_the_tables_these_rules_are_written_for(demo_map):
    assert set(demo_map.tables) == set(TABLES)


def test_an_export_reads_every_table_and_changes_none(demo_map):
    assert set(modes(demo_map, "export").values()) == {"read"}


def test_a_retention_purge_deletes_in_every_table_even_the_kept_ticket_shell(demo_map):
    assert set(modes(demo_map, "purge").values()) == {"delete"}


def test_erasure_anonymises_the_ticket_shell_and_deletes_everything_else(demo_map):
    assert modes(demo_map, "erase") == {**dict.fromkeys(TABLES, "delete"),
                                        "tickets": "anonymise"}


def test_anonymisation_rewrites_the_kept_tables_and_deletes_the_rest(demo_map):
    kept = {"contacts", "tickets", "ticket_messages", "email_sends", "email_events"}
    assert modes(demo_map, "anonymise") == {
        name: "anonymise" if name in kept else "delete" for name in TABLES}


def test_an_anonymisation_scope_may_name_map_tables_or_physical_tables(demo_map):
    by_name = modes(demo_map, "anonymise", {"tables": ["tickets", "documents"]})
    assert {n: m for n, m in by_name.items() if m != "none"} == {
        "tickets": "anonymise", "documents": "delete"}
    by_physical = modes(demo_map, "anonymise", {"tables": ["demo-tickets"]})
    assert {n: m for n, m in by_physical.items() if m != "none"} == {"tickets": "anonymise"}


def test_an_empty_scope_is_no_scope(demo_map):
    assert modes(demo_map, "anonymise", {"tables": []}) == modes(demo_map, "anonymise")
    assert modes(demo_map, "anonymise", {"tables": None}) == modes(demo_map, "anonymise")


def test_restriction_flags_the_profile_and_drops_pending_deliveries_only(demo_map):
    expected = {**dict.fromkeys(TABLES, "none"), "contacts": "flag",
                **dict.fromkeys(PENDING, "delete")}
    assert modes(demo_map, "restrict") == expected


def test_lifting_a_restriction_unflags_the_profile_and_restores_no_delivery(demo_map):
    assert modes(demo_map, "unrestrict") == {**dict.fromkeys(TABLES, "none"),
                                             "contacts": "unflag"}


@pytest.mark.parametrize("purposes, reached", [
    (None, PENDING),                          # no purpose named: all marketing
    (["marketing"], PENDING),
    (["marketing", "profiling"], PENDING),    # one matching purpose is enough
    (["profiling"], set()),
])
def test_an_objection_drops_the_pending_deliveries_of_the_purposes_named(demo_map, purposes,
                                                                         reached):
    got = modes(demo_map, "object", {"purposes": purposes})
    assert {n for n, m in got.items() if m != "none"} == reached
    assert {got[n] for n in reached} <= {"delete"}


def test_a_rectification_updates_only_the_tables_holding_what_changes(demo_map):
    by_email = modes(demo_map, "rectify", {"changes": {"email": "new@example.com"}})
    assert {n for n, m in by_email.items() if m == "update"} == HOLD_AN_EMAIL
    assert {m for n, m in by_email.items() if n not in HOLD_AN_EMAIL} == {"none"}
    by_city = modes(demo_map, "rectify", {"changes": {"city": "Genova"}})
    assert {n for n, m in by_city.items() if m == "update"} == {"contacts"}


def test_a_rectification_without_changes_touches_nothing(demo_map):
    assert set(modes(demo_map, "rectify", {}).values()) == {"none"}
    assert set(modes(demo_map, "rectify", {"changes": None}).values()) == {"none"}


def test_an_unknown_action_is_refused_by_name(demo_map):
    with pytest.raises(ValueError, match="'shred'"):
        rules.table_mode(demo_map, "contacts", "shred")


def test_every_declared_action_has_a_mode_for_every_table(demo_map):
    for action in rules.ACTIONS:
        for name in TABLES:
            assert rules.table_mode(demo_map, name, action, {"changes": {"city": "x"}}) in (
                "delete", "anonymise", "update", "flag", "unflag", "read", "none")


# -- which attributes a rectification reaches ---------------------------------------------------

def test_an_identity_change_reaches_every_attribute_holding_that_identity(demo_map):
    t = demo_map.tables
    change = {"email": "new@example.com"}
    assert rules.changes_for(t["email_sends"], change) == {"recipient_email": "new@example.com"}
    assert rules.changes_for(t["scheduled_recipients"], change) == {"email": "new@example.com"}
    assert rules.changes_for(t["tickets"], change) == {}


def test_a_phone_or_external_id_change_reaches_the_profile_only(demo_map):
    for change in ({"phone": "+393331112222"}, {"external_id": "CRM-9"}):
        reached = {n for n in TABLES if rules.changes_for(demo_map.tables[n], change)}
        assert reached == {"contacts"}, change


def test_a_plain_attribute_change_reaches_the_attribute_of_that_name(demo_map):
    t = demo_map.tables
    assert rules.changes_for(t["contacts"], {"city": "Genova", "company": "Acme"}) == {
        "city": "Genova", "company": "Acme"}
    # `status` is an attribute of tickets and subscriptions, not of contacts
    assert rules.changes_for(t["contacts"], {"status": "x"}) == {}
    assert rules.changes_for(t["tickets"], {"status": "closed"}) == {"status": "closed"}


def test_names_no_table_holds_are_left_out(demo_map):
    assert rules.changes_for(demo_map.tables["contacts"], {"shoe_size": 42}) == {}


def test_a_change_of_a_key_attribute_is_included_so_the_item_can_move(demo_map):
    # the blacklist is keyed by the e-mail: apply moves the item to its new key
    assert rules.changes_for(demo_map.tables["blacklist"], {"email": "n@example.com"}) == {
        "email": "n@example.com"}


# -- what a rewrite leaves of an item ----------------------------------------------------------

def test_the_erasure_of_a_ticket_keeps_the_reporting_shell(demo_map, keys):
    ticket = {"tenant_id": "demo", "ticket_id": "t1", "contact_id": "c1",
              "subject": "Refund please", "description": "Mario writes about a refund",
              "status": "closed", "channel": "email", "reason": "refund",
              "created_at": "2026-01-02T10:00:00Z", "closed_at": "2026-01-03T10:00:00Z",
              "sla_first_response_min": 12, "sla_resolution_min": 600,
              "assignee": "agent.bianchi"}
    sets, removes = rules.rewrite(demo_map, demo_map.tables["tickets"], ticket, "erase", keys,
                                  SUBJECT)
    assert sets == {}
    assert sorted(removes) == ["contact_id", "description", "subject"]
    shell = {k: v for k, v in ticket.items() if k not in removes}
    assert {"status", "channel", "reason", "created_at", "closed_at",
            "sla_resolution_min"} <= set(shell)


def test_an_anonymised_contact_keeps_no_identity_and_gets_a_pseudonym(demo_map, keys):
    item = {"tenant_id": "demo", "contact_id": "c1", "email": "mario.rossi@example.com",
            "phone": "+393331234567", "external_id": "CRM-0001", "first_name": "Mario",
            "last_name": "Rossi", "birth_date": "1980-05-17", "address": "Via Roma 1",
            "city": "Milano", "country": "IT", "photo_key": "demo/photos/c1/f.bin",
            "notes": "prefers e-mail", "sweep_bucket": "demo#2026-10"}
    sets, removes = rules.rewrite(demo_map, demo_map.tables["contacts"], item, "anonymise",
                                  keys, SUBJECT)
    n = keys.pseudonym_number(SUBJECT)
    assert sets == {"first_name": f"F_{n}", "last_name": f"L_{n}", "birth_date": "1980-05"}
    assert set(removes) == {"email", "phone", "external_id", "address", "city", "photo_key",
                            "notes", "sweep_bucket"}
    leftover = {**{k: v for k, v in item.items() if k not in removes}, **sets}
    assert set(leftover) == {"tenant_id", "contact_id", "country", "first_name", "last_name",
                             "birth_date"}


def test_a_rewrite_is_the_same_for_the_same_subject_and_item(demo_map, keys):
    event = {"tenant_id": "demo", "event_id": "e1", "ip_address": "203.0.113.9",
             "user_agent": "Mozilla/5.0", "at": "2026-10-01T10:00:00Z", "type": "open"}
    first = rules.rewrite(demo_map, demo_map.tables["email_events"], event, "anonymise", keys,
                          SUBJECT)
    again = rules.rewrite(demo_map, demo_map.tables["email_events"], event, "anonymise", keys,
                          SUBJECT)
    assert first == again
    sets, removes = first
    assert sets["at"] == "2026-10" and sets["user_agent"] == rules.MASK
    assert sets["ip_address"].startswith("h_") and removes == []


# -- which values identify the subject ---------------------------------------------------------

def test_value_refs_ignore_case_and_surrounding_blanks(keys):
    assert rules.value_refs(keys, ["Mario.Rossi@Example.com "]) == \
        rules.value_refs(keys, ["mario.rossi@example.com"])


def test_value_refs_are_keyed_by_the_tenant():
    a = TenantKeys.from_data_key("a", b"a" * 32)
    b = TenantKeys.from_data_key("b", b"b" * 32)
    assert rules.value_refs(a, ["Mario"]) != rules.value_refs(b, ["Mario"])


def test_value_refs_take_strings_and_numbers_and_skip_blanks_and_other_types(keys):
    refs = rules.value_refs(keys, ["Mario", 42, "", "   ", None, 4.5, True])
    assert refs == rules.value_refs(keys, ["Mario", "42", True])
    assert len(refs) == 3  # booleans are ints: True counts as "true"


def test_value_refs_take_the_scalars_inside_maps_and_lists(keys):
    # an identity at a path (aliases[], emergency_contact.phone) is compared leaf by leaf
    refs = rules.value_refs(keys, [["x", ""], {"y": "Mario", "z": 4.5}])
    assert refs == rules.value_refs(keys, ["x", "Mario"])


def test_value_refs_hold_no_value_in_clear(keys):
    (ref,) = rules.value_refs(keys, ["mario.rossi@example.com"])
    assert "mario" not in ref and len(ref) == 64


def test_identifying_values_are_the_identity_attributes_present(demo_map):
    items = [{"tenant_id": "demo", "contact_id": "c1", "email": "m@example.com",
              "first_name": "Mario", "city": "Milano"},
             {"tenant_id": "demo", "contact_id": "c2", "phone": "+393331234567",
              "photo_key": "demo/photos/c2/p.bin"}]
    assert sorted(rules.identifying_values(demo_map, "contacts", items)) == sorted(
        ["m@example.com", "Mario", "+393331234567", "demo/photos/c2/p.bin"])


def test_identifying_values_include_identities_held_outside_the_identity_category(demo_map):
    sends = [{"tenant_id": "demo", "send_id": "s1", "recipient_email": "m@example.com",
              "contact_id": "c1", "campaign_id": "camp-001"}]
    assert rules.identifying_values(demo_map, "email_sends", sends) == ["m@example.com"]


def test_identifying_values_leave_out_key_attributes(demo_map):
    # the blacklist's e-mail is its key: a kept item's key cannot be rewritten, so it is not
    # among the values an anonymisation must have removed
    entry = [{"tenant_id": "demo", "email": "m@example.com", "reason": "bounced"}]
    assert rules.identifying_values(demo_map, "blacklist", entry) == []


def test_a_table_without_identity_attributes_has_no_identifying_values(demo_map):
    events = [{"tenant_id": "demo", "event_id": "e1", "ip_address": "203.0.113.9"}]
    assert rules.identifying_values(demo_map, "email_events", events) == []
