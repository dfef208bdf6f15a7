"""Self-service requests over HTTP against the local stack: a person files a request with no
API key, proves the address is theirs with the code oblio sends to it, and only then does
anything run."""

from __future__ import annotations

import calendar
import json
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
import requests as http

from tests.integration import raw


def mails_to(settings: Any, address: str) -> list[Any]:
    return [m for m in raw.mails(settings) if address in m.destinations.get("ToAddresses", [])]


def code_in(message: Any) -> str:
    found = re.search(r"\b(\d{6})\b", message.body)
    assert found, "no code in the message"
    return found.group(1)


def file(anon: Any, subject: dict[str, str], type_: str = "erasure",
         tenant: str = "demo", **extra: Any) -> Any:
    return anon.post("/v1/public/requests", {"tenant": tenant, "type": type_,
                                             "subject": subject, **extra})


def verify(anon: Any, request_id: str, code: str, tenant: str = "demo") -> Any:
    return anon.post(f"/v1/public/requests/{request_id}/verify",
                     {"tenant": tenant, "code": code})


def test_self_service_erasure_waits_for_its_code_then_runs(settings, api, anon, subject):
    email = subject["email"]
    r = file(anon, {"email": email})
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["status"] == "awaiting_verification" and answer["verify_by"] == "e-mail"
    rid = answer["request_id"]
    # nothing runs before the code: the request waits, the data is all there
    assert api.get(f"/v1/requests/{rid}").json()["status"] == "awaiting_verification"
    assert api.get("/v1/subjects", email=email).json()["found"] is True
    mails = mails_to(settings, email)
    assert len(mails) == 1 and rid in mails[0].body
    code = code_in(mails[0])
    ok = verify(anon, rid, code)
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "queued"
    done = api.wait(rid)
    assert done["status"] == "completed", done
    assert done["result"]["certificate"]["tables"]["contacts"]["deleted"] == 1
    assert [e["event"] for e in done["timeline"]][:4] == [
        "received", "verification_code_sent", "verified", "queued"]
    assert api.get("/v1/subjects", email=email).json()["found"] is False
    # the code is spent
    again = verify(anon, rid, code)
    assert again.status_code == 409 and again.json()["error"]["code"] == \
        "not_awaiting_verification"


@pytest.fixture(scope="module")
def self_served(api, anon, dm, settings) -> dict[str, Any]:
    """A person's self-service access export: filed with no key, verified with the code
    mailed to them, run; the "ready" mail and its signed download link."""
    from infra.local import demo

    email = "self.service.export@example.net"
    demo.seed_subject(dm, "demo", email, "+393471238888")
    rid = file(anon, {"email": email}, type_="access").json()["request_id"]
    verified = verify(anon, rid, code_in(mails_to(settings, email)[-1]))
    done = api.wait(rid)
    ready = mails_to(settings, email)[-1]
    link = re.search(r"(http\S+/v1/public/requests/\S+/download\?token=\S+)", ready.body)
    return {"email": email, "rid": rid, "verified": verified, "done": done, "ready": ready,
            "url": link.group(1) if link else None}


def test_a_self_service_export_runs_once_verified_and_tells_the_person(self_served):
    assert self_served["verified"].json()["status"] == "queued"
    done = self_served["done"]
    assert done["status"] == "completed", done
    assert done["result"]["notified"] is True
    ready = self_served["ready"]
    assert self_served["rid"] in ready.body and "ready" in ready.subject
    assert self_served["url"], ready.body


def test_the_download_link_names_the_request_not_the_person(self_served):
    url = self_served["url"]
    assert self_served["email"] not in url and "%40" not in url


def test_the_signed_link_downloads_the_archive_without_a_key(self_served):
    import io
    import zipfile

    r = http.get(self_served["url"], allow_redirects=False, timeout=30)
    assert r.status_code == 302, r.text
    archive = http.get(r.headers["Location"], timeout=30)
    z = zipfile.ZipFile(io.BytesIO(archive.content))
    profile = json.loads(z.read("subject.json"))["tables"]["contacts"]["items"][0]
    assert profile["email"] == self_served["email"]


def test_an_altered_borrowed_or_missing_token_is_refused_and_gives_nothing(api, anon,
                                                                          self_served):
    url, rid, email = self_served["url"], self_served["rid"], self_served["email"]
    other = file(anon, {"email": email}, type_="objection").json()["request_id"]
    consent_token = api.post("/v1/consents/links", {"subject": {"email": email},
                                                    "purpose": "newsletter"}).json()["token"]
    base = url.split("/v1/")[0]
    for bad in (f"{url[:-3]}AAA", url.replace(rid, other),
                f"{base}/v1/public/requests/{rid}/download?token={consent_token}",
                f"{base}/v1/public/requests/{rid}/download"):
        r = http.get(bad, allow_redirects=False, timeout=30)
        assert r.status_code == 400 and "not valid" in r.text, bad


def test_the_link_says_so_once_the_archive_has_expired(self_served, clock_ahead):
    with clock_ahead(timedelta(days=15)):
        r = http.get(self_served["url"], allow_redirects=False, timeout=30)
    assert r.status_code == 410 and "expired" in r.text


def test_a_self_service_download_is_audited_as_the_persons(api, self_served):
    http.get(self_served["url"], allow_redirects=False, timeout=30)
    actors = {e["actor"] for e in api.get("/v1/audit", limit=50).json()["items"]
              if e["request_id"] == self_served["rid"] and e["action"] == "export_downloaded"}
    assert actors == {"self-service"}


def test_a_wrong_code_three_times_cancels_the_request(settings, api, anon, subject):
    email = subject["email"]
    rid = file(anon, {"email": email}).json()["request_id"]
    code = code_in(mails_to(settings, email)[-1])
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    for left in (2, 1, 0):
        r = verify(anon, rid, wrong)
        assert r.status_code == 400, r.text
        assert r.json()["error"]["code"] == "invalid_code"
        assert r.json()["error"]["details"]["attempts_left"] == left
    assert r.json()["error"]["details"]["status"] == "cancelled"
    late = verify(anon, rid, code)  # even the right code is too late now
    assert late.status_code == 409
    req = api.get(f"/v1/requests/{rid}").json()
    assert req["status"] == "cancelled"
    assert req["result"]["cancelled"]["reason"] == "too_many_attempts"
    assert api.get("/v1/subjects", email=email).json()["tables"]["contacts"]["count"] == 1
    assert verify(anon, rid, "12345").status_code == 422  # not six digits: not an attempt


def test_public_answers_do_not_reveal_whether_the_person_exists(settings, anon, subject):
    known = file(anon, {"email": subject["email"]}, type_="access")
    unknown = file(anon, {"email": "nobody.at.all@example.org"}, type_="access")
    assert known.status_code == unknown.status_code == 202
    a, b = known.json(), unknown.json()
    assert set(a) == set(b)
    assert {k: v for k, v in a.items() if k not in ("request_id", "verify", "code_expires_at",
                                                    "due_at")} == \
        {k: v for k, v in b.items() if k not in ("request_id", "verify", "code_expires_at",
                                                 "due_at")}
    assert len(mails_to(settings, "nobody.at.all@example.org")) == 1  # a code, whatever we hold


def test_a_phone_code_goes_to_the_codes_topic(api, anon, subject, settings):
    before = len(raw.texts(settings))
    r = file(anon, {"phone": subject["phone"]}, type_="objection")
    assert r.status_code == 202, r.text
    assert r.json()["verify_by"] == "phone"
    sent = raw.texts(settings)[before:]
    assert len(sent) == 1
    message = json.loads(sent[0][1])
    assert message["tenant_id"] == "demo" and message["phone"] == subject["phone"]
    code = re.search(r"\b(\d{6})\b", message["text"]).group(1)
    ok = verify(anon, r.json()["request_id"], code)
    assert ok.status_code == 200 and ok.json()["status"] == "queued"
    done = api.wait(r.json()["request_id"])
    assert done["status"] == "completed"
    assert api.get("/v1/consents", phone=subject["phone"]).json()["state"]["marketing"][
        "status"] == "withdrawn"


def test_a_phone_verified_access_export_sends_its_link_to_the_codes_topic(api, anon, subject,
                                                                          settings):
    before = len(raw.texts(settings))
    rid = file(anon, {"phone": subject["phone"]}, type_="access").json()["request_id"]
    code = re.search(r"\b(\d{6})\b", json.loads(raw.texts(settings)[-1][1])["text"])
    assert verify(anon, rid, code.group(1)).json()["status"] == "queued"
    done = api.wait(rid)
    assert done["status"] == "completed" and done["result"]["notified"] is True
    sent = [json.loads(n[1]) for n in raw.texts(settings)[before:]]
    assert [m["request_id"] for m in sent] == [rid, rid]  # the code, then the link
    assert sent[1]["phone"] == subject["phone"] and sent[1]["tenant_id"] == "demo"
    url = re.search(r"(http\S+download\?token=\S+)", sent[1]["text"]).group(1)
    assert http.get(url, allow_redirects=False, timeout=30).status_code == 302


def test_a_dpo_approves_or_denies_a_verified_request(api, anon, subject, settings,
                                                     tenant_settings):
    tenant_settings(api, selfservice_requires_approval=True)
    email = subject["email"]
    rid = file(anon, {"email": email}, type_="objection").json()["request_id"]
    r = verify(anon, rid, code_in(mails_to(settings, email)[-1]))
    assert r.status_code == 200 and r.json()["status"] == "awaiting_approval"
    assert api.get(f"/v1/requests/{rid}").json()["status"] == "awaiting_approval"
    listed = api.get("/v1/requests", status="awaiting_approval").json()["items"]
    assert rid in {i["id"] for i in listed}
    bad = api.post(f"/v1/requests/{rid}/deny", {})
    assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "reason"
    denied = api.post(f"/v1/requests/{rid}/deny", {"reason": "we hold no marketing data"})
    assert denied.status_code == 200, denied.text
    assert denied.json()["status"] == "cancelled"
    assert "we hold no marketing data" in mails_to(settings, email)[-1].body
    assert api.post(f"/v1/requests/{rid}/approve").status_code == 409
    # a second request is approved and runs; a key without dsr:erase may not approve erasure
    rid = file(anon, {"email": email}).json()["request_id"]
    verify(anon, rid, code_in(mails_to(settings, email)[-1]))
    from tests.client import Api

    writer = Api(api.base, api.post("/v1/keys", {"scopes": ["dsr:write", "dsr:read"]})
                 .json()["api_key"])
    r = writer.post(f"/v1/requests/{rid}/approve")
    assert r.status_code == 403 and r.json()["error"]["details"]["required_scope"] == \
        "dsr:erase"
    approved = api.post(f"/v1/requests/{rid}/approve")
    assert approved.status_code == 200, approved.text
    assert api.wait(rid)["status"] == "completed"


def one_month_after(at: datetime) -> datetime:
    """The same day a month later, or the month's last day (Art. 12(3))."""
    year, month = (at.year + 1, 1) if at.month == 12 else (at.year, at.month + 1)
    return at.replace(year=year, month=month,
                      day=min(at.day, calendar.monthrange(year, month)[1]))


def test_one_month_after_is_the_same_day_or_the_months_last():
    assert one_month_after(datetime(2026, 1, 31)) == datetime(2026, 2, 28)
    assert one_month_after(datetime(2026, 12, 15)) == datetime(2027, 1, 15)


def test_the_due_date_counts_from_receipt(api, anon, subject):
    r = file(anon, {"email": subject["email"]}, type_="access")
    received = api.get(f"/v1/requests/{r.json()['request_id']}").json()
    created = datetime.fromisoformat(received["created_at"].replace("Z", "+00:00"))
    due = datetime.fromisoformat(received["due_at"].replace("Z", "+00:00"))
    assert due == one_month_after(created)


def test_bad_public_requests_say_what_is_wrong(anon, subject):
    assert file(anon, {"email": subject["email"]}, tenant="no-such-page").status_code == 404
    for body, field in [({"type": "anonymisation"}, "type"),
                        ({"subject": {"external_id": "X-1"}}, "subject.external_id"),
                        ({"subject": {"email": subject["email"], "phone": subject["phone"]}},
                         "subject"),
                        ({"subject": {"email": "nope"}}, "subject.email"),
                        ({"type": "objection", "purposes": ["astrology"]}, "purposes")]:
        r = anon.post("/v1/public/requests", {"tenant": "demo", "type": "erasure",
                                              "subject": {"email": subject["email"]}, **body})
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["details"]["field"] == field
    r = anon.post("/v1/public/requests", raw="{not json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"


def test_a_flood_from_one_address_is_429(child_api, anon, subject):
    def patch(settings: dict[str, Any]) -> None:
        r = child_api.patch("/v1/tenant", {"settings": settings})
        assert r.status_code == 200, r.text

    patch({"public_slug": "demo-child", "public_requests_per_hour": 3})
    taken = child_api.patch("/v1/tenant", {"settings": {"public_slug": "demo"}})
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "slug_taken"
    try:
        codes = [file(anon, {"email": f"flood.{i}@example.net"}, tenant="demo-child",
                      type_="access").status_code for i in range(5)]
        assert codes == [202, 202, 202, 429, 429]
        r = file(anon, {"email": "flood.9@example.net"}, tenant="demo-child")
        assert r.json()["error"]["code"] == "rate_limited"
        assert r.json()["error"]["details"]["retry_after_seconds"] > 0
        # RFC 9110: the wait is in the Retry-After header too, for clients that honour it
        assert int(r.headers["Retry-After"]) >= r.json()["error"]["details"][
            "retry_after_seconds"] > 0
        # other tenants' pages are not affected
        assert file(anon, {"email": subject["email"]}, type_="access").status_code == 202
    finally:
        patch({"public_slug": None, "public_requests_per_hour": 20})
    assert file(anon, {"email": subject["email"]}, tenant="demo-child").status_code == 404


def test_no_log_line_holds_the_identity_or_the_code(settings, api, anon, subject, logs):
    email = subject["email"]
    rid = file(anon, {"email": email}, type_="access").json()["request_id"]
    code = code_in(mails_to(settings, email)[-1])
    verify(anon, rid, f"{(int(code) + 7) % 10**6:06d}")
    text = "\n".join(logs.lines)
    assert email not in text, "the e-mail address leaked into the logs"
    assert not re.search(rf"(?<![0-9A-Za-z]){code}(?![0-9A-Za-z])", text), "the code leaked"
