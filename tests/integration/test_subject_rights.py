"""Anonymisation, rectification, restriction and objection, over HTTP against the local
stack, checked in the tables and buckets as a DPO would."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.integration import raw

JEANNE = {"email": "jeanne.dupont@example.com"}


def items(aws_client: Any, table: str, attr: str, value: str) -> list[dict[str, Any]]:
    """The demo table's items whose `attr` (an index of the demo tables) equals `value`."""
    return raw.query(aws_client, table, attr, value)


def contact_of(aws_client: Any, subject: dict[str, Any]) -> dict[str, Any]:
    found = items(aws_client, "demo-contacts", "external_id", subject["external_id"])
    assert len(found) == 1
    return found[0]


def contact_by_id(aws_client: Any, contact_id: str) -> dict[str, Any]:
    item = raw.get_item(aws_client, "demo-contacts", {"tenant_id": "demo",
                                                      "contact_id": contact_id})
    assert item is not None, contact_id
    return item


def run(api: Any, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post("/v1/requests", body)
    assert r.status_code == 202, r.text
    return api.wait(r.json()["request_id"])


def versions(aws_client: Any, key: str) -> int:
    resp = aws_client("s3").list_object_versions(Bucket="demo-files", Prefix=key)
    return len(resp.get("Versions", []) + resp.get("DeleteMarkers", []))


@pytest.fixture(scope="module")
def anonymised(api, dm, aws_client, event_log) -> dict[str, Any]:
    """A subject anonymised with every table in scope; its profile and tickets before, and
    Jeanne's count."""
    from infra.local import demo

    email = "anonymised.subject@example.net"
    seeded = demo.seed_subject(dm, "demo", email, "+393471239999", external_id="EXT-ANON")
    subject = {"email": email, "external_id": "EXT-ANON", **seeded}
    jeanne = api.get("/v1/subjects", **JEANNE).json()["total"]
    contact = contact_of(aws_client, subject)
    tickets = items(aws_client, "demo-tickets", "contact_id", contact["contact_id"])
    done = run(api, {"type": "anonymisation", "subject": {"email": email}, "confirm": True})
    return {"subject": subject, "jeanne": jeanne, "contact": contact, "tickets": tickets,
            "done": done, "result": done["result"],
            "events": event_log.for_request(done["id"])}


def test_an_anonymisation_needs_a_confirmation(api, subject):
    r = api.post("/v1/requests", {"type": "anonymisation",
                                  "subject": {"email": subject["email"]}})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "confirm"


def test_an_anonymisation_completes_with_a_verification_of_every_item(anonymised):
    assert anonymised["done"]["status"] == "completed", anonymised["done"]
    result = anonymised["result"]
    assert result["verification"]["passed"] is True
    assert result["certificate"]["verification"]["items_checked"] == result["totals"][
        "matched"]
    assert result["certificate"]["verification"]["identifying_values_compared"] >= 5


def test_an_anonymised_contact_is_a_pseudonym_with_no_identity(aws_client, anonymised):
    contact = anonymised["contact"]
    after = contact_by_id(aws_client, contact["contact_id"])
    assert re.fullmatch(r"F_\d{1,4}", after["first_name"])
    assert after["last_name"] == "L_" + after["first_name"][2:]  # one number per subject
    assert not {"email", "phone", "address", "city", "photo_key", "notes"} & set(after)
    assert after["birth_date"] == contact["birth_date"][:7]
    assert after["country"] == contact["country"]


def test_anonymised_tickets_stay_linked_and_countable_without_their_text(aws_client,
                                                                         anonymised):
    now = items(aws_client, "demo-tickets", "contact_id", anonymised["contact"]["contact_id"])
    assert len(now) == len(anonymised["tickets"]) >= 2
    for t in now:
        assert {"status", "channel", "reason", "sla_resolution_min"} <= set(t)
        assert not {"subject", "description"} & set(t)


def test_anonymised_messages_lose_their_content_and_files_every_version(aws_client,
                                                                        anonymised):
    for t in anonymised["tickets"]:
        for m in items(aws_client, "demo-ticket-messages", "ticket_id", t["ticket_id"]):
            assert "body" not in m and "attachment_key" not in m
    assert all(versions(aws_client, k) == 0 for k in anonymised["subject"]["files"])


def test_an_anonymised_subject_is_no_longer_found_and_others_are(api, anonymised):
    email = anonymised["subject"]["email"]
    assert api.get("/v1/subjects", email=email).json()["found"] is False
    assert api.get("/v1/subjects", **JEANNE).json()["total"] == anonymised["jeanne"]


def test_an_anonymisation_is_announced(anonymised):
    assert {"SubjectAnonymised", "RequestCompleted"} <= {
        e["detail-type"] for e in anonymised["events"]}


def test_anonymising_only_tickets_leaves_the_profile_as_it_was(api, subject, aws_client):
    contact = contact_of(aws_client, subject)
    plan = api.post("/v1/requests", {"type": "anonymisation", "dry_run": True,
                                     "subject": {"email": subject["email"]},
                                     "tables": ["tickets"]}).json()
    assert plan["tables"]["tickets"]["action"] == "anonymise"
    assert plan["tables"]["tickets"]["attributes"]["description"] == "null"
    assert plan["tables"]["tickets"]["attributes"]["status"] == "keep"
    assert plan["tables"]["contacts"]["action"] == "none"
    done = run(api, {"type": "anonymisation", "subject": {"email": subject["email"]},
                     "tables": ["tickets"], "confirm": True})
    assert done["status"] == "completed", done
    assert done["result"]["tables"]["tickets"]["anonymised"] == subject["counts"]["tickets"]
    assert done["result"]["tables"]["contacts"]["matched"] == 0
    assert contact_of(aws_client, subject) == contact
    tickets = items(aws_client, "demo-tickets", "contact_id", contact["contact_id"])
    assert tickets and all("description" not in t for t in tickets)
    # again: nothing left to do, and it says so
    again = run(api, {"type": "anonymisation", "subject": {"email": subject["email"]},
                      "tables": ["tickets"], "confirm": True})
    assert again["status"] == "completed"
    assert again["result"]["totals"]["anonymised"] == 0
    assert again["result"]["tables"]["tickets"]["kept"] == len(tickets)
    assert "already anonymised" in again["result"]["message"]


def test_anonymisation_of_unmapped_tables_is_refused(api, subject):
    r = api.post("/v1/requests", {"type": "anonymisation", "confirm": True,
                                  "subject": {"email": subject["email"]},
                                  "tables": ["tickets", "invoices"]})
    assert r.status_code == 422
    assert r.json()["error"]["details"]["field"] == "tables"
    # named by its position, never by the value sent
    assert "invoices" not in r.json()["error"]["message"]
    assert "tables item 2" in r.json()["error"]["message"]


def test_rectifying_the_email_reaches_every_table_that_holds_it(api, subject, aws_client, event_log):
    new = "Corrected.Address@Example.net"
    done = run(api, {"type": "rectification", "subject": {"email": subject["email"]},
                     "changes": {"email": new, "city": "Genova"}})
    assert done["status"] == "completed", done
    tables = done["result"]["tables"]
    assert tables["contacts"]["updated"] == 1
    assert tables["email_sends"]["updated"] == subject["counts"]["email_sends"]
    assert tables["subscriptions"]["updated"] == 1
    assert tables["scheduled_recipients"]["updated"] == 1
    # the blacklist is keyed by the e-mail: its entry moves to the new key, none stays behind
    assert tables["blacklist"]["updated"] == 1
    blacklist = aws_client("dynamodb")
    for email, count in ((subject["email"], 0), (new.lower(), 1)):
        got = blacklist.get_item(TableName="demo-blacklist",
                                 Key={"tenant_id": {"S": "demo"}, "email": {"S": email}})
        assert ("Item" in got) == bool(count), email
    contact = contact_of(aws_client, subject)
    assert contact["email"] == new.lower() and contact["city"] == "Genova"
    assert items(aws_client, "demo-email-sends", "recipient_email", subject["email"]) == []
    assert len(items(aws_client, "demo-email-sends", "recipient_email", new.lower())) == \
        subject["counts"]["email_sends"]
    assert api.get("/v1/subjects", email=new).json()["tables"]["contacts"]["count"] == 1
    # the audit entry proves the change with HMACs, never the values
    entry = next(e for e in api.get("/v1/audit", limit=50).json()["items"]
                 if e["request_id"] == done["id"] and e["action"] == "rectification_completed")
    raw = json.dumps(entry).lower()
    assert subject["email"] not in raw and new.lower() not in raw and "genova" not in raw
    assert entry["details"]["new"]["email"] and entry["details"]["old"]["email"]
    assert "SubjectRectified" in {e["detail-type"] for e in event_log.for_request(done["id"])}


def test_rectification_bad_input_names_the_field(api, subject):
    base = {"type": "rectification", "subject": {"email": subject["email"]}}
    r = api.post("/v1/requests", {**base, "changes": {"shoe_size": 42}})
    assert r.status_code == 422
    # an attribute name sent is not repeated: it may be personal data
    assert r.json()["error"]["details"]["field"] == "changes"
    assert "shoe_size" not in r.text
    r = api.post("/v1/requests", {**base, "changes": {"email": "not an email"}})
    assert r.status_code == 422
    assert r.json()["error"]["details"]["field"] == "changes.email"
    r = api.post("/v1/requests", base)
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "changes"


def test_restriction_removes_the_subject_from_pending_deliveries(api, subject, aws_client, event_log):
    before = api.get("/v1/subjects", email=subject["email"]).json()
    assert {p["table"] for p in before["pending_deliveries"]} == {"subscriptions",
                                                                  "scheduled_recipients"}
    assert before["restricted"] is False
    done = run(api, {"type": "restriction", "subject": {"email": subject["email"]}})
    assert done["status"] == "completed", done
    assert done["result"]["tables"]["contacts"]["updated"] == 1
    assert done["result"]["tables"]["scheduled_recipients"]["deleted"] == 1
    after = api.get("/v1/subjects", email=subject["email"]).json()
    assert after["restricted"] is True and after["pending_deliveries"] == []
    assert after["tables"]["tickets"]["count"] == before["tables"]["tickets"]["count"]
    assert contact_of(aws_client, subject)["restricted"] is True
    assert "SubjectRestricted" in {e["detail-type"] for e in event_log.for_request(done["id"])}
    lifted = run(api, {"type": "restriction", "lift": True,
                       "subject": {"email": subject["email"]}})
    assert lifted["status"] == "completed", lifted
    assert api.get("/v1/subjects", email=subject["email"]).json()["restricted"] is False


def test_objection_to_marketing_suppresses_at_once(api, subject, aws_client, event_log):
    r = api.post("/v1/requests", {"type": "objection", "purposes": ["astrology"],
                                  "subject": {"email": subject["email"]}})
    assert r.status_code == 422 and r.json()["error"]["details"]["field"] == "purposes"
    done = run(api, {"type": "objection", "subject": {"email": subject["email"]}})
    assert done["status"] == "completed", done
    assert done["result"]["tables"]["subscriptions"]["deleted"] == 1
    after = api.get("/v1/subjects", email=subject["email"]).json()
    assert after["pending_deliveries"] == []
    assert after["suppressed"] is True
    assert {s["reason"] for s in after["suppression"]} == {"objection:marketing"}
    assert after["tables"]["contacts"]["count"] == 1  # an objection erases nothing
    kinds = {e["detail-type"] for e in event_log.for_request(done["id"])}
    assert {"SubjectRestricted", "ConsentChanged"} <= kinds


def test_tenant_settings_are_validated(child_api, tenant_settings):
    r = child_api.post("/v1/keys", {"scopes": ["dsr:read"]})
    assert r.status_code == 201

    def patch(body: dict[str, Any]) -> Any:
        return child_api.patch("/v1/tenant", body)

    bad = patch({"settings": {"export_ttl_days": 7}})
    assert bad.status_code == 422
    assert bad.json()["error"]["details"]["field"] == "settings.export_ttl_days"
    assert patch({"settings": {"colour": "red"}}).status_code == 422
    ok = tenant_settings(child_api, export_ttl_days=30, default_phone_region="fr")
    assert ok["settings"]["export_ttl_days"] == 30
    assert ok["settings"]["default_phone_region"] == "FR"


def test_anonymisation_waits_for_an_export_when_the_tenant_requires_one(child_api,
                                                                        tenant_settings):
    tenant_settings(child_api, require_export_before_anonymisation=True)
    r = child_api.post("/v1/requests", {"type": "anonymisation", "confirm": True,
                                        "subject": {"email": "mario.rossi@example.com"}})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "export_required"
    assert "access request first" in r.json()["error"]["message"]
