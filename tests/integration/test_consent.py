"""The consent ledger over HTTP against the local stack: grants and withdrawals with proof,
the state per purpose, signed one-click links, erasure and objection reaching the ledger."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import requests as http

NOTICE = hashlib.sha256(b"We send a monthly newsletter. Unsubscribe at any time.").hexdigest()


def grant(api: Any, email: str, purpose: str = "newsletter", **extra: Any) -> Any:
    return api.post("/v1/consents", {"subject": {"email": email}, "purpose": purpose,
                                     "channel": "web", "status": "granted", **extra})


def ledger_items(ids: dict[str, str]) -> int:
    """The ledger's records (events and states) filed under these identities, read straight
    from the table."""
    from oblio.control import ledger, tenants
    from oblio.store.models import ConsentModel

    tenant = tenants.get_tenant("demo")
    return sum(1 for key in ledger.subject_keys(tenant, ids)
               for _ in ConsentModel.query("demo", ConsentModel.sk.startswith(f"{key}#")))


def test_grant_second_grant_and_one_click_withdrawal_leave_an_ordered_history_with_proof(
        api, subject, event_log):
    email = subject["email"]
    first = grant(api, email, source="signup-form", policy_version="2026-01",
                  notice_hash=NOTICE,
                  proof={"submission_id": "form-981", "ip_address": "203.0.113.7"})
    assert first.status_code == 201, first.text
    assert first.json()["previous_status"] is None and first.json()["state_changed"] is True
    second = api.post("/v1/consents", {"subject": {"email": email}, "purpose": "newsletter",
                                       "channel": "email", "status": "granted",
                                       "source": "preference-centre",
                                       "policy_version": "2026-02"})
    assert second.status_code == 201
    assert second.json()["previous_status"] == "granted"
    assert second.json()["state_changed"] is False
    made = api.post("/v1/consents/links", {"subject": {"email": email},
                                           "purpose": "newsletter"})
    assert made.status_code == 201, made.text
    url = made.json()["url"]
    assert email not in url and "%40" not in url  # the token holds HMACs only
    page = http.get(url, timeout=30)  # no key: the signature is the credential
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    assert "unsubscribed" in page.text and "newsletter" in page.text
    body = api.get("/v1/consents", email=email).json()
    assert body["state"]["newsletter"]["status"] == "withdrawn"
    assert body["state"]["marketing"] == {"status": "none"}
    history = body["history"]
    assert [(e["status"], e["channel"]) for e in history] == [
        ("granted", "web"), ("granted", "email"), ("withdrawn", "email")]
    assert history[0]["at"] < history[1]["at"] < history[2]["at"]
    assert history[0]["proof"]["submission_id"] == "form-981"
    assert "ip_address" not in history[0]["proof"] and len(history[0]["proof"]["ip_ref"]) == 64
    assert history[0]["notice_hash"] == NOTICE and history[0]["policy_version"] == "2026-01"
    assert history[2]["source"] == "one-click link" and history[2]["proof"]["link_id"]
    assert all(len(e["hash"]) == 64 for e in history)
    # a second click changes nothing more
    assert http.get(url, timeout=30).status_code == 200
    assert len(api.get("/v1/consents", email=email).json()["history"]) == 3
    # one ConsentChanged per event, the subject by its HMAC only
    event_log.for_request("-")
    ids = {e["event_id"] for e in history}
    changed = [e for e in event_log.seen if e["detail-type"] == "ConsentChanged"
               and e["detail"].get("event_id") in ids]
    assert len(changed) == 3
    assert all(e["detail"]["subject_ref"] == body["subject_ref"] for e in changed)
    assert email not in str(changed)
    # the search shows the current consents and the same history
    found = api.get("/v1/subjects", email=email).json()
    assert found["consents"]["newsletter"] == "withdrawn"
    assert found["consent_history"] == history
    # RFC 8058 one-click from a mail client: a POST to the same link; already withdrawn, so
    # nothing more is recorded
    assert http.post(url, data="List-Unsubscribe=One-Click", timeout=30).status_code == 200
    assert len(api.get("/v1/consents", email=email).json()["history"]) == 3
    # append-only: the API offers no way to change or remove an event
    for method in ("PUT", "PATCH", "DELETE"):
        r = http.request(method, api.base + "/v1/consents", params={"email": email},
                         headers={"Authorization": f"Bearer {api.key}"}, timeout=30)
        assert r.status_code in (403, 404, 405), (method, r.status_code)
    assert api.get("/v1/consents", email=email).json()["history"] == history


def test_tampered_or_expired_link_changes_nothing(api, subject):
    from oblio.core import clock

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
    clock.advance(timedelta(days=2))
    try:
        r = http.get(url, timeout=30)
    finally:
        clock.advance(timedelta(days=-2))
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
    assert "astrology" in err["message"] and "newsletter" in err["message"]
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


def test_erasure_removes_consent_records_and_the_certificate_counts_them(api, subject):
    email, phone = subject["email"], subject["phone"]
    assert grant(api, email).status_code == 201
    assert api.post("/v1/consents", {"subject": {"phone": phone}, "purpose": "marketing",
                                     "channel": "sms", "status": "granted"}).status_code == 201
    assert ledger_items({"email": email, "phone": phone}) == 4  # two events, two states
    done = api.erase({"email": email})  # the phone is found on his profile: its records go too
    assert done["status"] == "completed", done
    assert done["result"]["certificate"]["consent_records_deleted"] == 4
    assert ledger_items({"email": email, "phone": phone}) == 0
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
