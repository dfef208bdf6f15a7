"""The console over HTTP: its files and their security headers, and the API routes it added
(whoami, the data map's summary, search with the identity in the body, a bulk CSV sent
through the API) and main's key revocation as the console uses it. The browser itself is
tests/console's."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import requests as http

from tests.client import Api

WEB = Path(__file__).resolve().parents[2] / "functions" / "api" / "chalicelib" / "web"


def finished(api: Api, job_id: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/v1/bulk-erasures/{job_id}").json()
        if job["status"] in ("completed", "completed_with_errors", "failed"):
            return job
        time.sleep(0.4)
    raise AssertionError(f"bulk job {job_id} did not finish")


def test_console_is_served_with_its_security_headers_and_no_inline_script(stack):
    base = stack.info["api_url"]
    bare = http.get(f"{base}/console", allow_redirects=False, timeout=10)
    assert bare.status_code == 302 and bare.headers["Location"] == "console/"  # stage-safe
    page = http.get(f"{base}/console/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    csp = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and "unsafe-inline" not in csp
    for name, value in {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                        "X-Frame-Options": "DENY", "Cache-Control": "no-store"}.items():
        assert page.headers[name] == value, name
    assert not re.search(r"<script(?![^>]*\bsrc=)", page.text), "an inline script"
    assert not re.search(r"\son[a-z]+=", page.text), "an inline event handler"
    assert "style=" not in page.text


def test_every_console_file_is_served_and_fetches_nothing_from_elsewhere(stack):
    base = stack.info["api_url"]
    files = sorted(p.name for p in WEB.iterdir())
    for name in files:
        # an SVG's namespace is a name, not a fetch
        text = (WEB / name).read_text().replace('xmlns="http://www.w3.org/2000/svg"', "")
        assert not re.search(r"https?://", text), f"{name} names another origin"
        r = http.get(f"{base}/console/{name}", timeout=10)
        assert r.status_code == 200, name
        assert r.headers["Content-Security-Policy"]
        if name.endswith(".js"):
            assert r.headers["Content-Type"].startswith("text/javascript")
            for imported in re.findall(r'from "\./([a-z-]+\.js)"', text):
                assert imported in files, f"{name} imports {imported}"
        etag = r.headers["ETag"]
        again = http.get(f"{base}/console/{name}", headers={"If-None-Match": etag}, timeout=10)
        assert again.status_code == 304, name


def test_console_refuses_names_that_are_not_its_files(stack):
    base = stack.info["api_url"]
    for name in ("nope.js", "..%2Fapp.py", "%2e%2e%2fconsole.py", "console.py", ".hidden.js",
                 "app.JS"):
        r = http.get(f"{base}/console/{name}", timeout=10)
        assert r.status_code == 404, name
        assert "app = Chalice" not in r.text


def test_every_api_answer_tells_browsers_not_to_keep_it(api, anon):
    for r in (api.get("/v1/tenant"), api.post("/v1/subjects/search", {
            "subject": {"email": "jeanne.dupont@example.com"}}), anon.get("/v1/tenant")):
        assert r.headers["Cache-Control"] == "no-store", r.url
        assert r.headers["X-Content-Type-Options"] == "nosniff"


def test_search_by_post_answers_as_get_and_keeps_the_identity_out_of_urls(api, logs):
    email = "jeanne.dupont@example.com"
    by_get = api.get("/v1/subjects", email=email).json()
    r = api.post("/v1/subjects/search", {"subject": {"email": email.upper()},
                                         "include_children": True})
    assert r.status_code == 200, r.text
    body = r.json()
    assert {t: v["count"] for t, v in body["tables"].items()} == \
        {t: v["count"] for t, v in by_get["tables"].items()}
    assert body["subject_ref"] == by_get["subject_ref"]
    assert set(body["children"]) == {"demo-child"}
    assert body["export_before_anonymisation"] == {"required": False, "export": None}
    posts = [line for line in logs.lines if "/v1/subjects/search" in line]
    assert posts and not any(email in line for line in posts)


def test_search_by_post_names_the_field_it_refuses(api):
    cases = [({"subject": {"mail": "x@example.com"}}, "subject.mail"),
             ({"subject": {"email": 3}}, "subject.email"),
             ({"subject": {}}, "subject"),
             ({"subject": {"email": "a@example.com"}, "include_children": "yes"},
              "include_children"),
             ({"subject": {"email": "a@example.com"}, "tenant": "other"}, "tenant"),
             ({"subject": {"email": "not-an-email"}}, "subject.email")]
    for body, field in cases:
        r = api.post("/v1/subjects/search", body)
        assert r.status_code == 422, (body, r.text)
        assert r.json()["error"]["details"]["field"].startswith(field), (body, r.text)
        assert "not-an-email" not in r.json()["error"]["message"]


def test_search_by_post_needs_a_key_with_dsr_read(stack, api, anon):
    assert anon.post("/v1/subjects/search", {"subject": {"email": "a@example.com"}}
                     ).status_code == 401
    key = api.post("/v1/keys", {"scopes": ["audit:read"]}).json()["api_key"]
    r = Api(stack.info["api_url"], key).post("/v1/subjects/search",
                                              {"subject": {"email": "a@example.com"}})
    assert r.status_code == 403 and "dsr:read" in r.json()["error"]["message"]


def test_search_by_post_tells_whether_an_export_satisfies_the_anonymisation_rule(api, subject):
    who = {"email": subject["email"]}
    assert api.patch("/v1/tenant", {"settings": {
        "require_export_before_anonymisation": True}}).status_code == 200
    try:
        rule = api.post("/v1/subjects/search", {"subject": who}).json()[
            "export_before_anonymisation"]
        assert rule == {"required": True, "export": None}
        rid = api.post("/v1/requests", {"type": "access", "subject": who}).json()["request_id"]
        assert api.wait(rid)["status"] == "completed"
        rule = api.post("/v1/subjects/search", {"subject": who}).json()[
            "export_before_anonymisation"]
        assert rule["export"]["request_id"] == rid and rule["export"]["expires_at"]
    finally:
        api.patch("/v1/tenant", {"settings": {"require_export_before_anonymisation": False}})


def test_whoami_describes_the_calling_key_and_datamap_its_tables(stack, api, child_api):
    me = api.get("/v1/whoami").json()
    assert me["tenant_id"] == "demo" and me["scopes"] == ["admin"]
    assert me["children_allowed"] is True and me["children"] == ["demo-child"]
    assert me["rules"]["export_ttl_days"] == 14
    child = child_api.get("/v1/whoami").json()
    assert child["tenant_id"] == "demo-child" and child["children"] == []
    read_only = api.post("/v1/keys", {"scopes": ["dsr:read"]}).json()["api_key"]
    assert Api(stack.info["api_url"], read_only).get("/v1/whoami").json()["scopes"] == [
        "dsr:read"]
    dm = api.get("/v1/datamap").json()
    assert "contacts" in [t["name"] for t in dm["tables"]]
    assert dm["objection_purposes"] == ["marketing"]


def test_whoami_refuses_the_operator_key_which_has_no_tenant_of_its_own(stack):
    r = Api(stack.info["api_url"], stack.info["operator_key"]).get("/v1/whoami")
    assert r.status_code == 403 and "tenant's API key" in r.json()["error"]["message"]


def test_a_bulk_csv_sent_through_the_api_runs_once(api, dm):
    from infra.local import demo

    people = [f"console.bulk{i}@example.net" for i in range(3)]
    for p in people:
        demo.seed_subject(dm, "demo", p)
    job = api.post("/v1/bulk-erasures", {}).json()
    csv = ("email\n" + "\n".join(people) + "\nnot-an-email\n").encode()
    r = http.put(f"{api.base}/v1/bulk-erasures/{job['job_id']}/file", data=csv, timeout=60,
                 headers={"Authorization": f"Bearer {api.key}",
                          "Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    again = http.put(f"{api.base}/v1/bulk-erasures/{job['job_id']}/file", data=csv,
                     timeout=60, headers={"Authorization": f"Bearer {api.key}",
                                          "Content-Type": "text/csv"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "already_uploaded"
    done = finished(api, job["job_id"])
    assert (done["erased"], done["invalid"]) == (3, 1), done
    for p in people:
        assert not api.get("/v1/subjects", email=p).json()["found"]


def test_a_bulk_csv_through_the_api_is_refused_when_empty_or_too_large(api):
    from oblio.jobs.bulk import API_UPLOAD_MAX_BYTES

    job = api.post("/v1/bulk-erasures", {"dry_run": True}).json()
    url = f"{api.base}/v1/bulk-erasures/{job['job_id']}/file"
    headers = {"Authorization": f"Bearer {api.key}", "Content-Type": "text/csv"}
    empty = http.put(url, data=b"", headers=headers, timeout=60)
    assert empty.status_code == 422 and empty.json()["error"]["details"]["field"] == "file"
    big = http.put(url, data=b"email\n" + b"x" * API_UPLOAD_MAX_BYTES, headers=headers,
                   timeout=60)
    assert big.status_code == 413 and "upload_url" in big.json()["error"]["message"]
    assert api.get(f"/v1/bulk-erasures/{job['job_id']}").json()["status"] == "awaiting_upload"
    missing = http.put(f"{api.base}/v1/bulk-erasures/01NOSUCHJOB/file", data=b"email\n",
                       headers=headers, timeout=60)
    assert missing.status_code == 404


def test_a_revoked_key_is_refused_and_an_admin_cannot_revoke_its_own(stack, api, child_api):
    made = api.post("/v1/keys", {"scopes": ["dsr:read"], "name": "to revoke"}).json()
    other = Api(stack.info["api_url"], made["api_key"])
    assert other.get("/v1/whoami").status_code == 200
    assert other.post(f"/v1/keys/{made['key_id']}/revoke").status_code == 403
    r = api.post(f"/v1/keys/{made['key_id']}/revoke")
    assert r.status_code == 200 and r.json()["revoked"] is True
    assert api.post(f"/v1/keys/{made['key_id']}/revoke").json() == r.json()
    refused = other.get("/v1/whoami")
    assert refused.status_code == 401 and "revoked" in refused.json()["error"]["message"]
    own = api.get("/v1/whoami").json()["key_id"]
    assert api.post(f"/v1/keys/{own}/revoke").status_code == 409
    # another tenant's key is not found, not revoked
    assert child_api.post(f"/v1/keys/{made['key_id']}/revoke").status_code == 404
