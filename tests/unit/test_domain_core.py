"""The domain's core, in-process: data-map validation, identities, the attribute strategies,
the audit chain, the catalogue's checks, the OpenAPI document against the routes."""

from __future__ import annotations

import copy
import dataclasses
import sys
from pathlib import Path

import pytest
import yaml

from oblio import catalogue, clock, datamap, engine, identity
from oblio.crypto import TenantKeys
from oblio.errors import DataMapError, Invalid
from oblio.settings import DEMO_DATAMAP
from oblio.tasks import scrub

DEMO = yaml.safe_load(DEMO_DATAMAP.read_text())
ROOT = Path(__file__).resolve().parents[2]


def problems_of(edit) -> list[str]:
    data = copy.deepcopy(DEMO)
    edit(data)
    with pytest.raises(DataMapError) as err:
        datamap.parse(data)
    return err.value.problems


def test_demo_map_walks_every_table_after_its_sources():
    dm = datamap.load(DEMO_DATAMAP)
    order = dm.order
    assert set(order) == set(dm.tables)
    for name, t in dm.tables.items():
        for f in t.find:
            if f.source:
                assert order.index(f.source[0]) < order.index(name)


def test_datamap_rejects_table_unreachable_from_any_identity():
    problems = problems_of(lambda d: d["tables"]["documents"].update(find=[]))
    assert any("table 'documents'" in p and "cannot be reached" in p for p in problems)


def test_datamap_rejects_personal_attribute_without_rule():
    problems = problems_of(
        lambda d: d["tables"]["tickets"]["attributes"]["subject"].pop("anonymise"))
    assert any("table 'tickets', attribute 'subject'" in p and "no 'anonymise' rule" in p
               for p in problems)


def test_datamap_rejects_key_attribute_that_an_action_would_rewrite():
    def edit(d):
        d["tables"]["blacklist"]["on_anonymise"] = "anonymise"
        d["tables"]["blacklist"]["attributes"]["email"]["anonymise"] = "null"
    problems = problems_of(edit)
    assert any("attribute 'email'" in p and "part of the table's key" in p for p in problems)


def test_datamap_reports_every_problem_at_once():
    def edit(d):
        d["tables"]["documents"]["find"] = []
        d["tables"]["contacts"]["attributes"]["photo_key"]["s3"] = "nowhere"
        d["tables"]["tickets"]["find"][0]["from"] = "contacts.missing"
    problems = problems_of(edit)
    assert len(problems) >= 3
    assert any("s3 bucket 'nowhere'" in p for p in problems)
    assert any("no attribute 'missing'" in p for p in problems)


def test_datamap_rejects_a_cycle_of_references():
    def edit(d):
        d["tables"]["contacts"]["find"].append(
            {"from": "tickets.ticket_id", "index": "by_x", "attribute": "contact_id"})
    problems = problems_of(edit)
    assert any("cycle" in p for p in problems)


def test_datamap_rejects_unknown_keys_and_strategies():
    problems = problems_of(lambda d: d["tables"]["contacts"].update(colour="red"))
    assert any("tables.contacts.colour" in p for p in problems)
    problems = problems_of(
        lambda d: d["tables"]["contacts"]["attributes"]["city"].update(anonymise="scramble"))
    assert any("tables.contacts.attributes.city.anonymise" in p for p in problems)


def test_datamap_rejects_partition_key_that_is_not_the_tenant():
    problems = problems_of(lambda d: d["tables"]["contacts"]["key"].update(
        partition="contact_id", sort=None))
    assert any("must be the tenant attribute" in p for p in problems)


def test_datamap_schema_is_json_schema():
    s = datamap.schema()
    assert s["type"] == "object" and "tables" in s["properties"]


@pytest.mark.parametrize("raw, expected", [
    ("  Mario.Rossi@Example.COM ", "mario.rossi@example.com"),
])
def test_emails_are_trimmed_and_lower_cased(raw, expected):
    assert identity.normalise_email(raw) == expected


def test_invalid_email_error_names_the_field_and_not_the_value():
    with pytest.raises(Invalid) as err:
        identity.normalise_email("mario@@rossi")
    assert err.value.field == "subject.email"
    assert "mario@@rossi" not in err.value.message


def test_phones_parse_to_e164_with_the_tenant_region():
    assert identity.normalise_phone("+39 333 123 4567", None) == "+393331234567"
    assert identity.normalise_phone("333 123 4567", "IT") == "+393331234567"
    with pytest.raises(Invalid) as err:
        identity.normalise_phone("333 123 4567", None)
    assert "default phone region" in err.value.message
    with pytest.raises(Invalid):
        identity.normalise_phone("+39 12", "IT")


def test_parse_subject_refuses_unknown_or_missing_identities():
    with pytest.raises(Invalid) as err:
        identity.parse_subject({}, None)
    assert err.value.field == "subject"
    with pytest.raises(Invalid) as err:
        identity.parse_subject({"fax": "1"}, None)
    assert err.value.field == "subject.fax"


KEYS = TenantKeys.from_data_key("demo", b"k" * 32)


def test_hmacs_are_keyed_per_tenant_and_encryption_round_trips():
    other = TenantKeys.from_data_key("other", b"o" * 32)
    assert KEYS.hmac("email", "a@b.c") == KEYS.hmac("email", "a@b.c")
    assert KEYS.hmac("email", "a@b.c") != other.hmac("email", "a@b.c")
    blob = KEYS.encrypt({"email": "a@b.c"})
    assert "a@b.c" not in blob and KEYS.decrypt(blob) == {"email": "a@b.c"}
    with pytest.raises(Exception):  # noqa: B017 - any authentication failure
        other.decrypt(blob)


def test_rewrite_applies_each_strategy():
    dm = datamap.load(DEMO_DATAMAP)
    contact = {"tenant_id": "demo", "contact_id": "c1", "email": "a@b.c",
               "first_name": "Mario", "last_name": "Rossi", "birth_date": "1980-05-17",
               "country": "IT", "unknown_attr": "x"}
    sets, removes = engine.rewrite(dm, dm.tables["contacts"], contact, "anonymise", KEYS,
                                   "s_ref")
    n = KEYS.pseudonym_number("s_ref")
    assert sets["first_name"] == f"F_{n}" and sets["last_name"] == f"L_{n}"
    assert sets["birth_date"] == "1980-05"
    assert {"email", "unknown_attr"} <= set(removes)
    assert "country" not in sets and "contact_id" not in sets and "tenant_id" not in removes
    event = {"tenant_id": "demo", "event_id": "e1", "ip_address": "203.0.113.9",
             "user_agent": "Mozilla"}
    sets, _ = engine.rewrite(dm, dm.tables["email_events"], event, "anonymise", KEYS, "s")
    assert sets["user_agent"] == engine.MASK
    assert sets["ip_address"].startswith("h_") and "203.0.113.9" not in sets["ip_address"]


def test_erasure_keeps_ticket_shell_but_drops_its_link_to_the_contact():
    dm = datamap.load(DEMO_DATAMAP)
    t = dm.tables["tickets"]
    assert engine.mode(t, "erase") == "anonymise"
    assert t.rule("contact_id", "erase") == "null"
    assert t.rule("contact_id", "anonymise") == "keep"


def test_modes_of_the_other_actions():
    dm = datamap.load(DEMO_DATAMAP)
    assert engine.table_mode(dm, "contacts", "restrict") == "flag"
    assert engine.table_mode(dm, "scheduled_recipients", "restrict") == "delete"
    assert engine.table_mode(dm, "tickets", "restrict") == "none"
    assert engine.table_mode(dm, "subscriptions", "object", {"purposes": ["marketing"]}) \
        == "delete"
    assert engine.table_mode(dm, "tickets", "anonymise", {"tables": ["contacts"]}) == "none"
    assert engine.changes_for(dm.tables["email_sends"], {"email": "n@x.y"}) == {
        "recipient_email": "n@x.y"}
    assert engine.changes_for(dm.tables["blacklist"], {"email": "n@x.y"}) == {}


def test_audit_chain_detects_an_edited_and_a_removed_entry(aws):
    from oblio import audit
    from oblio.models import AuditModel

    for i in range(4):
        audit.append("t1", "thing", actor="k", details={"n": i})
    audit.append("t2", "other", actor="k")
    assert audit.verify("t1") == {"valid": True, "entries": 4, "first_broken": None}
    page, nxt = audit.entries("t1", limit=3)
    assert [e.seq for e in page] == ["000000000004", "000000000003", "000000000002"]
    assert audit.entries("t1", limit=3, start=nxt)[0][0].seq == "000000000001"
    entry = AuditModel.get("t1", "000000000002")
    entry.update(actions=[AuditModel.action.set("edited")])
    assert audit.verify("t1")["first_broken"] == "000000000002"
    entry.update(actions=[AuditModel.action.set("thing")])
    assert audit.verify("t1")["valid"] is True
    AuditModel.get("t1", "000000000004").delete()
    assert audit.verify("t1")["valid"] is False
    assert audit.verify("t2")["valid"] is True


def test_batched_deletes_are_25_a_call(aws):
    from oblio import aws as oblio_aws
    from oblio.store import tables as store

    items = [{"tenant_id": "t", "contact_id": f"c{i:03d}", "email": f"{i}@x.y"}
             for i in range(60)]
    store.batch_put("demo-contacts", items)
    with oblio_aws.counting() as io:
        store.batch_delete("demo-contacts", [{"tenant_id": "t", "contact_id": i["contact_id"]}
                                             for i in items])
    assert io.calls["dynamodb.BatchWriteItem"] == 3
    assert io.as_dict()["dynamodb.Scan"] == 0
    assert store.batch_get("demo-contacts", [{"tenant_id": "t", "contact_id": "c001"}]) == []


def test_catalogue_checks_names_functions_and_expiry():
    catalogue.check(catalogue.CATALOGUE, "oblio")
    bad_table = dataclasses.replace(catalogue.CATALOGUE, tables=(
        catalogue.Table("bad name!", catalogue.Key("id")),))
    with pytest.raises(ValueError, match="bad name!"):
        catalogue.check(bad_table, "oblio")
    sm = dataclasses.replace(catalogue.CATALOGUE.state_machine("erasure"),
                             functions={"PlanFunctionArn": "nope"})
    with pytest.raises(ValueError, match="unknown function 'nope'"):
        catalogue.check(dataclasses.replace(catalogue.CATALOGUE, state_machines=(sm,)),
                        "oblio")
    bucket = dataclasses.replace(catalogue.CATALOGUE.bucket("exports"), lifecycle=())
    with pytest.raises(ValueError, match="exports"):
        catalogue.check(dataclasses.replace(catalogue.CATALOGUE, buckets=(bucket,)), "oblio")


def test_due_dates_add_calendar_months():
    from datetime import datetime

    assert clock.add_months(datetime(2026, 1, 31), 1) == datetime(2026, 2, 28)
    assert clock.add_months(datetime(2026, 11, 23), 2) == datetime(2027, 1, 23)


def test_scrub_removes_identities_from_error_messages():
    msg = scrub("no item for mario.rossi@example.com or +39 333 123 4567 in table x")
    assert "mario" not in msg and "333" not in msg and "table x" in msg


def test_openapi_document_lists_exactly_the_routes():
    sys.path.insert(0, str(ROOT / "functions" / "api"))
    from app import app
    from oblio import openapi

    doc = openapi.document()["paths"]
    routes = {(path, method.lower()) for path, methods in app.routes.items()
              for method in methods}
    documented = {(path, method) for path, ops in doc.items() for method in ops}
    assert routes == documented
