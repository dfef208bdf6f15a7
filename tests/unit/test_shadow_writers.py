"""The two writers of shadow attributes (identities stored as typed): the backfill's page
processing, segments and checkpoints, and the DynamoDB Streams consumer (in-process moto)."""

from __future__ import annotations

import importlib
import threading
from pathlib import Path
from typing import Any

import pytest

from tests.unit import world

ROOT = Path(__file__).resolve().parents[2]
TABLE = "typed-contacts"


@pytest.fixture
def dm(aws: None, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The typed example map as the deployment's map, its table created, tenants acme
    (default phone region IT; the map reads phones in FR) and globex."""
    from oblio.core import datamap
    from oblio.store import aws as oblio_aws
    from oblio.store import workflows

    loaded = datamap.load(ROOT / "examples" / "typed" / "map.yaml")
    monkeypatch.setattr(datamap, "current", lambda: loaded)
    monkeypatch.setattr(workflows, "start", lambda *a, **k: "arn:aws:states:local")
    oblio_aws.client("dynamodb").create_table(
        TableName=TABLE, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "tenant_id", "KeyType": "HASH"},
                   {"AttributeName": "contact_id", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": "tenant_id", "AttributeType": "S"},
                              {"AttributeName": "contact_id", "AttributeType": "S"}])
    world.new_tenant("acme")
    world.new_tenant("globex")
    return loaded


def _put(*items: dict[str, Any]) -> None:
    from oblio.store import tables

    tables.batch_put(TABLE, list(items))


def _get(tenant: str, contact: str) -> dict[str, Any]:
    from oblio.store import tables

    return tables.batch_get(TABLE, [{"tenant_id": tenant, "contact_id": contact}])[0]


def _target(dm: Any, tenant: str = "acme") -> Any:
    from oblio.core import shadowscan

    return shadowscan.targets(dm, tenant, ["contacts"])[0]


# -- what one item needs (pure) -------------------------------------------------------------------


def test_a_pooled_table_keyed_by_the_tenant_is_read_by_a_query_of_the_tenants_partition(dm):
    t = _target(dm)
    assert t.partition == ("tenant_id", "acme") and t.tenant_filter is None
    assert t.projection == ("_oblio_email", "_oblio_phone", "contact_id", "email", "phone",
                            "tenant_id")  # never `name`, nor anything else of the item


def _shared_map() -> Any:
    from oblio.core.datamap import parse

    return parse({"version": 2, "name": "t", "tables": {"people": {
        "table": "shared", "key": {"partition": {
            "attribute": "pk", "template": "TENANT#{tenant}#P#{person_id}"}},
        "find": [{"identity": "external_id", "attribute": "person_id"}],
        "attributes": {
            "person_id": {"category": "identity", "identity": "external_id",
                          "anonymise": "keep"},
            "email": {"category": "identity", "identity": "email", "stored": "as_typed",
                      "anonymise": "null"}}}}})


def test_a_pooled_table_with_a_partition_per_item_is_scanned_filtered_to_the_tenant():
    from oblio.core import shadowscan

    dm = _shared_map()
    [t] = shadowscan.targets(dm, "acme", ["people"])
    assert t.partition is None
    assert t.tenant_filter == ("pk", "begins_with", "TENANT#acme#P#")
    # and what the filter lets through is checked again: only the tenant's items are written
    other = {"pk": "TENANT#acme2#P#7", "email": "A@B.COM"}
    assert shadowscan.decide(dm, ["people"], other, "acme", None).mine is False
    mine = {"pk": "TENANT#acme#P#7", "email": "A@B.COM"}
    seen = shadowscan.decide(dm, ["people"], mine, "acme", None)
    assert seen.write is not None and seen.write.key == {"pk": "TENANT#acme#P#7"}


def test_a_scan_page_reads_only_the_tenants_items_of_a_shared_table(aws):
    from oblio.core import shadowscan
    from oblio.store import aws as oblio_aws
    from oblio.store import tables

    oblio_aws.client("dynamodb").create_table(
        TableName="shared", BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    tables.batch_put("shared", [{"pk": f"TENANT#{t}#P#{i}", "email": "X@Y.COM", "bio": "b"}
                                for t in ("acme", "globex") for i in range(5)])
    [t] = shadowscan.targets(_shared_map(), "acme", ["people"])
    items, last, scanned = tables.scan_page_counted("shared", 0, 1, 100,
                                                    projection=t.projection,
                                                    where=t.tenant_filter)
    assert last is None and scanned == 10  # DynamoDB reads (and bills) every tenant's items
    assert sorted(i["pk"] for i in items) == [f"TENANT#acme#P#{i}" for i in range(5)]
    assert all("bio" not in i for i in items)


def test_naming_a_table_without_typed_identities_says_which_position_never_the_value(dm):
    from oblio.core import shadowscan
    from oblio.core.errors import Invalid

    with pytest.raises(Invalid) as exc:
        shadowscan.chosen(dm, ["contacts", "anna@example.com"])
    assert "tables[1]" in exc.value.message and "anna@example.com" not in exc.value.message
    assert "contacts" in exc.value.message


def test_a_value_that_does_not_parse_is_counted_and_gets_no_shadow(dm):
    from oblio.core import shadowscan

    seen = shadowscan.decide(dm, ["contacts"], {
        "tenant_id": "acme", "contact_id": "c", "email": "Anna@Example.COM",
        "phone": "not a number"}, "acme", None)
    assert seen.unparsable == 1
    assert seen.write is not None and seen.write.set == {"_oblio_email": "anna@example.com"}


# -- a page of the backfill -----------------------------------------------------------------------


def test_a_page_writes_only_the_tenants_items_whose_shadows_are_missing_or_wrong(dm):
    from oblio.jobs import backfill

    items = [
        {"tenant_id": "acme", "contact_id": "c-1", "email": "  Anna.Berg@Example.COM ",
         "phone": "06 12 34 56 78"},
        {"tenant_id": "acme", "contact_id": "c-2", "email": "bo@example.com",
         "_oblio_email": "bo@example.com"},  # already right
        {"tenant_id": "acme", "contact_id": "c-3", "email": "Cy@Example.com",
         "_oblio_email": "old@example.com", "phone": "n/a", "_oblio_phone": "+33600000000"},
        {"tenant_id": "globex", "contact_id": "c-1", "email": "Anna.Berg@Example.COM"},
    ]
    _put(*items)
    counts = backfill.process_page(dm, _target(dm), items, "acme", "IT")
    assert counts["items_read"] == 3 and counts["items_written"] == 2
    assert counts["already_right"] == 1 and counts["values_unparsable"] == 1
    assert _get("acme", "c-1")["_oblio_email"] == "anna.berg@example.com"
    assert _get("acme", "c-1")["_oblio_phone"] == "+33612345678"  # the attribute's FR
    assert _get("acme", "c-3")["_oblio_email"] == "cy@example.com"
    assert "_oblio_phone" not in _get("acme", "c-3")  # a wrong shadow of a bad value goes
    assert "_oblio_email" not in _get("globex", "c-1")  # another tenant's: untouched


def test_a_shadow_is_not_written_over_a_value_changed_meanwhile(dm):
    from oblio.core import shadowscan
    from oblio.jobs import backfill
    from oblio.store import tables

    item = {"tenant_id": "acme", "contact_id": "c-9", "email": "Old@Example.com"}
    _put(item)
    stale = shadowscan.decide(dm, ["contacts"], item, "acme", None)
    assert stale.write is not None
    _put({**item, "email": "New@Example.com"})  # the application writes meanwhile
    w = stale.write
    assert tables.set_if_unchanged(TABLE, w.key, w.set, w.remove, w.expect) is False
    assert "_oblio_email" not in _get("acme", "c-9")  # no stale shadow
    # the backfill reads it again and writes the shadow of the new value
    assert backfill._write(_target(dm), dm, "acme", None, stale) == "changed_meanwhile"
    assert _get("acme", "c-9")["_oblio_email"] == "new@example.com"


def test_a_shadow_is_not_written_for_an_item_deleted_meanwhile(dm):
    from oblio.core import shadowscan
    from oblio.jobs import backfill
    from oblio.store import aws as oblio_aws

    item = {"tenant_id": "acme", "contact_id": "c-8", "email": "Gone@Example.com"}
    _put(item)
    stale = shadowscan.decide(dm, ["contacts"], item, "acme", None)
    oblio_aws.client("dynamodb").delete_item(
        TableName=TABLE, Key={"tenant_id": {"S": "acme"}, "contact_id": {"S": "c-8"}})
    assert backfill._write(_target(dm), dm, "acme", None, stale) == "gone_meanwhile"
    scan = oblio_aws.client("dynamodb").scan(TableName=TABLE)["Items"]
    assert scan == []  # the conditional write made no item of a key alone


# -- a segment, its checkpoints and its resume ----------------------------------------------------


def _many(n: int, tenant: str = "acme") -> list[dict[str, Any]]:
    return [{"tenant_id": tenant, "contact_id": f"c-{i:03d}",
             "email": f"  Person.{i}@Example.COM ", "phone": f"06 12 34 {i // 10 % 10}{i % 10} 00"}
            for i in range(n)]


def test_a_segment_that_fails_mid_page_resumes_from_its_checkpoint_and_writes_nothing_twice(
        dm, monkeypatch):
    from oblio.core.settings import get_settings
    from oblio.jobs import backfill
    from oblio.store import tables

    monkeypatch.setattr(get_settings(), "backfill_page_size", 10)
    _put(*_many(25), *_many(5, "globex"))
    started = backfill.create(world.principal("acme"), _body(segments=1))
    bid = started["backfill_id"]
    written: list[tuple[str, str]] = []
    lock = threading.Lock()
    real = tables.set_if_unchanged

    def flaky(table, key, set_values, remove, expect):
        with lock:
            if len(written) == 14:  # four items into the second page: the task dies
                raise RuntimeError("the Lambda timed out")
            written.append((key["tenant_id"], key["contact_id"]))
        return real(table, key, set_values, remove, expect)

    monkeypatch.setattr(tables, "set_if_unchanged", flaky)
    with pytest.raises(RuntimeError):
        backfill.run_segment("acme", bid, TABLE, 0)
    row = backfill._segment_rows("acme", bid)[0]
    assert int(row.pages) == 1 and not row.done and row.start_key  # page 1 checkpointed
    assert row.start_key and "acme" not in row.start_key  # the resume point is sealed
    # the state machine's Retry runs the segment again
    monkeypatch.setattr(tables, "set_if_unchanged",
                        lambda *a: (written.append((a[1]["tenant_id"], a[1]["contact_id"])),
                                    real(*a))[1])
    assert backfill.run_segment("acme", bid, TABLE, 0) == {"done": True}
    assert len(written) == len(set(written)) == 25  # every item written once, none twice
    assert all(t == "acme" for t, _ in written)
    assert backfill.finish("acme", bid) == {"status": "completed"}
    out = backfill.to_json(backfill.load("acme", bid))
    c = out["counts"]
    assert c["items_read"] == 25  # the page redone is counted once
    # the four items written before the failure were right when the page was read again
    assert (c["items_written"], c["already_right"]) == (21, 4)
    assert out["segments"] == {"done": 1, "total": 1}
    # the tenant is one partition of this pooled table: three Query pages, no Scan; every
    # shadow write counted (one UpdateItem each, four lost with the failed attempt not
    # counted: the calls of an attempt that failed are not in its checkpoint)
    assert out["io"]["dynamodb.Query"] == 3 and out["io"]["dynamodb.Scan"] == 0
    assert out["io"]["dynamodb.UpdateItem"] == 21 + 3  # the writes and the checkpoints
    assert out["status"] == "completed"
    for item in _many(25):
        got = _get("acme", item["contact_id"])
        assert got["_oblio_email"] == item["email"].strip().lower()
    # a second backfill finds every shadow right and writes nothing
    again = backfill.create(world.principal("acme"), _body(segments=2))
    assert again["segments"]["total"] == 1  # a Query of the tenant's partition: one segment
    backfill.run_segment("acme", again["backfill_id"], TABLE, 0)
    backfill.finish("acme", again["backfill_id"])
    c2 = backfill.to_json(backfill.load("acme", again["backfill_id"]))["counts"]
    assert (c2["items_read"], c2["items_written"], c2["already_right"]) == (25, 0, 25)


def test_a_backfill_run_through_its_handlers_counts_every_call_it_made(dm, monkeypatch):
    """Filed by the API, a segment and Finish as the state machine invokes them: the run's
    `io` is the meter's (every call by owner, Lambda, cost, per item read), `complete` once
    Finish and the API call that started the run have counted themselves. Before, it counted only the table's pages, the shadows'
    writes and the checkpoints, with no owner, no Lambda and no cost."""
    import backfill_finish.handler
    import backfill_segment.handler

    from infra.local.lambdas import _Context
    from oblio.control import metering
    from oblio.core.settings import get_settings
    from oblio.jobs import backfill

    monkeypatch.setattr(get_settings(), "backfill_page_size", 10)
    _put(*_many(25), *_many(5, "globex"))
    with metering.invocation(kind="api"):
        bid = backfill.create(world.principal("acme"), _body(segments=1))["backfill_id"]
    ctx = _Context("oblio-backfill", "arn:aws:lambda:eu-west-1:123456789012:function:b")
    ev = {"tenant_id": "acme", "backfill_id": bid}
    running = backfill.to_json(backfill.load("acme", bid))["io"]
    assert running["complete"] is False and running["lambda"]["invocations"] == 1  # the API
    assert running["by_owner"]["oblio"]["dynamodb.BatchWriteItem"] == 1  # run and segment
    assert backfill_segment.handler.handler({**ev, "table": TABLE, "segment": 0},
                                            ctx) == {"done": True}
    assert backfill_finish.handler.handler(ev, ctx) == {"status": "completed"}
    io = backfill.to_json(backfill.load("acme", bid))["io"]
    assert io["complete"] is True and io["lambda"]["invocations"] == 3  # and segment, Finish
    tenant, oblio = io["by_owner"]["tenant"], io["by_owner"]["oblio"]
    assert tenant["dynamodb.Query"] == 3 and tenant["dynamodb.UpdateItem"] == 25
    assert "dynamodb.Scan" not in tenant and io["dynamodb.Scan"] == 0
    assert oblio["dynamodb.UpdateItem"] >= 3  # a checkpoint a page, the status
    assert oblio["dynamodb.TransactWriteItems"] >= 1  # the audit entry
    assert io["dynamodb_units"]["tenant"]["write"] > 0  # moto's figures, in process
    assert io["cost_usd"]["total"] > io["cost_usd"]["tenant"] > 0
    assert io["per_item"]["of"] == 25


def test_a_resumed_backfill_is_not_complete_until_its_new_attempt_has_counted_itself(dm):
    """The failure step is a failed attempt's last: its `io` is complete then. Resumed, the
    run's `io` keeps what the first attempt counted and is not complete again until the new
    attempt's Finish has counted itself (before, it said complete all along the new run)."""
    import backfill_fail.handler
    import backfill_finish.handler
    import backfill_segment.handler

    from infra.local.lambdas import _Context
    from oblio.control import metering
    from oblio.jobs import backfill

    _put(*_many(5))
    with metering.invocation(kind="api"):
        bid = backfill.create(world.principal("acme"), _body(segments=1))["backfill_id"]
    ctx = _Context("oblio-backfill", "arn:aws:lambda:eu-west-1:123456789012:function:b")
    ev = {"tenant_id": "acme", "backfill_id": bid}
    backfill_fail.handler.handler({**ev, "error": {"Error": "States.Timeout",
                                                   "Cause": "the segment timed out"}}, ctx)

    def io() -> dict[str, Any]:
        return backfill.to_json(backfill.load("acme", bid))["io"]

    failed = io()
    assert failed["complete"] is True and failed["lambda"]["invocations"] == 2
    with metering.invocation(kind="api"):
        assert backfill.resume(world.principal("acme"), bid)["status"] == "running"
    resumed = io()
    assert resumed["complete"] is False and resumed["lambda"]["invocations"] == 3
    assert backfill_segment.handler.handler({**ev, "table": TABLE, "segment": 0},
                                            ctx) == {"done": True}
    assert io()["complete"] is False  # the segment is not the last task
    assert backfill_finish.handler.handler(ev, ctx) == {"status": "completed"}
    done = io()
    assert done["complete"] is True and done["lambda"]["invocations"] == 5
    assert done["by_owner"]["tenant"]["dynamodb.UpdateItem"] == 5


def test_a_task_of_the_failed_run_does_nothing_to_the_resumed_backfill(dm):
    """Attempt 1's failure step, run again by Step Functions after the backfill was resumed
    (attempt 2), must not mark the new run failed nor say its `io` complete; attempt 1's
    segment and Finish write nothing to it. Before, these tasks carried no attempt and
    acted on whatever run the backfill was on."""
    import backfill_fail.handler
    import backfill_finish.handler
    import backfill_segment.handler

    from infra.local.lambdas import _Context
    from oblio.control import metering
    from oblio.jobs import backfill
    from oblio.store.models import BackfillModel, plain

    _put(*_many(5))
    with metering.invocation(kind="api"):
        bid = backfill.create(world.principal("acme"), _body(segments=1))["backfill_id"]
    ctx = _Context("oblio-backfill", "arn:aws:lambda:eu-west-1:123456789012:function:b")
    old = {"tenant_id": "acme", "backfill_id": bid, "attempt": 1}
    boom = {"Error": "States.Timeout", "Cause": "the segment timed out"}
    backfill_fail.handler.handler({**old, "error": boom}, ctx)
    with metering.invocation(kind="api"):
        backfill.resume(world.principal("acme"), bid)

    assert backfill_fail.handler.handler({**old, "error": boom}, ctx)["stale"] is True
    assert backfill_segment.handler.handler({**old, "table": TABLE, "segment": 0}, ctx) == {
        "done": True, "stale": True}
    assert backfill_finish.handler.handler(old, ctx)["stale"] is True
    got = backfill.load("acme", bid)
    assert (got.status, got.attempt, got.error, got.audit_entry) == ("running", 2, None, None)
    assert "note:final:2" not in (plain(got.meter) or {})
    seg = BackfillModel.get("acme", f"seg#{bid}#{TABLE}#0000")
    assert int(seg.pages or 0) == 0  # attempt 1's segment read nothing
    assert backfill.to_json(got)["io"]["complete"] is False

    new = {**old, "attempt": 2}
    assert backfill_segment.handler.handler({**new, "table": TABLE, "segment": 0},
                                            ctx) == {"done": True}
    assert backfill_finish.handler.handler(new, ctx) == {"status": "completed"}
    done = backfill.to_json(backfill.load("acme", bid))
    assert done["status"] == "completed" and done["io"]["complete"] is True
    assert done["counts"]["items_written"] == 5


def _backfill_ends(bid: str) -> list[str]:
    from oblio.control import audit

    return [e["id"] for e in map(audit.to_json, audit.entries("acme", newest_first=False)[0])
            if e["action"] == "shadow_backfill_completed"
            and (e.get("details") or {}).get("backfill_id") == bid]


def _segments_done() -> str:
    from oblio.control import metering
    from oblio.jobs import backfill

    _put(*_many(5))
    with metering.invocation(kind="api"):
        bid = backfill.create(world.principal("acme"), _body(segments=1))["backfill_id"]
    while backfill.run_segment("acme", bid, TABLE, 0, attempt=1) != {"done": True}:
        pass
    return str(bid)


def test_a_finish_that_outlived_its_run_appends_no_entry(dm, monkeypatch):
    """Finish passed its check of the run, then the backfill was resumed: its
    `shadow_backfill_completed` entry would stand for a run that did not end. The append is
    guarded by the run in its own transaction: no entry, no status, the new run goes on."""
    from oblio.jobs import backfill
    from oblio.store.models import BackfillModel

    bid = _segments_done()
    real = backfill.totals

    def resumed_meanwhile(rows: Any) -> Any:
        backfill.load("acme", bid).update(actions=[BackfillModel.attempt.set(2)])
        return real(rows)

    monkeypatch.setattr(backfill, "totals", resumed_meanwhile)
    assert backfill.finish("acme", bid, attempt=1)["stale"] is True
    assert _backfill_ends(bid) == []
    got = backfill.load("acme", bid)
    assert (got.status, got.audit_entry) == ("running", None)


def test_a_finish_run_again_after_dying_before_its_write_appends_one_entry(dm, monkeypatch):
    """Finish appended its entry, then died before writing the status with it (a timeout):
    Step Functions runs it again, which answers the same entry instead of appending a
    second one (the append is keyed by the run)."""
    from oblio.jobs import backfill, chunks

    bid = _segments_done()
    real = chunks.write_on_run

    def dies(*a: Any, **k: Any) -> bool:
        raise RuntimeError("the invocation timed out")

    with monkeypatch.context() as m:
        m.setattr(chunks, "write_on_run", dies)
        with pytest.raises(RuntimeError):
            backfill.finish("acme", bid, attempt=1)
    assert chunks.write_on_run is real
    assert len(_backfill_ends(bid)) == 1
    assert backfill.finish("acme", bid, attempt=1) == {"status": "completed"}
    assert _backfill_ends(bid) == [backfill.load("acme", bid).audit_entry]


def test_a_failure_step_that_died_before_its_entry_writes_it_on_its_rerun(dm, monkeypatch):
    """The failure step died before it appended `shadow_backfill_failed` (the audit log busy
    past its retries). Before, it had written `failed` first, so its rerun found the run
    ended and the entry was never written. Now the entry comes first (keyed by the run):
    its rerun appends it, then writes the status."""
    from oblio.control import audit
    from oblio.jobs import backfill
    from oblio.store.models import BackfillModel

    _put(*_many(2))
    bid = backfill.create(world.principal("acme"), _body(segments=1))["backfill_id"]
    boom = {"Error": "States.Timeout", "Cause": "the segment timed out"}

    def busy(*a: Any, **k: Any) -> Any:
        raise RuntimeError("the audit log is busy")

    with monkeypatch.context() as m:
        m.setattr(audit, "append", busy)
        with pytest.raises(RuntimeError):
            backfill.fail("acme", bid, boom, attempt=1)
    assert backfill.load("acme", bid).status == "running"
    assert backfill.fail("acme", bid, boom, attempt=1) == {"status": "failed"}
    assert backfill.fail("acme", bid, boom, attempt=1) == {"status": "failed"}
    failed = [e for e in map(audit.to_json, audit.entries("acme")[0])
              if e["action"] == "shadow_backfill_failed"
              and e["details"]["backfill_id"] == bid]
    assert len(failed) == 1
    assert BackfillModel.get("acme", backfill.load("acme", bid).sk).status == "failed"


def test_a_backfill_whose_start_failed_is_failed_and_can_be_resumed(dm, monkeypatch):
    """StartExecution refused: the backfill is recorded failed at once, saying why, its
    `io` (this call's counts) complete; a resume starts it. Before, it stayed `running` with
    nothing running, and a resume was refused (only a failed backfill resumes)."""
    from oblio.control import metering
    from oblio.jobs import backfill
    from oblio.store import workflows

    real = workflows.start

    def refused(*a: Any, **k: Any) -> str:
        raise RuntimeError("StartExecution throttled")

    monkeypatch.setattr(workflows, "start", refused)
    _put(*_many(2))
    with pytest.raises(RuntimeError), metering.invocation(kind="api"):
        backfill.create(world.principal("acme"), _body(segments=1))
    [m] = backfill.list_backfills("acme")["items"]
    assert m["status"] == "failed" and m["error"].startswith("start_failed: ")
    assert m["io"]["complete"] is True and m["attempt"] == 1
    monkeypatch.setattr(workflows, "start", real)
    out = backfill.resume(world.principal("acme"), m["backfill_id"])
    assert (out["status"], out["attempt"]) == ("running", 2)


def test_a_segment_hands_over_after_its_time_budget(dm, monkeypatch):
    from oblio.core.settings import get_settings
    from oblio.jobs import backfill

    monkeypatch.setattr(get_settings(), "backfill_page_size", 5)
    monkeypatch.setattr(get_settings(), "backfill_seconds", 0.0)
    _put(*_many(12))
    bid = backfill.create(world.principal("acme"), _body(segments=1))["backfill_id"]
    assert backfill.run_segment("acme", bid, TABLE, 0) == {"done": False}
    with pytest.raises(backfill.BackfillIncomplete):
        backfill.finish("acme", bid)  # never reported complete with a segment left
    while backfill.run_segment("acme", bid, TABLE, 0) != {"done": True}:
        pass
    assert backfill.finish("acme", bid) == {"status": "completed"}


def _body(**kw: Any) -> Any:
    from oblio.core.bodies import BackfillBody

    return BackfillBody(**{"tables": ["contacts"], **kw})


# -- the stream consumer --------------------------------------------------------------------------

ARN = f"arn:aws:dynamodb:eu-west-1:123456789012:table/{TABLE}/stream/2026-01-01T00:00:00.000"


def _record(seq: str, item: dict[str, Any] | None, name: str = "MODIFY") -> dict[str, Any]:
    from oblio.store import tables

    body: dict[str, Any] = {"eventID": f"e{seq}", "eventName": name, "eventSource":
                            "aws:dynamodb", "eventSourceARN": ARN,
                            "dynamodb": {"SequenceNumber": seq, "StreamViewType": "NEW_IMAGE"}}
    if item is not None:
        body["dynamodb"]["Keys"] = tables.to_ddb({k: item[k] for k in ("tenant_id",
                                                                       "contact_id")})
        body["dynamodb"]["NewImage"] = tables.to_ddb(item)
    return body


def _consumer() -> Any:
    return importlib.import_module("shadow_stream.handler").handler


class _Ctx:
    function_name = "shadow_stream"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:shadow_stream"
    aws_request_id = "r"


def test_the_consumer_reports_a_malformed_record_as_a_partial_failure_and_writes_the_rest(dm):
    a = {"tenant_id": "acme", "contact_id": "c-1", "email": " Anna@Example.COM"}
    b = {"tenant_id": "acme", "contact_id": "c-2", "phone": "06 12 34 56 78"}
    _put(a, b)
    event = {"Records": [_record("1", a, "INSERT"), _record("2", None), _record("3", b)]}
    out = _consumer()(event, _Ctx())
    assert out == {"batchItemFailures": [{"itemIdentifier": "2"}]}
    assert _get("acme", "c-1")["_oblio_email"] == "anna@example.com"
    assert _get("acme", "c-2")["_oblio_phone"] == "+33612345678"


def test_the_consumers_own_write_comes_back_and_needs_nothing_so_it_never_loops(dm):
    from oblio.jobs import shadowstream
    from oblio.store import aws as oblio_aws

    a = {"tenant_id": "acme", "contact_id": "c-1", "email": " Anna@Example.COM"}
    _put(a)
    assert shadowstream.on_record(_record("1", a, "INSERT")) == "written"
    after = _get("acme", "c-1")  # the MODIFY record its write produces carries this image
    with oblio_aws.counting() as io:
        assert shadowstream.on_record(_record("2", after)) == "right"
        assert shadowstream.on_record(_record("3", after, "REMOVE")) == "removed"
    assert dict(io.calls) == {}  # not one call: no write, so no further record


def test_the_consumer_leaves_another_tables_records_and_an_unknown_tenants_items(dm):
    from oblio.jobs import shadowstream

    other = _record("1", {"tenant_id": "acme", "contact_id": "c-1", "email": "A@B.COM"})
    other["eventSourceARN"] = ARN.replace(TABLE, "someone-elses")
    assert shadowstream.on_record(other) == "not_mapped"
    nobody = {"tenant_id": "initech", "contact_id": "c-1", "email": "A@B.COM"}
    _put(nobody)
    assert shadowstream.on_record(_record("2", nobody)) == "not_mapped"
    assert "_oblio_email" not in _get("initech", "c-1")


def test_a_record_without_its_image_says_how_to_fix_the_stream_never_a_value(dm):
    from oblio.jobs import shadowstream

    with pytest.raises(shadowstream.BadRecord) as exc:
        shadowstream.on_record(_record("1", None, "INSERT"))
    assert "NEW_IMAGE" in str(exc.value) and TABLE in str(exc.value)


def test_a_failed_backfill_resumes_from_its_checkpoints_and_only_a_failed_one(dm, monkeypatch):
    from oblio.core.errors import Conflict
    from oblio.jobs import backfill
    from oblio.store import workflows

    started: list[tuple[str, dict[str, Any]]] = []
    monkeypatch.setattr(workflows, "start", lambda sm, name, payload: started.append(
        (name, payload)) or "arn")
    _put(*_many(3))
    bid = backfill.create(world.principal("acme"), _body(segments=2))["backfill_id"]
    with pytest.raises(Conflict):
        backfill.resume(world.principal("acme"), bid)  # it runs: nothing to resume
    backfill.run_segment("acme", bid, TABLE, 0)
    backfill.fail("acme", bid, {"Error": "TransientError", "Cause": "throttled"})
    assert backfill.to_json(backfill.load("acme", bid))["status"] == "failed"
    out = backfill.resume(world.principal("acme"), bid)
    assert (out["status"], out["attempt"]) == ("running", 2)
    name, payload = started[-1]
    assert name == f"backfill-{bid}-2"
    # the tenant is one partition of this pooled table: read by one Query, one segment
    assert payload["segments"] == [{"table": TABLE, "segment": 0}]
    assert payload["tenant_id"] == "acme" and "Person" not in str(payload)  # references only
    assert payload["attempt"] == 2  # every task of the run is handed its attempt
    assert backfill.run_segment("acme", bid, TABLE, 0) == {"done": True}  # finished stays


def test_the_local_poller_hands_binary_attributes_over_as_the_lambda_event_does():
    import base64
    import json
    from datetime import UTC, datetime

    from infra.local.streams import _plain

    rec = {"eventName": "INSERT", "dynamodb": {
        "ApproximateCreationDateTime": datetime(2026, 1, 1, tzinfo=UTC),
        "NewImage": {"pk": {"S": "a"}, "blob": {"B": b"\x00\x01"}, "set": {"BS": [b"x"]}},
        "SequenceNumber": "1"}}
    out = _plain(rec, ARN)
    json.dumps(out)  # a Lambda payload is JSON
    assert out["eventSourceARN"] == ARN
    assert out["dynamodb"]["NewImage"]["blob"] == {"B": base64.b64encode(b"\x00\x01").decode()}
    assert out["dynamodb"]["ApproximateCreationDateTime"] == 1767225600
