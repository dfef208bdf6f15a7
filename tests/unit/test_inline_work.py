"""The Work step of erasure and anonymisation: a small request planned, applied and verified
in one invocation, a large one handed over to the Map; the request's one manifest, and the
per-table files of a request planned before it (in flight across a deployment) still read."""

from __future__ import annotations

from typing import Any

import pytest

from oblio.control import records
from oblio.core.settings import get_settings
from oblio.pipeline import apply, evidence, inline, verify, work
from oblio.store import objects
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")


@pytest.fixture
def mario(demo_map, t) -> dict[str, Any]:
    return world.seed(demo_map, t.tenant_id, "mario@example.com", "+393331234567", "CRM-1")


def found(t: Any, email: str) -> int:
    from oblio.core import datamap
    from oblio.pipeline import find

    return find.walk(datamap.current(), t.tenant_id, {"email": email}).total


def work_keys(t: Any, rid: str) -> list[str]:
    return sorted(world.keys_under(get_settings().bucket("work"), f"work/{t.tenant_id}/{rid}/"))


@pytest.mark.parametrize("units, inline_", [
    ([{"count": 3}, {"count": 500}], True),
    ([{"count": 501}], False),
    ([{"count": 400}] * 6, False),  # 2,400 in all, over the request's threshold
    ([{"tenant_id": "a", "table": "_archives"}], True),  # archives carry no item count
    ([], True),
])
def test_a_request_is_small_when_every_table_and_the_sum_are_within_the_thresholds(
        units, inline_):
    assert inline.small(units, unit_items=500, request_items=2000) is inline_


def test_a_small_erasure_is_applied_and_verified_inside_work(t, mario):
    rid = world.new_request(t, "erasure", {"email": "mario@example.com"}, action="erase")
    out = inline.work(rid, t.tenant_id, "erase")
    assert out["inline"] is True and out["units"] >= 2
    assert out["verification"] == {"passed": True}
    m = records.load(t.tenant_id, rid)
    units = records.units_of(m)
    assert all(units[u.id]["status"] == "done" for u in work.planned_units(m))
    assert units["_verification"]["passed"] is True
    # one manifest for the whole request: the frozen map, every table's keys
    assert work_keys(t, rid) == [f"work/{t.tenant_id}/{rid}/manifest.json"]
    evidence.finish(rid, t.tenant_id, "erase")
    assert records.load(t.tenant_id, rid).status == "completed"


def test_work_run_twice_does_nothing_twice(t, mario):
    rid = world.new_request(t, "erasure", {"email": "mario@example.com"}, action="erase")
    inline.work(rid, t.tenant_id, "erase")
    first = records.units_of(records.load(t.tenant_id, rid))
    again = inline.work(rid, t.tenant_id, "erase")
    assert again["verification"] == {"passed": True}
    after = records.units_of(records.load(t.tenant_id, rid))
    assert {k: v for k, v in after.items() if k.startswith(t.tenant_id)} == \
        {k: v for k, v in first.items() if k.startswith(t.tenant_id)}


def _twins(monkeypatch: Any) -> list[tuple[str, str, dict[str, Any]]]:
    """The Standard twins Work starts, as (state machine, name, input)."""
    from oblio.store import workflows

    started: list[tuple[str, str, dict[str, Any]]] = []

    def start(machine: str, name: str, payload: dict[str, Any]) -> str:
        if any(n == name for _, n, _ in started):  # as `workflows.start` says it
            raise workflows.AlreadyStarted(name)
        started.append((machine, name, payload))
        return get_settings().state_machine_arn(machine).replace(
            ":stateMachine:", ":execution:") + f":{name}"

    monkeypatch.setattr(workflows, "start", start)
    return started


def test_a_small_request_planned_slowly_is_handed_over_too(t, mario, monkeypatch):
    """Work's Express execution is capped at 5 minutes, retries included, and one that runs
    out ends with no failure step (the request would say `running` for good). A plan that
    took longer than `inline_budget_seconds` (throttled reads, many tables) hands even a
    small request over to the Standard twin, which applies it with no such limit."""
    from oblio.access import work as export_work

    started = _twins(monkeypatch)
    monkeypatch.setattr(get_settings(), "inline_budget_seconds", 0)
    rid = world.new_request(t, "erasure", {"email": "mario@example.com"}, action="erase")
    assert inline.work(rid, t.tenant_id, "erase")["inline"] is False
    m = records.load(t.tenant_id, rid)
    assert m.plan is None  # the walk stopped at its first query: nothing planned, applied
    assert found(t, "mario@example.com") > 0
    # the twin plans it whole (no deadline there) and applies it
    units = inline.plan.plan(rid, t.tenant_id, "erase")["units"]
    assert inline.is_small(records.load(t.tenant_id, rid))  # small: handed over for its time
    for u in units:
        apply.apply(rid, t.tenant_id, "erase", u)
    assert verify.verify(rid, t.tenant_id, "erase") == {"passed": True}
    assert found(t, "mario@example.com") == 0
    xid = world.new_request(t, "access", {"email": "mario@example.com"}, action="export")
    assert export_work.work(xid, t.tenant_id)["inline"] is False
    assert [(mc, n) for mc, n, _ in started] == [("erasure_large", f"{rid}-1"),
                                                 ("access_export_large", f"{xid}-1")]


def test_work_run_again_after_it_handed_over_hands_over_again(t, mario, monkeypatch):
    """Work handed over (planned slowly), then its answer was lost and Step Functions ran it
    again: the plan is reused and fast now, but the twin runs already. Work must not apply
    the request inline beside it."""
    started = _twins(monkeypatch)
    rid = world.new_request(t, "erasure", {"email": "mario@example.com"}, action="erase")
    monkeypatch.setattr(get_settings(), "inline_budget_seconds", 0)
    assert inline.work(rid, t.tenant_id, "erase")["inline"] is False
    inline.plan.plan(rid, t.tenant_id, "erase")  # the twin's Plan
    monkeypatch.setattr(get_settings(), "inline_budget_seconds", 60)
    assert inline.work(rid, t.tenant_id, "erase")["inline"] is False
    m = records.load(t.tenant_id, rid)
    assert not {u.id for u in work.planned_units(m)} & set(records.units_of(m))
    assert [(mc, n) for mc, n, _ in started] == [("erasure_large", f"{rid}-1")]
    assert found(t, "mario@example.com") > 0  # nothing applied by Work


def test_a_large_request_is_handed_over_to_the_standard_twin(t, mario, monkeypatch):
    """Work applies nothing of a large request: it starts `erasure_large` (named after the
    attempt, so Work run twice starts it once) and records its execution on the request."""
    started = _twins(monkeypatch)
    monkeypatch.setattr(get_settings(), "inline_unit_items", 0)
    rid = world.new_request(t, "erasure", {"email": "mario@example.com"}, action="erase")
    out = inline.work(rid, t.tenant_id, "erase")
    assert out["inline"] is False and out["units"] >= 2
    again = inline.work(rid, t.tenant_id, "erase")
    assert again["inline"] is False
    assert [(mc, n) for mc, n, _ in started] == [("erasure_large", f"{rid}-1")]
    assert started[0][2] == {"request_id": rid, "tenant_id": t.tenant_id, "attempt": 1,
                             "action": "erase"}
    m = records.load(t.tenant_id, rid)
    assert m.execution_arn == get_settings().state_machine_arn("erasure_large").replace(
        ":stateMachine:", ":execution:") + f":{rid}-1"
    assert not {u.id for u in work.planned_units(m)} & set(records.units_of(m))  # none applied
    for u in work.planned_units(m):  # what the twin's Map does
        apply.apply(rid, t.tenant_id, "erase", {"tenant_id": u.tenant_id, "table": u.table})
    assert verify.verify(rid, t.tenant_id, "erase") == {"passed": True}


def test_a_request_planned_with_one_file_per_table_is_still_applied_and_verified(
        t, mario, demo_map):
    """A request in flight across the deployment: its plan names no `manifest_key`, its
    tables' manifests and the frozen map are the old per-table files."""
    from oblio.store.models import RequestModel

    rid = world.new_request(t, "anonymisation", {"email": "mario@example.com"},
                            action="anonymise")
    units = inline.plan.plan(rid, t.tenant_id, "anonymise")["units"]
    m = records.load(t.tenant_id, rid)
    plan = records.plan_of(m)
    content = objects.get_json(plan["manifest_key"])
    old_map = f"{work.work_prefix(m)}datamap.json"
    objects.put_json(old_map, content["datamap"])
    for uid, manifest in content["units"].items():
        tenant_id, table = uid.split("/", 1)
        objects.put_json(work.manifest_key(m, work.Unit(tenant_id, table)), manifest)
    for tenant_id, refs in content["identifying"].items():
        objects.put_json(work.identifying_key(m, tenant_id), refs)
    objects.delete_prefix(plan["manifest_key"])
    old_plan = {k: v for k, v in plan.items() if k != "manifest_key"}
    m.update(actions=[RequestModel.plan.set({**old_plan, "datamap_key": old_map})])
    work._manifest.clear()
    work._maps.clear()
    for u in units:
        apply.apply(rid, t.tenant_id, "anonymise", u)
    assert verify.verify(rid, t.tenant_id, "anonymise") == {"passed": True}
    done = records.units_of(records.load(t.tenant_id, rid))
    assert done[f"{t.tenant_id}/contacts"]["anonymised"] == 1


def test_an_express_execution_is_not_asked_to_stop_a_standard_one_is(monkeypatch):
    # StopExecution is for Standard executions only: asked of an Express one, AWS refuses it,
    # and a cancel would answer 500; the request's fence stops an Express execution instead
    from oblio.store import aws, workflows

    asked: list[str] = []

    class Sfn:
        class exceptions:
            ExecutionDoesNotExist = KeyError

        def stop_execution(self, executionArn: str, cause: str) -> None:
            asked.append(executionArn)

    monkeypatch.setattr(aws, "client", lambda service: Sfn())
    express = "arn:aws:states:eu-west-1:123456789012:express:oblio-erasure:01J-1:4f2c"
    standard = "arn:aws:states:eu-west-1:123456789012:execution:oblio-erasure_large:01J-1"
    workflows.stop(express, cause="cancelled by the tenant")
    workflows.stop(standard, cause="cancelled by the tenant")
    assert asked == [standard]
    assert workflows.is_express(express) and not workflows.is_express(standard)


def test_a_cancel_between_two_tables_of_work_stops_it_there_and_says_what_was_done(
        t, mario, demo_map, monkeypatch):
    """A small request's tables are applied one after another inside Work: a cancel after the
    first leaves the others untouched, and the request says the first is done (its outcome,
    held for Work's one write, is not lost because the request ended meanwhile)."""
    from oblio.rights import intake

    rid = world.new_request(t, "erasure", {"email": "mario@example.com"}, action="erase")
    real = inline.apply.apply
    seen: list[dict[str, Any]] = []
    before: dict[str, Any] = {}

    def apply_then_cancel(request_id: str, tenant_id: str, action: str,
                          unit: dict[str, str]) -> dict[str, Any]:
        out = real(request_id, tenant_id, action, unit)
        seen.append(out)
        if len(seen) == 1:
            before.update({n: sorted(world.items(tm.table, tenant_id), key=repr)
                           for n, tm in demo_map.tables.items()})
            assert intake.cancel(world.principal(tenant_id), request_id)["status"] == \
                "cancelled"
        return out

    monkeypatch.setattr(inline.apply, "apply", apply_then_cancel)
    out = inline.work(rid, t.tenant_id, "erase")
    assert out["verification"] == {"cancelled": True}
    assert not seen[0].get("skipped") and len(seen) >= 2
    assert all(s.get("skipped") and s.get("cancelled") for s in seen[1:])
    after = {n: sorted(world.items(tm.table, t.tenant_id), key=repr)
             for n, tm in demo_map.tables.items()}
    assert after == before  # nothing touched after the cancel
    assert evidence.finish(rid, t.tenant_id, "erase") == {"status": "cancelled"}
    view = records.to_json(records.load(t.tenant_id, rid))
    assert view["status"] == "cancelled"
    first = f"{t.tenant_id}/{seen[0]['unit'].split('/', 1)[1]}" if "/" in seen[0]["unit"] \
        else seen[0]["unit"]
    progress = view["result"]["progress"]
    assert first in progress["done"]
    # the tables were claimed by one write, and the ones never begun are said so exactly
    assert progress["in_progress"] == []
    assert len(progress["not_started"]) == len(seen) - 1 == progress["planned"] - 1


def test_a_small_requests_tables_are_claimed_by_one_write_of_its_record(t, mario, demo_map,
                                                                         monkeypatch):
    """Inside Work the tables are claimed at once: the record is written once for the
    claim and once for the outcomes, not once per table."""
    from oblio.store.models import RequestModel

    rid = world.new_request(t, "erasure", {"email": "mario@example.com"}, action="erase")
    writes: list[int] = []
    real = RequestModel.update

    def counted(self: Any, *a: Any, **kw: Any) -> Any:
        writes.append(len(kw.get("actions") or (a[0] if a else [])))
        return real(self, *a, **kw)

    monkeypatch.setattr(RequestModel, "update", counted)
    out = inline.work(rid, t.tenant_id, "erase")
    assert out["inline"] and out["units"] > 3
    claims = [n for n in writes if n == out["units"]]  # one action per planned table
    assert len(claims) == 1
    units = records.units_of(records.load(t.tenant_id, rid))
    assert all(f"_started:{u}" in units for u in units if "/" in u and ":" not in u)


def _archive_names(t: Any, rid: str) -> set[str]:
    import io
    import zipfile

    from oblio.access.package import archive_key
    from oblio.store import aws

    body = aws.client("s3").get_object(Bucket=get_settings().bucket("exports"),
                                       Key=archive_key(t.tenant_id, rid))["Body"].read()
    return set(zipfile.ZipFile(io.BytesIO(body)).namelist())


def test_a_small_export_is_collected_and_packaged_without_a_work_file_a_table(t, mario):
    from oblio.access import work as export_work

    rid = world.new_request(t, "access", {"email": "mario@example.com"}, action="export")
    out = export_work.work(rid, t.tenant_id)
    assert out["inline"] is True and out["size"] > 0
    m = records.load(t.tenant_id, rid)
    units = records.units_of(m)
    assert all(units[u.id]["status"] == "done" for u in work.planned_units(m))
    assert units["_package"]["status"] == "done"
    # the parts stayed in the invocation: the manifest is the request's only work file
    assert work_keys(t, rid) == [f"work/{t.tenant_id}/{rid}/manifest.json"]
    names = _archive_names(t, rid)
    assert {"subject.json", "contacts.csv", "tickets.csv"} <= names


def test_a_small_export_that_fails_while_packaging_records_no_part_and_is_made_again(
        t, mario, monkeypatch):
    """Its parts were only in memory: none is recorded as collected (a retry would find
    no file behind it), and the retry collects and packages everything again."""
    from oblio.access import package
    from oblio.access import work as export_work

    rid = world.new_request(t, "access", {"email": "mario@example.com"}, action="export")
    real = package._subject_json

    def dies(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the invocation dies while packaging")

    monkeypatch.setattr(package, "_subject_json", dies)
    with pytest.raises(RuntimeError):
        export_work.work(rid, t.tenant_id)
    m = records.load(t.tenant_id, rid)
    assert not any(k.startswith(f"{t.tenant_id}/") or k == "_package"
                   for k in records.units_of(m))
    assert records.io_of(m).get("dynamodb.BatchGetItem", 0) >= 1  # its calls still count
    monkeypatch.setattr(package, "_subject_json", real)
    assert export_work.work(rid, t.tenant_id)["inline"] is True
    units = records.units_of(records.load(t.tenant_id, rid))
    assert all(units[u.id]["status"] == "done" for u in work.planned_units(m))
    assert "subject.json" in _archive_names(t, rid)


def test_a_small_exports_parts_past_what_memory_holds_go_to_the_work_bucket(t, mario,
                                                                           monkeypatch):
    from oblio.access import work as export_work
    from oblio.store import archives

    monkeypatch.setattr(archives, "HELD_BYTES", 1)  # nothing fits: every part is written
    rid = world.new_request(t, "access", {"email": "mario@example.com"}, action="export")
    assert export_work.work(rid, t.tenant_id)["inline"] is True
    keys = work_keys(t, rid)
    assert f"work/{t.tenant_id}/{rid}/export/{t.tenant_id}/contacts.jsonl" in keys
    assert {"subject.json", "contacts.csv", "tickets.csv"} <= _archive_names(t, rid)


def test_an_export_still_packaging_at_its_deadline_is_handed_over_and_made_whole(
        t, mario, monkeypatch):
    """A small export whose files take long to stream (gigabytes of documents) would run past
    its Express execution's 5 minutes, which ends with no failure step. Past its deadline
    Work aborts the archive's upload, records nothing of what it collected, and hands the
    export over; the twin's steps then make the whole archive."""
    from oblio.access import collect, package
    from oblio.access import work as export_work
    from oblio.control import exports
    from oblio.core import deadline
    from oblio.pipeline import plan

    started = _twins(monkeypatch)
    real = package.package

    def late(*a: Any, **k: Any) -> Any:  # planned and collected in time; then it is late
        with deadline.until(0):
            return real(*a, **k)

    monkeypatch.setattr(package, "package", late)
    rid = world.new_request(t, "access", {"email": "mario@example.com"}, action="export")

    assert export_work.work(rid, t.tenant_id)["inline"] is False
    assert [(mc, n) for mc, n, _ in started] == [("access_export_large", f"{rid}-1")]
    m = records.load(t.tenant_id, rid)
    assert not set(records.units_of(m)) & {"_package", *(u.id for u in
                                                           work.planned_units(m))}
    archive = exports.archive_key(t.tenant_id, rid)
    assert world.versions(get_settings().bucket("exports"), archive) == []  # aborted

    # the twin: Plan (the frozen plan, or planned again), the Map's collects, Package
    for u in plan.plan(rid, t.tenant_id, "export")["units"]:
        collect.collect(rid, t.tenant_id, u)
    made = real(rid, t.tenant_id)
    assert made["files"] >= 1 and made["files_missing"] == 0
    assert len(world.versions(get_settings().bucket("exports"), archive)) == 1
