"""The consent ledger over HTTP against the local stack: grants and withdrawals with proof,
the state per purpose, signed one-click links, erasure and objection reaching the ledger."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
import requests as http

from oblio.store import shards

NOTICE = hashlib.sha256(b"We send a monthly newsletter. Unsubscribe at any time.").hexdigest()


def grant(api: Any, email: str, purpose: str = "newsletter", **extra: Any) -> Any:
    return api.post("/v1/consents", {"subject": {"email": email}, "purpose": purpose,
                                     "channel": "web", "status": "granted", **extra})


def ledger_records(aws_client: Any, settings: Any, event_ids: set[str]) -> int:
    """The ledger's records (events, and states pointing at them) of these events, read
    straight from the table."""
    query = aws_client("dynamodb").get_paginator("query")
    return sum(1 for pk in shards.tenant_keys("demo")
               for page in query.paginate(TableName=settings.table("consents"),
                                          KeyConditionExpression="pk = :p",
                                          ExpressionAttributeValues={":p": {"S": pk}})
               for i in page["Items"] if i.get("event_id", {}).get("S") in event_ids)


# -- one subject's consent story, told once and read by each test below -----------------------

@pytest.fixture(scope="module")
def story(api) -> dict[str, Any]:
    """A grant with proof, a second grant, a one-click withdrawal through a signed link, a
    second click, a mail client's one-click POST and attempts to change the ledger."""
    email = "consent.story@example.net"
    out: dict[str, Any] = {"email": email}
    out["first"] = grant(api, email, source="signup-form", policy_version="2026-01",
                         notice_hash=NOTICE,
                         proof={"submission_id": "form-981", "ip_address": "203.0.113.7"})
    out["second"] = api.post("/v1/consents", {"subject": {"email": email},
                                              "purpose": "newsletter", "channel": "email",
                                              "status": "granted",
                                              "source": "preference-centre",
                                              "policy_version": "2026-02"})
    out["link"] = api.post("/v1/consents/links", {"subject": {"email": email},
                                                  "purpose": "newsletter"})
    url = out["link"].json()["url"]
    out["page"] = http.get(url, timeout=30)  # no key: the signature is the credential
    out["after_click"] = api.get("/v1/consents", email=email).json()
    out["second_click"] = http.get(url, timeout=30)
    out["after_second_click"] = api.get("/v1/consents", email=email).json()
    out["search"] = api.get("/v1/subjects", email=email).json()
    # RFC 8058 one-click from a mail client: a POST to the same link
    out["one_click_post"] = http.post(url, data="List-Unsubscribe=One-Click", timeout=30)
    out["after_post"] = api.get("/v1/consents", email=email).json()
    out["changes"] = {method: http.request(method, api.base + "/v1/consents",
                                           params={"email": email}, timeout=30,
                                           headers={"Authorization": f"Bearer {api.key}"})
                      for method in ("PUT", "PATCH", "DELETE")}
    out["at_end"] = api.get("/v1/consents", email=email).json()
    out["history"] = out["after_click"]["history"]
    return out


def test_a_first_grant_changes_the_state_and_a_second_grant_does_not(story):
    first, second = story["first"], story["second"]
    assert first.status_code == 201, first.text
    assert first.json()["previous_status"] is None and first.json()["state_changed"] is True
    assert second.status_code == 201
    assert second.json()["previous_status"] == "granted"
    assert second.json()["state_changed"] is False


def test_a_signed_link_names_no_identity_and_withdraws_without_a_key(story):
    assert story["link"].status_code == 201, story["link"].text
    url = story["link"].json()["url"]
    assert story["email"] not in url and "%40" not in url  # the token holds HMACs only
    page = story["page"]
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "unsubscribed" in page.text and "newsletter" in page.text


def test_the_state_per_purpose_follows_the_newest_event(story):
    state = story["after_click"]["state"]
    assert state["newsletter"]["status"] == "withdrawn"
    assert state["marketing"] == {"status": "none"}


def test_the_history_is_in_order_with_its_proof_and_without_the_address(story):
    history = story["history"]
    assert [(e["status"], e["channel"]) for e in history] == [
        ("granted", "web"), ("granted", "email"), ("withdrawn", "email")]
    assert history[0]["at"] < history[1]["at"] < history[2]["at"]
    assert history[0]["proof"]["submission_id"] == "form-981"
    assert "ip_address" not in history[0]["proof"] and len(history[0]["proof"]["ip_ref"]) == 64
    assert history[0]["notice_hash"] == NOTICE and history[0]["policy_version"] == "2026-01"
    assert history[2]["source"] == "one-click link" and history[2]["proof"]["link_id"]
    assert all(len(e["hash"]) == 64 for e in history)


def test_a_second_click_on_a_link_records_nothing_more(story):
    assert story["second_click"].status_code == 200
    assert len(story["after_second_click"]["history"]) == 3


def test_each_consent_event_is_announced_naming_the_subject_by_its_hmac(story, event_log):
    ids = {e["event_id"] for e in story["history"]}
    changed = [e for e in event_log.drain() if e["detail-type"] == "ConsentChanged"
               and e["detail"].get("event_id") in ids]
    assert len(changed) == 3
    assert all(e["detail"]["subject_ref"] == story["after_click"]["subject_ref"]
               for e in changed)
    assert story["email"] not in str(changed)


def test_search_shows_the_current_consents_and_the_same_history(story):
    assert story["search"]["consents"]["newsletter"] == "withdrawn"
    assert story["search"]["consent_history"] == story["history"]


def test_a_mail_clients_one_click_post_on_a_used_link_records_nothing_more(story):
    assert story["one_click_post"].status_code == 200
    assert len(story["after_post"]["history"]) == 3


def test_the_api_offers_no_way_to_change_or_remove_a_consent_event(story):
    for method, r in story["changes"].items():
        assert r.status_code in (403, 404, 405), (method, r.status_code)
    assert story["at_end"]["history"] == story["history"]


def test_tampered_or_expired_link_changes_nothing(api, subject, clock_ahead):
    email = subject["email"]
    assert grant(api, email, purpose="marketing").status_code == 201
    url = api.post("/v1/consents/links", {"subject": {"email": email}, "purpose": "marketing",
                                          "expires_in_days": 1}).json()["url"]
    token = url.split("token=", 1)[1]
    payload, signature = token.split(".")
    forged_payload = payload[:-2] + ("A" if payload[-2] != "A" else "B") + payload[-1]
    for bad in (f"{forged_payload}.{signature}", f"{payload}.{signature[::-1]}", "x", ""):
        r = http.get(url.split("?")[0], params={"token": bad}, timeout=30)
        assert r.status_code == 400, bad
        assert "not valid" in r.text and "Nothing was changed" in r.text
    with clock_ahead(timedelta(days=2)):
        r = http.get(url, timeout=30)
    assert r.status_code == 410 and "expired" in r.text and "Nothing was changed" in r.text
    body = api.get("/v1/consents", email=email).json()
    assert body["state"]["marketing"]["status"] == "granted"
    assert len(body["history"]) == 1


def test_a_mail_clients_one_click_post_withdraws(api, subject):
    email = subject["email"]
    assert grant(api, email, purpose="analytics").status_code == 201
    url = api.post("/v1/consents/links", {"subject": {"email": email},
                                          "purpose": "analytics"}).json()["url"]
    r = http.post(url, data="List-Unsubscribe=One-Click", timeout=30,
                  headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200 and "unsubscribed" in r.text
    body = api.get("/v1/consents", email=email).json()
    assert body["state"]["analytics"]["status"] == "withdrawn"
    assert [e["source"] for e in body["history"]] == ["api", "one-click link"]


def test_unknown_purpose_or_channel_is_422_naming_it(api, subject):
    r = grant(api, subject["email"], purpose="astrology")
    assert r.status_code == 422
    err = r.json()["error"]
    assert err["code"] == "unknown_purpose" and err["details"]["field"] == "purpose"
    # the value sent is never repeated (a purpose is where an e-mail may land); the purposes
    # the tenant records are listed
    assert "astrology" not in err["message"] and "newsletter" in err["message"]
    r = api.post("/v1/consents", {"subject": {"email": subject["email"]},
                                  "purpose": "newsletter", "channel": "pigeon",
                                  "status": "granted"})
    assert r.status_code == 422
    assert r.json()["error"]["code"] == "unknown_channel"
    assert "pigeon" in r.json()["error"]["message"]
    for body, field in [({"status": "maybe"}, "status"), ({"proof": {"email": "x"}},
                                                          "proof.email"),
                        ({"at": "2999-01-01T00:00:00Z"}, "at"),
                        ({"subject": {"email": "not-an-address"}}, "subject.email")]:
        r = api.post("/v1/consents", {"subject": {"email": subject["email"]},
                                      "purpose": "newsletter", "channel": "web",
                                      "status": "granted", **body})
        assert r.status_code == 422 and r.json()["error"]["details"]["field"] == field, body
        assert "not-an-address" not in r.text
    assert api.get("/v1/consents", email=subject["email"]).json()["history"] == []


def test_withdrawal_of_a_purpose_never_granted_is_recorded(api, subject):
    r = api.post("/v1/consents", {"subject": {"email": subject["email"]},
                                  "purpose": "profiling", "channel": "post",
                                  "status": "withdrawn", "source": "letter",
                                  "at": "2026-01-15T10:00:00Z"})
    assert r.status_code == 201, r.text
    assert r.json()["previous_status"] is None and r.json()["state_changed"] is True
    body = api.get("/v1/consents", email=subject["email"]).json()
    assert body["state"]["profiling"]["status"] == "withdrawn"
    assert body["history"][0]["at"].startswith("2026-01-15T10:00:00")


def test_an_import_of_an_older_event_keeps_the_newest_state(api, subject):
    email = subject["email"]
    assert grant(api, email, purpose="analytics").status_code == 201
    old = api.post("/v1/consents", {"subject": {"email": email}, "purpose": "analytics",
                                    "channel": "web", "status": "withdrawn",
                                    "source": "import", "at": "2024-05-01T08:00:00Z"})
    assert old.status_code == 201
    assert old.json()["state_changed"] is False and old.json()["current_status"] == "granted"
    body = api.get("/v1/consents", email=email).json()
    assert body["state"]["analytics"]["status"] == "granted"
    assert [e["status"] for e in body["history"]] == ["withdrawn", "granted"]  # by time


def test_consent_writes_are_idempotent_and_scoped(api, subject, stack):
    from tests.client import Api

    body = {"subject": {"email": subject["email"]}, "purpose": "newsletter",
            "channel": "web", "status": "granted"}
    a = api.post("/v1/consents", body, headers={"Idempotency-Key": f"c-{subject['email']}"})
    b = api.post("/v1/consents", body, headers={"Idempotency-Key": f"c-{subject['email']}"})
    assert a.status_code == b.status_code == 201 and a.json() == b.json()
    assert len(api.get("/v1/consents", email=subject["email"]).json()["history"]) == 1
    reader = Api(stack.info["api_url"], api.post("/v1/keys", {"scopes": ["consent:read"]})
                 .json()["api_key"])
    assert reader.get("/v1/consents", email=subject["email"]).status_code == 200
    r = reader.post("/v1/consents", body)
    assert r.status_code == 403 and r.json()["error"]["details"]["required_scope"] == \
        "consent:write"
    assert reader.get("/v1/subjects", email=subject["email"]).status_code == 403
    # another tenant's key sees nothing of this subject's consents
    child = Api(stack.info["api_url"], stack.info["tenants"]["demo-child"]["api_key"])
    assert child.get("/v1/consents", email=subject["email"]).json()["history"] == []


def test_erasure_removes_consent_records_and_the_certificate_counts_them(api, subject,
                                                                         aws_client, settings):
    email, phone = subject["email"], subject["phone"]
    assert grant(api, email).status_code == 201
    assert api.post("/v1/consents", {"subject": {"phone": phone}, "purpose": "marketing",
                                     "channel": "sms", "status": "granted"}).status_code == 201
    events = {e["event_id"] for ident in ({"email": email}, {"phone": phone})
              for e in api.get("/v1/consents", **ident).json()["history"]}
    assert len(events) == 2
    assert ledger_records(aws_client, settings, events) == 4  # two events, two states
    done = api.erase({"email": email})  # the phone is found on his profile: its records go too
    assert done["status"] == "completed", done
    assert (done["result"] or {}).get("certificate"), done
    assert done["result"]["certificate"]["consent_records_deleted"] == 4
    assert ledger_records(aws_client, settings, events) == 0
    for ident in ({"email": email}, {"phone": phone}):
        assert api.get("/v1/consents", **ident).json()["history"] == []
    assert api.get("/v1/subjects", email=email).json()["suppressed"] is True


def test_objection_records_withdrawals_in_the_ledger(api, subject, event_log):
    email = subject["email"]
    assert grant(api, email, purpose="marketing").status_code == 201
    r = api.post("/v1/requests", {"type": "objection", "subject": {"email": email},
                                  "purposes": ["marketing"]})
    assert r.status_code == 202, r.text
    done = api.wait(r.json()["request_id"])
    assert done["status"] == "completed", done
    body = api.get("/v1/consents", email=email).json()
    assert body["state"]["marketing"]["status"] == "withdrawn"
    last = body["history"][-1]
    assert last["source"] == "objection request" and last["request_id"] == done["id"]
    kinds = [e["detail-type"] for e in event_log.for_request(done["id"])]
    assert kinds.count("ConsentChanged") == 1


def test_demo_subjects_have_a_consent_history(api):
    body = api.get("/v1/consents", email="jeanne.dupont@example.com").json()
    assert [e["purpose"] for e in body["history"]] == ["newsletter", "marketing", "marketing"]
    assert body["state"]["marketing"]["status"] == "withdrawn"
    assert body["state"]["newsletter"]["status"] == "granted"


def test_no_log_line_holds_an_identity_or_an_address(api, subject, logs):
    email = subject["email"]
    grant(api, email, proof={"ip_address": "198.51.100.23"})
    url = api.post("/v1/consents/links", {"subject": {"email": email},
                                          "purpose": "newsletter"}).json()["url"]
    http.get(url, timeout=30)
    api.get("/v1/consents", email=email)
    text = "\n".join(logs.lines)
    for value in (email, "198.51.100.23", url.split("token=")[1]):
        assert value not in text, f"leaked into the logs: {value[:6]}..."
