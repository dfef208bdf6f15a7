"""Cancel is a state, not a race; retry resumes and never answers 500; Finish run twice
writes its evidence once. The workflow's steps are called in order as Step Functions calls
them, each under the attempt its execution carries (in-process moto)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from oblio.control import audit, records, suppression
from oblio.core import boundary
from oblio.core.errors import Conflict, TransientError
from oblio.pipeline import apply, evidence, plan, verify
from oblio.rights import intake
from oblio.store.models import RequestModel
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")


@pytest.fixture
def mario(demo_map, t) -> dict[str, Any]:
    seeded = world.seed(demo_map, t.tenant_id, "mario@example.com", "+393331234567", "CRM-1")
    return {"ids": {"email": "mario@example.com"}, **seeded}


@contextmanager
def attempt(n: int) -> Iterator[None]:
    """Run steps as the tasks of the execution of attempt `n`."""
    token = boundary._attempt.set(n)
    try:
        yield
    finally:
        boundary._attempt.reset(token)


def everything(demo_map, tenant_id: str) -> dict[str, list[dict[str, Any]]]:
    return {name: sorted(world.items(tm.table, tenant_id), key=repr)
            for name, tm in demo_map.tables.items()}


def completions(tenant_id: str, request_id: str) -> list[str]:
    rows, _ = audit.entries(tenant_id, newest_first=False)
    return [e["action"] for e in map(audit.to_json, rows) if e.get("request_id") == request_id]


def events_of(request_id: str) -> list[str]:
    return sorted(e["detail-type"] for e in world.events()
                  if e["detail"].get("request_id") == request_id)


def uid(unit: dict[str, str]) -> str:
    return f"{unit['tenant_id']}/{unit['table']}"


def test_a_cancel_after_one_table_leaves_the_others_untouched_and_retry_completes_it(
        t, mario, demo_map):
    p = world.principal(t.tenant_id)
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    with attempt(1):
        units = plan.plan(rid, t.tenant_id, "erase")["units"]
        assert len(units) >= 3
        first = apply.apply(rid, t.tenant_id, "erase", units[0])
        assert not first.get("skipped")
        before = everything(demo_map, t.tenant_id)

        cancelled = intake.cancel(p, rid)

        assert cancelled["status"] == "cancelled"
        # the other tables' steps run after the cancel (the execution had them scheduled)
        rest = [apply.apply(rid, t.tenant_id, "erase", u) for u in units[1:]]
        assert verify.verify(rid, t.tenant_id, "erase") == {"cancelled": True}
        assert evidence.finish(rid, t.tenant_id, "erase") == {"status": "cancelled"}
    assert all(r == {"unit": uid(u), "skipped": True, "cancelled": True}
               for r, u in zip(rest, units[1:], strict=True))
    assert everything(demo_map, t.tenant_id) == before  # nothing touched after the cancel
    view = records.to_json(records.load(t.tenant_id, rid))
    assert view["status"] == "cancelled"
    progress = view["result"]["progress"]
    assert list(progress["done"]) == [uid(units[0])]
    assert progress["done"][uid(units[0])]["matched"] >= 1
    assert progress["not_started"] == [uid(u) for u in units[1:]]
    assert progress["planned"] == len(units) and progress["verified"] is False
    assert "erasure_completed" not in completions(t.tenant_id, rid)
    assert events_of(rid) == []

    # the cancelled erasure resumes: a new attempt goes on from the unit done
    resumed = intake.retry(p, rid)
    assert (resumed["status"], resumed["attempt"]) == ("queued", 2)
    with attempt(2):
        again = plan.plan(rid, t.tenant_id, "erase")["units"]
        outs = [apply.apply(rid, t.tenant_id, "erase", u) for u in again]
        verify.verify(rid, t.tenant_id, "erase")
        assert evidence.finish(rid, t.tenant_id, "erase") == {"status": "completed"}
    assert outs[0] == {"unit": uid(units[0]), "skipped": True}  # done once, not again
    m = records.load(t.tenant_id, rid)
    view = records.to_json(m)
    assert view["status"] == "completed" and m.identities_enc is None
    cert = view["result"]["certificate"]
    assert cert["verification"]["passed"] is True
    assert sum(c["deleted"] for c in cert["tables"].values()) >= len(units)
    assert completions(t.tenant_id, rid).count("erasure_completed") == 1
    assert events_of(rid) == ["RequestCompleted", "SubjectErased"]
    assert suppression.lookup(t.tenant_id, {"email": t.keys.hmac("email",
                                                                  "mario@example.com")})


def test_a_cancel_between_a_steps_read_and_its_work_is_honoured(t, mario, demo_map,
                                                                monkeypatch):
    p = world.principal(t.tenant_id)
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    with attempt(1):
        units = plan.plan(rid, t.tenant_id, "erase")["units"]
    before = everything(demo_map, t.tenant_id)
    real = records.load

    def load_then_cancel(tenant_id: str, request_id: str, consistent: bool = True):
        m = real(tenant_id, request_id, consistent)
        monkeypatch.setattr(apply.records, "load", real)
        intake.cancel(p, request_id)  # the client cancels right after the step read it
        return m

    monkeypatch.setattr(apply.records, "load", load_then_cancel)
    with attempt(1):
        out = apply.apply(rid, t.tenant_id, "erase", units[0])
    assert out == {"unit": uid(units[0]), "skipped": True, "cancelled": True}
    assert everything(demo_map, t.tenant_id) == before


def test_a_cancel_during_finish_answers_409_and_the_request_completes(t, mario, monkeypatch):
    p = world.principal(t.tenant_id)
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    refused: list[Conflict] = []
    real = evidence._subject_ending

    def ending_with_a_cancel(m: RequestModel, action: str) -> evidence.Ending:
        try:
            intake.cancel(p, rid)
        except Conflict as exc:
            refused.append(exc)
        return real(m, action)

    with attempt(1):
        for u in plan.plan(rid, t.tenant_id, "erase")["units"]:
            apply.apply(rid, t.tenant_id, "erase", u)
        verify.verify(rid, t.tenant_id, "erase")
        monkeypatch.setattr(evidence, "_subject_ending", ending_with_a_cancel)
        assert evidence.finish(rid, t.tenant_id, "erase") == {"status": "completed"}
    (exc,) = refused
    assert exc.code == "request_finishing" and exc.details == {"status": "finishing"}
    view = records.to_json(records.load(t.tenant_id, rid))
    assert view["status"] == "completed"
    assert "cancelled" not in [e["event"] for e in view["timeline"]]
    assert "request_cancelled" not in completions(t.tenant_id, rid)
    with pytest.raises(Conflict, match="already completed"):
        intake.cancel(p, rid)


def test_a_finish_delivered_twice_at_once_writes_its_evidence_once(t, mario, monkeypatch):
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    with attempt(1):
        for u in plan.plan(rid, t.tenant_id, "erase")["units"]:
            apply.apply(rid, t.tenant_id, "erase", u)
        verify.verify(rid, t.tenant_id, "erase")
    real = audit.append
    nested: list[dict[str, Any]] = []

    def append_after_another_finish(*args: Any, **kw: Any) -> audit.Entry:
        # the second delivery of the task runs whole while the first is about to write
        # its audit entry: both have read the request before either wrote
        if not nested and kw.get("once"):
            monkeypatch.setattr(evidence.audit, "append", real)
            nested.append(evidence.finish(rid, t.tenant_id, "erase"))
        return real(*args, **kw)

    monkeypatch.setattr(evidence.audit, "append", append_after_another_finish)
    with attempt(1):
        first = evidence.finish(rid, t.tenant_id, "erase")
        third = evidence.finish(rid, t.tenant_id, "erase")  # and once more, after both
    assert first == third == nested[0] == {"status": "completed"}
    assert completions(t.tenant_id, rid).count("erasure_completed") == 1
    assert events_of(rid) == ["RequestCompleted", "SubjectErased"]
    assert audit.verify(t.tenant_id)["valid"] is True
    m = records.load(t.tenant_id, rid)
    assert m.status == "completed"
    assert [e["event"] for e in records.to_json(m)["timeline"]].count("completed") == 1


def _failed_request(t, mario) -> str:
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    with attempt(1):
        evidence.fail(rid, t.tenant_id, {"Error": "Boom", "Cause": "persistent"})
    assert records.load(t.tenant_id, rid).status == "failed"
    return rid


def test_a_retry_whose_execution_lost_the_race_stops_it_and_answers_the_current_attempt(
        t, mario, monkeypatch):
    p = world.principal(t.tenant_id)
    rid = _failed_request(t, mario)
    real_start, stopped = records.workflows.start, []

    def start_while_another_retry_wins(*args: Any, **kw: Any) -> str:
        arn = real_start(*args, **kw)
        # meanwhile attempt 2 failed at once and another client's retry made attempt 3
        records.load(t.tenant_id, rid).update(actions=[RequestModel.attempt.set(3)])
        return arn

    monkeypatch.setattr(records.workflows, "start", start_while_another_retry_wins)
    monkeypatch.setattr(records.workflows, "stop", lambda arn, cause: stopped.append(arn))
    out = intake.retry(p, rid)

    assert (out["status"], out["attempt"]) == ("queued", 3)
    assert len(stopped) == 1 and stopped[0].endswith(f"{rid}-2")  # no stale run left
    assert records.load(t.tenant_id, rid).execution_arn is None  # never tracked as current


def test_a_retry_that_another_retry_beat_answers_the_running_attempt(t, mario,
                                                                       monkeypatch):
    p = world.principal(t.tenant_id)
    rid = _failed_request(t, mario)
    stale = records.load(t.tenant_id, rid)  # read before the other retry wrote
    intake.retry(p, rid)
    calls, real, started = iter([stale]), records.load, []
    monkeypatch.setattr(intake.records, "load",
                        lambda *a, **kw: next(calls, None) or real(*a, **kw))
    monkeypatch.setattr(records.workflows, "start",
                        lambda *a, **kw: started.append(a) or "arn:never")

    out = intake.retry(p, rid)

    assert (out["status"], out["attempt"]) == ("queued", 2)
    assert started == []  # no second execution was started


def test_a_retry_of_a_request_that_moved_on_is_409_not_500(t, mario, monkeypatch):
    p = world.principal(t.tenant_id)
    rid = _failed_request(t, mario)
    stale = records.load(t.tenant_id, rid)
    records.load(t.tenant_id, rid).update(actions=[RequestModel.status.set("completed"),
                                                   RequestModel.attempt.set(2)])
    calls = iter([stale])
    real = records.load
    monkeypatch.setattr(intake.records, "load",
                        lambda *a, **kw: next(calls, None) or real(*a, **kw))
    with pytest.raises(Conflict) as exc:
        intake.retry(p, rid)
    assert exc.value.code == "retry_not_started"
    assert exc.value.details == {"status": "completed", "attempt": 2}


def test_a_workflow_that_cannot_start_leaves_the_request_failed_and_retryable(
        t, mario, monkeypatch):
    p = world.principal(t.tenant_id)
    rid = _failed_request(t, mario)

    def throttled(*a: Any, **kw: Any) -> str:
        raise RuntimeError("ThrottlingException")

    monkeypatch.setattr(records.workflows, "start", throttled)
    with pytest.raises(TransientError):
        intake.retry(p, rid)
    m = records.load(t.tenant_id, rid)
    assert (m.status, int(m.attempt), records.to_json(m)["error"]["code"]) == (
        "failed", 2, "start_failed")
    monkeypatch.undo()
    assert intake.retry(p, rid)["attempt"] == 3


def test_a_cancelled_request_that_is_not_an_erasure_cannot_be_retried(t, mario):
    p = world.principal(t.tenant_id)
    rid = world.new_request(t, "access", mario["ids"], action="export")
    assert intake.cancel(p, rid)["status"] == "cancelled"
    assert records.load(t.tenant_id, rid).identities_enc is None
    with pytest.raises(Conflict, match="cancelled"):
        intake.retry(p, rid)


def test_a_resumed_cancel_refuses_when_another_request_of_its_kind_is_open(t, mario):
    p = world.principal(t.tenant_id)
    rid = world.new_request(t, "erasure", mario["ids"], action="erase")
    intake.cancel(p, rid)
    other = world.new_request(t, "erasure", mario["ids"], action="erase")
    with pytest.raises(Conflict) as exc:
        intake.retry(p, rid)
    assert exc.value.code == "duplicate_open_request"
    assert exc.value.details == {"open_request_id": other}
    assert records.load(t.tenant_id, rid).status == "cancelled"


def test_a_create_whose_transaction_was_throttled_is_a_transient_error_not_a_500(
        t, mario, monkeypatch):
    from pynamodb.exceptions import CancellationReason, TransactWriteError, VerboseClientError

    class Throttled:
        def __init__(self, **kw: Any) -> None:
            pass

        def __enter__(self) -> Throttled:
            return self

        def save(self, *a: Any, **kw: Any) -> None:
            pass

        def __exit__(self, *exc: Any) -> None:
            cause = VerboseClientError(
                {"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}},
                "TransactWriteItems",
                cancellation_reasons=[None, CancellationReason(code="ThrottlingError")])
            raise TransactWriteError("Failed", cause=cause)

    monkeypatch.setattr(records, "TransactWrite", Throttled)
    with pytest.raises(TransientError, match="send it again"):
        world.new_request(t, "erasure", mario["ids"], action="erase")
