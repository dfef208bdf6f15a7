"""Honest outcomes over HTTP: a request that finds nothing says `found: false` at the top of
its result, its certificate and its audit entry, calls nothing erased or verified, and does
not put the subject on the suppression list."""

from __future__ import annotations

import json
from typing import Any

NOBODY = {"email": "nobody.anywhere.4711@example.org"}


def run(api: Any, body: dict[str, Any]) -> dict[str, Any]:
    r = api.post("/v1/requests", body)
    assert r.status_code == 202, r.text
    return api.wait(r.json()["request_id"])


def audit_entry(api: Any, request_id: str, action: str) -> dict[str, Any]:
    entries = api.get("/v1/audit", limit=200).json()["items"]
    (entry,) = [e for e in entries if e.get("request_id") == request_id
                and e["action"] == action]
    return entry


def test_an_erasure_that_finds_nothing_says_so_and_claims_nothing(api, event_log):
    done = run(api, {"type": "erasure", "subject": NOBODY, "confirm": True})
    result = done["result"]
    assert done["status"] == "completed"
    assert next(iter(result)) == "found" and result["found"] is False
    assert result["totals"]["deleted"] == result["totals"]["anonymised"] == 0
    # verification does not say "passed" of what it did not check
    v = result["verification"]
    assert v["passed"] is None and v["outcome"] == "nothing_to_verify"
    assert v["items_checked"] == 0 and v["checked"]["fresh_search"]["queries"] >= 1
    cert = result["certificate"]
    assert next(iter(cert)) == "found" and cert["found"] is False
    assert "nothing was erased" in cert["statement"]
    assert cert["verification"]["passed"] is None and cert["suppression_entries"] == 0
    assert "suppression list" in result["message"]
    entry = audit_entry(api, done["id"], "erasure_completed")
    assert next(iter(entry["details"])) == "found" and entry["details"]["found"] is False
    assert entry["details"]["verification_passed"] is False
    # not suppressed: the list would say the subject was erased
    assert api.get("/v1/subjects", **NOBODY).json()["suppressed"] is False
    erased = [e for e in event_log.for_request(done["id"]) if e["detail-type"] == "SubjectErased"]
    assert erased and erased[0]["detail"]["found"] is False
    assert NOBODY["email"] not in json.dumps(done)


def test_an_anonymisation_that_finds_nothing_says_so(api):
    done = run(api, {"type": "anonymisation", "subject": {"email": "no.one.9@example.org"},
                     "confirm": True})
    assert done["status"] == "completed"
    result = done["result"]
    assert result["found"] is False and result["certificate"]["found"] is False
    assert result["verification"]["outcome"] == "nothing_to_verify"
    assert result["verification"]["passed"] is None


def test_an_erasure_that_finds_the_subject_still_verifies_and_suppresses(api, subject):
    done = api.erase({"email": subject["email"]})
    assert done["status"] == "completed"
    result = done["result"]
    assert result["found"] is True and result["certificate"]["found"] is True
    assert "statement" not in result["certificate"]
    v = result["verification"]
    assert v["passed"] is True and v["outcome"] == "passed"
    assert v["checked"]["items_read_back"] == result["totals"]["matched"]
    assert v["checked"]["files"]["pointer"]["objects"] == len(subject["files"])
    assert v["checked"]["files"]["pointer"]["left"] == 0
    assert api.get("/v1/subjects", email=subject["email"]).json()["suppressed"] is True
    entry = audit_entry(api, done["id"], "erasure_completed")
    assert entry["details"]["found"] is True and entry["details"]["verification_passed"]
