"""The one closing sequence every subject request ends with (the subject workflows and the
access export): its order, what a retry does again and what it does not, and the fields every
result has. Its effects are recorded by stand-ins: no AWS."""

from __future__ import annotations

from typing import Any

import pytest

from oblio.control import audit
from oblio.pipeline import evidence
from oblio.store.models import RequestModel

COUNTS = {"acme": {"contacts": {"matched": 2, "deleted": 2}},
          "acme-child": {"contacts": {"matched": 1, "deleted": 1}}}


def _request(**fields: Any) -> RequestModel:
    return RequestModel(**{"tenant_id": "acme", "sk": "req#R1", "request_id": "R1",
                           "type": "erasure", "status": "running", "subject_ref": "S_ref",
                           "units": {}, "io": {"dynamodb.Query": 3}, "plan": {"queries": 4},
                           **fields})


@pytest.fixture
def effects(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Every effect of the finish, in the order it happened."""
    done: list[tuple[Any, ...]] = []

    def record_unit(m: RequestModel, unit_id: str, outcome: dict[str, Any], io: Any) -> None:
        done.append(("unit", unit_id))
        m.units = {**evidence.records.units_of(m), unit_id: outcome}

    def end(m: RequestModel, status: str, result: dict[str, Any],
            outbox: dict[str, Any] | None = None) -> None:
        if outbox is not None:  # written with the end, in one update
            done.append(("unit", "_outbox"))
            m.units = {**evidence.records.units_of(m), "_outbox": outbox}
        done.append(("end", status, result))
        m.status = status

    def mark_finishing(m: RequestModel) -> bool:
        if m.status not in evidence.records.OPEN:
            return False
        m.status = evidence.records.FINISHING
        return True

    def send_once(m: RequestModel, unit_ids: list[str], send: Any) -> bool:
        send()
        for unit_id in unit_ids:
            record_unit(m, unit_id, {"sent": True}, {})
        return True

    monkeypatch.setattr(evidence.records, "record_unit", record_unit)
    monkeypatch.setattr(evidence.audit, "append", lambda tenant_id, action, **kw: (
        done.append(("audit", action, kw["details"])) or audit.Entry("42", "h42")))
    monkeypatch.setattr(evidence.outbound, "emit_all", lambda events: [
        done.append(("event", detail_type, tenant_id, kw)) for detail_type, tenant_id, kw in events])
    monkeypatch.setattr(evidence.objects, "delete_prefix",
                        lambda prefix: done.append(("delete", prefix)) and 0)
    monkeypatch.setattr(evidence.records, "end", end)
    monkeypatch.setattr(evidence.records, "mark_finishing", mark_finishing)
    monkeypatch.setattr(evidence.records, "send_once", send_once)
    # a Finish run again reads the request's meter (its end counted once): none landed here
    monkeypatch.setattr(evidence.records, "meters_of", lambda tenant_id, ids: {})
    monkeypatch.setattr(evidence.records, "sent_of", lambda m: {
        u for u in evidence.records.units_of(m) if u.startswith("_sent:")})
    return done


def _finish(monkeypatch: pytest.MonkeyPatch, m: RequestModel, done: list[tuple[Any, ...]],
            **ending: Any) -> dict[str, Any]:
    monkeypatch.setattr(evidence.records, "load", lambda tenant_id, request_id: m)

    def result(entry: audit.Entry) -> dict[str, Any]:
        done.append(("after audit", entry.id))
        return {"certificate": {"audit_entry": entry.id}}

    def end(m: RequestModel) -> evidence.Ending:
        done.append(("ending",))
        return evidence.Ending(**{
            "status": "completed", "counts": COUNTS,
            "totals": evidence.totals_of(COUNTS, ("matched", "deleted")), "found": True,
            "details": {"type": "erasure"}, "result": result, **ending})

    return evidence.finish_request("R1", "acme", end)


def test_a_request_ends_in_the_one_order(monkeypatch, effects):
    out = _finish(monkeypatch, _request(), effects, subject_events=("SubjectErased",))

    assert out == {"status": "completed"}
    # the request ends before its events go out (through the recorded outbox, each marked
    # sent), and its work files are deleted last
    assert [e[0] if e[0] != "event" else e[1] for e in effects] == [
        "ending", "audit", "unit", "after audit", "unit", "end",
        "SubjectErased", "SubjectErased", "RequestCompleted", "unit", "unit", "unit", "delete"]
    assert effects[1] == ("audit", "erasure_completed", {"type": "erasure"})
    assert effects[2] == ("unit", "_audit")  # a retry finds it
    assert effects[4] == ("unit", "_outbox")
    assert [e[1] for e in effects if e[0] == "unit"][2:] == ["_sent:0", "_sent:1", "_sent:2"]
    assert effects[-1] == ("delete", "work/acme/R1/")


def test_every_result_has_the_same_fields_and_its_own(monkeypatch, effects):
    _finish(monkeypatch, _request(), effects)

    (_, status, result), = [e for e in effects if e[0] == "end"]
    assert status == "completed"
    assert result == {
        "found": True, "tables": COUNTS["acme"],
        "tenants": {"acme-child": {"tables": COUNTS["acme-child"]}},
        "totals": {"matched": 3, "deleted": 3},
        "io": {"dynamodb.Query": 3, "dynamodb.Scan": 0},  # no Scan ran, and it says so
        "queries_planned": 4, "audit_entry": "42",
        "certificate": {"audit_entry": "42"}}


def test_subject_events_reach_each_tenant_and_name_the_parent_in_a_child(monkeypatch,
                                                                         effects):
    _finish(monkeypatch, _request(), effects, subject_events=("SubjectRestricted",),
            event_fields={"purposes": ["marketing"]})

    events = [(e[2], e[3]) for e in effects if e[0] == "event" and e[1] != "RequestCompleted"]
    assert [(t, kw["parent_tenant_id"], kw["purposes"]) for t, kw in events] == [
        ("acme", None, ["marketing"]), ("acme-child", "acme", ["marketing"])]
    assert all(kw["subject_ref"] == "S_ref" and kw["request_id"] == "R1" for _, kw in events)
    (completed,) = [e for e in effects if e[0] == "event" and e[1] == "RequestCompleted"]
    assert completed[2] == "acme" and completed[3]["status"] == "completed"


def test_no_subject_event_for_a_request_that_has_none(monkeypatch, effects):
    _finish(monkeypatch, _request(type="access"), effects)

    assert [e[1] for e in effects if e[0] == "event"] == ["RequestCompleted"]
    assert effects[1][1] == "access_completed"


def test_a_retried_finish_reuses_its_audit_entry(monkeypatch, effects):
    m = _request(units={"_audit": {"id": "7", "hash": "h7"}})

    _finish(monkeypatch, m, effects)

    assert not [e for e in effects if e[0] == "audit"]
    assert ("unit", "_audit") not in effects
    assert ("after audit", "7") in effects
    assert next(e for e in effects if e[0] == "end")[2]["audit_entry"] == "7"


@pytest.mark.parametrize("status", ["completed", "completed_with_errors", "cancelled"])
def test_an_ended_request_is_left_alone(monkeypatch, effects, status):
    out = _finish(monkeypatch, _request(status=status), effects)

    assert out == {"status": status}
    assert effects == []


def test_a_step_recorded_once_is_not_done_again(monkeypatch, effects):
    m = _request()
    ran: list[int] = []

    first = evidence.once(m, {}, "_consent", lambda: ran.append(1) or {"deleted": {"e": 2}})
    again = evidence.once(m, {"_consent": first}, "_consent", lambda: ran.append(2) or {})

    assert first == again == {"deleted": {"e": 2}}
    assert ran == [1] and effects == [("unit", "_consent")]


def test_totals_add_up_every_tenant_and_table():
    counts = {"a": {"t1": {"matched": 2, "files": 1}, "t2": {"matched": 0, "files": 0}},
              "b": {"t1": {"matched": 5, "files": 3}}}
    assert evidence.totals_of(counts, ("matched", "files")) == {"matched": 7, "files": 4}
    assert evidence.totals_of({}, ("matched",)) == {"matched": 0}


def _outbox(*sent: int) -> dict[str, Any]:
    events = [{"type": t, "tenant_id": "acme", "detail": {"request_id": "R1"}}
              for t in ("SubjectErased", "RequestCompleted")]
    return {"_audit": {"id": "7", "hash": "h7"},
            "_outbox": {"status": "completed", "events": events},
            **{f"_sent:{i}": {"sent": True} for i in sent}}


def test_a_finish_retried_after_the_request_ended_sends_what_is_left_and_cleans_up(
        monkeypatch, effects):
    # the first run ended the request and sent SubjectErased, then crashed
    m = _request(status="completed", units=_outbox(0))

    out = _finish(monkeypatch, m, effects)

    assert out == {"status": "completed"}
    assert [e for e in effects if e[0] in ("ending", "audit", "end")] == []  # not again
    assert [e[1] for e in effects if e[0] == "event"] == ["RequestCompleted"]  # once each
    assert effects[-1] == ("delete", "work/acme/R1/")


def test_a_finish_whose_events_all_went_out_sends_none_again(monkeypatch, effects):
    m = _request(status="completed", units=_outbox(0, 1))

    _finish(monkeypatch, m, effects)

    assert [e for e in effects if e[0] == "event"] == []
    assert effects == [("delete", "work/acme/R1/")]


def test_a_finish_of_a_stale_attempt_is_refused_before_it_does_anything(monkeypatch,
                                                                        effects):
    from oblio.core import boundary
    from oblio.core.errors import StaleAttempt

    m = _request(attempt=2)  # the client retried: attempt 2 is current
    token = boundary._attempt.set(1)
    try:
        with pytest.raises(StaleAttempt):
            _finish(monkeypatch, m, effects)
    finally:
        boundary._attempt.reset(token)
    assert effects == []


def test_events_eventbridge_took_stay_claimed_when_others_are_refused(monkeypatch):
    """The outbox's events go in one PutEvents under one claim; when EventBridge keeps
    refusing one, only its claim is given back, so the retry sends it and not the others."""
    from oblio.control import records
    from oblio.store import outbound

    claimed: list[list[str]] = []
    given_back: list[list[str]] = []
    monkeypatch.setattr(records.tables, "claim",
                        lambda table, key, names, value: claimed.append(names) or True)
    monkeypatch.setattr(records.tables, "unclaim",
                        lambda table, key, names: given_back.append(names) or True)

    def send() -> None:
        raise outbound.NotAllSent("EventBridge refused 1 events", [0, 2])

    m = RequestModel(tenant_id="acme", sk="req#R1", request_id="R1")
    with pytest.raises(outbound.NotAllSent):
        records.send_once(m, ["_sent:0", "_sent:1", "_sent:2"], send)
    assert claimed == [["_sent:0", "_sent:1", "_sent:2"]] and given_back == [["_sent:1"]]


def test_the_claims_of_sent_events_are_on_a_small_item_beside_the_record(aws):
    """One write unit a claim, not a rewrite of the 6-8 KB record; a second claim of the
    same event is refused; the record's own marks (a request that sent before) still
    count as sent."""
    from oblio.control import records
    from oblio.store import tables

    m = RequestModel(tenant_id="acme", sk="req#R1", request_id="R1",
                     units={"_sent:0": {"sent": True}})
    sent: list[int] = []
    assert records.send_once(m, ["_sent:1", "_sent:2"], lambda: sent.append(1)) is True
    assert records.send_once(m, ["_sent:2"], lambda: sent.append(2)) is False
    assert sent == [1]
    assert records.sent_of(m) == {"_sent:0", "_sent:1", "_sent:2"}
    item = tables.get_item(RequestModel.Meta.table_name, records.sent_key("acme", "R1"))
    assert item is not None and set(item) == {"pk", "sk", "_sent:1", "_sent:2"}
