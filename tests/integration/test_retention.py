"""Retention sweeps against the local stack, over HTTP: the demo tenant's policy "anonymise
contacts inactive for 18 months" dry-runs to the exact number of such demo contacts (computed
here from the demo generator, not from the code under test), then anonymises exactly those;
the trash purge deletes the soft-deleted tickets past 30 days and nothing else; the report,
the sweep and the audit agree; bad input is 422 naming the field; a second run of a running
policy is refused; a failed sweep resumes."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import pytest
import requests as http

from infra.local.lambdas import Fault
from tests.integration import raw

ENDED = ("completed", "completed_with_errors", "failed")


def finished(api: Any, sweep_id: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sweep = api.get(f"/v1/retention-sweeps/{sweep_id}").json()
        if sweep["status"] in ENDED:
            return sweep
        time.sleep(0.5)
    raise AssertionError(f"sweep {sweep_id} did not finish")


@pytest.fixture(scope="module")
def generated(stack: Any, dm: Any) -> dict[str, list[dict[str, Any]]]:
    """The demo tenant's items as the generator makes them (the same seed and the same steps
    as `demo.seed` for the first tenant), held in memory: the expectation's source."""
    from infra.local import demo

    b = demo._Builder(dm, "demo", seed=20261123)
    for s in demo.NAMED:
        if s.tenant_id == "demo":
            b.contact(email=s.email, phone=s.phone, external_id=s.external_id,
                      first=s.first_name, last=s.last_name, city=s.city, country=s.country,
                      activity=demo.EPOCH - timedelta(days=20), named=True)
    for i in range(stack.demo_contacts):
        city, country = b.rng.choice(demo.CITIES)
        b.contact(email=f"contact{i:07d}@demo.example.org",
                  phone=f"+3934{b.rng.randint(10000000, 99999999)}"
                  if b.rng.random() < 0.6 else None,
                  external_id=f"GEN-{i:07d}", first=b.rng.choice(demo.FIRST),
                  last=b.rng.choice(demo.LAST), city=city, country=country,
                  activity=demo.EPOCH - timedelta(days=b.rng.randint(0, 4 * 365)),
                  named=False)
    return dict(b.items)


def live(aws_client: Any, table: str, key: str) -> dict[str, dict[str, Any]]:
    """The demo tenant's items as they are now (read by the test, with a Scan of its own)."""
    return raw.scan(aws_client, table, key)


def audit_entry(api: Any, entry_id: str) -> dict[str, Any]:
    cursor = None
    while True:
        page = api.get("/v1/audit", limit="500", **({"cursor": cursor} if cursor else {})).json()
        for e in page["items"]:
            if e["id"] == entry_id:
                return e
        cursor = page["next_cursor"]
        assert cursor, f"audit entry {entry_id} not found"


def test_the_demo_tenant_has_its_policies_and_the_schedule_exists(api, aws_client, settings):
    from infra.catalogue import CATALOGUE

    policies = {p["id"]: p for p in api.get("/v1/retention-policies").json()["items"]}
    assert {"inactive-contacts", "ticket-trash", "old-email-events"} <= set(policies)
    p = policies["inactive-contacts"]
    assert (p["table"], p["older_than"], p["action"], p["enabled"]) == \
        ("contacts", "P18M", "anonymise", True)
    rule = next(r for r in CATALOGUE.rules if r.schedule)
    live_rule = aws_client("events").describe_rule(
        Name=f"{settings.resource_prefix}-{rule.name}")
    assert live_rule["ScheduleExpression"] == rule.schedule


@pytest.mark.parametrize("body,field", [
    ({"table": "orders", "older_than": "P1Y", "action": "delete"}, "table"),
    ({"table": "contacts", "date_attribute": "last_login", "older_than": "P1Y",
      "action": "delete"}, "date_attribute"),
    ({"table": "contacts", "older_than": "eighteen months", "action": "anonymise"},
     "older_than"),
    ({"table": "contacts", "older_than": "P1Y", "action": "forget"}, "action"),
    ({"table": "email_events", "older_than": "P1Y", "action": "anonymise",
      "filter": {"nope": 1}}, "filter"),
])
def test_a_bad_policy_is_422_naming_the_field(api, body, field):
    r = api.put("/v1/retention-policies/bad", body)
    assert r.status_code == 422, r.text
    err = r.json()["error"]
    assert err["details"]["field"] == field and err["message"]
    assert api.post("/v1/retention-policies/no-such/run", {"dry_run": True}).status_code == 404


@pytest.fixture(scope="module")
def inactive_swept(api, aws_client, generated, event_log) -> dict[str, Any]:
    """The demo policy "anonymise contacts inactive for 18 months" dry-run, then run; the
    contacts as they were before and after, its report, audit entry and event."""
    now = live(aws_client, "demo-contacts", "contact_id")
    dry = api.post("/v1/retention-policies/inactive-contacts/run", {"dry_run": True})
    assert dry.status_code == 200, dry.text
    report = dry.json()
    cutoff = report["cutoff"]
    # the expectation: generated contacts older than the cutoff, not on hold, still there
    # and not anonymised already (other tests of the session may have erased some)
    old = {c["contact_id"] for c in generated["contacts"] if c["last_activity_at"] < cutoff}
    held = {c["contact_id"] for c in generated["contacts"] if c["legal_hold"]}
    present = {k for k, v in now.items() if "_oblio_anonymised" not in v}
    out: dict[str, Any] = {"dry": report, "before": now, "want": (old - held) & present,
                           "held": old & held & present,
                           "after_dry_run": live(aws_client, "demo-contacts", "contact_id")}
    r = api.post("/v1/retention-policies/inactive-contacts/run", {"confirm": True})
    assert r.status_code == 202, r.text
    sweep = finished(api, r.json()["sweep_id"])
    out.update(sweep=sweep, after=live(aws_client, "demo-contacts", "contact_id"))
    out["doc"] = http.get(sweep["report_url"], timeout=30).json() \
        if sweep.get("report_url") else None
    out["entry"] = audit_entry(api, sweep["audit_entry"]) if sweep.get("audit_entry") else None
    out["events"] = [e for e in event_log.drain()
                     if e["detail-type"] == "RetentionSweepCompleted"
                     and e["detail"].get("sweep_id") == sweep["sweep_id"]]
    return out


def test_a_dry_run_counts_exactly_the_inactive_contacts_not_on_hold(inactive_swept, generated):
    want, counts = inactive_swept["want"], inactive_swept["dry"]["tables"]["contacts"]
    assert 100 < len(want) < len(generated["contacts"])  # the demo has work for the rule
    assert counts["would_anonymise"] == len(want)
    assert counts["on_hold"] == len(inactive_swept["held"]) > 0
    assert inactive_swept["dry"]["io"]["dynamodb.Scan"] == 0


def test_a_dry_run_changes_nothing(inactive_swept):
    assert inactive_swept["after_dry_run"] == inactive_swept["before"]


def test_a_sweep_anonymises_exactly_the_contacts_past_the_policy_and_not_on_hold(
        inactive_swept):
    sweep, after, want = inactive_swept["sweep"], inactive_swept["after"], inactive_swept["want"]
    assert sweep["status"] == "completed", sweep
    mine = {k for k, v in after.items()
            if v.get("_oblio_anonymised") == f"sweep:{sweep['sweep_id']}"}
    assert mine == want  # none newer, none on hold
    for k in want:
        assert "email" not in after[k] and "phone" not in after[k]


def test_a_sweep_leaves_every_other_contact_as_it_was(inactive_swept):
    after, before = inactive_swept["after"], inactive_swept["before"]
    for k in set(after) - inactive_swept["want"]:
        assert after[k] == before[k]


def test_a_sweep_counts_what_it_anonymised_without_a_scan(inactive_swept):
    sweep = inactive_swept["sweep"]
    counts = sweep["tables"]["contacts"]
    assert counts["anonymised"] == len(inactive_swept["want"]) and counts["items_remaining"] == 0
    assert sweep["io"]["dynamodb.Scan"] == 0


def test_the_sweeps_report_in_s3_and_its_audit_entry_agree_and_hold_no_address(
        inactive_swept):
    sweep, doc, entry = inactive_swept["sweep"], inactive_swept["doc"], inactive_swept["entry"]
    assert doc["tables"] == sweep["tables"] and doc["status"] == "completed"
    assert entry["action"] == "retention_sweep_completed"
    assert entry["details"]["tables"] == sweep["tables"]
    assert "@" not in json.dumps(doc) and "@" not in json.dumps(entry)


def test_a_sweep_is_announced_with_its_counts(inactive_swept):
    done = inactive_swept["events"]
    assert done and done[0]["detail"]["counts"]["anonymised"] == len(inactive_swept["want"])


def test_trash_purge_deletes_tickets_30_days_after_soft_delete_and_a_second_run_waits(
        api, aws_client, stack, generated, faults):
    before = live(aws_client, "demo-tickets", "ticket_id")
    dry = api.post("/v1/retention-policies/ticket-trash/run", {"dry_run": True}).json()
    cutoff = dry["cutoff"]
    trashed = {t["ticket_id"]: t for t in generated["tickets"] if "deleted_at" in t}
    want = {k for k, t in trashed.items()
            if t["deleted_at"] < cutoff and not t["legal_hold"] and k in before}
    assert want and dry["tables"]["tickets"]["would_delete"] == len(want)

    faults.inject(Fault("sweep_find", delay=3.0))  # keep the first sweep busy a moment
    first = api.post("/v1/retention-policies/ticket-trash/run", {"confirm": True})
    assert first.status_code == 202, first.text
    second = api.post("/v1/retention-policies/ticket-trash/run", {"confirm": True})
    assert second.status_code == 409, second.text
    err = second.json()["error"]
    assert err["code"] == "sweep_running"
    assert err["details"]["sweep_id"] == first.json()["sweep_id"]
    sweep = finished(api, first.json()["sweep_id"])
    assert sweep["status"] == "completed"
    after = live(aws_client, "demo-tickets", "ticket_id")
    assert set(before) - set(after) == want  # those, and nothing else
    assert sweep["tables"]["tickets"]["deleted"] == len(want)
    assert sweep["tables"]["tickets"]["on_hold"] == sum(
        1 for k, t in trashed.items() if t["deleted_at"] < cutoff and t["legal_hold"]
        and k in before)
    # reads never return an expired ticket: none left, but the search agrees anyway
    assert not [t for t in after.values() if t.get("purge_at") and
                t["purge_at"] < time.time()]


def test_a_failed_sweep_is_resumed_by_the_next_run(api, aws_client, faults, stack_settings):
    stack_settings(retention_chunk_size=20)
    dry = api.post("/v1/retention-policies/old-email-events/run", {"dry_run": True}).json()
    want = dry["tables"]["email_events"]["would_delete"]
    assert want > 40  # several chunks
    before = len(live(aws_client, "demo-email-events", "event_id"))
    faults.inject(Fault("sweep_chunk", error="Boom", message="chunk failed"))
    r = api.post("/v1/retention-policies/old-email-events/run", {"confirm": True})
    failed = finished(api, r.json()["sweep_id"])
    faults.clear()
    # the Map fails (AWS), or goes on without the chunk and the report refuses (moto)
    assert failed["status"] == "failed" and failed["error"]
    assert failed["chunks_done"] == failed["chunks"] - 1  # the others' work is kept
    again = api.post("/v1/retention-policies/old-email-events/run", {"confirm": True})
    assert again.status_code == 202
    assert again.json()["sweep_id"] == failed["sweep_id"] and again.json()["resumed"]
    done = finished(api, failed["sweep_id"])
    assert done["status"] == "completed" and done["attempt"] == 2
    assert done["chunks_done"] == done["chunks"]
    assert done["tables"]["email_events"]["deleted"] == want
    assert before - len(live(aws_client, "demo-email-events", "event_id")) == want


def test_the_cli_dry_runs_the_tenants_policies(stack, capsys):
    from infra import cli

    info = stack.info
    assert cli.main(["sweep", "--tenant", "demo", "--dry-run", "--policy", "ticket-trash",
                     "--api-url", info["api_url"],
                     "--api-key", info["tenants"]["demo"]["api_key"]]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["policy"] == "ticket-trash" and out["dry_run"] is True
    assert out["tables"]["tickets"]["would_delete"] == 0  # purged by the test above
