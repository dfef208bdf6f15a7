"""The engine: what each action does to a table, what each attribute rule makes of a value,
and applying a unit (twice changes nothing the second time)."""

from __future__ import annotations

import copy

import pytest
import yaml

from oblio.core import datamap
from oblio.core.settings import DEMO_DATAMAP
from oblio.pipeline import apply, rules, verify

DEMO = yaml.safe_load(DEMO_DATAMAP.read_text())
SUBJECT = "s_" + "1" * 40
OTHER_SUBJECT = "s_" + "2" * 40


def contact(**extra):
    return {"tenant_id": "demo", "contact_id": "c1", "email": "mario.rossi@example.com",
            "phone": "+393331234567", "first_name": "Mario", "last_name": "Rossi",
            "birth_date": "1980-05-17", "city": "Milano", "country": "IT",
            "created_at": "2024-02-03T10:00:00Z", **extra}


def rewrite(dm, table, item, keys, action="anonymise", ref=SUBJECT):
    return rules.rewrite(dm, dm.tables[table], item, action, keys, ref)


# --- each rule --------------------------------------------------------------------------------


def test_keep_leaves_the_value_alone(demo_map, keys):
    sets, removes = rewrite(demo_map, "contacts", contact(), keys)
    for kept in ("country", "created_at"):
        assert kept not in sets and kept not in removes


def test_null_removes_the_attribute(demo_map, keys):
    sets, removes = rewrite(demo_map, "contacts", contact(), keys)
    assert {"email", "phone", "city"} <= set(removes)
    assert not {"email", "phone", "city"} & set(sets)


def test_mask_replaces_the_value(demo_map, keys):
    event = {"tenant_id": "demo", "event_id": "e1", "user_agent": "Mozilla/5.0 (Mario's Mac)"}
    sets, removes = rewrite(demo_map, "email_events", event, keys)
    assert sets == {"user_agent": rules.MASK} and removes == []


@pytest.mark.parametrize("value, month", [("1980-05-17", "1980-05"),
                                          ("2026-01-31T23:59:59.123Z", "2026-01"),
                                          ("2026-01", "2026-01")])
def test_generalise_takes_a_date_to_its_month(demo_map, keys, value, month):
    sets, _ = rewrite(demo_map, "contacts", contact(birth_date=value), keys)
    assert sets["birth_date"] == month


@pytest.mark.parametrize("value", ["17/05/1980", "yesterday", 1980])
def test_generalise_removes_what_is_not_a_date(demo_map, keys, value):
    sets, removes = rewrite(demo_map, "contacts", contact(birth_date=value), keys)
    assert "birth_date" in removes and "birth_date" not in sets


def test_hmac_keeps_linkability_without_the_value(demo_map, keys):
    def ip_of(ip, k=keys):
        sets, _ = rewrite(demo_map, "email_events",
                          {"tenant_id": "demo", "event_id": "e1", "ip_address": ip}, k)
        return sets["ip_address"]

    one = ip_of("203.0.113.9")
    assert one.startswith("h_") and len(one) == 34 and "203.0.113.9" not in one
    assert ip_of("203.0.113.9") == one          # the same value links across items
    assert ip_of("203.0.113.10") != one
    from oblio.control.crypto import TenantKeys

    assert ip_of("203.0.113.9", TenantKeys.from_data_key("other", b"o" * 32)) != one


def test_pseudonym_uses_the_subjects_number_in_every_table(keys):
    # a second table with a pseudonymised name: the subject gets the same number in both
    data = copy.deepcopy(DEMO)
    data["tables"]["tickets"]["attributes"]["requester_name"] = {
        "category": "identity", "anonymise": "pseudonym:Customer {n}"}
    dm = datamap.parse(data)
    n = keys.pseudonym_number(SUBJECT)
    sets, _ = rewrite(dm, "contacts", contact(), keys)
    assert sets["first_name"] == f"F_{n}" and sets["last_name"] == f"L_{n}"
    ticket = {"tenant_id": "demo", "ticket_id": "t1", "requester_name": "Mario Rossi"}
    sets, _ = rewrite(dm, "tickets", ticket, keys)
    assert sets["requester_name"] == f"Customer {n}"
    other, _ = rewrite(dm, "contacts", contact(), keys, ref=OTHER_SUBJECT)
    assert other["first_name"] == f"F_{keys.pseudonym_number(OTHER_SUBJECT)}"


def test_kept_shell_loses_attributes_the_map_does_not_know(demo_map, keys):
    marker = demo_map.anonymised_marker
    item = contact(favourite_colour="blue", **{marker: "r0"})
    sets, removes = rewrite(demo_map, "contacts", item, keys)
    assert "favourite_colour" in removes
    # the keys, the tenant attribute and the marker are never touched
    for untouched in ("tenant_id", "contact_id", marker):
        assert untouched not in sets and untouched not in removes


def test_erasure_rules_override_anonymise_rules_in_a_kept_shell(demo_map, keys):
    ticket = {"tenant_id": "demo", "ticket_id": "t1", "contact_id": "c1", "subject": "Help",
              "status": "closed", "sla_resolution_min": 42, "assignee": "Anna"}
    sets, removes = rewrite(demo_map, "tickets", ticket, keys, action="erase")
    assert sorted(removes) == ["contact_id", "subject"] and sets == {}
    _, removes = rewrite(demo_map, "tickets", ticket, keys, action="anonymise")
    assert removes == ["subject"]  # anonymisation keeps the link to the pseudonymous contact


# --- modes ------------------------------------------------------------------------------------


def test_erasure_keeps_the_ticket_shell_and_deletes_the_rest(demo_map):
    modes = {n: rules.mode(t, "erase") for n, t in demo_map.tables.items()}
    assert modes["tickets"] == "anonymise"
    assert {m for n, m in modes.items() if n != "tickets"} == {"delete"}


def test_anonymisation_follows_each_tables_on_anonymise(demo_map):
    assert rules.mode(demo_map.tables["contacts"], "anonymise") == "anonymise"
    assert rules.mode(demo_map.tables["documents"], "anonymise") == "delete"


def test_anonymisation_scoped_to_some_tables_leaves_the_others(demo_map):
    scope = {"tables": ["tickets"]}
    assert rules.table_mode(demo_map, "tickets", "anonymise", scope) == "anonymise"
    assert rules.table_mode(demo_map, "contacts", "anonymise", scope) == "none"
    # a scope may name the physical table as well
    assert rules.mode(demo_map.tables["tickets"], "anonymise",
                       {"tables": ["demo-tickets"]}) == "anonymise"


def test_modes_of_the_other_actions(demo_map):
    t = demo_map.tables
    assert rules.mode(t["contacts"], "export") == "read"
    assert rules.mode(t["contacts"], "restrict") == "flag"
    assert rules.mode(t["contacts"], "unrestrict") == "unflag"
    assert rules.mode(t["scheduled_recipients"], "restrict") == "delete"
    assert rules.mode(t["tickets"], "restrict") == "none"
    assert rules.mode(t["tickets"], "unrestrict") == "none"
    assert rules.mode(t["subscriptions"], "object") == "delete"
    assert rules.mode(t["subscriptions"], "object", {"purposes": ["marketing"]}) == "delete"
    assert rules.mode(t["subscriptions"], "object", {"purposes": ["profiling"]}) == "none"
    assert rules.mode(t["contacts"], "object") == "none"
    assert rules.mode(t["email_sends"], "rectify",
                       {"changes": {"email": "n@example.com"}}) == "update"
    assert rules.mode(t["tickets"], "rectify", {"changes": {"email": "n@x.y"}}) == "none"
    with pytest.raises(ValueError, match="unknown action 'forget'"):
        rules.mode(t["contacts"], "forget")


def test_rectification_reaches_every_attribute_holding_the_identity_keys_too(demo_map):
    t = demo_map.tables
    assert rules.changes_for(t["email_sends"], {"email": "n@x.y"}) == {
        "recipient_email": "n@x.y"}
    assert rules.changes_for(t["contacts"], {"email": "n@x.y", "city": "Roma",
                                              "nickname": "x"}) == {"email": "n@x.y",
                                                                    "city": "Roma"}
    assert rules.changes_for(t["blacklist"], {"email": "n@x.y"}) == {"email": "n@x.y"}


# --- applying a unit (each test under its own tenant in the module's AWS) ---------------------


@pytest.fixture
def seeded(module_aws, tenant) -> str:
    """Contacts c1 (the subject) and c2 (someone else), and three tickets of c1."""
    from oblio.store import tables as store

    store.batch_put("demo-contacts", [
        contact(tenant_id=tenant),
        contact(tenant_id=tenant, contact_id="c2", email="x@y.z", first_name="Other")])
    store.batch_put("demo-tickets", [
        {"tenant_id": tenant, "ticket_id": f"t{i}", "contact_id": "c1", "subject": "Help",
         "status": "open"} for i in range(3)])
    return tenant


@pytest.fixture(scope="module")
def files(module_aws) -> str:
    """The demo tenant's versioned bucket of files."""
    from oblio.store import aws as oblio_aws

    s3 = oblio_aws.client("s3")
    s3.create_bucket(Bucket="demo-files",
                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_versioning(Bucket="demo-files", VersioningConfiguration={"Status": "Enabled"})
    return "demo-files"


def test_anonymising_a_unit_twice_changes_nothing_the_second_time(seeded, demo_map, keys):
    from oblio.store import tables as store

    unit = rules.Unit(seeded, "contacts")
    manifest = {"keys": [{"tenant_id": seeded, "contact_id": "c1"}]}
    counts = apply.apply_unit(demo_map, "anonymise", unit, manifest, keys, SUBJECT, "r1")
    assert counts["matched"] == 1 and counts["anonymised"] == 1
    (item,) = store.batch_get("demo-contacts", manifest["keys"])
    n = keys.pseudonym_number(SUBJECT)
    assert item["first_name"] == f"F_{n}" and item["birth_date"] == "1980-05"
    assert "email" not in item and "phone" not in item and item["country"] == "IT"
    assert item[demo_map.anonymised_marker] == "r1"
    # the same request retried counts it again as its own; another request leaves it be
    again = apply.apply_unit(demo_map, "anonymise", unit, manifest, keys, SUBJECT, "r1")
    assert again["anonymised"] == 1
    assert store.batch_get("demo-contacts", manifest["keys"]) == [item]
    later = apply.apply_unit(demo_map, "anonymise", unit, manifest, keys, SUBJECT, "r2")
    assert later["anonymised"] == 0 and later["kept"] == 1
    # the other subject is untouched
    (other,) = store.batch_get("demo-contacts", [{"tenant_id": seeded, "contact_id": "c2"}])
    assert other["email"] == "x@y.z" and other["first_name"] == "Other"
    identifying = rules.value_refs(keys, ["mario.rossi@example.com", "Mario", "Rossi"])
    assert verify.check_unit(demo_map, "anonymise", unit, manifest, "r1", keys=keys,
                             identifying=identifying) == {
        "checked": 1, "items_remaining": 0, "files_remaining": 0}


def test_verification_finds_an_item_the_action_missed(seeded, demo_map, keys):
    unit = rules.Unit(seeded, "tickets")
    manifest = {"keys": [{"tenant_id": seeded, "ticket_id": f"t{i}"} for i in range(3)]}
    assert len(verify.remaining_keys(demo_map, "erase", unit, manifest, "r1")) == 3
    apply.apply_unit(demo_map, "erase", unit, {"keys": manifest["keys"][:2]}, keys,
                      SUBJECT, "r1")
    assert verify.remaining_keys(demo_map, "erase", unit, manifest, "r1") == [
        {"tenant_id": seeded, "ticket_id": "t2"}]


def test_deleting_a_unit_removes_items_and_every_version_of_their_files(
        module_aws, tenant, files, demo_map, keys):
    from oblio.store import aws as oblio_aws
    from oblio.store import tables as store

    s3 = oblio_aws.client("s3")
    doc, neighbour = f"{tenant}/docs/d1.pdf", f"{tenant}/docs/d1.pdf.bak"
    for body in (b"v1", b"v2"):
        s3.put_object(Bucket=files, Key=doc, Body=body)
    s3.put_object(Bucket=files, Key=neighbour, Body=b"another's")
    store.batch_put("demo-documents", [{"tenant_id": tenant, "document_id": "d1",
                                        "contact_id": "c1", "s3_key": doc}])
    unit = rules.Unit(tenant, "documents")
    manifest = {"keys": [{"tenant_id": tenant, "document_id": "d1"}], "s3": [[files, doc]]}
    counts = apply.apply_unit(demo_map, "erase", unit, manifest, keys, SUBJECT, "r1")
    assert counts["deleted"] == 1 and counts["files_deleted"] == 1
    assert store.batch_get("demo-documents", manifest["keys"]) == []
    versions = s3.list_object_versions(Bucket=files, Prefix=f"{tenant}/").get("Versions", [])
    assert [v["Key"] for v in versions] == [neighbour]
    assert verify.check_unit(demo_map, "erase", unit, manifest, "r1") == {
        "checked": 1, "items_remaining": 0, "files_remaining": 0}


def test_restriction_flags_and_lifting_it_unflags(seeded, demo_map, keys):
    from oblio.store import tables as store

    unit = rules.Unit(seeded, "contacts")
    manifest = {"keys": [{"tenant_id": seeded, "contact_id": "c1"}]}
    assert apply.apply_unit(demo_map, "restrict", unit, manifest, keys, SUBJECT,
                             "r1")["updated"] == 1
    assert store.batch_get("demo-contacts", manifest["keys"])[0]["restricted"] is True
    assert verify.remaining_keys(demo_map, "restrict", unit, manifest, "r1") == []
    apply.apply_unit(demo_map, "unrestrict", unit, manifest, keys, SUBJECT, "r2")
    assert store.batch_get("demo-contacts", manifest["keys"])[0]["restricted"] is False
