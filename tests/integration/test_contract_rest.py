"""The rest of issue 16, as a client sees it over HTTP (items 9, 10, 11 and the lead's notes):
a rectified e-mail takes its consents with it; an erasure leaves no access-export archive and
no item past its TTL; a phone says how it was read, and an unencoded + is refused with the
fix; idempotency records keep no signed link and no upload URL, and a replayed dry run is
not audited twice; a key's scopes name each scope once. Checks read the local AWS raw."""

from __future__ import annotations

import json
import time
from typing import Any

import requests as http

from tests.integration import raw


def _scan(aws_client: Any, table: str) -> str:
    pages = aws_client("dynamodb").get_paginator("scan").paginate(TableName=table)
    return json.dumps([i for page in pages for i in page["Items"]])


def _error(r: http.Response, status: int, code: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    if code is not None:
        assert err["code"] == code, err
    return dict(err)


def _run(api: Any, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post("/v1/requests", body)
    assert r.status_code == 202, r.text
    return api.wait(r.json()["request_id"], timeout=90)


def _grant(api: Any, email: str, purpose: str = "newsletter") -> None:
    r = api.post("/v1/consents", {"subject": {"email": email}, "purpose": purpose,
                                  "channel": "web", "status": "granted"})
    assert r.status_code == 201, r.text


# -- item 9: the consent ledger follows a rectified e-mail ---------------------------------------

def test_a_rectified_email_takes_its_consents_to_the_new_address(api, subject):
    import io
    import zipfile

    _grant(api, subject["email"])
    _grant(api, subject["email"], "marketing")
    before = api.get("/v1/consents", email=subject["email"]).json()
    new = f"moved.{subject['external_id'].lower()}@example.org"
    done = _run(api, {"type": "rectification", "subject": {"email": subject["email"]},
                      "changes": {"email": new}})
    assert done["status"] == "completed", done
    after = api.get("/v1/consents", email=new).json()
    assert after["found"] is True
    assert [e["event_id"] for e in after["history"]] == \
        [e["event_id"] for e in before["history"]]
    assert after["state"]["newsletter"]["status"] == "granted"
    old = api.get("/v1/consents", email=subject["email"]).json()
    assert old["found"] is False and old["history"] == []
    entry = next(e for e in api.get("/v1/audit", limit=50).json()["items"]
                 if e["request_id"] == done["id"] and e["action"] == "rectification_completed")
    # every event and the state of each purpose
    assert entry["details"]["consent_records_moved"] == len(before["history"]) + len(
        {e["purpose"] for e in before["history"]})
    assert subject["email"] not in json.dumps(entry) and new not in json.dumps(entry)
    # the new identity's access export carries the consent events
    export = _run(api, {"type": "access", "subject": {"email": new}})
    d = api.get(f"/v1/requests/{export['id']}/download")
    z = zipfile.ZipFile(io.BytesIO(http.get(d.json()["url"], timeout=30).content))
    rows = z.read("consents.csv").decode("utf-8-sig").splitlines()
    assert len(rows) == len(before["history"]) + 1  # the header and every event


# -- item 10: nothing left behind by an erasure ----------------------------------------------

def test_an_erasure_deletes_the_subjects_unexpired_export_archive(api, subject, aws_client,
                                                                  settings):
    export = _run(api, {"type": "access", "subject": {"email": subject["email"]}})
    assert export["status"] == "completed", export
    key = f"exports/demo/{export['id']}.zip"
    bucket = settings.bucket("exports")
    assert raw.versions(aws_client, bucket, key) >= 1
    done = api.erase({"email": subject["email"]}, timeout=90)
    cert = done["result"]["certificate"]
    assert cert["archives_deleted"] == 1
    assert cert["verification"]["passed"] is True
    assert cert["verification"]["checked"]["archives"] == {"objects": 1, "left": 0}
    assert raw.versions(aws_client, bucket, key) == 0
    _error(api.get(f"/v1/requests/{export['id']}/download"), 410)


def test_an_erasure_reaches_a_ticket_past_its_ttl_and_its_messages(api, subject, aws_client):
    contact = raw.query(aws_client, "demo-contacts", "email", subject["email"])[0]
    ticket = raw.query(aws_client, "demo-tickets", "contact_id", contact["contact_id"])[0]
    # soft-deleted, its purge_at passed: DynamoDB has not deleted it yet
    aws_client("dynamodb").update_item(
        TableName="demo-tickets", Key=raw.typed({"tenant_id": "demo",
                                                  "ticket_id": ticket["ticket_id"]}),
        UpdateExpression="SET purge_at = :p, deleted_at = :d",
        ExpressionAttributeValues=raw.typed({":p": int(time.time()) - 3600,
                                             ":d": "2026-01-01T00:00:00Z"}))
    messages = raw.query(aws_client, "demo-ticket-messages", "ticket_id", ticket["ticket_id"])
    assert messages
    done = api.erase({"email": subject["email"]}, timeout=90)
    assert done["status"] == "completed", done
    assert raw.query(aws_client, "demo-ticket-messages", "ticket_id", ticket["ticket_id"]) == []
    shell = raw.get_item(aws_client, "demo-tickets", {"tenant_id": "demo",
                                                      "ticket_id": ticket["ticket_id"]})
    assert shell is not None and "contact_id" not in shell  # the anonymised shell
    cert = done["result"]["certificate"]
    assert cert["expired_items_included"] >= 1 and cert["verification"]["passed"] is True
    # the shared stack's other tests expect no ticket past its TTL outside the trash index
    aws_client("dynamodb").update_item(
        TableName="demo-tickets", Key=raw.typed({"tenant_id": "demo",
                                                  "ticket_id": ticket["ticket_id"]}),
        UpdateExpression="REMOVE purge_at, deleted_at")


# -- item 11: phones ------------------------------------------------------------------------

def test_a_search_by_a_national_number_says_which_region_it_was_read_in(api, subject):
    national = "347 " + subject["phone"][6:]  # +39347nnnnnnn written the Italian way
    found = api.get("/v1/subjects", phone=national).json()
    assert found["found"] is True
    assert found["phone_reading"]["read_as_national_number_of"] == "IT"
    assert "phone_reading" not in api.get("/v1/subjects", phone=subject["phone"]).json()


def test_an_unencoded_plus_in_a_query_string_is_refused_with_the_fix(api, subject):
    r = http.get(f"{api.base}/v1/subjects?phone={subject['phone']}",  # the + not encoded
                 headers={"Authorization": f"Bearer {api.key}"}, timeout=30)
    err = _error(r, 422)
    assert err["details"]["field"] == "phone" and "%2B" in err["message"]
    assert subject["phone"][3:] not in r.text


# -- the lead's notes: replays and keys ---------------------------------------------------------

def test_a_replayed_dry_run_is_audited_once(api, subject):
    body = {"type": "erasure", "subject": {"email": subject["email"]}, "dry_run": True}
    key = {"Idempotency-Key": f"dry-audit-{subject['external_id']}"}
    first = api.post("/v1/requests", body, headers=key)
    again = api.post("/v1/requests", body, headers=key)
    assert first.status_code == again.status_code == 200
    ref = first.json()["subject_ref"]
    entries = [e for e in api.get("/v1/audit", limit=100).json()["items"]
               if e["action"] == "erasure_dry_run" and e.get("subject_ref") == ref]
    assert len(entries) == 1


def test_a_consent_link_is_not_kept_and_a_replay_signs_a_fresh_one(api, anon, subject,
                                                                   aws_client, settings):
    body = {"subject": {"email": subject["email"]}, "purpose": "newsletter"}
    key = {"Idempotency-Key": f"link-{subject['external_id']}"}
    first = api.post("/v1/consents/links", body, headers=key)
    assert first.status_code == 201, first.text
    kept = _scan(aws_client, settings.table("idempotency"))
    assert first.json()["token"] not in kept and "unsubscribe" not in kept
    again = api.post("/v1/consents/links", body, headers=key)
    assert again.status_code == 201 and again.json()["token"] != first.json()["token"]
    assert again.json()["token"] not in _scan(aws_client, settings.table("idempotency"))
    followed = http.get(again.json()["url"], timeout=30)
    assert followed.status_code == 200, followed.text


def test_a_bulk_upload_url_is_not_kept_and_a_replay_presigns_it_again(api, aws_client,
                                                                     settings):
    key = {"Idempotency-Key": f"bulk-{time.time_ns()}"}
    first = api.post("/v1/bulk-erasures", {"dry_run": True}, headers=key)
    assert first.status_code == 201, first.text
    kept = _scan(aws_client, settings.table("idempotency"))
    assert "X-Amz-Signature" not in kept and first.json()["upload_url"] not in kept
    again = api.post("/v1/bulk-erasures", {"dry_run": True}, headers=key)
    assert again.status_code == 201, again.text
    assert again.json()["job_id"] == first.json()["job_id"]
    put = http.put(again.json()["upload_url"], data=b"email\nnobody.at.all@example.com\n",
                   headers={"Content-Type": "text/csv"}, timeout=30)
    assert put.status_code == 200, put.text
    deadline = time.monotonic() + 30
    while api.get(f"/v1/bulk-erasures/{first.json()['job_id']}").json()["status"] == \
            "awaiting_upload" and time.monotonic() < deadline:
        time.sleep(0.3)
    late = api.post("/v1/bulk-erasures", {"dry_run": True}, headers=key)
    _error(late, 409, "upload_received")


def test_a_key_naming_a_scope_twice_is_refused(api):
    r = api.post("/v1/keys", {"scopes": ["dsr:read", "dsr:read"], "name": "twice"})
    err = _error(r, 422)
    assert err["details"]["field"] == "scopes" and "once" in err["message"]
    assert not [k for k in api.get("/v1/keys").json()["items"] if k.get("name") == "twice"]
