"""Bulk jobs that tell the truth: the chunk size, the report's check of every chunk of the
index against what was recorded (done, failed, missing), the job's end when a chunk did not
finish, the plans kept for a retry, the retry that reruns only the chunks not done, the
attempts that fence a task of an earlier run, and the end's audit entry and event written
once, before the job's status."""

from __future__ import annotations

from typing import Any

import pytest

from oblio.control import audit
from oblio.core.errors import Conflict, TransientError
from oblio.core.settings import Settings, get_settings
from oblio.jobs import bulk
from oblio.store import objects, outbound
from oblio.store.models import BulkJobModel
from tests.unit import world
from tests.unit.test_bulk_jobs import chunk_keys, report_rows, upload, validated

pytestmark = pytest.mark.usefixtures("provisioned")


@pytest.fixture
def t(tenant, monkeypatch):
    monkeypatch.setattr(get_settings(), "bulk_chunk_size", 2)
    return world.new_tenant(tenant)


@pytest.fixture
def announced(monkeypatch):
    """Every BulkErasureCompleted event emitted, as (status, attempt)."""
    got: list[tuple[str, int]] = []
    real = outbound.emit

    def emit(detail_type: str, tenant_id: str, **detail: Any) -> None:
        if detail_type == "BulkErasureCompleted":
            got.append((detail["status"], detail.get("attempt", 0)))
        real(detail_type, tenant_id, **detail)

    monkeypatch.setattr(outbound, "emit", emit)
    return got


def ghosts(n: int, tag: str = "ghost") -> bytes:
    return ("email\n" + "".join(f"{tag}{i}@example.org\n" for i in range(n))).encode()


def audit_actions(tenant_id: str, job_id: str) -> list[str]:
    return [e["action"] for e in map(audit.to_json, audit.entries(tenant_id)[0])
            if (e.get("details") or {}).get("job_id") == job_id]


def fail_chunk(monkeypatch: Any, job_id: str, t: Any, key: str) -> None:
    """Run a chunk that breaks after its plan is saved (a throttle that outlasted every
    retry): it is never recorded done."""
    def broken(*a: Any, **k: Any) -> Any:
        raise TransientError("throttled")

    with monkeypatch.context() as m:
        m.setattr(bulk, "_erase_merged", broken)
        with pytest.raises(TransientError):
            bulk.erase_chunk(t.tenant_id, job_id, key, attempt=1)


# -- the chunk size ----------------------------------------------------------------------------

def test_the_chunk_size_is_a_setting_read_from_the_environment(monkeypatch):
    assert Settings().bulk_chunk_size == 250
    monkeypatch.setenv("OBLIO_BULK_CHUNK_SIZE", "40")
    assert Settings().bulk_chunk_size == 40


def test_the_cut_makes_chunks_of_the_setting_s_size(t):
    job_id, rows = validated(t, ghosts(5))
    keys = chunk_keys(job_id, t)
    assert [len(objects.get_json(k)) for k in keys] == [2, 2, 1] and len(rows) == 5
    assert bulk.to_json(bulk.load(t.tenant_id, job_id))["chunks"] == 3


# -- the report checks every chunk -------------------------------------------------------------

def test_a_failed_chunk_ends_the_job_completed_with_errors_naming_it(t, monkeypatch,
                                                                     announced):
    job_id, _ = validated(t, ghosts(5) + b"not-an-email\n")
    first, second, third = chunk_keys(job_id, t)
    bulk.erase_chunk(t.tenant_id, job_id, first, attempt=1)
    fail_chunk(monkeypatch, job_id, t, second)  # started: its plan is saved
    # the third never ran

    out = bulk.report(t.tenant_id, job_id, attempt=1)

    assert out == {"status": "completed_with_errors", "chunks_failed": ["000001"],
                   "chunks_missing": ["000002"]}
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert job["status"] == "completed_with_errors"
    assert (job["chunks_failed"], job["chunks_missing"]) == (["000001"], ["000002"])
    assert "000001" in job["message"] and "000002" in job["message"]
    # one report row per line of the file, whatever did not run
    rows = report_rows(job)
    assert len(rows) == job["rows_total"] == 6
    assert [r["outcome"] for r in rows] == ["not_found"] * 2 + ["not_done"] * 3 + ["invalid"]
    assert all(r["subject_ref"] for r in rows if r["outcome"] == "not_done")
    assert "000001 failed" in rows[2]["reason"] and "000002 never ran" in rows[4]["reason"]
    # the manifests and the failed chunk's plan stay: what a retry resumes from
    work = bulk._work(t.tenant_id, job_id)
    assert objects.exists(second) and objects.exists(third)
    assert objects.exists(work.beside("plans", second))
    assert audit_actions(t.tenant_id, job_id).count("bulk_erasure_completed") == 1
    assert announced == [("completed_with_errors", 1)]


def test_a_job_with_no_chunk_done_fails_naming_them_and_keeps_its_plans(t):
    job_id, _ = validated(t, ghosts(3))

    out = bulk.report(t.tenant_id, job_id, attempt=1)

    assert out == {"status": "failed", "chunks_missing": ["000000", "000001"]}
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert job["status"] == "failed" and "000000, 000001" in job["error"]
    assert len(report_rows(job)) == 3
    assert all(objects.exists(k) for k in chunk_keys(job_id, t))
    assert audit_actions(t.tenant_id, job_id).count("bulk_erasure_failed") == 1


def test_a_failure_the_state_machine_caught_keeps_the_plans_once_chunks_are_cut(t):
    job_id, _ = validated(t, ghosts(3))
    bulk.fail(t.tenant_id, job_id, {"Error": "States.Timeout", "Cause": "late"}, attempt=1)
    assert bulk.load(t.tenant_id, job_id).status == "failed"
    assert all(objects.exists(k) for k in chunk_keys(job_id, t))


# -- retry -------------------------------------------------------------------------------------

def test_a_retry_reruns_only_the_chunks_not_done_and_the_job_completes(t, monkeypatch,
                                                                       announced):
    job_id, _ = validated(t, ghosts(5))
    first, second, third = chunk_keys(job_id, t)
    bulk.erase_chunk(t.tenant_id, job_id, first, attempt=1)
    fail_chunk(monkeypatch, job_id, t, second)
    bulk.report(t.tenant_id, job_id, attempt=1)

    got = bulk.retry(world.principal(t.tenant_id), job_id)

    assert (got["status"], got["attempt"], got["error"], got["report_url"]) == (
        "running", 2, None, None)
    # the Map of the new run reads an index of the chunks not done
    assert chunk_keys(job_id, t) == [second, third]
    assert bulk.validate(t.tenant_id, job_id, "", "")["chunks"] == 2
    for key in (second, third):
        assert bulk.erase_chunk(t.tenant_id, job_id, key, attempt=2)["not_found"] >= 1
    assert bulk.report(t.tenant_id, job_id, attempt=2) == {"status": "completed"}
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert (job["status"], job["not_found"], job["rows_done"], job["rows_total"]) == (
        "completed", 5, 5, 5)
    assert job["chunks_failed"] == job["chunks_missing"] == []
    assert [r["outcome"] for r in report_rows(job)] == ["not_found"] * 5
    assert announced == [("completed_with_errors", 1), ("completed", 2)]
    assert "bulk_erasure_retried" in audit_actions(t.tenant_id, job_id)


def test_a_chunk_or_failure_of_an_earlier_run_writes_nothing_to_the_job(t, monkeypatch):
    job_id, _ = validated(t, ghosts(3))
    first, _ = chunk_keys(job_id, t)
    fail_chunk(monkeypatch, job_id, t, first)
    bulk.report(t.tenant_id, job_id, attempt=1)
    bulk.retry(world.principal(t.tenant_id), job_id)
    before = bulk.to_json(bulk.load(t.tenant_id, job_id))

    # attempt 1's tasks, finishing late (a lost answer, a slow child execution)
    assert bulk.erase_chunk(t.tenant_id, job_id, first, attempt=1)["skipped"] is True
    assert bulk.fail(t.tenant_id, job_id, {"Error": "Old", "Cause": "x"}, attempt=1)[
        "stale"] is True
    assert bulk.report(t.tenant_id, job_id, attempt=1) == {"status": "running", "stale": True}

    assert bulk.to_json(bulk.load(t.tenant_id, job_id)) == before
    # the chunk's own write is refused even when the early check is passed
    job = bulk.load(t.tenant_id, job_id)
    with pytest.raises(Exception) as refused:
        job.update(actions=[BulkJobModel.rows_done.add(1)], condition=bulk.current(1))
    assert "ConditionalCheckFailed" in str(refused.value.__cause__ or refused.value)


def test_a_report_that_outlived_its_run_appends_and_ends_nothing(t, monkeypatch, announced):
    """The report passed its check of the run, wrote its CSV, then the job was on another run
    (retried meanwhile). Before, it read the job again and fenced its writes with the run it
    read, the new one: it ended the new run `completed` and audited it. Now its end's entry
    is appended only while its own run is the job's (guarded in the entry's transaction)
    and every write is conditioned on its run: nothing is appended, sent or written."""
    from oblio.store.models import BulkJobModel

    job_id, _ = validated(t, ghosts(3))
    for key in chunk_keys(job_id, t):
        bulk.erase_chunk(t.tenant_id, job_id, key, attempt=1)
    real = bulk.write_report

    def retried_meanwhile(job: Any, got: Any, key: str) -> int:
        n = real(job, got, key)
        job.update(actions=[BulkJobModel.attempt.set(2)])
        return n

    monkeypatch.setattr(bulk, "write_report", retried_meanwhile)
    assert bulk.report(t.tenant_id, job_id, attempt=1) == {"status": "running", "stale": True}
    job = bulk.load(t.tenant_id, job_id)
    assert (job.status, job.audit_entry, job.audited_attempt) == ("running", None, None)
    assert not {"bulk_erasure_completed", "bulk_erasure_failed"} & set(
        audit_actions(t.tenant_id, job_id))
    assert announced == []


def test_a_failure_step_that_outlived_its_run_records_nothing(t, announced):
    from oblio.store.models import BulkJobModel

    job_id, _ = validated(t, ghosts(1))
    job = bulk.load(t.tenant_id, job_id)
    job.update(actions=[BulkJobModel.attempt.set(2)])  # after the failure step's check
    assert bulk.finish_failed(job, "late", keep_work=True, attempt=1) is False
    got = bulk.load(t.tenant_id, job_id)
    assert (got.status, got.error) == ("running", None)
    assert "bulk_erasure_failed" not in audit_actions(t.tenant_id, job_id)
    assert announced == []


def reported_then_throttled(t: Any, monkeypatch: Any, tries: int) -> str:
    """A job whose every chunk is done, its report run `tries` times: each appends (once)
    and announces its end, then its status write fails (a throttle). Its id."""
    from oblio.jobs import chunks

    job_id, _ = validated(t, ghosts(3))
    for key in chunk_keys(job_id, t):
        bulk.erase_chunk(t.tenant_id, job_id, key, attempt=1)
    real = chunks.write_on_run

    def throttled(record: Any, actions: list[Any], attempt: Any) -> bool:
        if any(str(a.values[0]) == "status" for a in actions):
            raise TransientError("throttled")
        return real(record, actions, attempt)

    with monkeypatch.context() as m:
        m.setattr(chunks, "write_on_run", throttled)
        for _ in range(tries):
            with pytest.raises(TransientError):
                bulk.report(t.tenant_id, job_id, attempt=1)
    return job_id


def test_a_report_that_ended_the_run_then_failed_records_the_failure_too(t, monkeypatch,
                                                                        announced):
    """The report appended its `completed` entry and sent its event, then its status write
    failed (a throttle that outlasted the step's retries) and the failure step came next.
    Before, one marker stood for both ends: the failure step found the run's end already
    audited and announced, and the job ended `failed` under a trail and an event that said
    `completed`. Now the failure is appended and announced too, once, with its own key."""
    job_id = reported_then_throttled(t, monkeypatch, tries=2)  # the step and its retry
    assert audit_actions(t.tenant_id, job_id).count("bulk_erasure_completed") == 1
    assert announced == [("completed", 1)]

    for _ in range(2):  # the failure step, and that step run again
        bulk.fail(t.tenant_id, job_id, {"Error": "TransientError", "Cause": "throttled"},
                  attempt=1)

    job = bulk.load(t.tenant_id, job_id)
    assert job.status == "failed" and "throttled" in (job.error or "")
    actions = audit_actions(t.tenant_id, job_id)  # newest first
    assert actions[:2] == ["bulk_erasure_failed", "bulk_erasure_completed"]
    assert actions.count("bulk_erasure_failed") == 1
    failed = next(e for e in map(audit.to_json, audit.entries(t.tenant_id)[0])
                  if e["action"] == "bulk_erasure_failed")
    assert job.audit_entry == failed["id"] and "throttled" in failed["details"]["reason"]
    assert announced == [("completed", 1), ("failed", 1)]
    assert audit.verify(t.tenant_id)["valid"] is True


def test_a_run_ended_by_the_release_before_statuses_were_kept_is_read_from_its_entry(
        t, monkeypatch, announced):
    """A record of the release before: its run's end audited and announced, no status kept,
    then the status write failed. The failure is still appended and announced (its kept
    entry, keyed `:end`, says `completed`)."""
    job_id = reported_then_throttled(t, monkeypatch, tries=1)
    bulk.load(t.tenant_id, job_id).update(actions=[BulkJobModel.audited_status.remove(),
                                                   BulkJobModel.announced_status.remove()])

    bulk.fail(t.tenant_id, job_id, {"Error": "TransientError", "Cause": "throttled"},
              attempt=1)

    assert audit_actions(t.tenant_id, job_id)[:2] == ["bulk_erasure_failed",
                                                      "bulk_erasure_completed"]
    assert announced == [("completed", 1), ("failed", 1)]


def test_a_failure_the_release_before_appended_under_its_one_key_is_not_appended_again(
        t, announced):
    job_id, _ = validated(t, ghosts(3))
    # what that release's report appended for a job with no chunk done, before it died
    # (nothing recorded on the job)
    audit.append(t.tenant_id, "bulk_erasure_failed", actor="oblio",
                 once=f"bulk:{job_id}:1:end", details={"job_id": job_id, "status": "failed"})

    assert bulk.report(t.tenant_id, job_id, attempt=1)["status"] == "failed"

    assert audit_actions(t.tenant_id, job_id).count("bulk_erasure_failed") == 1
    assert bulk.load(t.tenant_id, job_id).status == "failed"


def test_retry_refuses_a_running_or_completed_job(t):
    job_id, _ = validated(t, ghosts(1))
    with pytest.raises(Conflict) as running:
        bulk.retry(world.principal(t.tenant_id), job_id)
    assert running.value.code == "not_failed"
    (key,) = chunk_keys(job_id, t)
    bulk.erase_chunk(t.tenant_id, job_id, key, attempt=1)
    bulk.report(t.tenant_id, job_id, attempt=1)
    with pytest.raises(Conflict) as completed:
        bulk.retry(world.principal(t.tenant_id), job_id)
    assert completed.value.code == "not_failed"


def test_retry_says_nothing_to_resume_when_the_plans_are_gone(t):
    job_id, _ = validated(t, ghosts(3))
    bulk.report(t.tenant_id, job_id, attempt=1)
    bulk._work(t.tenant_id, job_id).clear()  # e.g. removed by hand, or by an older release
    with pytest.raises(Conflict) as gone:
        bulk.retry(world.principal(t.tenant_id), job_id)
    assert gone.value.code == "nothing_to_resume"
    assert bulk.load(t.tenant_id, job_id).status == "failed"


def test_a_job_refused_at_validation_has_nothing_to_resume(t):
    made, key = upload(t, b"\x00\x01binary")
    bulk.validate(t.tenant_id, made, get_settings().bucket("ingest"), key)
    with pytest.raises(Conflict) as nothing:
        bulk.retry(world.principal(t.tenant_id), made)
    assert nothing.value.code == "nothing_to_resume"


# -- the end, announced once -------------------------------------------------------------------

def test_a_report_rerun_after_a_crash_writes_its_audit_entry_and_event_once(t, monkeypatch,
                                                                            announced):
    job_id, _ = validated(t, ghosts(1))
    (key,) = chunk_keys(job_id, t)
    bulk.erase_chunk(t.tenant_id, job_id, key, attempt=1)
    real = BulkJobModel.update

    def crash_on_status(self: Any, actions: Any, condition: Any = None, **kw: Any) -> Any:
        if any(str(a).startswith("status =") for a in actions):
            raise TransientError("the function died before the status was written")
        return real(self, actions=actions, condition=condition, **kw)

    with monkeypatch.context() as m:
        m.setattr(BulkJobModel, "update", crash_on_status)
        with pytest.raises(TransientError):
            bulk.report(t.tenant_id, job_id, attempt=1)
    assert bulk.load(t.tenant_id, job_id).status == "running"

    assert bulk.report(t.tenant_id, job_id, attempt=1) == {"status": "completed"}
    assert audit_actions(t.tenant_id, job_id).count("bulk_erasure_completed") == 1
    assert announced == [("completed", 1)]
    assert bulk.to_json(bulk.load(t.tenant_id, job_id))["audit_entry"]


# -- a person only in the consent ledger -------------------------------------------------------

def test_a_line_found_only_in_the_consent_ledger_is_erased_there_not_reported_not_found(t):
    from oblio.control import ledger, suppression

    ids = {"email": "ghost0@example.org"}
    fields = ledger.validate(t, {"purpose": "newsletter", "channel": "web",
                                 "status": "granted"})
    ledger.append(t, ledger.subject_keys(t, ids), t.keys.subject_ref(ids), fields,
                  recorded_by="key_test", emit=False)
    assert ledger.subject_ledger(t, ids)["found"] is True
    job_id, _ = validated(t, ghosts(2))  # ghost0 (in the ledger only) and ghost1 (nowhere)
    (key,) = chunk_keys(job_id, t)

    bulk.erase_chunk(t.tenant_id, job_id, key, attempt=1)
    assert bulk.report(t.tenant_id, job_id, attempt=1) == {"status": "completed"}

    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert (job["erased"], job["not_found"]) == (1, 1)
    assert [r["outcome"] for r in report_rows(job)] == ["erased", "not_found"]
    assert ledger.subject_ledger(t, ids)["found"] is False  # nothing of hers left there
    # her address is on the suppression list, as a single erasure of her puts it
    assert [e["reason"] for e in suppression.lookup(
        t.tenant_id, {"email": t.keys.hmac("email", ids["email"])})] == ["erasure"]


def test_a_line_found_only_through_an_export_archive_is_erased_there_not_reported_not_found(t):
    """Her items were erased since, but an access export of hers is still in S3: the bulk line
    deletes it, is certified and suppressed, as a single erasure of her would."""
    from oblio.control import exports, suppression
    from oblio.core import clock
    from oblio.store import aws

    ids = {"email": "ghost0@example.org"}
    refs = {"email": t.keys.hmac("email", ids["email"])}
    exports.index_archive(t.tenant_id, "01ARCHIVEONLY", refs, t.keys.subject_ref(ids),
                          clock.iso(clock.now() + exports.LOOKED_FOR))
    bucket, key = get_settings().bucket("exports"), exports.archive_key(t.tenant_id,
                                                                          "01ARCHIVEONLY")
    s3 = aws.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=b"PK her export")
    job_id, _ = validated(t, ghosts(2))  # ghost0 (an archive only) and ghost1 (nowhere)
    (chunk,) = chunk_keys(job_id, t)

    bulk.erase_chunk(t.tenant_id, job_id, chunk, attempt=1)
    assert bulk.report(t.tenant_id, job_id, attempt=1) == {"status": "completed"}

    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert (job["erased"], job["not_found"]) == (1, 1)
    rows = report_rows(job)
    assert [r["outcome"] for r in rows] == ["erased", "not_found"]
    assert s3.list_object_versions(Bucket=bucket, Prefix=key).get("Versions", []) == []
    assert [e["reason"] for e in suppression.lookup(t.tenant_id, refs)] == ["erasure"]
