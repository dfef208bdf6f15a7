"""Cancel is a state, not a race, on the real state machine (the Standard twin of a large
erasure, its Map of tables): a cancel while some tables'
steps are still to run leaves those tables untouched, the request says what was done, and
a retry resumes it to one certificate, one SubjectErased and a suppression entry."""

from __future__ import annotations

import time
from typing import Any

from infra.local.lambdas import Fault
from tests.integration import raw

SLOW = ("tickets", "ticket_messages")


def _counts(api: Any, email: str) -> dict[str, int]:
    return {t: v["count"] for t, v in api.get("/v1/subjects", email=email).json()["tables"]
            .items()}


def _table(aws_client: Any, dm: Any, name: str) -> list[str]:
    """Every item of the demo tenant in a mapped table, raw (the test's own Scan)."""
    pages = aws_client("dynamodb").get_paginator("scan").paginate(
        TableName=dm.tables[name].physical("demo"))
    return sorted(repr(sorted(raw.plain(i).items())) for page in pages
                  for i in page["Items"] if i["tenant_id"]["S"] == "demo")


def _settled(api: Any, rid: str, timeout: float = 60) -> dict[str, Any]:
    """The cancelled request once no step of it is under way any more."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got: dict[str, Any] = api.get(f"/v1/requests/{rid}").json()
        progress = (got.get("result") or {}).get("progress") or {}
        if got["status"] == "cancelled" and progress and not progress["in_progress"]:
            return got
        time.sleep(0.3)
    raise AssertionError(f"request {rid} did not settle")


def test_a_cancel_while_tables_wait_leaves_them_untouched_and_retry_completes(
        api, subject, faults, event_log, aws_client, dm, settings, monkeypatch):
    # the Standard twin's path, one apply invocation per table (a small request is applied
    # inside one Work invocation, where a table's step cannot be held back from outside)
    monkeypatch.setattr(settings, "inline_unit_items", 0)
    email = subject["email"]
    before = _counts(api, email)
    assert all(before.get(t) for t in SLOW)
    untouched = {t: _table(aws_client, dm, t) for t in SLOW}
    for table in SLOW:  # these tables' steps start late: the cancel comes first
        faults.inject(Fault("apply", delay=4.0, when={"unit.table": table}))
    r = api.post("/v1/requests", {"type": "erasure", "subject": {"email": email},
                                  "confirm": True})
    assert r.status_code == 202, r.text
    rid = r.json()["request_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # wait until the subject's profile is erased
        if not raw.query(aws_client, dm.tables["contacts"].physical("demo"), "email", email):
            break
        time.sleep(0.2)
    c = api.post(f"/v1/requests/{rid}/cancel")
    assert c.status_code == 200, c.text
    assert c.json()["status"] == "cancelled"

    got = _settled(api, rid)
    for table in SLOW:  # their steps ran after the cancel and did nothing: raw, unchanged
        assert _table(aws_client, dm, table) == untouched[table], table
    progress = got["result"]["progress"]
    done = {u.split("/", 1)[1] for u in progress["done"]}
    assert "demo/contacts" in progress["done"] and not done & set(SLOW)
    assert {f"demo/{t}" for t in SLOW} <= set(progress["not_started"])
    assert api.post(f"/v1/requests/{rid}/cancel").status_code == 409

    again = api.post(f"/v1/requests/{rid}/retry")
    assert again.status_code in (200, 202), again.text
    assert again.json()["attempt"] == 2
    done = api.wait(rid, timeout=90)
    assert done["status"] == "completed", done
    assert done["result"]["verification"]["passed"] is True
    assert done["result"]["certificate"]["tables"]["tickets"]["anonymised"] == before["tickets"]
    kinds = sorted(e["detail-type"] for e in event_log.for_request(rid))
    assert kinds == ["RequestCompleted", "SubjectErased"]
    search = api.get("/v1/subjects", email=email).json()
    assert search["found"] is False and search["suppressed"] is True
