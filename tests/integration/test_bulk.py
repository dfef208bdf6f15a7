"""Bulk erasure over HTTP and S3 against the local stack: the CSV goes up through a presigned
URL (or straight into the ingest bucket), S3's event starts the job, a Distributed Map erases
the chunks, and the report and the job's counters say what happened to every line."""

from __future__ import annotations

import csv
import io
import time
from typing import Any

import pytest
import requests as http

from infra.local.lambdas import Fault
from tests.integration import raw

# the 1,000 people, seeded beside the demo data by the test that erases them
N = 1000
GENERATED = [f"crowd{i:05d}@bulk.example.org" for i in range(N)]


def finished(api: Any, job_id: str, timeout: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = api.get(f"/v1/bulk-erasures/{job_id}").json()
        if job["status"] in ("completed", "completed_with_errors", "failed"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"bulk job {job_id} did not finish")


def upload(api: Any, content: bytes, **options: Any) -> dict[str, Any]:
    r = api.post("/v1/bulk-erasures", options)
    assert r.status_code == 201, r.text
    job = r.json()
    assert http.put(job["upload_url"], data=content, timeout=60).status_code == 200
    return finished(api, job["job_id"])


def report_rows(job: dict[str, Any]) -> list[dict[str, str]]:
    text = http.get(job["report_url"], timeout=60).text
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture(scope="module")
def crowd(api, dm) -> dict[str, Any]:
    """The issue's 1,000 people seeded and erased by one CSV (UTF-8 with a BOM, semicolons)
    that also holds malformed rows, a blank line, a duplicate and formulas."""
    from infra.local import demo

    seeded = demo.seed_crowd(dm, "demo", GENERATED)
    jeanne = api.get("/v1/subjects", email="jeanne.dupont@example.com").json()["total"]
    bad = ["not-an-email", "=HYPERLINK(\"http://evil\")", "@SUM(A1)", "mario@", "+33 12",
           "-1+1", "a@b", "x" * 300, "no at sign", "two@@example.com"]
    lines = ["email;phone;comment"]
    lines += [f"{e};;customer" for e in GENERATED]
    lines += [f"{b};;bad" for b in bad]
    lines += ["", f"{GENERATED[0]};;duplicate", ";+39 12;bad phone", ";;=cmd|' /C calc'!A0"]
    content = ("\ufeff" + "\n".join(lines) + "\n").encode()
    job = upload(api, content)
    return {"seeded": seeded, "jeanne": jeanne, "bad": bad, "job": job,
            "report": http.get(job["report_url"], timeout=60).text,
            "rows": report_rows(job)}


def test_a_bulk_job_erases_a_thousand_subjects(crowd):
    assert crowd["seeded"]["contacts"] == N
    job = crowd["job"]
    assert job["status"] == "completed", job
    assert job["erased"] == N and job["failed"] == 0


def test_a_bulk_job_counts_bad_rows_duplicates_blank_lines_and_ignored_columns(crowd):
    job, bad = crowd["job"], crowd["bad"]
    assert job["invalid"] == len(bad) + 2 and job["duplicates"] == 1
    assert job["blank_lines"] == 1
    assert job["rows_total"] == job["rows_done"] == N + len(bad) + 3
    assert job["ignored_columns"] == ["column 3"]  # by position: a header cell is never kept


def test_the_bulk_report_has_one_row_per_line_in_line_order(crowd):
    rows, bad = crowd["rows"], crowd["bad"]
    assert len(rows) == crowd["job"]["rows_total"]
    by_outcome: dict[str, int] = {}
    for row in rows:
        by_outcome[row["outcome"]] = by_outcome.get(row["outcome"], 0) + 1
    assert by_outcome == {"erased": N, "invalid": len(bad) + 2, "duplicate": 1}
    assert [int(r["line"]) for r in rows] == sorted(int(r["line"]) for r in rows)
    invalid = [r for r in rows if r["outcome"] == "invalid"]
    assert all(r["reason"] and r["line"] for r in invalid)


def test_the_bulk_report_holds_no_identity_and_no_cell_a_spreadsheet_would_run(crowd):
    assert "example.org" not in crowd["report"] and "HYPERLINK" not in crowd["report"]
    assert all(not cell.startswith(("=", "+", "-", "@"))
               for r in crowd["rows"] for cell in r.values())


def test_every_subject_erased_in_bulk_has_a_request_with_its_certificate(api, crowd):
    erased = [r for r in crowd["rows"] if r["outcome"] == "erased"]
    one = api.get(f"/v1/requests/{erased[0]['request_id']}").json()
    assert one["status"] == "completed" and one["result"]["certificate"]["audit_entry"]


def test_subjects_erased_in_bulk_are_gone_and_suppressed_and_others_stay(api, crowd):
    for email in GENERATED[:5] + GENERATED[-5:]:
        after = api.get("/v1/subjects", email=email).json()
        assert after["found"] is False and after["suppressed"] is True
    assert api.get("/v1/subjects", email="contact0000350@demo.example.org").json()["found"]
    assert api.get("/v1/subjects", email="jeanne.dupont@example.com").json()["total"] == \
        crowd["jeanne"]
    assert api.get("/v1/audit/verify").json()["valid"] is True


def test_no_version_of_a_bulk_upload_is_left(aws_client, settings, crowd):
    """The upload held personal data."""
    assert crowd["job"]["status"] == "completed"
    assert raw.versions_under(aws_client, settings.bucket("ingest"), "bulk/demo/") == 0


def test_the_same_file_twice_finds_nobody_left_the_second_time(api, subject):
    content = f"email,phone\n{subject['email']},\n,{subject['phone']}\n".encode()
    first = upload(api, content)
    # two lines name the same person by two identities: both lines are erased
    assert first["status"] == "completed" and first["erased"] == 2, first
    again = upload(api, content)
    assert again["status"] == "completed" and again["erased"] == 0
    assert again["not_found"] == 2
    assert "nobody in the file was found" in again["message"]


def test_bulk_dry_run_erases_nothing(api, subject):
    job = upload(api, f"email\n{subject['email']}\n".encode(), dry_run=True)
    assert job["status"] == "completed" and job["would_erase"] == 1 and job["erased"] == 0
    assert api.get("/v1/subjects", email=subject["email"]).json()["found"] is True
    assert report_rows(job)[0]["outcome"] == "would_erase"


def test_a_csv_dropped_straight_into_the_ingest_bucket_starts_a_job(api, subject,
                                                                    aws_client, settings):
    aws_client("s3").put_object(Bucket=settings.bucket("ingest"),
                                Key="bulk/demo/from-our-crm.csv",
                                Body=f"external_id,email\n,{subject['email']}\n".encode())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = api.get("/v1/bulk-erasures", limit=5).json()["items"]
        mine = [j for j in jobs if j["erased"] == 1 and j["status"] == "completed"]
        if mine:
            break
        time.sleep(0.5)
    assert mine, jobs
    assert api.get("/v1/subjects", email=subject["email"]).json()["found"] is False


def test_bad_files_fail_at_once_and_erase_nothing(api, subject):
    cases = {
        b"": "empty",
        b"name,city\nMario,Roma\n": "no identity column",
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)): "binary",
    }
    for content, reason in cases.items():
        job = upload(api, content)
        assert job["status"] == "failed", (reason, job)
        assert reason.split()[0] in job["error"], (reason, job["error"])
        assert job["erased"] == 0
    assert api.get("/v1/subjects", email=subject["email"]).json()["found"] is True


def test_a_file_over_the_size_limit_fails_and_erases_nothing(api, subject, stack_settings):
    stack_settings(bulk_max_bytes=10)
    job = upload(api, f"email\n{subject['email']}\n".encode())
    assert job["status"] == "failed" and "over the limit" in job["error"]
    assert api.get("/v1/subjects", email=subject["email"]).json()["found"] is True


def test_a_file_of_unknown_people_reports_each_as_not_found(api):
    job = upload(api, b"email\nghost1@example.org\nghost2@example.org\n")
    assert job["status"] == "completed" and job["not_found"] == 2 and job["erased"] == 0
    assert {r["outcome"] for r in report_rows(job)} == {"not_found"}


def test_bulk_jobs_need_the_erase_scope(api, stack):
    from tests.client import Api

    reader = Api(stack.info["api_url"],
                 api.post("/v1/keys", {"scopes": ["dsr:read"]}).json()["api_key"])
    assert reader.post("/v1/bulk-erasures", {}).status_code == 403
    assert api.get("/v1/bulk-erasures/01NOTAJOB").status_code == 404


def test_a_chunk_retried_after_its_answer_was_lost_counts_each_line_once(api, dm, faults,
                                                                          event_log):
    """The chunk's task erases and certifies every line, then fails as a timeout would;
    the state machine retries it, and the retry does nothing again. (A chunk that fails
    halfway is tests/unit/test_bulk_jobs.py's.)"""
    from infra.local import demo

    emails = [f"chunk.retry.{i}@example.net" for i in range(3)]
    for email in emails:
        demo.seed_subject(dm, "demo", email)
    lost = Fault("bulk_chunk", "TransientError", "the chunk's answer was lost", after=True)
    faults.inject(lost)
    job = upload(api, ("email\n" + "".join(f"{e}\n" for e in emails)).encode())
    assert lost.times == 0  # the chunk did fail once
    assert job["status"] == "completed", job
    assert (job["erased"], job["not_found"], job["failed"]) == (3, 0, 0)
    assert job["rows_done"] == job["rows_total"] == 3
    rows = report_rows(job)
    assert [r["outcome"] for r in rows] == ["erased"] * 3
    assert len({r["request_id"] for r in rows}) == 3
    erased = [e for e in event_log.drain() if e["detail-type"] == "SubjectErased"
              and e["detail"].get("bulk_job") == job["job_id"]]
    assert sorted(e["detail"]["request_id"] for e in erased) == sorted(
        r["request_id"] for r in rows)
    assert all(api.get("/v1/subjects", email=e).json()["total"] == 0 for e in emails)


def test_the_bulk_erase_command_uploads_a_file_and_follows_the_job(stack, api, subject,
                                                                   tmp_path, capsys):
    from infra import cli

    csv_file = tmp_path / "forget.csv"
    csv_file.write_text(f"email,note\n{subject['email']},asked by phone\nnot-an-email,x\n")

    code = cli.main(["bulk-erase", str(csv_file), "--api-url", stack.info["api_url"],
                     "--api-key", stack.info["tenants"]["demo"]["api_key"], "--poll", "0.3"])

    out = capsys.readouterr().out
    assert code == 0, out
    assert '"erased": 1' in out and '"invalid": 1' in out
    assert api.get("/v1/subjects", email=subject["email"]).json()["total"] == 0


def test_a_dropped_csv_whose_start_failed_three_times_is_a_dead_letter_redrive_starts_it(
        api, subject, aws_client, settings, faults, stack, tmp_path, monkeypatch, capsys):
    """bulk_start fails on the upload's event three times (as Lambda tries an asynchronous
    event): the event is a dead letter, nothing is erased, and `oblio dead-letters redrive`
    sends it again, which starts the job that erases her."""
    import json

    from infra import cli

    dead = tmp_path / "dead-letters.jsonl"
    monkeypatch.setattr(stack._pump, "dead_letters", dead)
    faults.inject(Fault("bulk_start", "TransientError", "the tenants table is throttled",
                        times=3))
    aws_client("s3").put_object(Bucket=settings.bucket("ingest"),
                                Key="bulk/demo/from-our-hr-system.csv",
                                Body=f"email\n{subject['email']}\n".encode())
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not dead.exists():
        time.sleep(0.2)
    [letter] = [json.loads(line) for line in dead.read_text().splitlines()]
    assert (letter["function"], letter["attempts"]) == ("bulk_start", 3)
    assert subject["email"] not in dead.read_text()  # the event names the upload only
    assert api.get("/v1/subjects", email=subject["email"]).json()["found"] is True

    state = tmp_path / "local.json"
    state.write_text(json.dumps({**stack.info, "dead_letters": str(dead)}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "STATE", state)
    assert cli.main(["dead-letters", "list"]) == 0
    listed = capsys.readouterr().out
    assert "1 dead letter(s)" in listed and "bulk_start" in listed
    assert cli.main(["dead-letters", "redrive"]) == 0
    said = capsys.readouterr().out
    assert "sent again: 1" in said and "failed again: 0" in said
    assert dead.read_text() == ""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if api.get("/v1/subjects", email=subject["email"]).json()["found"] is False:
            break
        time.sleep(0.5)
    assert api.get("/v1/subjects", email=subject["email"]).json()["found"] is False
