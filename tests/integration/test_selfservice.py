"""Self-service requests over HTTP against the local stack: a person files a request with no
API key, proves the address is theirs with the code oblio sends to it, and only then does
anything run."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import requests as http


def mails_to(address: str) -> list[Any]:
    from moto.ses.models import ses_backends

    from oblio.core.settings import get_settings

    s = get_settings()
    return [m for m in ses_backends[s.account_id][s.region].sent_messages
            if address in m.destinations.get("ToAddresses", [])]


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


@pytest.fixture
def demo_settings(api):
    """Change the demo tenant's settings for one test, and put them back."""
    changed: dict[str, Any] = {}

    def set_(**values: Any) -> None:
        before = api.get("/v1/tenant").json()["settings"]
        changed.update({k: before[k] for k in values if k not in changed})
        r = http.patch(api.base + "/v1/tenant", json={"settings": values},
                       headers={"Authorization": f"Bearer {api.key}"}, timeout=30)
        assert r.status_code == 200, r.text

    yield set_
    if changed:
        http.patch(api.base + "/v1/tenant", json={"settings": changed},
                   headers={"Authorization": f"Bearer {api.key}"}, timeout=30)


def test_self_service_erasure_waits_for_its_code_then_runs(api, anon, subject):
    email = subject["email"]
    r = file(anon, {"email": email})
    assert r.status_code == 202, r.text
    answer = r.json()
    assert answer["status"] == "awaiting_verification" and answer["verify_by"] == "e-mail"
    rid = answer["request_id"]
    # nothing runs before the code: the request waits, the data is all there
    assert api.get(f"/v1/requests/{rid}").json()["status"] == "awaiting_verification"
    assert api.get("/v1/subjects", email=email).json()["found"] is True
    mails = mails_to(email)
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


def test_a_self_service_access_export_reaches_the_person_through_a_signed_link(
        api, anon, subject):
    import io
    import zipfile
    from datetime import timedelta

    from oblio.core import clock

    email = subject["email"]
    rid = file(anon, {"email": email}, type_="access").json()["request_id"]
    assert verify(anon, rid, code_in(mails_to(email)[-1])).json()["status"] == "queued"
    done = api.wait(rid)
    assert done["status"] == "completed", done
    assert done["result"]["notified"] is True
    ready = mails_to(email)[-1]
    assert rid in ready.body and "ready" in ready.subject
    link = re.search(r"(http\S+/v1/public/requests/\S+/download\?token=\S+)", ready.body)
    assert link, ready.body
    url = link.group(1)
    assert email not in url and "%40" not in url  # the link names the request, not the person
    r = http.get(url, allow_redirects=False, timeout=30)  # no key: the signature is enough
    assert r.status_code == 302, r.text
    archive = http.get(r.headers["Location"], timeout=30)
    z = zipfile.ZipFile(io.BytesIO(archive.content))
    profile = json.loads(z.read("subject.json"))["tables"]["contacts"]["items"][0]
    assert profile["email"] == email
    # a link altered, one made for another request, or a consent link: refused, nothing given
    other = file(anon, {"email": email}, type_="objection").json()["request_id"]
    consent_token = api.post("/v1/consents/links", {"subject": {"email": email},
                                                    "purpose": "newsletter"}).json()["token"]
    base = url.split("/v1/")[0]
    for bad in (f"{url[:-3]}AAA", url.replace(rid, other),
                f"{base}/v1/public/requests/{rid}/download?token={consent_token}",
                f"{base}/v1/public/requests/{rid}/download"):
        r = http.get(bad, allow_redirects=False, timeout=30)
        assert r.status_code == 400 and "not valid" in r.text, bad
    # once the archive has expired the link says so
    clock.advance(timedelta(days=15))
    try:
        r = http.get(url, allow_redirects=False, timeout=30)
    finally:
        clock.reset()
    assert r.status_code == 410 and "expired" in r.text
    actors = {e["actor"] for e in api.get("/v1/audit", limit=30).json()["items"]
              if e["request_id"] == rid and e["action"] == "export_downloaded"}
    assert actors == {"self-service"}


def test_a_wrong_code_three_times_cancels_the_request(api, anon, subject):
    email = subject["email"]
    rid = file(anon, {"email": email}).json()["request_id"]
    code = code_in(mails_to(email)[-1])
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


def test_public_answers_do_not_reveal_whether_the_person_exists(anon, subject):
    known = file(anon, {"email": subject["email"]}, type_="access")
    unknown = file(anon, {"email": "nobody.at.all@example.org"}, type_="access")
    assert known.status_code == unknown.status_code == 202
    a, b = known.json(), unknown.json()
    assert set(a) == set(b)
    assert {k: v for k, v in a.items() if k not in ("request_id", "verify", "code_expires_at",
                                                    "due_at")} == \
        {k: v for k, v in b.items() if k not in ("request_id", "verify", "code_expires_at",
                                                 "due_at")}
    assert len(mails_to("nobody.at.all@example.org")) == 1  # a code, whatever we hold


def test_a_phone_code_goes_to_the_codes_topic(api, anon, subject):
    from moto.sns.models import sns_backends

    from oblio.core.settings import get_settings

    s = get_settings()
    topic = sns_backends[s.account_id][s.region].topics[s.topic_arn("verification-codes")]
    before = len(topic.sent_notifications)
    r = file(anon, {"phone": subject["phone"]}, type_="objection")
    assert r.status_code == 202, r.text
    assert r.json()["verify_by"] == "phone"
    sent = topic.sent_notifications[before:]
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


def test_a_phone_verified_access_export_sends_its_link_to_the_codes_topic(api, anon, subject):
    from moto.sns.models import sns_backends

    from oblio.core.settings import get_settings

    s = get_settings()
    topic = sns_backends[s.account_id][s.region].topics[s.topic_arn("verification-codes")]
    before = len(topic.sent_notifications)
    rid = file(anon, {"phone": subject["phone"]}, type_="access").json()["request_id"]
    code = re.search(r"\b(\d{6})\b", json.loads(topic.sent_notifications[-1][1])["text"])
    assert verify(anon, rid, code.group(1)).json()["status"] == "queued"
    done = api.wait(rid)
    assert done["status"] == "completed" and done["result"]["notified"] is True
    sent = [json.loads(n[1]) for n in topic.sent_notifications[before:]]
    assert [m["request_id"] for m in sent] == [rid, rid]  # the code, then the link
    assert sent[1]["phone"] == subject["phone"] and sent[1]["tenant_id"] == "demo"
    url = re.search(r"(http\S+download\?token=\S+)", sent[1]["text"]).group(1)
    assert http.get(url, allow_redirects=False, timeout=30).status_code == 302


def test_a_dpo_approves_or_denies_a_verified_request(api, anon, subject, demo_settings):
    demo_settings(selfservice_requires_approval=True)
    email = subject["email"]
    rid = file(anon, {"email": email}, type_="objection").json()["request_id"]
    r = verify(anon, rid, code_in(mails_to(email)[-1]))
    assert r.status_code == 200 and r.json()["status"] == "awaiting_approval"
    assert api.get(f"/v1/requests/{rid}").json()["status"] == "awaiting_approval"
    listed = api.get("/v1/requests", status="awaiting_approval").json()["items"]
    assert rid in {i["id"] for i in listed}
    bad = api.post(f"/v1/requests/{rid}/deny", {})
    assert bad.status_code == 422 and bad.json()["error"]["details"]["field"] == "reason"
    denied = api.post(f"/v1/requests/{rid}/deny", {"reason": "we hold no marketing data"})
    assert denied.status_code == 200, denied.text
    assert denied.json()["status"] == "cancelled"
    assert "we hold no marketing data" in mails_to(email)[-1].body
    assert api.post(f"/v1/requests/{rid}/approve").status_code == 409
    # a second request is approved and runs; a key without dsr:erase may not approve erasure
    rid = file(anon, {"email": email}).json()["request_id"]
    verify(anon, rid, code_in(mails_to(email)[-1]))
    from tests.client import Api

    writer = Api(api.base, api.post("/v1/keys", {"scopes": ["dsr:write", "dsr:read"]})
                 .json()["api_key"])
    r = writer.post(f"/v1/requests/{rid}/approve")
    assert r.status_code == 403 and r.json()["error"]["details"]["required_scope"] == \
        "dsr:erase"
    approved = api.post(f"/v1/requests/{rid}/approve")
    assert approved.status_code == 200, approved.text
    assert api.wait(rid)["status"] == "completed"


def test_the_due_date_counts_from_receipt(api, anon, subject):
    from oblio.core import clock

    r = file(anon, {"email": subject["email"]}, type_="access")
    received = api.get(f"/v1/requests/{r.json()['request_id']}").json()
    expected = clock.add_months(clock.parse(received["created_at"]), 1)
    assert clock.parse(received["due_at"]) == expected


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
        r = http.patch(child_api.base + "/v1/tenant", json={"settings": settings},
                       headers={"Authorization": f"Bearer {child_api.key}"}, timeout=30)
        assert r.status_code == 200, r.text

    patch({"public_slug": "demo-child", "public_requests_per_hour": 3})
    taken = http.patch(child_api.base + "/v1/tenant", json={"settings": {"public_slug": "demo"}},
                       headers={"Authorization": f"Bearer {child_api.key}"}, timeout=30)
    assert taken.status_code == 409 and taken.json()["error"]["code"] == "slug_taken"
    try:
        codes = [file(anon, {"email": f"flood.{i}@example.net"}, tenant="demo-child",
                      type_="access").status_code for i in range(5)]
        assert codes == [202, 202, 202, 429, 429]
        r = file(anon, {"email": "flood.9@example.net"}, tenant="demo-child")
        assert r.json()["error"]["code"] == "rate_limited"
        assert r.json()["error"]["details"]["retry_after_seconds"] > 0
        # other tenants' pages are not affected
        assert file(anon, {"email": subject["email"]}, type_="access").status_code == 202
    finally:
        patch({"public_slug": None, "public_requests_per_hour": 20})
    assert file(anon, {"email": subject["email"]}, tenant="demo-child").status_code == 404


def test_no_log_line_holds_the_identity_or_the_code(api, anon, subject, logs):
    email = subject["email"]
    rid = file(anon, {"email": email}, type_="access").json()["request_id"]
    code = code_in(mails_to(email)[-1])
    verify(anon, rid, f"{(int(code) + 7) % 10**6:06d}")
    text = "\n".join(logs.lines)
    assert email not in text, "the e-mail address leaked into the logs"
    assert not re.search(rf"(?<![0-9A-Za-z]){code}(?![0-9A-Za-z])", text), "the code leaked"
