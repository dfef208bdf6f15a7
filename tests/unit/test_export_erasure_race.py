"""An access export and an erasure of the same person that run at the same time: no copy of
her may be left behind an erasure that says it is done.

An export collects her items, then indexes and writes its archive; an erasure plans from the
archive index, deletes, verifies, writes her suppression entries, and finishes. Two orders
left an archive before: the erasure planned before the export indexed its archive (the
export had read her items before they were deleted), or while the upload ran (the index
named it, S3 did not hold it yet). Now the export reads the suppression list once its
archive is written and withdraws it when she was erased since the export was filed, and the
erasure reads the index again once her suppression entries are written and deletes what it
finds. The steps run in-process, interleaved as Step Functions could run them; the checks
read the raw buckets."""

from __future__ import annotations

import json
from typing import Any

import pytest

from oblio.access import collect, package
from oblio.control import exports, records
from oblio.core.errors import SubjectErased, TransientError
from oblio.core.settings import get_settings
from oblio.pipeline import apply, evidence, plan, verify
from oblio.store import aws
from oblio.store.models import plain
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")

MARIO = {"email": "mario@example.com"}


@pytest.fixture
def mario(demo_map, t) -> dict[str, Any]:
    return world.seed(demo_map, t.tenant_id, "mario@example.com", "+393331234567", "CRM-1")


def _collected(t: Any, identities: dict[str, str]) -> str:
    """An access request whose items are collected (work files written), not packaged."""
    rid = world.new_request(t, "access", identities, action="export")
    for u in plan.plan(rid, t.tenant_id, "export")["units"]:
        collect.collect(rid, t.tenant_id, u)
    return rid


def _archive(tenant_id: str, rid: str) -> list[str]:
    return world.versions(get_settings().bucket("exports"), exports.archive_key(tenant_id, rid))


def _work_files(tenant_id: str, rid: str) -> list[str]:
    return world.versions(get_settings().bucket("work"), f"work/{tenant_id}/{rid}/")


def _erase_after_plan(rid: str, tenant_id: str, meanwhile: Any,
                      after_apply: Any = None) -> dict[str, Any]:
    """The erasure's steps as `world.run` runs them, with `meanwhile` run after the plan
    (and `after_apply` after the deletions)."""
    units = plan.plan(rid, tenant_id, "erase")["units"]
    meanwhile()
    for unit in units:
        apply.apply(rid, tenant_id, "erase", unit)
    if after_apply:
        after_apply()
    verify.verify(rid, tenant_id, "erase")
    evidence.finish(rid, tenant_id, "erase")
    return records.to_json(records.load(tenant_id, rid))


def test_an_export_whose_subject_was_erased_while_it_collected_withdraws_its_archive(
        t, mario):
    rid_export = _collected(t, MARIO)
    assert _work_files(t.tenant_id, rid_export), "the collected parts are work files"
    # her erasure runs to its end before the export packages: nothing of it to find yet
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    done = world.run(rid, t.tenant_id, "erase")
    assert done["status"] == "completed"
    assert done["result"]["certificate"]["archives_deleted"] == 0
    with pytest.raises(SubjectErased) as raised:
        package.package(rid_export, t.tenant_id)
    assert "erased while this export ran" in raised.value.message
    # the archive it had written (every version) and her collected items are gone
    assert _archive(t.tenant_id, rid_export) == []
    assert _work_files(t.tenant_id, rid_export) == []
    made = records.units_of(records.load(t.tenant_id, rid_export))["_package"]
    assert made["status"] == package.WITHDRAWN
    # the suppression list was read before anything was written: no archive was made
    assert (made["archive_deleted"], made["archive_left"], made["work_files_left"]) == (
        False, 0, 0)
    # the state machine's catch records the failure; the step fails the same way again
    evidence.fail(rid_export, t.tenant_id, {"Error": "SubjectErased", "Cause": json.dumps(
        {"errorType": "SubjectErased", "errorMessage": raised.value.message})})
    failed = records.to_json(records.load(t.tenant_id, rid_export))
    assert failed["status"] == "failed"
    with pytest.raises(SubjectErased):
        package.package(rid_export, t.tenant_id)
    assert _archive(t.tenant_id, rid_export) == []
    # the open marker went with it: a new access request of hers is filed, not repeated
    assert world.new_request(t, "access", MARIO, action="export") != rid_export


def test_an_erasure_that_ends_while_the_archive_is_written_has_it_withdrawn(
        t, mario, monkeypatch):
    rid_export = _collected(t, MARIO)
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    check = package.erased_meanwhile
    calls = []

    def erasure_during_the_upload(m: Any) -> bool:
        got = check(m)
        if not calls:  # the check before the package: then the erasure runs to its end
            assert world.run(rid, t.tenant_id, "erase")["status"] == "completed"
        calls.append(got)
        return got

    monkeypatch.setattr(package, "erased_meanwhile", erasure_during_the_upload)
    with pytest.raises(SubjectErased):
        package.package(rid_export, t.tenant_id)
    assert calls == [False, True]
    made = records.units_of(records.load(t.tenant_id, rid_export))["_package"]
    assert (made["status"], made["archive_deleted"]) == (package.WITHDRAWN, True)
    assert _archive(t.tenant_id, rid_export) == []
    assert _work_files(t.tenant_id, rid_export) == []


def test_an_archive_still_uploading_when_the_erasure_planned_goes_after_her_suppression(
        t, mario):
    rid_export = _collected(t, MARIO)
    m = records.load(t.tenant_id, rid_export)
    # the package has indexed its archive (as it does first) and is still writing it
    exports.index_archive(t.tenant_id, rid_export, plain(m.identity_refs) or {},
                          m.subject_ref, "2099-01-01T00:00:00Z")
    rid = world.new_request(t, "erasure", MARIO, action="erase")

    def upload_ends() -> None:
        # the erasure's plan found the entry but no archive in S3; the upload now ends, and
        # the export reads the suppression list before her entries are written: it keeps it
        assert records.plan_of(records.load(t.tenant_id, rid))["archives"] == []
        package.package(rid_export, t.tenant_id)
        assert _archive(t.tenant_id, rid_export)

    done = _erase_after_plan(rid, t.tenant_id, upload_ends)
    cert = done["result"]["certificate"]
    assert done["status"] == "completed"
    assert cert["archives_deleted"] == 0  # the plan had none
    assert cert["late_archives"] == {"found": 1, "deleted": 1, "left": 0}
    assert _archive(t.tenant_id, rid_export) == []


def test_an_export_filed_after_the_erasure_ended_keeps_its_archive(t, mario):
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    assert world.run(rid, t.tenant_id, "erase")["status"] == "completed"
    # she comes back and asks for what is held on her now
    rid_export = _collected(t, MARIO)
    package.package(rid_export, t.tenant_id)
    assert _archive(t.tenant_id, rid_export)
    assert records.units_of(records.load(t.tenant_id, rid_export))["_package"]["status"] == \
        "done"


def test_an_archive_a_retried_package_wrote_again_after_the_plan_deleted_it_goes_too(
        t, mario):
    rid_export = _collected(t, MARIO)
    package.package(rid_export, t.tenant_id)  # uploaded; the step then dies unrecorded
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    key = exports.archive_key(t.tenant_id, rid_export)

    def retried_upload() -> None:
        # the plan had the archive and its unit deleted it; the retried package writes it
        # again and reads the suppression list before her entries are there
        assert _archive(t.tenant_id, rid_export) == []
        aws.client("s3").put_object(Bucket=get_settings().bucket("exports"), Key=key,
                                    Body=b"PK again")

    done = _erase_after_plan(rid, t.tenant_id, lambda: None, after_apply=retried_upload)
    cert = done["result"]["certificate"]
    assert cert["archives_deleted"] == 1
    assert cert["late_archives"] == {"found": 1, "deleted": 1, "left": 0}
    assert _archive(t.tenant_id, rid_export) == []


def test_a_withdrawal_that_leaves_the_archive_is_not_recorded_and_retries(
        t, mario, monkeypatch):
    rid_export = _collected(t, MARIO)
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    world.run(rid, t.tenant_id, "erase")
    monkeypatch.setattr(exports, "archives_left", lambda found: 1)  # S3 kept a version
    with pytest.raises(TransientError):
        package.package(rid_export, t.tenant_id)
    made = records.units_of(records.load(t.tenant_id, rid_export)).get("_package") or {}
    assert made.get("status") != package.WITHDRAWN
    monkeypatch.undo()
    with pytest.raises(SubjectErased):  # the retry deletes it and withdraws
        package.package(rid_export, t.tenant_id)
    assert _archive(t.tenant_id, rid_export) == []


def test_a_small_export_run_in_one_invocation_records_its_withdrawal(t, mario):
    from oblio.access import work as export_work

    rid_export = world.new_request(t, "access", MARIO, action="export")
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    world.run(rid, t.tenant_id, "erase")
    with pytest.raises(SubjectErased):
        export_work.work(rid_export, t.tenant_id)
    made = records.units_of(records.load(t.tenant_id, rid_export))["_package"]
    assert made["status"] == package.WITHDRAWN
    assert _archive(t.tenant_id, rid_export) == []
    with pytest.raises(SubjectErased):  # the retry stops at the record
        export_work.work(rid_export, t.tenant_id)


def test_an_erasure_with_nothing_late_says_so_and_keeps_what_it_deleted_counted(t, mario):
    rid_export = _collected(t, MARIO)
    package.package(rid_export, t.tenant_id)
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    cert = world.run(rid, t.tenant_id, "erase")["result"]["certificate"]
    assert cert["archives_deleted"] == 1  # planned, deleted, not counted late again
    assert cert["late_archives"] == {"found": 0, "deleted": 0, "left": 0}


def test_a_bulk_chunk_deletes_an_archive_written_while_it_ran(t, mario, monkeypatch):
    from tests.unit.test_bulk_jobs import report_rows, run_job

    rid_export = _collected(t, MARIO)
    m = records.load(t.tenant_id, rid_export)
    exports.index_archive(t.tenant_id, rid_export, plain(m.identity_refs) or {},
                          m.subject_ref, "2099-01-01T00:00:00Z")
    stored = exports.stored

    def plan_then_upload(found: list[dict[str, str]]) -> list[dict[str, str]]:
        # the chunk's plan looks for her archives in S3: none yet; the upload then ends
        got = stored(found)
        if found and not got:
            monkeypatch.setattr(exports, "stored", stored)
            package.package(rid_export, t.tenant_id)
        return got

    monkeypatch.setattr(exports, "stored", plan_then_upload)
    job = run_job(t, b"email\nmario@example.com\n")
    assert (job["status"], job["erased"]) == ("completed", 1)
    (line,) = report_rows(job)
    assert line["outcome"] == "erased" and line["late_archives_deleted"] == "1"
    assert _archive(t.tenant_id, rid_export) == []


def test_her_suppression_entries_are_dated_by_her_verification(t, mario):
    from oblio.store import shards
    from oblio.store.models import SuppressionModel

    rid = world.new_request(t, "erasure", MARIO, action="erase")
    done = world.run(rid, t.tenant_id, "erase")
    ref = f"email#{t.keys.hmac('email', 'mario@example.com')}"
    entry = SuppressionModel.get(shards.key(t.tenant_id, ref), ref)
    # after her deletions, and the same on a retried finish (not the time of each attempt)
    assert entry.at == done["result"]["verification"]["at"]


# -- an export with include_children, an erasure in the child --------------------------------

@pytest.fixture
def family(demo_map, tenant) -> dict[str, Any]:
    """A parent tenant and its child, each with its own Mario."""
    from oblio.control import tenants

    world.new_tenant(tenant)
    child = tenants.create_tenant(f"{tenant}-child", "Child", parent_id=tenant,
                                  settings={"default_phone_region": "IT"})
    for tenant_id in (tenant, child.tenant_id):
        world.seed(demo_map, tenant_id, "mario@example.com", "+393331234567")
    return {"parent": tenants.get_tenant(tenant), "child": child}


def _family_export(parent: Any) -> str:
    rid = world.new_request(parent, "access", MARIO, action="export", include_children=True)
    units = plan.plan(rid, parent.tenant_id, "export")["units"]
    assert {u["tenant_id"] for u in units} == {parent.tenant_id, *parent.children}
    for u in units:
        collect.collect(rid, parent.tenant_id, u)
    return rid


def test_an_export_with_children_is_withdrawn_when_she_was_erased_in_a_child_meanwhile(
        family):
    parent, child = family["parent"], family["child"]
    rid_export = _family_export(parent)
    erased = world.run(world.new_request(child, "erasure", MARIO, action="erase"),
                       child.tenant_id, "erase")
    assert erased["status"] == "completed"
    with pytest.raises(SubjectErased):
        package.package(rid_export, parent.tenant_id)
    assert _archive(parent.tenant_id, rid_export) == []
    assert _work_files(parent.tenant_id, rid_export) == []


def test_an_erasure_in_a_child_deletes_the_parents_archive_that_holds_her_child_items(family):
    from oblio.access import deliver

    parent, child = family["parent"], family["child"]
    rid_export = _family_export(parent)
    package.package(rid_export, parent.tenant_id)
    deliver.finish(rid_export, parent.tenant_id)
    assert _archive(parent.tenant_id, rid_export)
    parent_ref = parent.keys.subject_ref(MARIO)
    assert exports.latest_valid_export(parent.tenant_id, parent_ref).request_id == rid_export
    done = world.run(world.new_request(child, "erasure", MARIO, action="erase"),
                     child.tenant_id, "erase")
    assert done["status"] == "completed"
    assert done["result"]["certificate"]["archives_deleted"] == 1
    assert _archive(parent.tenant_id, rid_export) == []
    # the parent no longer holds an export of hers to anonymise after (its record says
    # completed, its archive is gone)
    assert exports.latest_valid_export(parent.tenant_id, parent_ref) is None


def test_a_tenants_newest_export_is_never_another_tenants_archive(family):
    parent, child = family["parent"], family["child"]
    rid_export = _family_export(parent)
    package.package(rid_export, parent.tenant_id)
    ref = child.keys.subject_ref(MARIO)
    # an entry of the parent's archive under the child's subject key
    exports.index_archive(child.tenant_id, rid_export, {}, ref, "2099-01-01T00:00:00Z",
                          owner=parent.tenant_id)
    assert exports.latest_valid_export(child.tenant_id, ref) is None


def test_an_erasure_with_children_counts_a_family_archive_once(family):
    parent = family["parent"]
    rid_export = _family_export(parent)
    package.package(rid_export, parent.tenant_id)
    rid = world.new_request(parent, "erasure", MARIO, action="erase", include_children=True)
    done = world.run(rid, parent.tenant_id, "erase")
    assert done["status"] == "completed"
    assert done["result"]["certificate"]["archives_deleted"] == 1
    assert _archive(parent.tenant_id, rid_export) == []


# -- a step that dies after deleting a late archive, run again ---------------------------------

def test_a_finish_retried_after_deleting_a_late_archive_still_counts_it(t, mario,
                                                                         monkeypatch):
    rid_export = _collected(t, MARIO)
    package.package(rid_export, t.tenant_id)
    rid = world.new_request(t, "erasure", MARIO, action="erase")
    key = exports.archive_key(t.tenant_id, rid_export)
    record_unit = records.record_unit

    def dies_before_recording_the_count(m: Any, unit_id: str, *args: Any) -> Any:
        if unit_id == "_late_archives":
            monkeypatch.setattr(records, "record_unit", record_unit)
            raise TransientError("the finish died after the late archive's deletion")
        return record_unit(m, unit_id, *args)

    def written_again_then_a_dying_finish() -> None:
        aws.client("s3").put_object(Bucket=get_settings().bucket("exports"), Key=key,
                                    Body=b"PK again")
        monkeypatch.setattr(records, "record_unit", dies_before_recording_the_count)

    units = plan.plan(rid, t.tenant_id, "erase")["units"]
    for unit in units:
        apply.apply(rid, t.tenant_id, "erase", unit)
    written_again_then_a_dying_finish()
    verify.verify(rid, t.tenant_id, "erase")
    with pytest.raises(TransientError):
        evidence.finish(rid, t.tenant_id, "erase")
    assert _archive(t.tenant_id, rid_export) == []  # deleted by the run that died
    evidence.finish(rid, t.tenant_id, "erase")
    cert = records.to_json(records.load(t.tenant_id, rid))["result"]["certificate"]
    assert cert["late_archives"] == {"found": 1, "deleted": 1, "left": 0}


def test_a_bulk_chunk_rerun_after_deleting_a_late_archive_still_reports_it(t, mario,
                                                                           monkeypatch):
    from oblio.jobs import bulk
    from tests.unit.test_bulk_jobs import chunk_keys, report_rows, validated

    rid_export = _collected(t, MARIO)
    package.package(rid_export, t.tenant_id)
    key = exports.archive_key(t.tenant_id, rid_export)
    late_archives = exports.late_archives

    def written_again_before_the_late_read(*args: Any, **kwargs: Any) -> Any:
        aws.client("s3").put_object(Bucket=get_settings().bucket("exports"), Key=key,
                                    Body=b"PK again")
        return late_archives(*args, **kwargs)

    def died(*args: Any, **kwargs: Any) -> Any:
        raise TransientError("the chunk worker died after the late archive's deletion")

    monkeypatch.setattr(exports, "late_archives", written_again_before_the_late_read)
    monkeypatch.setattr(records, "put_many", died)
    job_id, _ = validated(t, b"email\nmario@example.com\n")
    (chunk,) = chunk_keys(job_id, t)
    with pytest.raises(TransientError):
        bulk.erase_chunk(t.tenant_id, job_id, chunk)
    assert _archive(t.tenant_id, rid_export) == []
    monkeypatch.undo()
    bulk.erase_chunk(t.tenant_id, job_id, chunk)
    bulk.report(t.tenant_id, job_id)
    (line,) = report_rows(bulk.to_json(bulk.load(t.tenant_id, job_id)))
    assert line["outcome"] == "erased" and line["late_archives_deleted"] == "1"
