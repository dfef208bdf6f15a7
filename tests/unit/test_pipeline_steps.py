"""The steps of the subject state machines in-process (plan, apply, verify, finish, fail), as
Step Functions calls them, against the in-process AWS: what is gone and what stays, that
another subject is untouched, that a retried step does nothing twice, and that the counts, the
certificate, the audit entry and the events say what happened. Every tenant is a test's own
(the module's AWS is shared); one erasure's outcome is read by several tests."""

from __future__ import annotations

from typing import Any

import pytest

from oblio.control import audit, records, suppression
from oblio.pipeline import apply, evidence, plan, verify
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")

FILES = "demo-files"


@pytest.fixture
def mario(demo_map, t) -> dict[str, Any]:
    seeded = world.seed(demo_map, t.tenant_id, "mario@example.com", "+393331234567", "CRM-1")
    return {"ids": {"email": "mario@example.com"}, **seeded}


def everything(demo_map, tenant_id: str) -> dict[str, list[dict[str, Any]]]:
    return {name: sorted(world.items(tm.table, tenant_id), key=repr)
            for name, tm in demo_map.tables.items()}


def of(all_items: dict[str, list[dict[str, Any]]], contact_ids: set[str],
       ticket_ids: set[str], emails: set[str]) -> dict[str, list[dict[str, Any]]]:
    """The items of one person: by its contact, its tickets or its e-mail."""
    def mine(i: dict[str, Any]) -> bool:
        return (i.get("contact_id") in contact_ids or i.get("ticket_id") in ticket_ids
                or i.get("email") in emails or i.get("recipient_email") in emails)

    return {n: [i for i in items if mine(i)] for n, items in all_items.items()}


def contact_id_of(demo_map, tenant_id: str, email: str) -> str:
    (c,) = [i for i in world.items("demo-contacts", tenant_id) if i.get("email") == email]
    return str(c["contact_id"])


def audit_of(tenant_id: str, request_id: str) -> list[dict[str, Any]]:
    """The tenant's audit entries about one request, oldest first."""
    rows, _ = audit.entries(tenant_id, newest_first=False)
    return [e for e in map(audit.to_json, rows) if e.get("request_id") == request_id]


# -- erasure: one run, shared by the tests that read its outcome -------------------------------

@pytest.fixture(scope="module")
def erased(provisioned, demo_map) -> dict[str, Any]:
    """Mario erased in a tenant where Luigi lives too; what both had before, and after."""
    t = world.new_tenant("steps-erased")
    world.events()
    mario = world.seed(demo_map, t.tenant_id, "mario@example.com", "+393331234567", "CRM-1")
    luigi = world.seed(demo_map, t.tenant_id, "luigi@example.com", "+393339876543", "CRM-2")
    ids = {name: contact_id_of(demo_map, t.tenant_id, f"{name}@example.com")
           for name in ("mario", "luigi")}
    tickets = {name: {i["ticket_id"] for i in world.items("demo-tickets", t.tenant_id)
                      if i["contact_id"] == cid} for name, cid in ids.items()}
    before = everything(demo_map, t.tenant_id)
    rid = world.new_request(t, "erasure", {"email": "mario@example.com"}, action="erase")
    done = world.run(rid, t.tenant_id, "erase")
    return {"t": t, "rid": rid, "done": done, "mario": mario, "luigi": luigi,
            "contact_ids": ids, "tickets": tickets, "before": before,
            "after": everything(demo_map, t.tenant_id),
            "events": [e for e in world.events() if e["detail"].get("request_id") == rid]}


def person(run: dict[str, Any], name: str, state: str) -> dict[str, list[dict[str, Any]]]:
    return of(run[state], {run["contact_ids"][name]}, run["tickets"][name],
              {f"{name}@example.com"})


def test_erasure_completes(erased):
    assert erased["done"]["status"] == "completed", erased["done"]


def test_erasure_deletes_every_item_of_the_subject_but_the_ticket_shells(erased):
    left = person(erased, "mario", "after")
    assert {n: len(v) for n, v in left.items() if v} == {
        "tickets": erased["mario"]["counts"]["tickets"]}


def test_erasure_keeps_ticket_shells_for_reporting(erased, demo_map):
    shells = person(erased, "mario", "after")["tickets"]
    assert len(shells) >= 2
    for shell in shells:
        assert {"status", "channel", "reason", "created_at", "sla_resolution_min"} <= set(shell)
        assert not {"subject", "description", "contact_id"} & set(shell)
        assert shell[demo_map.anonymised_marker] == erased["rid"]


def test_erasure_deletes_every_version_of_the_subjects_files(erased):
    assert len(erased["mario"]["files"]) == 3
    assert all(world.versions(FILES, k) == [] for k in erased["mario"]["files"])


def test_erasure_leaves_another_subject_exactly_as_it_was(erased):
    before, after = person(erased, "luigi", "before"), person(erased, "luigi", "after")
    assert after == before and sum(len(v) for v in after.values()) > 10
    assert all(len(world.versions(FILES, k)) == 2 for k in erased["luigi"]["files"])


def test_erasure_counts_every_table(erased):
    result, counts = erased["done"]["result"], erased["mario"]["counts"]
    tables = result["tables"]
    assert tables["contacts"]["deleted"] == 1
    assert tables["tickets"] == {**tables["tickets"], "matched": counts["tickets"],
                                 "anonymised": counts["tickets"], "deleted": 0}
    assert tables["ticket_messages"]["deleted"] == counts["ticket_messages"]
    assert tables["email_events"]["deleted"] == counts["email_events"]
    assert result["totals"]["files_deleted"] == 3
    assert result["totals"]["matched"] == sum(v for k, v in counts.items() if k != "files")
    assert result["found"] is True


def test_erasure_certifies_a_passed_verification_without_personal_data(erased):
    result, t = erased["done"]["result"], erased["t"]
    assert result["verification"]["passed"] is True
    assert result["verification"]["items_checked"] == result["totals"]["matched"]
    cert = result["certificate"]
    assert (cert["request_id"], cert["tenant_id"], cert["type"]) == (erased["rid"],
                                                                      t.tenant_id, "erasure")
    assert cert["tables"] == result["tables"] and cert["verification"]["passed"] is True
    assert cert["audit_entry"]["id"] == result["audit_entry"] and cert["audit_entry"]["hash"]
    assert "mario" not in repr(result).lower()


def test_a_finished_erasure_drops_the_identities_its_work_files_and_its_open_marker(erased):
    from oblio.core.settings import get_settings

    t, rid = erased["t"], erased["rid"]
    m = records.load(t.tenant_id, rid)
    assert m.identities_enc is None and m.identity_refs
    assert world.keys_under(get_settings().bucket("work"), f"work/{t.tenant_id}/{rid}/") == []
    # the subject may be named in a new erasure request: the open one has ended
    assert world.new_request(t, "erasure", {"email": "mario@example.com"},
                             action="erase") != rid


def test_an_erased_subject_is_suppressed_by_every_identity_found(erased):
    t = erased["t"]
    for kind, value in (("email", "mario@example.com"), ("phone", "+393331234567"),
                        ("external_id", "CRM-1")):
        found = suppression.lookup(t.tenant_id, {kind: t.keys.hmac(kind, value)})
        assert [e["reason"] for e in found] == ["erasure"], kind
    assert suppression.lookup(t.tenant_id, {"email": t.keys.hmac("email",
                                                                 "luigi@example.com")}) == []


def test_erasure_emits_subject_erased_and_request_completed_once_without_identity(erased):
    mine = erased["events"]
    assert sorted(e["detail-type"] for e in mine) == ["RequestCompleted", "SubjectErased"]
    ref = erased["t"].keys.subject_ref({"email": "mario@example.com"})
    assert all(e["detail"]["subject_ref"] == ref for e in mine)
    assert "mario" not in repr(mine) and "3331234567" not in repr(mine)


def test_erasure_is_written_once_to_the_audit_log(erased):
    t, rid = erased["t"], erased["rid"]
    assert [e["action"] for e in audit_of(t.tenant_id, rid)] == ["erasure_completed"]
    assert audit.verify(t.tenant_id)["valid"] is True


def test_an_unknown_subject_is_planned_with_no_unit_and_says_nothing_was_found(t):
    rid = world.new_request(t, "erasure", {"email": "nobody@example.com"}, action="erase")
    assert plan.plan(rid, t.tenant_id, "erase") == {"units": []}
    verify.verify(rid, t.tenant_id, "erase")
    evidence.finish(rid, t.tenant_id, "erase")
    done = records.to_json(records.load(t.tenant_id, rid))
    assert done["status"] == "completed"
    assert done["result"]["found"] is False and done["result"]["totals"]["matched"] == 0
    assert "no item" in done["result"]["message"]


# -- a retried step does nothing twice ---------------------------------------------------------

def test_a_retried_plan_reuses_the_plan_it_froze(demo_map, t, mario):
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    first = plan.plan(rid, t.tenant_id, "erase")
    frozen = records.plan_of(records.load(t.tenant_id, rid))
    # the subject subscribes again meanwhile: a retry must not plan again
    from oblio.store import tables as store

    store.batch_put("demo-subscriptions", [{"tenant_id": t.tenant_id, "subscription_id": "new",
                                            "email": "mario@example.com", "status": "active"}])
    again = plan.plan(rid, t.tenant_id, "erase")
    assert again == first
    m = records.load(t.tenant_id, rid)
    assert records.plan_of(m) == frozen
    assert [e["event"] for e in records.to_json(m)["timeline"]].count("planned") == 1


def test_a_retried_unit_is_skipped_and_its_counts_stay(t, mario):
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    units = plan.plan(rid, t.tenant_id, "erase")["units"]
    contacts = next(u for u in units if u["table"] == "contacts")
    first = apply.apply(rid, t.tenant_id, "erase", contacts)
    assert first["deleted"] == 1 and first["files_deleted"] == 1
    assert apply.apply(rid, t.tenant_id, "erase", contacts) == {
        "unit": f"{t.tenant_id}/contacts", "skipped": True}
    recorded = records.units_of(records.load(t.tenant_id, rid))[f"{t.tenant_id}/contacts"]
    assert (recorded["deleted"], recorded["files_deleted"]) == (1, 1)


def test_a_retried_finish_writes_no_second_audit_entry_or_event(erased):
    t, rid = erased["t"], erased["rid"]
    world.events()
    assert evidence.finish(rid, t.tenant_id, "erase") == {"status": "completed"}
    assert [e for e in world.events() if e["detail"].get("request_id") == rid] == []
    assert records.to_json(records.load(t.tenant_id, rid))["result"] == erased["done"]["result"]
    assert [e["action"] for e in audit_of(t.tenant_id, rid)] == ["erasure_completed"]


def test_a_retried_apply_of_an_anonymised_unit_counts_its_own_work_again(demo_map, t, mario):
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    units = plan.plan(rid, t.tenant_id, "erase")["units"]
    tickets = next(u for u in units if u["table"] == "tickets")
    first = apply.apply(rid, t.tenant_id, "erase", tickets)
    # the record of the unit is lost (the Lambda died before writing it): the unit runs again
    from oblio.store.models import RequestModel

    m = records.load(t.tenant_id, rid)
    m.update(actions=[RequestModel.units[f"{t.tenant_id}/tickets"].remove()])
    again = apply.apply(rid, t.tenant_id, "erase", tickets)
    assert again["anonymised"] == first["anonymised"] == mario["counts"]["tickets"]
    assert again["kept"] == 0


# -- verification ------------------------------------------------------------------------------

def test_verification_fails_and_names_the_unit_that_was_not_applied(t, mario):
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    units = plan.plan(rid, t.tenant_id, "erase")["units"]
    for u in units:
        if u["table"] != "email_events":
            apply.apply(rid, t.tenant_id, "erase", u)
    assert verify.verify(rid, t.tenant_id, "erase") == {"passed": False}
    evidence.finish(rid, t.tenant_id, "erase")
    done = records.to_json(records.load(t.tenant_id, rid))
    assert done["status"] == "completed_with_errors"
    v = done["result"]["verification"]
    assert v["passed"] is False
    assert v["remaining"] == {f"{t.tenant_id}/email_events": mario["counts"]["email_events"]}
    assert done["result"]["certificate"]["verification"]["passed"] is False


def test_verification_finds_a_file_version_left_behind(t, mario):
    from oblio.store import aws

    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    for u in plan.plan(rid, t.tenant_id, "erase")["units"]:
        apply.apply(rid, t.tenant_id, "erase", u)
    # someone uploads the document again after it was deleted
    document = next(k for k in mario["files"] if "/documents/" in k)
    aws.client("s3").put_object(Bucket=FILES, Key=document, Body=b"again")
    verify.verify(rid, t.tenant_id, "erase")
    outcome = records.units_of(records.load(t.tenant_id, rid))["_verification"]
    assert outcome["passed"] is False and outcome["files_remaining"] == 1


def test_verification_finds_an_item_of_the_subject_written_after_the_plan(demo_map, t, mario):
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    for u in plan.plan(rid, t.tenant_id, "erase")["units"]:
        apply.apply(rid, t.tenant_id, "erase", u)
    from oblio.store import tables as store

    store.batch_put("demo-subscriptions", [{"tenant_id": t.tenant_id, "subscription_id": "late",
                                            "email": "mario@example.com", "status": "active"}])
    verify.verify(rid, t.tenant_id, "erase")
    outcome = records.units_of(records.load(t.tenant_id, rid))["_verification"]
    assert outcome["remaining"] == {f"{t.tenant_id}/subscriptions": 1}


# -- anonymisation -----------------------------------------------------------------------------

def test_anonymisation_keeps_a_pseudonymous_profile_and_no_identifying_value(demo_map, t, mario):
    cid = contact_id_of(demo_map, t.tenant_id, "mario@example.com")
    rid = world.new_request(t, "anonymisation", mario["ids"], action="anonymise")
    done = world.run(rid, t.tenant_id, "anonymise")
    assert done["status"] == "completed", done
    (profile,) = [i for i in world.items("demo-contacts", t.tenant_id)
                  if i["contact_id"] == cid]
    n = t.keys.pseudonym_number(done["subject_ref"])
    assert (profile["first_name"], profile["last_name"]) == (f"F_{n}", f"L_{n}")
    assert not {"email", "phone", "external_id", "address", "photo_key"} & set(profile)
    v = done["result"]["verification"]
    assert v["passed"] is True and v["identifying_values_compared"] >= 5
    assert done["result"]["tables"]["documents"]["deleted"] == 1
    assert all(world.versions(FILES, k) == [] for k in mario["files"])


def test_an_anonymisation_scoped_to_tickets_leaves_the_profile_as_it_was(demo_map, t, mario):
    before = world.items("demo-contacts", t.tenant_id)
    rid = world.new_request(t, "anonymisation", mario["ids"], action="anonymise",
                            tables=["tickets"])
    assert {u["table"] for u in plan.plan(rid, t.tenant_id, "anonymise")["units"]} == {
        "tickets"}
    done = world.run(rid, t.tenant_id, "anonymise")
    assert done["result"]["tables"]["tickets"]["anonymised"] == mario["counts"]["tickets"]
    assert done["result"]["tables"]["contacts"]["matched"] == 0
    assert world.items("demo-contacts", t.tenant_id) == before


def test_a_second_anonymisation_changes_nothing_and_says_so(t, mario):
    first = world.new_request(t, "anonymisation", mario["ids"], action="anonymise",
                              tables=["tickets"])
    world.run(first, t.tenant_id, "anonymise")
    second = world.new_request(t, "anonymisation", mario["ids"], action="anonymise",
                               tables=["tickets"])
    result = world.run(second, t.tenant_id, "anonymise")["result"]
    assert result["totals"]["anonymised"] == 0
    assert result["tables"]["tickets"]["kept"] == mario["counts"]["tickets"]
    assert "already anonymised" in result["message"]


# -- rectification, restriction, objection -----------------------------------------------------

def test_rectification_moves_the_blacklist_entry_and_audits_hmacs_only(t, mario):
    new = "mario.rossi@example.org"
    rid = world.new_request(t, "rectification", mario["ids"], action="rectify",
                            changes={"email": new, "city": "Genova"})
    done = world.run(rid, t.tenant_id, "rectify")
    assert done["status"] == "completed"
    assert done["result"]["tables"]["blacklist"]["updated"] == 1
    assert [i["email"] for i in world.items("demo-blacklist", t.tenant_id)] == [new]
    sends = world.items("demo-email-sends", t.tenant_id)
    assert {s["recipient_email"] for s in sends} == {new}
    (entry,) = audit_of(t.tenant_id, rid)
    assert entry["action"] == "rectification_completed"
    assert entry["details"]["new"]["email"] == [t.keys.hmac("value", new)]
    assert entry["details"]["old"]["email"] == [t.keys.hmac("value", "mario@example.com")]
    assert "mario" not in repr(entry) and "genova" not in repr(entry).lower()


def test_restriction_flags_the_profile_drops_pending_sends_and_lifting_unflags(demo_map, t,
                                                                               mario):
    cid = contact_id_of(demo_map, t.tenant_id, "mario@example.com")
    rid = world.new_request(t, "restriction", mario["ids"], action="restrict")
    done = world.run(rid, t.tenant_id, "restrict")
    assert done["result"]["tables"]["scheduled_recipients"]["deleted"] == 1
    assert done["result"]["tables"]["subscriptions"]["deleted"] == 1
    (profile,) = [i for i in world.items("demo-contacts", t.tenant_id) if i["contact_id"] == cid]
    assert profile["restricted"] is True
    assert world.items("demo-scheduled-recipients", t.tenant_id) == []
    assert len(world.items("demo-tickets", t.tenant_id)) == mario["counts"]["tickets"]
    lift = world.new_request(t, "restriction", mario["ids"], action="unrestrict")
    world.run(lift, t.tenant_id, "unrestrict")
    (profile,) = [i for i in world.items("demo-contacts", t.tenant_id) if i["contact_id"] == cid]
    assert profile["restricted"] is False


def test_an_objection_drops_marketing_deliveries_and_suppresses_for_marketing(t, mario):
    rid = world.new_request(t, "objection", mario["ids"], action="object",
                            purposes=["marketing"])
    done = world.run(rid, t.tenant_id, "object")
    assert done["status"] == "completed"
    assert done["result"]["tables"]["subscriptions"]["deleted"] == 1
    assert world.items("demo-subscriptions", t.tenant_id) == []
    assert len(world.items("demo-contacts", t.tenant_id)) == 1  # an objection erases nothing
    found = suppression.lookup(t.tenant_id, {"email": t.keys.hmac("email", "mario@example.com")})
    assert [e["reason"] for e in found] == ["objection:marketing"]


# -- failure -----------------------------------------------------------------------------------

def test_a_failure_is_recorded_with_its_code_and_told_to_the_audit_and_the_bus(t, mario):
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    plan.plan(rid, t.tenant_id, "erase")
    # what a state machine's Catch puts in $.error (the task scrubbed the message already)
    error = {"Error": "TableUnavailable",
             "Cause": '{"errorType": "TableUnavailable", "errorMessage": "no table"}'}
    assert evidence.fail(rid, t.tenant_id, error) == {"status": "failed"}
    done = records.to_json(records.load(t.tenant_id, rid))
    assert done["status"] == "failed"
    assert (done["error"]["code"], done["error"]["message"]) == ("TableUnavailable", "no table")
    assert [e["event"] for e in done["timeline"]][-1] == "failed"
    assert [e["action"] for e in audit_of(t.tenant_id, rid)] == ["request_failed"]
    kinds = [e["detail-type"] for e in world.events() if e["detail"].get("request_id") == rid]
    assert kinds == ["RequestFailed"]
    # the identities stay while the request can be retried
    assert records.load(t.tenant_id, rid).identities_enc


def test_a_failure_reported_after_the_request_ended_changes_nothing(erased):
    t, rid = erased["t"], erased["rid"]
    assert evidence.fail(rid, t.tenant_id, {"Error": "Late", "Cause": "x"}) == {
        "status": "completed"}
    assert records.to_json(records.load(t.tenant_id, rid)) == erased["done"]


# -- attempts are fenced; retried steps count what was done -----------------------------------

@pytest.fixture
def as_attempt():
    """Run the steps as the tasks of an execution carrying attempt `n` (its input's
    `attempt`, set by the task boundary)."""
    from oblio.core import boundary

    tokens = []

    def set_(n: int | None) -> None:
        tokens.append(boundary._attempt.set(n))

    yield set_
    for token in reversed(tokens):
        boundary._attempt.reset(token)


def _retried_by_the_client(t, rid: str) -> None:
    from oblio.store.models import RequestModel

    m = records.load(t.tenant_id, rid)
    m.update(actions=[RequestModel.attempt.set(2), RequestModel.status.set("queued")])


def test_a_stale_failure_never_marks_the_clients_next_attempt_failed(t, mario, as_attempt):
    from oblio.core.errors import StaleAttempt

    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    as_attempt(1)
    plan.plan(rid, t.tenant_id, "erase")
    assert evidence.fail(rid, t.tenant_id, {"Error": "Boom", "Cause": "x"})["status"] == "failed"
    world.events()
    _retried_by_the_client(t, rid)
    # attempt 1's RecordFailure retried after its result was lost
    with pytest.raises(StaleAttempt):
        evidence.fail(rid, t.tenant_id, {"Error": "Boom", "Cause": "x"})
    m = records.load(t.tenant_id, rid)
    assert (m.status, int(m.attempt)) == ("queued", 2)
    assert [e["action"] for e in audit_of(t.tenant_id, rid)] == ["request_failed"]
    assert [e for e in world.events() if e["detail"].get("request_id") == rid] == []


def test_a_stale_apply_or_finish_writes_nothing_on_the_request(t, mario, as_attempt):
    from oblio.core.errors import StaleAttempt

    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    as_attempt(1)
    units = plan.plan(rid, t.tenant_id, "erase")["units"]
    _retried_by_the_client(t, rid)
    before = records.units_of(records.load(t.tenant_id, rid))
    with pytest.raises(StaleAttempt):
        apply.apply(rid, t.tenant_id, "erase", units[0])
    with pytest.raises(StaleAttempt):
        evidence.finish(rid, t.tenant_id, "erase")
    m = records.load(t.tenant_id, rid)
    assert records.units_of(m) == before and m.status == "queued"


def test_a_retried_failure_is_audited_and_told_once(t, mario, as_attempt):
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    as_attempt(1)
    plan.plan(rid, t.tenant_id, "erase")
    world.events()
    for _ in range(3):  # the result of RecordFailure lost twice
        assert evidence.fail(rid, t.tenant_id, {"Error": "E", "Cause": "x"}) == {
            "status": "failed"}
    assert [e["action"] for e in audit_of(t.tenant_id, rid)] == ["request_failed"]
    kinds = [e["detail-type"] for e in world.events() if e["detail"].get("request_id") == rid]
    assert kinds == ["RequestFailed"]


def test_an_apply_retried_after_its_files_were_deleted_still_counts_them(t, mario, monkeypatch):
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    units = plan.plan(rid, t.tenant_id, "erase")["units"]
    contacts = next(u for u in units if u["table"] == "contacts")
    real = records.record_unit

    def lost(m, unit_id, outcome, io):  # the files went, the result was lost
        if outcome.get("status") == "done":
            raise RuntimeError("lost")
        real(m, unit_id, outcome, io)

    monkeypatch.setattr(apply.records, "record_unit", lost)
    with pytest.raises(RuntimeError):
        apply.apply(rid, t.tenant_id, "erase", contacts)
    monkeypatch.setattr(apply.records, "record_unit", real)
    again = apply.apply(rid, t.tenant_id, "erase", contacts)
    assert (again["deleted"], again["files_deleted"]) == (1, 1)


def test_a_cancel_is_honoured_at_the_next_step(t, mario):
    from oblio.store.models import RequestModel

    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    units = plan.plan(rid, t.tenant_id, "erase")["units"]
    apply.apply(rid, t.tenant_id, "erase", units[0])
    records.load(t.tenant_id, rid).update(actions=[RequestModel.status.set("cancelled")])
    rest = [apply.apply(rid, t.tenant_id, "erase", u) for u in units[1:]]
    assert all(r.get("cancelled") and r.get("skipped") for r in rest)
    assert verify.verify(rid, t.tenant_id, "erase") == {"cancelled": True}
    assert evidence.finish(rid, t.tenant_id, "erase") == {"status": "cancelled"}
    done = records.units_of(records.load(t.tenant_id, rid))
    assert f"{units[0]['tenant_id']}/{units[0]['table']}" in done  # what was done stays
    assert all(f"{u['tenant_id']}/{u['table']}" not in done for u in units[1:])


def test_an_objection_after_her_erasure_keeps_the_entry_that_says_she_was_erased(t, mario):
    email = {"email": t.keys.hmac("email", "mario@example.com")}
    erased = world.run(world.new_request(t, "erasure", mario["ids"], action="erase"),
                       t.tenant_id, "erase")
    assert erased["status"] == "completed"
    # she signs up again and objects: her erasure still has to be replayed after a restore
    rid = world.new_request(t, "objection", {"email": "mario@example.com"}, action="object",
                            purposes=["marketing"])
    objected = world.run(rid, t.tenant_id, "object")
    assert objected["status"] == "completed"
    # what the objection says it did: nothing written over the erasure's entry
    assert "suppression_entries" not in objected["result"]
    assert objected["result"]["suppression_entries_erased"] == 1
    (entry,) = suppression.lookup(t.tenant_id, email)
    assert entry["reason"] == "erasure"
    assert suppression.erased_since(t.tenant_id, email, erased["result"]["verification"]["at"])


def test_an_erasure_after_her_objection_replaces_the_objection_entry(t, mario):
    email = {"email": t.keys.hmac("email", "mario@example.com")}
    suppression.add(t.tenant_id, {"email": [email["email"]]}, reason="objection:marketing",
                    request_id="r-objection")
    assert [e["reason"] for e in suppression.lookup(t.tenant_id, email)] == [
        "objection:marketing"]
    world.run(world.new_request(t, "erasure", mario["ids"], action="erase"), t.tenant_id,
              "erase")
    assert [e["reason"] for e in suppression.lookup(t.tenant_id, email)] == ["erasure"]
