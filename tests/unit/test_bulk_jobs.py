"""Bulk erasure jobs in-process, step by step as the state machine runs them (start from the
upload, validate, erase each chunk, report, fail), against the in-process AWS: how each row of
the CSV is normalised, rejected or collapsed as a duplicate, what a chunk erases and reports,
that a retried step does nothing twice, and what the report and the job's counters say."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from oblio.control import records, tenants
from oblio.core.bodies import BulkBody, parse
from oblio.core.errors import NotFound, TransientError
from oblio.core.settings import get_settings
from oblio.jobs import bulk
from oblio.store import aws, objects, shards
from oblio.store.models import BulkJobModel, RequestModel
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")


@pytest.fixture
def t(tenant):
    return world.new_tenant(tenant)


def upload(t: Any, content: bytes, dry_run: bool = False) -> tuple[str, str]:
    """A job made through the API's path (create, then the presigned PUT), started by its
    upload event; returns (job id, upload key)."""
    made = bulk.create_job(world.principal(t.tenant_id), parse(BulkBody, {"dry_run": dry_run}))
    aws.client("s3").put_object(Bucket=made["upload_bucket"], Key=made["upload_key"],
                                Body=content)
    assert bulk.start_from_upload(made["upload_bucket"], made["upload_key"]) == {
        "job_id": made["job_id"], "status": "validating"}
    return made["job_id"], made["upload_key"]


def chunk_keys(job_id: str, t: Any) -> list[str]:
    s = get_settings()
    job = bulk.load(t.tenant_id, job_id)
    body = aws.client("s3").get_object(Bucket=s.bucket("work"), Key=job.index_key)["Body"]
    return [r["chunk"] for r in csv.DictReader(io.StringIO(body.read().decode()))]


def upload_key(job_id: str, t: Any) -> str:
    return f"{bulk.prefix(t.tenant_id)}{job_id}.csv"


def validated(t: Any, content: bytes, **kw: Any) -> tuple[str, list[dict[str, Any]]]:
    """Validate an upload; returns the job id and every row of its chunk manifests."""
    job_id, key = upload(t, content, **kw)
    out = bulk.validate(t.tenant_id, job_id, get_settings().bucket("ingest"), key)
    assert out["failed"] is False, bulk.to_json(bulk.load(t.tenant_id, job_id))
    return job_id, [row for k in chunk_keys(job_id, t) for row in objects.get_json(k)]


def run_job(t: Any, content: bytes, **kw: Any) -> dict[str, Any]:
    job_id, _ = validated(t, content, **kw)
    for key in chunk_keys(job_id, t):
        bulk.erase_chunk(t.tenant_id, job_id, key)
    bulk.report(t.tenant_id, job_id)
    return bulk.to_json(bulk.load(t.tenant_id, job_id))


def report_rows(job: dict[str, Any]) -> list[dict[str, str]]:
    key = job["report_url"].split("?")[0].split("/", 3)[3]
    body = aws.client("s3").get_object(Bucket=get_settings().bucket("exports"), Key=key)
    return list(csv.DictReader(io.StringIO(body["Body"].read().decode())))


def found(demo_map, tenant_id: str, email: str) -> int:
    from oblio.pipeline import find

    return find.walk(demo_map, tenant_id, {"email": email}).total


# -- how each row becomes identities -----------------------------------------------------------

def test_identities_are_normalised_the_way_every_lookup_is(t):
    _, rows = validated(t, "\ufeffemail;phone;external_id\n"
                           " Mario.Rossi@Example.COM ;333 123 4567; CRM-1 \n".encode())
    assert rows == [{"line": 2, "identities": {"email": "mario.rossi@example.com",
                                               "phone": "+393331234567",
                                               "external_id": "CRM-1"},
                     "dry_run": False}]


def test_empty_cells_and_short_rows_name_the_identities_they_have(t):
    _, rows = validated(t, b"email,phone\na@example.com,\n,+393331234567\nb@example.com\n")
    assert [r["identities"] for r in rows] == [{"email": "a@example.com"},
                                               {"phone": "+393331234567"},
                                               {"email": "b@example.com"}]


def test_a_row_that_does_not_parse_is_rejected_with_its_line_and_reason(t):
    job_id, rows = validated(t, b"email,phone,note\nok@example.com,,\nnot-an-email,,\n"
                                b"ok2@example.com,12,\n,,called us\n")
    assert [r["line"] for r in rows] == [2]
    job = bulk.load(t.tenant_id, job_id)
    rejects = [r for k in job.reject_keys for r in objects.get_json(k)]
    assert [(r["line"], r["outcome"]) for r in rejects] == [(3, "invalid"), (4, "invalid"),
                                                           (5, "invalid")]
    reasons = [r["reason"] for r in rejects]
    assert "email" in reasons[0] and "phone" in reasons[1] and "no identity" in reasons[2]
    assert "not-an-email" not in repr(rejects)


def test_one_bad_identity_rejects_the_whole_row(t):
    job_id, rows = validated(t, b"email,phone\nok@example.com,12\n")
    assert rows == []
    assert bulk.to_json(bulk.load(t.tenant_id, job_id))["invalid"] == 1


def test_the_same_person_written_twice_is_one_row_and_a_duplicate(t):
    job_id, rows = validated(t, b"email\nsame@example.com\n SAME@Example.com\n"
                                b"other@example.com\n")
    assert [r["line"] for r in rows] == [2, 4]
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert (job["duplicates"], job["invalid"], job["rows_total"]) == (1, 0, 3)


def test_the_same_person_named_by_other_identities_is_not_a_duplicate(t):
    """Duplicates are the same identities: a line with e-mail and phone is not the line with
    the e-mail alone (the erasure finds the same person twice; the second finds nothing)."""
    _, rows = validated(t, b"email,phone\np@example.com,\np@example.com,+393331234567\n")
    assert [r["line"] for r in rows] == [2, 3]


def test_a_dry_run_column_marks_the_rows_to_preview(t):
    _, rows = validated(t, b"email,dry_run\na@example.com,yes\nb@example.com,\n"
                           b"c@example.com,TRUE\nd@example.com,no\ne@example.com,1\n")
    assert {r["identities"]["email"][0]: r["dry_run"] for r in rows} == {
        "a": True, "b": False, "c": True, "d": False, "e": True}


def test_a_row_of_empty_cells_is_a_blank_line_not_a_bad_row(t):
    job_id, rows = validated(t, b"email,phone\na@example.com,\n,\n , \n")
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert (len(rows), job["blank_lines"], job["invalid"]) == (1, 2, 0)


def test_blank_lines_are_counted_and_other_columns_named_as_ignored(t):
    job_id, rows = validated(t, b"Email,Note,dry_run,\n\na@example.com,x,,\n \n")
    assert len(rows) == 1
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert (job["blank_lines"], job["ignored_columns"], job["rows_total"]) == (2, ["column 2"], 1)


def test_ignored_columns_are_named_by_position_never_by_the_headers_text(t):
    """A header may be a row of personal data: the job keeps no header cell in clear."""
    job_id, _ = validated(t, b"email,Mario Rossi,mario.rossi@example.com\na@example.com,x,y\n")
    job = bulk.load(t.tenant_id, job_id)
    assert sorted(job.ignored_columns) == ["column 2", "column 3"]
    assert "mario" not in repr(job.attribute_values).lower()


def test_a_header_of_150000_columns_is_read_and_what_is_kept_is_bounded(t):
    header = b"email," + b",".join(b"c%d" % i for i in range(150_000))
    job_id, rows = validated(t, header + b"\na@example.com\n")
    assert len(rows) == 1
    ignored = bulk.to_json(bulk.load(t.tenant_id, job_id))["ignored_columns"]
    assert len(ignored) == bulk.IGNORED_SHOWN + 1
    assert "and 149980 more columns" in ignored


def test_bad_lines_anywhere_are_reported_by_number_and_the_good_ones_kept(t):
    """A non-UTF-8 byte after the first 64 KiB and a field over the csv module's limit: each
    line reported with its number, every other row validated."""
    good = b"".join(b"p%05d@example.com,\n" % i for i in range(4000))
    content = (b"email,note\n" + good + b"ren\xe9@example.com,x\n"
               + b"z@example.com," + b"q" * 200_000 + b"\n" + b"last@example.com,\n")
    assert len(good) > 65536
    job_id, rows = validated(t, content)
    assert len(rows) == 4001
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert (job["status"], job["invalid"], job["rows_total"]) == ("running", 2, 4003)
    rejects = [r for k in bulk.load(t.tenant_id, job_id).reject_keys
               for r in objects.get_json(k)]
    assert [(r["line"], r["reason"]) for r in rejects] == [
        (4002, bulk.NOT_UTF8), (4003, bulk.FIELD_TOO_LONG)]
    assert world.versions(get_settings().bucket("ingest"), upload_key(job_id, t)) == []


def test_an_error_of_oblios_own_fails_the_job_and_still_deletes_the_upload(t, monkeypatch):
    job_id, key = upload(t, b"email\na@example.com\n")
    bucket = get_settings().bucket("ingest")

    def broken(*a: Any, **k: Any) -> Any:
        raise RuntimeError("a@example.com")  # an exception whose text quotes the file

    monkeypatch.setattr(bulk, "normalise", broken)
    assert bulk.validate(t.tenant_id, job_id, bucket, key) == {"failed": True, "chunks": 0}
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert job["status"] == "failed" and "RuntimeError" in job["error"]
    assert "a@example.com" not in job["error"]
    assert world.versions(bucket, key) == []


def test_validation_deletes_every_version_of_the_upload(t):
    job_id, key = upload(t, b"email\na@example.com\n")
    aws.client("s3").put_object(Bucket=get_settings().bucket("ingest"), Key=key,
                                Body=b"email\na@example.com\nb@example.com\n")
    bulk.validate(t.tenant_id, job_id, get_settings().bucket("ingest"), key)
    assert world.versions(get_settings().bucket("ingest"), key) == []


def test_validation_sizes_the_maps_concurrency_from_the_chunks_and_the_tenants_cap(
        t, monkeypatch):
    monkeypatch.setattr(get_settings(), "bulk_chunk_size", 2)
    rows = b"email\n" + b"".join(f"p{i}@example.com\n".encode() for i in range(7))
    job_id, key = upload(t, rows)
    out = bulk.validate(t.tenant_id, job_id, get_settings().bucket("ingest"), key)
    assert (out["chunks"], out["concurrency"]) == (4, 4)  # one worker per chunk

    tenants.update_settings(t.tenant_id, {"settings": {"bulk_max_concurrency": 3}})
    job_id, key = upload(t, rows)
    out = bulk.validate(t.tenant_id, job_id, get_settings().bucket("ingest"), key)
    assert (out["chunks"], out["concurrency"]) == (4, 3)  # the tenant's cap binds


def test_a_retried_validation_returns_the_chunks_it_cut(t):
    job_id, key = upload(t, b"email\na@example.com\n")
    bucket = get_settings().bucket("ingest")
    first = bulk.validate(t.tenant_id, job_id, bucket, key)
    assert bulk.validate(t.tenant_id, job_id, bucket, key) == first  # the upload is gone
    assert bulk.to_json(bulk.load(t.tenant_id, job_id))["rows_total"] == 1


# -- files refused at once ---------------------------------------------------------------------

@pytest.mark.parametrize("content, says", [
    (b"", "empty"), (b"name,city\nMario,Roma\n", "no identity column"),
    (b"\x89PNG\r\n\x1a\n\x00\x00", "binary"), (b"\n\n\n", "empty"),
])
def test_a_file_that_cannot_be_read_fails_the_job_and_is_deleted(t, content, says):
    job_id, key = upload(t, content)
    bucket = get_settings().bucket("ingest")
    assert bulk.validate(t.tenant_id, job_id, bucket, key) == {"failed": True, "chunks": 0}
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert job["status"] == "failed" and says in job["error"]
    assert world.versions(bucket, key) == []


def test_a_file_over_the_size_or_row_limit_fails_saying_how_to_split_it(t, monkeypatch):
    bucket = get_settings().bucket("ingest")
    monkeypatch.setattr(get_settings(), "bulk_max_bytes", 10)
    job_id, key = upload(t, b"email\na@example.com\n")
    bulk.validate(t.tenant_id, job_id, bucket, key)
    assert "over the limit" in bulk.to_json(bulk.load(t.tenant_id, job_id))["error"]
    monkeypatch.undo()
    monkeypatch.setattr(get_settings(), "bulk_max_rows", 2)
    job_id, key = upload(t, b"email\na@example.com\nb@example.com\nc@example.com\n")
    bulk.validate(t.tenant_id, job_id, bucket, key)
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert job["status"] == "failed" and "more than 2 rows" in job["error"]


# -- starting from an upload -------------------------------------------------------------------

def test_an_upload_outside_a_tenants_bulk_prefix_is_ignored(t):
    bucket = get_settings().bucket("ingest")
    for key in ("elsewhere/x.csv", "bulk/", f"bulk/{t.tenant_id}"):
        assert bulk.start_from_upload(bucket, key) == {"ignored": key}


def test_an_upload_under_an_unknown_tenant_is_refused(t):
    with pytest.raises(NotFound):
        bulk.start_from_upload(get_settings().bucket("ingest"), "bulk/no-such-tenant/x.csv")


def test_a_csv_dropped_straight_into_the_bucket_gets_a_job_of_its_own(t):
    bucket, key = get_settings().bucket("ingest"), f"bulk/{t.tenant_id}/from-crm.csv"
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=b"email\na@example.com\n")
    started = bulk.start_from_upload(bucket, key)
    job = bulk.load(t.tenant_id, started["job_id"])
    assert (job.status, job.upload_key, job.requested_by) == ("validating", key, "s3-upload")


def test_a_file_named_as_a_job_elsewhere_under_the_prefix_is_a_job_of_its_own(t):
    """A job made through the API waits for its file at its own key. A file elsewhere under
    the tenant's prefix that is named as that job (`bulk/<tenant>/x/<job id>.csv`) is a
    dropped file: a job of its own, and the waiting job still waits for its file. Before,
    it started the waiting job on that other file."""
    made = bulk.create_job(world.principal(t.tenant_id), parse(BulkBody, {"dry_run": True}))
    bucket = made["upload_bucket"]
    elsewhere = f"bulk/{t.tenant_id}/nested/{made['job_id']}.csv"
    aws.client("s3").put_object(Bucket=bucket, Key=elsewhere, Body=b"email\na@example.com\n")

    started = bulk.start_from_upload(bucket, elsewhere)

    assert started["job_id"] != made["job_id"] and started["status"] == "validating"
    other = bulk.load(t.tenant_id, started["job_id"])
    assert (other.upload_key, other.requested_by, other.dry_run) == (
        elsewhere, "s3-upload", False)
    waiting = bulk.load(t.tenant_id, made["job_id"])
    assert (waiting.status, waiting.upload_key) == ("awaiting_upload", made["upload_key"])


def test_a_dropped_files_event_delivered_again_finds_the_job_it_made(t):
    """EventBridge delivers at least once: each delivery of a dropped file's event names the
    same job (after that upload of the file), so a second delivery starts nothing; once the
    file is gone (its job's validation deletes it) a late delivery is ignored; another upload
    to the same key is another job. Before, every delivery made and started a job."""
    import time

    bucket, key = get_settings().bucket("ingest"), f"bulk/{t.tenant_id}/from-crm.csv"
    s3 = aws.client("s3")
    s3.put_object(Bucket=bucket, Key=key, Body=b"email\na@example.com\n")
    first = bulk.start_from_upload(bucket, key)
    assert bulk.start_from_upload(bucket, key) == first == {
        "job_id": first["job_id"], "status": "validating"}
    assert [j["job_id"] for j in bulk.list_jobs(t.tenant_id)["items"]] == [first["job_id"]]
    s3.delete_object(Bucket=bucket, Key=key)
    assert bulk.start_from_upload(bucket, key)["ignored"] == key
    time.sleep(1.1)  # S3 keeps when an object was written to the second
    s3.put_object(Bucket=bucket, Key=key, Body=b"email\nb@example.com\n")
    second = bulk.start_from_upload(bucket, key)
    assert second["job_id"] != first["job_id"] and second["status"] == "validating"
    assert len(bulk.list_jobs(t.tenant_id)["items"]) == 2


def test_the_upload_event_function_may_read_the_dropped_file():
    """It names a dropped file's job after its HeadObject: without GetObject (and ListBucket,
    which makes a missing file a 404, not a 403) every dropped file's event fails on AWS."""
    from infra.cdk.access import ACCESS

    assert set(ACCESS["bulk_start"].buckets["ingest"]) >= {"get", "list"}


def test_a_repeated_upload_event_starts_nothing_again(t):
    job_id, key = upload(t, b"email\na@example.com\n")
    assert bulk.start_from_upload(get_settings().bucket("ingest"), key) == {
        "job_id": job_id, "status": "validating"}
    jobs = bulk.list_jobs(t.tenant_id)["items"]
    assert [j["job_id"] for j in jobs] == [job_id]


def test_an_upload_whose_start_failed_waits_for_its_files_event_again(t, monkeypatch):
    """StartExecution refused (throttled, an outage): nothing runs, so the job goes back to
    waiting for its file and the event's redelivery (S3 events are retried for a function
    that raised) starts it. Before, the job stayed `validating` for good and every redelivery
    was taken for a repeat."""
    from oblio.store import workflows

    made = bulk.create_job(world.principal(t.tenant_id), parse(BulkBody, {}))
    aws.client("s3").put_object(Bucket=made["upload_bucket"], Key=made["upload_key"],
                                Body=b"email\na@example.com\n")
    real = workflows.start

    def refused(*a: Any, **k: Any) -> str:
        raise RuntimeError("StartExecution throttled")

    monkeypatch.setattr(workflows, "start", refused)
    with pytest.raises(RuntimeError):
        bulk.start_from_upload(made["upload_bucket"], made["upload_key"])
    assert bulk.load(t.tenant_id, made["job_id"]).status == "awaiting_upload"
    monkeypatch.setattr(workflows, "start", real)
    assert bulk.start_from_upload(made["upload_bucket"], made["upload_key"]) == {
        "job_id": made["job_id"], "status": "validating"}


# -- erasing the chunks ------------------------------------------------------------------------

def test_a_job_erases_the_people_found_and_reports_the_others(demo_map, t):
    world.seed(demo_map, t.tenant_id, "gone@example.com", "+393331112222")
    world.seed(demo_map, t.tenant_id, "stays@example.com")
    job = run_job(t, b"email\ngone@example.com\nghost@example.com\nbad\n")
    assert (job["status"], job["erased"], job["not_found"], job["invalid"]) == (
        "completed", 1, 1, 1)
    assert job["rows_total"] == job["rows_done"] == 3
    assert found(demo_map, t.tenant_id, "gone@example.com") == 0
    assert found(demo_map, t.tenant_id, "stays@example.com") > 10


def test_each_erased_line_gets_a_request_record_with_its_certificate(demo_map, t):
    world.seed(demo_map, t.tenant_id, "gone@example.com")
    job = run_job(t, b"email\ngone@example.com\n")
    (row,) = report_rows(job)
    m = records.to_json(records.load(t.tenant_id, row["request_id"]))
    assert (m["type"], m["status"]) == ("erasure", "completed")
    cert = m["result"]["certificate"]
    assert cert["verification"]["passed"] is True and cert["audit_entry"]["hash"]
    assert cert["tables"]["contacts"]["deleted"] == 1
    assert m["subject_ref"] == row["subject_ref"]


def test_a_line_whose_pointer_names_no_readable_file_is_not_certified_clean(demo_map, t):
    """As a single erasure: a pointer oblio cannot follow may leave her file, so her line's
    verification does not pass (before, the bulk path dropped such pointers and passed)."""
    from oblio.store import tables as store

    world.seed(demo_map, t.tenant_id, "gone@example.com")
    doc = next(i for i in world.items("demo-documents", t.tenant_id) if i.get("s3_key"))
    store.batch_put("demo-documents", [{**doc, "s3_key": "https://cdn.example.org/x.pdf"}])
    job = run_job(t, b"email\ngone@example.com\n")
    (row,) = report_rows(job)
    m = records.to_json(records.load(t.tenant_id, row["request_id"]))
    verification = m["result"]["certificate"]["verification"]
    assert verification["passed"] is False and verification["remaining"]["documents"] == 1
    assert job["status"] != "completed"


def test_dry_run_rows_and_dry_run_jobs_erase_nothing(demo_map, t):
    world.seed(demo_map, t.tenant_id, "a@example.com")
    world.seed(demo_map, t.tenant_id, "b@example.com")
    job = run_job(t, b"email,dry_run\na@example.com,yes\nb@example.com,\n")
    assert (job["erased"], job["would_erase"]) == (1, 1)
    assert found(demo_map, t.tenant_id, "a@example.com") > 0
    assert found(demo_map, t.tenant_id, "b@example.com") == 0
    preview = run_job(t, b"email\na@example.com\n", dry_run=True)
    assert (preview["erased"], preview["would_erase"], preview["dry_run"]) == (0, 1, True)
    assert found(demo_map, t.tenant_id, "a@example.com") > 0


def test_a_chunk_done_is_skipped_when_it_is_retried(demo_map, t):
    world.seed(demo_map, t.tenant_id, "a@example.com")
    job_id, _ = validated(t, b"email\na@example.com\n")
    (key,) = chunk_keys(job_id, t)
    assert bulk.erase_chunk(t.tenant_id, job_id, key)["erased"] == 1
    assert bulk.erase_chunk(t.tenant_id, job_id, key) == {"chunk": key, "skipped": True}
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert (job["erased"], job["rows_done"]) == (1, 1)


def test_a_chunk_retried_after_failing_halfway_reports_what_it_erased(demo_map, t,
                                                                      monkeypatch):
    """The first attempt erases every line's items and certifies one line, then fails; the
    retry finds nothing left to erase but reports every line as erased, once each (the
    crashes between the later recording steps: tests/unit/test_bulk_evidence.py)."""
    from oblio.core import clock

    emails = [f"chunk.retry.{i}@example.net" for i in range(3)]
    for email in emails:
        world.seed(demo_map, t.tenant_id, email)
    job_id = "RETRY01"
    BulkJobModel(tenant_id=t.tenant_id, job_id=job_id, status="running", created_at=clock.iso(),
                 io={}).save()
    chunk = f"work/{t.tenant_id}/bulk/{job_id}/chunks/000000.json"
    objects.put_json(chunk, [{"line": i + 2, "identities": {"email": e}, "dry_run": False}
                             for i, e in enumerate(emails)])
    certify, calls = bulk._certify, []

    def fail_on_the_second(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 2:
            raise TransientError("the chunk worker died")
        return certify(*args, **kwargs)

    monkeypatch.setattr(bulk, "_certify", fail_on_the_second)
    with pytest.raises(TransientError):
        bulk.erase_chunk(t.tenant_id, job_id, chunk)
    assert all(found(demo_map, t.tenant_id, e) == 0 for e in emails)
    monkeypatch.setattr(bulk, "_certify", certify)

    out = bulk.erase_chunk(t.tenant_id, job_id, chunk)

    assert (out["erased"], out["not_found"], out["failed"]) == (3, 0, 0), out
    job = BulkJobModel.get(t.tenant_id, job_id)
    assert (int(job.erased), int(job.not_found or 0)) == (3, 0)
    parts = objects.get_json(f"work/{t.tenant_id}/bulk/{job_id}/report/000000.json")
    assert [p["outcome"] for p in parts] == ["erased"] * 3
    assert all(p["matched"] > 0 for p in parts)
    recorded = list(shards.query_tenant(RequestModel, t.tenant_id,
                                        RequestModel.sk.startswith("req#"),
                                        filter_condition=RequestModel.requested_by ==
                                        f"bulk:{job_id}"))
    assert len(recorded) == 3 and all(records.to_json(r)["result"]["certificate"]
                                      for r in recorded)
    assert bulk.erase_chunk(t.tenant_id, job_id, chunk)["skipped"] is True


# -- the report --------------------------------------------------------------------------------

def test_the_report_lists_every_line_in_order_without_an_identity(demo_map, t):
    world.seed(demo_map, t.tenant_id, "gone@example.com")
    job = run_job(t, b"email\n=HYPERLINK(\"x\")\ngone@example.com\ngone@example.com\n"
                     b"ghost@example.com\n")
    rows = report_rows(job)
    assert [(r["line"], r["outcome"]) for r in rows] == [
        ("2", "invalid"), ("3", "erased"), ("4", "duplicate"), ("5", "not_found")]
    assert list(rows[0]) == list(bulk.REPORT_COLUMNS)
    text = repr(rows)
    assert "gone@" not in text and "ghost@" not in text and "HYPERLINK" not in text
    assert all(not c.startswith(("=", "+", "-", "@")) for r in rows for c in r.values())


def test_a_report_of_nobody_found_says_so_and_the_work_files_are_gone(t):
    job = run_job(t, b"email\nghost1@example.org\nghost2@example.org\n")
    assert job["status"] == "completed" and job["not_found"] == 2
    assert job["message"] == "nobody in the file was found: nothing was erased"
    work = f"work/{t.tenant_id}/bulk/{job['job_id']}/"
    assert world.keys_under(get_settings().bucket("work"), work) == []


def test_a_retried_report_does_nothing_twice(t):
    job = run_job(t, b"email\nghost@example.org\n")
    assert bulk.report(t.tenant_id, job["job_id"]) == {"status": "completed"}
    assert bulk.to_json(bulk.load(t.tenant_id, job["job_id"]))["completed_at"] == \
        job["completed_at"]


def test_a_failure_the_state_machine_caught_ends_the_job_once(t):
    job_id, _ = upload(t, b"email\na@example.com\n")
    error = {"Error": "States.TaskFailed",
             "Cause": '{"errorType": "TransientError", "errorMessage": "throttled"}'}
    assert bulk.fail(t.tenant_id, job_id, error) == {"status": "failed"}
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert job["status"] == "failed" and job["error"] == "TransientError: throttled"
    bulk.fail(t.tenant_id, job_id, {"Error": "Later", "Cause": "again"})
    assert bulk.to_json(bulk.load(t.tenant_id, job_id))["error"] == job["error"]


def test_a_job_with_a_chunk_that_never_finished_fails_naming_it_and_keeps_its_plans(
        demo_map, t):
    """The Map reported success but one chunk of the index was never recorded done: the
    report must not call the job completed, and must keep what a retry resumes from."""
    emails = [f"missing.chunk.{i}@example.net" for i in range(2)]
    for email in emails:
        world.seed(demo_map, t.tenant_id, email)
    content = ("email\n" + "".join(f"{e}\n" for e in emails)).encode()
    job_id, _ = validated(t, content)
    (key,) = chunk_keys(job_id, t)  # the chunk failed: erase_chunk never recorded it

    out = bulk.report(t.tenant_id, job_id)

    assert out == {"status": "failed", "chunks_missing": ["000000"]}
    job = bulk.to_json(bulk.load(t.tenant_id, job_id))
    assert job["status"] == "failed" and "000000" in job["error"]
    assert objects.exists(key)  # the manifest stays for a retry
