"""Retention policies and sweeps in-process: validation names the field, candidates come from
the sweep index (no Scan) or the declared Scan fallback, the action goes through the engine,
items on hold are skipped and counted, a second sweep is refused, a failed sweep resumes
without doing anything twice, and expired (TTL) items are never read."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from oblio.core.errors import Conflict, Invalid


@pytest.fixture
def world(aws, monkeypatch):
    """A tenant, the work/exports buckets, the bus and the sweep's state machine."""
    from infra.local import provision
    from oblio.control import tenants
    from oblio.core.settings import get_settings
    from oblio.store import aws as oblio_aws

    s = get_settings()
    s3 = oblio_aws.client("s3")
    for b in ("work", "exports"):
        s3.create_bucket(Bucket=s.bucket(b),
                         CreateBucketConfiguration={"LocationConstraint": s.region})
    oblio_aws.client("events").create_event_bus(Name=s.event_bus)
    role = oblio_aws.client("iam").create_role(
        RoleName="r", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    oblio_aws.client("stepfunctions").create_state_machine(
        name=s.state_machine_arn("retention_sweep").rsplit(":", 1)[1],
        definition=provision.definition(s, "retention_sweep"), roleArn=role)
    tenants.create_tenant("acme", "Acme")
    monkeypatch.setattr(s, "retention_chunk_size", 5)
    return "acme"


def _iso(days_ago: int) -> str:
    from oblio.core import clock

    return clock.iso(clock.now() - timedelta(days=days_ago))


def _contacts(tenant: str, ages: list[tuple[int, bool]]) -> list[dict[str, Any]]:
    from oblio.store import tables as store

    items = []
    for i, (days, hold) in enumerate(ages):
        at = _iso(days)
        items.append({"tenant_id": tenant, "contact_id": f"c{i:03d}", "email": f"p{i}@x.org",
                      "first_name": "Ann", "last_name": "Lee", "last_activity_at": at,
                      "sweep_bucket": f"{tenant}#{at[:7]}", "legal_hold": hold})
    store.batch_put("demo-contacts", items)
    return items


def _sweep_all(tenant: str, policy: str) -> dict[str, Any]:
    """What the state machine does: start, find until done, every chunk, report."""
    from oblio.jobs import retention

    started = retention.start(tenant, policy, trigger="test")
    sid = started["sweep_id"]
    out = {"done": False}
    while not out["done"]:
        out = retention.find_candidates(tenant, sid)
    work = f"work/{tenant}/sweeps/{sid}/chunks/"
    for n in range(out["chunks"]):
        retention.apply_chunk(tenant, sid, f"{work}{n:06d}.json")
    retention.report(tenant, sid)
    return retention.sweep_json(retention.load_sweep(tenant, sid))


# -- durations and validation ------------------------------------------------------------------

@pytest.mark.parametrize("text,months,days", [("P18M", 18, 0), ("P30D", 0, 30), ("P2Y", 24, 0),
                                               ("P1Y6M", 18, 0), ("P2W", 0, 14)])
def test_iso_durations_parse(text, months, days):
    from oblio.jobs import retention

    m, rest = retention.parse_duration(text)
    assert (m, rest.days) == (months, days)


def test_a_fixed_date_is_a_cutoff_too():
    from oblio.core import clock
    from oblio.jobs import retention

    assert clock.iso(retention.cutoff_of("2025-01-01")) == "2025-01-01T00:00:00.000Z"
    for bad in ("2025-13-01", "2025-02-30", "01/01/2025"):
        with pytest.raises(ValueError):
            retention.cutoff_of(bad)


@pytest.mark.parametrize("text", ["18 months", "P", "PT", "P0D", "P1.5Y", "", None, 30, "p1y"])
def test_bad_durations_are_refused(text):
    from oblio.jobs import retention

    with pytest.raises(ValueError):
        retention.parse_duration(text)


GOOD = {"table": "contacts", "date_attribute": "last_activity_at", "older_than": "P18M",
        "action": "anonymise"}


@pytest.mark.parametrize("change,field,code", [
    ({"table": "orders"}, "table", "unmapped_table"),
    ({"date_attribute": "last_login"}, "date_attribute", "unmapped_attribute"),
    ({"older_than": "18 months"}, "older_than", "invalid_duration"),
    ({"action": "shred"}, "action", "invalid_action"),
    ({"table": "subscriptions", "date_attribute": "subscribed_at"}, "date_attribute",
     "not_sweepable"),
    ({"filter": {"colour": "red"}}, "filter", "unmapped_attribute"),
    ({"hold_attribute": "frozen"}, "hold_attribute", "unmapped_attribute"),
    ({"enabled": "yes"}, "enabled", "invalid_field"),
    ({"schedule": "daily"}, "body", "invalid_field"),  # an unknown name is not repeated
])
def test_a_bad_policy_is_refused_naming_the_field(demo_map, change, field, code):
    from oblio.jobs import retention

    body = {**GOOD, **change}
    with pytest.raises(Invalid) as err:
        retention.validate(demo_map, {k: v for k, v in body.items() if v is not None})
    assert (err.value.field, err.value.code) == (field, code)


def test_anonymise_on_a_table_without_anonymise_rules_is_refused(demo_map):
    """email_sends has a sweep (the Scan fallback); documents' items are deleted, never
    anonymised: a policy that would anonymise them is refused on `action`."""
    import copy

    from oblio.core import datamap
    from oblio.jobs import retention

    data = json.loads(demo_map.to_json())
    data["tables"]["documents"]["sweep"] = {"date_attribute": "uploaded_at", "scan_segments": 2}
    dm = datamap.parse(copy.deepcopy(data))
    with pytest.raises(Invalid) as err:
        retention.validate(dm, {"table": "documents", "older_than": "P10Y",
                                "action": "anonymise"})
    assert err.value.field == "action" and err.value.code == "action_not_allowed"
    ok = retention.validate(dm, {"table": "documents", "older_than": "P10Y",
                                 "action": "export_then_delete"})
    assert ok["finder"] == "scan" and ok["hold_attribute"] is None


def test_the_demo_policies_validate_and_use_the_sweep_index(demo_map):
    from oblio.jobs import retention

    for body in retention.DEMO_POLICIES.values():
        assert retention.validate(demo_map, body)["finder"] == "index"


def test_the_data_map_refuses_a_sweep_without_index_or_fallback(demo_map):
    from oblio.core import datamap
    from oblio.core.errors import DataMapError

    data = json.loads(demo_map.to_json())
    data["tables"]["documents"]["sweep"] = {"date_attribute": "uploaded_at"}
    data["tables"]["tickets"]["ttl_attribute"] = "purge_date"
    with pytest.raises(DataMapError) as err:
        datamap.parse(data)
    text = " ".join(err.value.problems)
    assert "table 'documents': sweep needs an 'index'" in text
    assert "ttl_attribute 'purge_date' is not an attribute" in text


# -- sweeps ------------------------------------------------------------------------------------

def test_sweep_anonymises_exactly_the_inactive_contacts_not_on_hold_without_scan(world):
    from oblio.control import audit
    from oblio.jobs import retention
    from oblio.store import tables as store
    from oblio.store.models import AuditModel

    ages = [(30, False), (400, False), (600, False), (601, True), (900, False), (1200, False),
            (1300, True), (1400, False), (700, False), (560, False), (100, False),
            (800, False), (1000, False), (540, False)]
    items = _contacts(world, ages)
    retention.put_policy(world, "inactive", {**GOOD}, actor="t")
    cutoff = retention.cutoff_of("P18M")
    old = [i for i in items if i["last_activity_at"] < retention.clock.iso(cutoff)]
    want = {i["contact_id"] for i in old if not i["legal_hold"]}
    dry = retention.dry_run(world, "inactive")
    assert dry["tables"]["contacts"]["would_anonymise"] == len(want)
    assert dry["tables"]["contacts"]["on_hold"] == 2
    assert dry["io"]["dynamodb.Scan"] == 0
    # the dry run changed nothing
    assert all("_oblio_anonymised" not in i for i in store.batch_get(
        "demo-contacts", [{"tenant_id": world, "contact_id": c} for c in want]))

    done = _sweep_all(world, "inactive")
    assert done["status"] == "completed"
    counts = done["tables"]["contacts"]
    assert counts["anonymised"] == len(want) and counts["on_hold"] == 2
    assert counts["items_remaining"] == 0 and done["io"]["dynamodb.Scan"] == 0
    assert done["chunks"] >= 2  # chunk size 5 in this test
    after = {i["contact_id"]: i for i in store.batch_get(
        "demo-contacts", [{"tenant_id": world, "contact_id": i["contact_id"]} for i in items])}
    changed = {c for c, i in after.items() if "_oblio_anonymised" in i}
    assert changed == want
    for c in want:
        assert "email" not in after[c] and after[c]["first_name"].startswith("F_")
        assert "sweep_bucket" not in after[c]  # it has left the sweep index
    entry = AuditModel.get(world, done["audit_entry"])
    assert audit.to_json(entry)["details"]["tables"]["contacts"]["anonymised"] == len(want)
    # a second sweep finds nothing left to do
    again = _sweep_all(world, "inactive")
    assert again["tables"]["contacts"]["anonymised"] == 0


def test_a_second_sweep_of_the_same_policy_is_refused_while_one_runs(world):
    from oblio.jobs import retention

    _contacts(world, [(900, False)])
    retention.put_policy(world, "inactive", {**GOOD}, actor="t")
    first = retention.start(world, "inactive", trigger="test")
    with pytest.raises(Conflict) as err:
        retention.start(world, "inactive", trigger="test")
    assert err.value.code == "sweep_running"
    assert err.value.details["sweep_id"] == first["sweep_id"]


def test_a_failed_sweep_resumes_and_does_nothing_twice(world):
    from oblio.control import metering
    from oblio.core.boundary import SweepEvent
    from oblio.jobs import retention

    items = _contacts(world, [(600 + 10 * i, False) for i in range(12)])
    retention.put_policy(world, "inactive", {**GOOD}, actor="t")
    with metering.invocation(kind="api"):  # POST .../run starts it
        sid = retention.start(world, "inactive", trigger="test")["sweep_id"]
    out = retention.find_candidates(world, sid)
    assert out["done"] and out["chunks"] >= 2
    work = f"work/{world}/sweeps/{sid}/chunks/"
    first = retention.apply_chunk(world, sid, f"{work}000000.json")
    with metering.invocation(metering.target_of(SweepEvent(tenant_id=world, sweep_id=sid))):
        retention.fail(world, sid, {"Error": "Boom", "Cause": "a chunk failed"})
    assert retention.load_sweep(world, sid).status == "failed"
    # the failure step was the failed attempt's last: its io is complete
    assert retention.sweep_json(retention.load_sweep(world, sid))["io"]["complete"] is True

    with metering.invocation(kind="api"):
        resumed = retention.start(world, "inactive", trigger="test")
    assert resumed == {"sweep_id": sid, "policy_id": "inactive", "status": "running",
                       "resumed": True}
    # and no longer, once resumed: not until the new attempt's report has counted itself
    assert retention.sweep_json(retention.load_sweep(world, sid))["io"]["complete"] is False
    assert retention.find_candidates(world, sid)["chunks"] == out["chunks"]  # not found again
    assert retention.apply_chunk(world, sid, f"{work}000000.json")["skipped"] is True
    for n in range(1, out["chunks"]):
        retention.apply_chunk(world, sid, f"{work}{n:06d}.json")
    with metering.invocation(metering.target_of(SweepEvent(tenant_id=world, sweep_id=sid))):
        retention.report(world, sid)
    done = retention.sweep_json(retention.load_sweep(world, sid))
    counts = done["tables"]["contacts"]
    assert done["status"] == "completed" and done["attempt"] == 2
    assert done["io"]["complete"] is True  # the new attempt's start and end both counted
    assert counts["anonymised"] == len(items) and counts["candidates"] == len(items)
    assert counts["kept"] == 0 and first["anonymised"] > 0


def test_a_sweep_report_names_the_chunks_that_did_not_finish(world):
    """The Map may report success (an emulator, a tolerated failure) for a chunk that
    failed: the report checks the index and refuses to call the sweep done, naming it."""
    from oblio.jobs import retention

    _contacts(world, [(600 + 10 * i, False) for i in range(12)])
    retention.put_policy(world, "inactive", {**GOOD}, actor="t")
    sid = retention.start(world, "inactive", trigger="test")["sweep_id"]
    out = retention.find_candidates(world, sid)
    assert out["chunks"] >= 2
    work = f"work/{world}/sweeps/{sid}/chunks/"
    retention.apply_chunk(world, sid, f"{work}000000.json")  # chunk 000001 never ran
    with pytest.raises(retention.SweepIncomplete) as left:
        retention.report(world, sid)
    assert "000001" in left.value.message and "000000" not in left.value.message
    assert retention.not_done(retention.load_sweep(world, sid))[0] == "000001"


def test_trash_purge_deletes_only_tickets_past_their_purge_date_and_reads_skip_expired(
        world, demo_map):
    from oblio.core import clock
    from oblio.jobs import retention
    from oblio.pipeline import find
    from oblio.store import tables as store

    def ticket(i: int, deleted_days: int | None, hold: bool = False) -> dict[str, Any]:
        item: dict[str, Any] = {"tenant_id": world, "ticket_id": f"t{i}", "contact_id": "c1",
                                "status": "closed"}
        if deleted_days is not None:
            at = clock.now() - timedelta(days=deleted_days)
            item.update(deleted_at=clock.iso(at), sweep_bucket=f"{world}#{clock.iso(at)[:7]}",
                        legal_hold=hold)
            if not hold:  # a hold suspends the TTL (DynamoDB would delete the item)
                item["purge_at"] = int((at + timedelta(days=30)).timestamp())
        return item

    tickets = [ticket(0, None), ticket(1, 5), ticket(2, 31), ticket(3, 45), ticket(4, 90, True),
               ticket(5, 200)]
    store.batch_put("demo-tickets", tickets)
    store.batch_put("demo-contacts", [{"tenant_id": world, "contact_id": "c1",
                                       "email": "c1@x.org"}])
    fp = find.walk(demo_map, world, {"email": "c1@x.org"})
    # expired items (past purge_at) are never read, though DynamoDB has not deleted them yet
    assert sorted(i["ticket_id"] for i in fp.items["tickets"]) == ["t0", "t1", "t4"]
    retention.put_policy(world, "trash", retention.DEMO_POLICIES["ticket-trash"], actor="t")
    done = _sweep_all(world, "trash")
    counts = done["tables"]["tickets"]
    assert (counts["deleted"], counts["on_hold"], counts["expired"]) == (3, 1, 3)
    left = {i["ticket_id"] for i in store.batch_get(
        "demo-tickets", [{"tenant_id": world, "ticket_id": f"t{i}"} for i in range(6)])}
    assert left == {"t0", "t1", "t4"}


def test_the_scan_fallback_is_declared_measured_and_finds_the_same(world):
    from oblio.jobs import retention
    from oblio.store import tables as store

    store.batch_put("demo-email-sends", [
        {"tenant_id": world, "send_id": f"s{i}", "sent_at": _iso(100 * i)} for i in range(10)]
        + [{"tenant_id": "other", "send_id": "x", "sent_at": _iso(2000)}])
    retention.put_policy(world, "sends", {"table": "email_sends", "older_than": "P24M",
                                          "action": "export_then_delete"}, actor="t")
    dry = retention.dry_run(world, "sends")
    assert dry["finder"] == "scan" and dry["io"]["dynamodb.Scan"] >= 4
    assert dry["tables"]["email_sends"]["would_export_then_delete"] == 2  # 800, 900 days
    done = _sweep_all(world, "sends")
    counts = done["tables"]["email_sends"]
    assert (counts["exported"], counts["deleted"]) == (2, 2)


def test_the_schedule_and_the_sweep_workflow_are_in_the_catalogue():
    from infra.catalogue import CATALOGUE
    from infra.local.provision import STATEMACHINES

    rule = next(r for r in CATALOGUE.rules if r.name == "retention-nightly")
    assert rule.schedule and rule.schedule.startswith("cron(")
    assert rule.target == ("function", "sweep_schedule")
    sm = CATALOGUE.state_machine("retention_sweep")
    asl = json.loads((STATEMACHINES / sm.definition).read_text())

    def tasks(states: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for st in states.values():
            if st["Type"] == "Task":
                out.append(st)
            if st["Type"] == "Map":
                out += tasks(st["ItemProcessor"]["States"])
        return out

    assert len(tasks(asl["States"])) == 4  # find, apply a chunk, report, record a failure
    for task in tasks(asl["States"]):
        assert task.get("Retry") and task.get("Catch"), task["Resource"]
    contacts = CATALOGUE.table("demo-contacts")
    assert any(i.name == "by_sweep" and i.partition.name == "sweep_bucket"
               for i in contacts.indexes)
    assert CATALOGUE.table("demo-tickets").ttl_attribute == "purge_at"


def test_a_policy_over_whole_subjects_anonymises_everything_of_each_subject(world):
    from oblio.jobs import retention
    from oblio.store import tables as store

    _contacts(world, [(900, False), (30, False)])  # p0 inactive, p1 active
    store.batch_put("demo-tickets", [
        {"tenant_id": world, "ticket_id": f"t{i}", "contact_id": f"c{i:03d}",
         "description": "my order", "status": "closed"} for i in range(2)])
    store.batch_put("demo-subscriptions", [
        {"tenant_id": world, "subscription_id": f"s{i}", "email": f"p{i}@x.org"}
        for i in range(2)])
    with pytest.raises(Invalid) as err:
        retention.put_policy(world, "subjects", {**GOOD, "scope": "subjects",
                                                 "action": "export_only"}, actor="t")
    assert err.value.field == "action"
    retention.put_policy(world, "subjects", {**GOOD, "scope": "subjects"}, actor="t")
    done = _sweep_all(world, "subjects")
    counts = done["tables"]["contacts"]
    assert done["status"] == "completed" and counts["subjects"] == 1
    assert counts["items_remaining"] == 0 and counts["deleted"] == 1  # the subscription
    t0, t1 = store.batch_get("demo-tickets", [{"tenant_id": world, "ticket_id": f"t{i}"}
                                              for i in range(2)])
    got = {t["ticket_id"]: t for t in (t0, t1)}
    assert "description" not in got["t0"] and got["t0"]["_oblio_anonymised"].startswith("sweep:")
    assert got["t1"]["description"] == "my order"
    subs = store.batch_get("demo-subscriptions", [{"tenant_id": world, "subscription_id": s}
                                                  for s in ("s0", "s1")])
    assert [s["subscription_id"] for s in subs] == ["s1"]


def test_find_stops_after_its_budget_and_goes_on_where_it_stopped(world, monkeypatch):
    from oblio.jobs import retention

    items = _contacts(world, [(560 + 40 * i, False) for i in range(23)])
    monkeypatch.setattr(retention, "FIND_MAX_CHUNKS", 1)
    retention.put_policy(world, "inactive", {**GOOD}, actor="t")
    sid = retention.start(world, "inactive", trigger="test")["sweep_id"]
    calls = []
    while not calls or not calls[-1]["done"]:
        calls.append(retention.find_candidates(world, sid))
    assert len(calls) >= 3 and calls[0] == {"done": False, "chunks": 1}
    m = retention.load_sweep(world, sid)
    assert int(m.counts["candidates"]) == len(items)  # each read once, over several calls


def test_the_nightly_schedule_counts_open_requests_past_their_due_date(world, capsys):
    from oblio.core import clock
    from oblio.jobs import retention
    from oblio.store.models import RequestModel

    def request(n: int, status: str, due_days: int) -> None:
        RequestModel(tenant_id=world, sk=f"req#R{n}", request_id=f"R{n}", type="erasure",
                     status=status, due_at=_iso(-due_days), created_at=clock.iso()).save()

    request(1, "running", -3)       # open, three days late: counted
    request(2, "completed", -3)     # late but finished: not counted
    request(3, "queued", 10)        # open, due in ten days: not counted
    request(4, "failed", -1)        # failed is not ended: a DPO must act, counted

    out = retention.run_scheduled()

    assert out["overdue_requests"] == 2
    metrics = [json.loads(line) for line in capsys.readouterr().out.splitlines()
               if '"OverdueRequests"' in line]
    assert [m["OverdueRequests"] for m in metrics] == [[2.0]]


def test_a_scheduled_sweeps_start_is_counted_to_it_and_the_shared_pass_said_left_out(world):
    """The nightly schedule starts every tenant's sweeps in one invocation: each start's calls
    (its record, the policy's lock, StartExecution, the audit entry) are counted to the
    sweep it starts, with the time it took and no invocation of its own (one serves all);
    the pass no one sweep caused (listing tenants, policies, overdue requests) is named as
    left out. Before, a scheduled sweep counted none of its start and said nothing of it."""
    from oblio.jobs import retention
    from oblio.store.models import RetentionSweepModel, plain

    retention.put_policy(world, "inactive", {**GOOD}, actor="t")
    retention.put_policy(world, "trash", retention.DEMO_POLICIES["ticket-trash"], actor="t")
    assert retention.run_scheduled()["started"] == 2
    runs = list(RetentionSweepModel.query(world, RetentionSweepModel.sk.startswith("run#")))
    assert len(runs) == 2
    for m in runs:
        meter = {k: float(v) for k, v in (plain(m.meter) or {}).items()}
        assert meter["oblio:stepfunctions.StartExecution"] == 1
        assert meter["oblio:dynamodb.TransactWriteItems"] >= 1  # the audit entry
        assert meter["lambda:ms"] >= 1 and meter["lambda:invocations"] == 0
        assert "oblio:dynamodb.Scan" not in meter  # the tenants' listing: the shared pass
        got = retention.sweep_json(m)["io"]
        assert got["lambda"]["invocations"] == 0
        assert any("nightly schedule" in line for line in got["not_counted"])


def test_a_policy_over_whole_subjects_applies_roles_and_legal_holds(world, monkeypatch):
    """A subjects-scope sweep treats each subject as her erasure would: a review she only
    wrote about a colleague loses what names her and keeps the rest; a review on legal hold
    stays, counted `held`; what is about her goes."""
    import copy

    import yaml

    from oblio.core import datamap
    from oblio.core.settings import DEMO_DATAMAP
    from oblio.jobs import retention
    from oblio.store import aws as oblio_aws
    from oblio.store import tables as store

    raw = yaml.safe_load(DEMO_DATAMAP.read_text())
    raw.update(version=2)
    raw.pop("register")
    raw["tables"] = {"contacts": raw["tables"]["contacts"], "reviews": {
        "table": "sweep-reviews", "key": {"partition": "tenant_id", "sort": "review_id"},
        "find": [{"from": "contacts.contact_id", "index": "by_subject_id",
                  "attribute": "subject_id"},
                 {"from": "contacts.contact_id", "index": "by_author_id",
                  "attribute": "author_id", "role": "author"}],
        "legal_hold": {"attribute": "on_hold", "reason": "litigation"},
        "roles": {"author": {"attributes": {"author_id": {"anonymise": "null"},
                                            "author_name": {"anonymise": "null"}}}},
        "attributes": {
            "review_id": {"category": "technical", "anonymise": "keep"},
            "subject_id": {"category": "technical", "anonymise": "keep"},
            "author_id": {"category": "technical", "anonymise": "keep"},
            "author_name": {"category": "identity", "anonymise": "keep"},
            "on_hold": {"category": "non_personal"},
            "comments": {"category": "content", "anonymise": "null"}}}}
    dm = datamap.parse(copy.deepcopy(raw))
    monkeypatch.setattr(datamap, "current", lambda: dm)
    oblio_aws.client("dynamodb").create_table(
        TableName="sweep-reviews", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "tenant_id", "KeyType": "HASH"},
                   {"AttributeName": "review_id", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in
                              ("tenant_id", "review_id", "subject_id", "author_id")],
        GlobalSecondaryIndexes=[
            {"IndexName": f"by_{a}", "Projection": {"ProjectionType": "ALL"},
             "KeySchema": [{"AttributeName": "tenant_id", "KeyType": "HASH"},
                           {"AttributeName": a, "KeyType": "RANGE"}]}
            for a in ("subject_id", "author_id")])
    _contacts(world, [(900, False), (30, False)])  # c000 inactive, c001 active
    store.batch_put("sweep-reviews", [
        {"tenant_id": world, "review_id": "wrote", "subject_id": "c001", "author_id": "c000",
         "author_name": "Ann Lee", "comments": "reliable"},
        {"tenant_id": world, "review_id": "about", "subject_id": "c000", "author_id": "c001",
         "author_name": "Bo", "comments": "late"},
        {"tenant_id": world, "review_id": "held", "subject_id": "c000", "author_id": "c001",
         "author_name": "Bo", "comments": "disputed", "on_hold": True}])
    retention.put_policy(world, "leavers", {**GOOD, "scope": "subjects", "action": "delete"},
                         actor="t")
    counts = _sweep_all(world, "leavers")["tables"]["contacts"]

    left = {i["review_id"]: i for i in store.batch_get("sweep-reviews", [
        {"tenant_id": world, "review_id": r} for r in ("wrote", "about", "held")])}
    assert set(left) == {"wrote", "held"}
    assert "author_id" not in left["wrote"] and "author_name" not in left["wrote"]
    assert left["wrote"]["comments"] == "reliable" and left["wrote"]["subject_id"] == "c001"
    assert left["held"]["comments"] == "disputed"
    assert counts["subjects"] == 1 and counts["held"] == 1 and counts["items_remaining"] == 0


# -- runs: a task of the run that failed, and a start that failed --------------------------------

def _metered(world: str, sid: str) -> Any:
    from oblio.control import metering
    from oblio.core.boundary import SweepEvent

    return metering.invocation(metering.target_of(SweepEvent(tenant_id=world, sweep_id=sid)))


def test_a_task_of_the_failed_run_does_nothing_to_the_resumed_sweep(world):
    """Step Functions runs a task again after a timeout: attempt 1's failure step, run again
    after the sweep was resumed (attempt 2), must not mark the new run failed, release its
    lock or say its `io` complete; nor may attempt 1's find, chunk or report write to it.
    Before, these tasks carried no attempt and acted on whatever run the sweep was on."""
    from oblio.control import metering
    from oblio.jobs import retention
    from oblio.store.models import RetentionSweepModel, plain

    _contacts(world, [(600 + 10 * i, False) for i in range(12)])
    retention.put_policy(world, "inactive", {**GOOD}, actor="t")
    with metering.invocation(kind="api"):
        sid = retention.start(world, "inactive", trigger="test")["sweep_id"]
    out = retention.find_candidates(world, sid, attempt=1)
    assert out["chunks"] >= 2
    work = f"work/{world}/sweeps/{sid}/chunks/"
    with _metered(world, sid):
        retention.fail(world, sid, {"Error": "Boom", "Cause": "x"}, attempt=1)
    with metering.invocation(kind="api"):
        assert retention.start(world, "inactive", trigger="test")["resumed"] is True

    def sweep() -> RetentionSweepModel:
        return retention.load_sweep(world, sid)

    before = sweep()
    with _metered(world, sid):  # attempt 1's failure step, run again
        assert retention.fail(world, sid, {"Error": "Late", "Cause": "y"}, attempt=1)[
            "stale"] is True
    with _metered(world, sid):
        assert retention.report(world, sid, attempt=1)["stale"] is True
    assert retention.find_candidates(world, sid, attempt=1)["stale"] is True
    assert retention.apply_chunk(world, sid, f"{work}000000.json", attempt=1)["stale"] is True
    now = sweep()
    assert (now.status, now.attempt, now.error) == ("running", 2, None)
    assert now.audit_entry is None and now.report_key is None
    assert plain(now.find_state) == plain(before.find_state)
    assert retention.sweep_json(now)["chunks_done"] == 0  # attempt 1's chunk recorded nothing
    assert "note:final:2" not in (plain(now.meter) or {})
    assert retention.sweep_json(now)["io"]["complete"] is False
    with pytest.raises(Conflict) as held:  # the new run's lock is still held
        retention.start(world, "inactive", trigger="test")
    assert held.value.details["sweep_id"] == sid

    # attempt 2 runs to its end as if nothing had happened
    out = retention.find_candidates(world, sid, attempt=2)
    for n in range(out["chunks"]):
        retention.apply_chunk(world, sid, f"{work}{n:06d}.json", attempt=2)
    with _metered(world, sid):
        assert retention.report(world, sid, attempt=2) == {"status": "completed"}
    done = retention.sweep_json(sweep())
    assert done["status"] == "completed" and done["io"]["complete"] is True
    assert done["tables"]["contacts"]["anonymised"] == 12


def test_a_write_of_a_task_is_refused_once_its_sweep_is_on_another_run(world):
    """The early check passed, then the sweep was resumed: the task's write is still
    conditioned on its run, and refused (nothing written)."""
    from oblio.jobs import chunks, retention
    from oblio.store.models import RetentionSweepModel

    retention.put_policy(world, "inactive", {**GOOD}, actor="t")
    sid = retention.start(world, "inactive", trigger="test")["sweep_id"]
    m = retention.load_sweep(world, sid)
    m.update(actions=[RetentionSweepModel.attempt.set(2)])
    assert chunks.write_on_run(m, [RetentionSweepModel.status.set("failed")], 1) is False
    assert retention.load_sweep(world, sid).status == "running"
    assert chunks.write_on_run(m, [RetentionSweepModel.chunks.set(3)], 2) is True


def test_a_sweep_whose_start_failed_is_failed_and_the_next_run_resumes_it(world, monkeypatch):
    """StartExecution refused (throttled, an outage): nothing runs, so the sweep is recorded
    failed at once, saying why, with its lock released and the policy's resume point set,
    and its `io` (this call's counts) complete; the next run resumes it. Before, it stayed
    `running` for good with nothing running."""
    from oblio.control import audit, metering
    from oblio.jobs import retention
    from oblio.store import workflows

    retention.put_policy(world, "inactive", {**GOOD}, actor="t")
    real = workflows.start

    def refused(*a: Any, **k: Any) -> str:
        raise RuntimeError("StartExecution throttled")

    monkeypatch.setattr(workflows, "start", refused)
    with pytest.raises(RuntimeError), metering.invocation(kind="api"):
        retention.start(world, "inactive", trigger="test")
    [m] = [r for r in map(retention.sweep_json, _runs(world))]
    assert m["status"] == "failed" and m["error"].startswith("start_failed: ")
    assert "RuntimeError" in m["error"] and m["io"]["complete"] is True
    assert m["io"]["lambda"]["invocations"] == 1  # the API call's own counts landed
    assert retention.load_policy(world, "inactive").resume_sweep == m["sweep_id"]
    failed = [e for e in map(audit.to_json, audit.entries(world)[0])
              if e["action"] == "retention_sweep_failed"]
    assert failed[0]["details"]["code"] == "start_failed"

    monkeypatch.setattr(workflows, "start", real)
    again = retention.start(world, "inactive", trigger="test")  # the lock was released
    assert again == {"sweep_id": m["sweep_id"], "policy_id": "inactive", "status": "running",
                     "resumed": True}
    assert retention.load_sweep(world, m["sweep_id"]).attempt == 2


def _runs(world: str) -> list[Any]:
    from oblio.store.models import RetentionSweepModel

    return list(RetentionSweepModel.query(world, RetentionSweepModel.sk.startswith("run#")))


def test_a_policy_whose_sweep_did_not_start_stops_no_other_in_the_nightly_pass(world,
                                                                               monkeypatch):
    from oblio.jobs import retention
    from oblio.store import workflows

    retention.put_policy(world, "inactive", {**GOOD}, actor="t")
    retention.put_policy(world, "trash", retention.DEMO_POLICIES["ticket-trash"], actor="t")
    real = workflows.start
    calls: list[str] = []

    def first_refused(sm: str, name: str, payload: dict[str, Any]) -> str:
        calls.append(name)
        if len(calls) == 1:
            raise RuntimeError("throttled")
        return real(sm, name, payload)

    monkeypatch.setattr(workflows, "start", first_refused)
    out = retention.run_scheduled()
    assert (out["started"], out["failed"], out["skipped"]) == (1, 1, 0)
    assert sorted(m.status for m in _runs(world)) == ["failed", "running"]



def test_a_report_killed_after_the_sweeps_end_was_written_releases_the_lock_when_run_again(
        world, monkeypatch):
    """The sweep's end is written before its work files go (never under a run resumed
    meanwhile); a report that dies between the two leaves its rerun to finish them: the
    lock released, the work files gone."""
    from oblio.jobs import retention
    from oblio.store import objects

    sid, mended = _reported_until_its_end(world, monkeypatch)
    work = f"work/{world}/sweeps/{sid}/chunks/"
    assert retention.load_sweep(world, sid).status == "completed"
    with pytest.raises(Conflict):  # still locked
        retention.start(world, "inactive", trigger="test")
    mended()
    assert retention.report(world, sid, attempt=1) == {"status": "completed"}
    assert not objects.exists(f"{work}000000.json")
    assert retention.start(world, "inactive", trigger="test")["resumed"] is False


def test_a_start_whose_answer_was_lost_is_a_run_that_goes_on(world, monkeypatch):
    """StartExecution made the execution and its answer was lost (it raised): the sweep is
    the run AWS made, `running` with its lock, never recorded failed under a live run."""
    from oblio.jobs import retention
    from oblio.store import aws as oblio_aws

    retention.put_policy(world, "inactive", {**GOOD}, actor="t")
    sfn = oblio_aws.client("stepfunctions")
    real = sfn.start_execution

    def lost(**kw: Any) -> dict[str, Any]:
        real(**kw)
        raise RuntimeError("connection reset after the request was sent")

    monkeypatch.setattr(sfn, "start_execution", lost)
    out = retention.start(world, "inactive", trigger="test")
    m = retention.load_sweep(world, out["sweep_id"])
    assert (out["status"], m.status, m.error) == ("running", "running", None)
    with pytest.raises(Conflict):
        retention.start(world, "inactive", trigger="test")


def test_a_failure_after_the_report_wrote_the_end_still_releases_the_lock(world, monkeypatch):
    """Report wrote `completed`, then failed (not retried) before its work files went and the
    lock was released: the failure step it leads to does both, and leaves the status."""
    from oblio.jobs import retention

    sid, mended = _reported_until_its_end(world, monkeypatch)
    mended()
    retention.fail(world, sid, {"Error": "RuntimeError", "Cause": "AccessDenied"}, attempt=1)
    assert retention.load_sweep(world, sid).status == "completed"
    assert retention.start(world, "inactive", trigger="test")["resumed"] is False


def _one_chunk_done(world: str) -> str:
    """A sweep of run 1 of one candidate, found and its one chunk applied; returns its id."""
    from oblio.jobs import retention

    _contacts(world, [(900, False)])
    retention.put_policy(world, "inactive", {**GOOD}, actor="t")
    sid = retention.start(world, "inactive", trigger="test")["sweep_id"]
    assert retention.find_candidates(world, sid, attempt=1)["chunks"] == 1
    retention.apply_chunk(world, sid, f"work/{world}/sweeps/{sid}/chunks/000000.json",
                          attempt=1)
    return str(sid)


def _reported_until_its_end(world: str, monkeypatch: Any) -> tuple[str, Any]:
    """A sweep of one chunk whose report wrote `completed`, then raised before its work files
    went (a timeout, a denied delete); returns its id and what mends `Work.clear`."""
    from oblio.jobs import chunks, retention

    sid = _one_chunk_done(world)

    def broken(self: Any) -> None:
        raise RuntimeError("the invocation timed out")

    real = chunks.Work.clear
    monkeypatch.setattr(chunks.Work, "clear", broken)
    with pytest.raises(RuntimeError):
        retention.report(world, sid, attempt=1)
    return sid, lambda: monkeypatch.setattr(chunks.Work, "clear", real)


def _sweep_ends(world: str, sid: str) -> list[dict[str, Any]]:
    from oblio.control import audit

    return [e for e in map(audit.to_json, audit.entries(world, newest_first=False)[0])
            if e["action"] == "retention_sweep_completed"
            and (e.get("details") or {}).get("sweep_id") == sid]


def test_a_report_that_outlived_its_run_appends_no_entry_and_ends_nothing(world, monkeypatch):
    """The report passed its check of the run, then the sweep was resumed (its run is over):
    its `retention_sweep_completed` entry would stand in the tenant's audit chain for a run
    that did not write its end. The entry's append is guarded by the run, in its own
    transaction: nothing is appended, nothing written, the lock is the new run's."""
    from oblio.jobs import retention
    from oblio.store.models import RetentionSweepModel

    sid = _one_chunk_done(world)
    real = retention.totals

    def resumed_meanwhile(m: Any) -> Any:
        m.update(actions=[RetentionSweepModel.attempt.set(2)])  # after the check
        return real(m)

    monkeypatch.setattr(retention, "totals", resumed_meanwhile)
    with _metered(world, sid):
        assert retention.report(world, sid, attempt=1)["stale"] is True
    assert _sweep_ends(world, sid) == []
    now = retention.load_sweep(world, sid)
    assert (now.status, now.audit_entry, now.report_key) == ("running", None, None)
    with pytest.raises(Conflict):  # still locked: run 2 goes on
        retention.start(world, "inactive", trigger="test")


def test_a_resumed_sweep_audits_its_own_end(world, monkeypatch):
    """Run 1's report appended its entry, then failed before the end was written (its report
    could not be stored): run 2's report appends its own entry, with its own counts, rather
    than point at run 1's; each run's entry is appended once."""
    from oblio.jobs import retention

    sid = _one_chunk_done(world)
    chunk = f"work/{world}/sweeps/{sid}/chunks/000000.json"

    def denied(*a: Any, **k: Any) -> None:
        raise RuntimeError("AccessDenied")

    with monkeypatch.context() as m:
        m.setattr(retention.objects, "put_encrypted", denied)
        with pytest.raises(RuntimeError):
            retention.report(world, sid, attempt=1)
    first = retention.load_sweep(world, sid).audit_entry
    assert [e["id"] for e in _sweep_ends(world, sid)] == [first]
    retention.fail(world, sid, {"Error": "RuntimeError", "Cause": "AccessDenied"}, attempt=1)
    assert retention.start(world, "inactive", trigger="test")["resumed"] is True
    assert retention.load_sweep(world, sid).audit_entry is None
    # as a sweep resumed by an earlier release holds it: run 1's entry, no run named
    retention.load_sweep(world, sid).update(actions=[
        retention.RetentionSweepModel.audit_entry.set(first)])

    retention.find_candidates(world, sid, attempt=2)
    retention.apply_chunk(world, sid, chunk, attempt=2)
    assert retention.report(world, sid, attempt=2) == {"status": "completed"}
    assert retention.report(world, sid, attempt=2) == {"status": "completed"}  # again
    ends = _sweep_ends(world, sid)
    done = retention.load_sweep(world, sid)
    assert [e["id"] for e in ends] == [first, done.audit_entry] and first != done.audit_entry


def test_a_failure_step_that_died_after_its_status_finishes_on_its_rerun(world, monkeypatch):
    """The failure step wrote `failed`, then died before the policy's resume point and the
    lock (a timeout): Step Functions runs it again, which finishes both; the run's
    `retention_sweep_failed` entry stays one (appended first, keyed by the run)."""
    from oblio.control import audit
    from oblio.jobs import retention

    sid = _one_chunk_done(world)

    def dies(*a: Any, **k: Any) -> None:
        raise RuntimeError("the invocation timed out")

    with monkeypatch.context() as m:
        m.setattr(retention, "_unlock", dies)
        with pytest.raises(RuntimeError):
            retention.fail(world, sid, {"Error": "Boom", "Cause": "x"}, attempt=1)
    assert retention.load_sweep(world, sid).status == "failed"
    with pytest.raises(Conflict):  # the lock is still held
        retention.start(world, "inactive", trigger="test")
    assert retention.fail(world, sid, {"Error": "Boom", "Cause": "x"}, attempt=1) == {
        "status": "failed"}
    failed = [e for e in map(audit.to_json, audit.entries(world, newest_first=False)[0])
              if e["action"] == "retention_sweep_failed"]
    assert len(failed) == 1 and failed[0]["details"]["attempt"] == 1
    assert retention.start(world, "inactive", trigger="test")["resumed"] is True


def test_a_step_of_the_failed_run_leaves_the_resumed_runs_lock(world):
    """Run 1's failure step, run again by Step Functions, read the sweep before it was
    resumed, then releases what run 1 held: the resumed run's lock (the same sweep) stays,
    so a second sweep of the policy cannot start beside it."""
    from oblio.jobs import retention

    sid = _one_chunk_done(world)
    retention.fail(world, sid, {"Error": "Boom", "Cause": "x"}, attempt=1)
    before = retention.load_sweep(world, sid)  # read by the late step: failed, run 1
    assert retention.start(world, "inactive", trigger="test")["resumed"] is True
    retention._release(before, 1)
    with pytest.raises(Conflict) as held:
        retention.start(world, "inactive", trigger="test")
    assert held.value.details["sweep_id"] == sid
