"""The chunked pipeline bulk erasure and retention sweeps share: where a job's files are, the
index the Distributed Map reads, the Map's input, a chunk recorded once, a caught failure.
The decisions are pure (no AWS); the conditional writes run against moto at the end."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from botocore.exceptions import ClientError
from pynamodb.exceptions import PutError, UpdateError

from oblio.jobs import chunks


def test_a_jobs_files_sit_under_one_prefix_of_its_tenant_and_kind():
    bulk = chunks.Work("acme", "bulk", "J1")
    sweep = chunks.Work("acme", "sweeps", "S1")

    assert bulk.prefix == "work/acme/bulk/J1/"
    assert bulk.chunk(0) == "work/acme/bulk/J1/chunks/000000.json"
    assert bulk.part("rejects", 12) == "work/acme/bulk/J1/rejects/000012.json"
    assert bulk.beside("plans", bulk.chunk(3)) == "work/acme/bulk/J1/plans/000003.json"
    assert bulk.index_key == "work/acme/bulk/J1/chunks.csv"
    assert sweep.chunk(7) == "work/acme/sweeps/S1/chunks/000007.json"
    assert all(k.startswith(sweep.prefix) for k in (sweep.chunk(0), sweep.index_key))


def test_a_chunk_is_named_by_its_number():
    assert chunks.chunk_name("work/acme/sweeps/S1/chunks/000042.json") == "000042"


def test_the_index_is_a_csv_the_item_reader_reads_one_manifest_a_row():
    work = chunks.Work("acme", "bulk", "J1")
    keys = [work.chunk(i) for i in range(3)]

    text = chunks.index_csv(keys).decode()

    assert text.splitlines()[0] == "chunk"  # CSVHeaderLocation FIRST_ROW
    assert [r["chunk"] for r in csv.DictReader(io.StringIO(text))] == keys


def test_an_empty_index_has_its_header_only():
    assert chunks.index_csv([]) == b"chunk\n"


def test_the_map_input_says_where_the_index_is_and_carries_the_steps_flag():
    out = chunks.map_input(3, "work/acme/bulk/J1/chunks.csv", 4, failed=False)

    assert out == {"failed": False, "chunks": 3, "index_bucket": out["index_bucket"],
                   "index_key": "work/acme/bulk/J1/chunks.csv", "concurrency": 4}
    assert out["index_bucket"].endswith("work")
    assert chunks.map_input(0, None, 2, done=True)["done"] is True
    json.dumps(out)  # a Step Functions payload: references only, plain JSON


def test_rows_are_cut_into_parts_of_the_given_size_as_they_come():
    written: list[tuple[str, list[Any]]] = []
    parts = chunks.Parts(chunks.Work("acme", "bulk", "J1"), "chunks", 2,
                         put=lambda key, rows: written.append((key, list(rows))))

    for n in range(5):
        parts.add({"line": n + 2})
    assert len(written) == 2 and parts.rows == [{"line": 6}]  # one part held at a time
    parts.flush()
    parts.flush()  # nothing left: no empty part

    assert parts.keys == [f"work/acme/bulk/J1/chunks/00000{i}.json" for i in range(3)]
    assert [len(rows) for _, rows in written] == [2, 2, 1]
    assert [k for k, _ in written] == parts.keys


def test_no_rows_make_no_part():
    parts = chunks.Parts(chunks.Work("acme", "bulk", "J1"), "rejects", 1000,
                         put=lambda key, rows: pytest.fail("nothing to write"))
    parts.flush()
    assert parts.keys == []


def _error(cls: type[Exception], code: str) -> Exception:
    return cls("failed", cause=ClientError({"Error": {"Code": code, "Message": "m"}},
                                           "PutItem"))


@pytest.mark.parametrize("cls", [PutError, UpdateError])
def test_a_chunk_recorded_already_is_not_recorded_again(cls):
    def write() -> None:
        raise _error(cls, "ConditionalCheckFailedException")

    assert chunks.record_once(lambda: None) is True
    assert chunks.record_once(write) is False


def test_a_write_that_failed_for_another_reason_is_not_taken_for_done():
    def write() -> None:
        raise _error(PutError, "ProvisionedThroughputExceededException")

    with pytest.raises(PutError):
        chunks.record_once(write)


def test_the_failure_step_records_the_caught_error_by_name_and_message():
    recorded: list[tuple[str, str]] = []
    error = {"Error": "TransientError", "Cause": json.dumps(
        {"errorType": "TransientError", "errorMessage": "S3 slowed down"})}

    out = chunks.fail("running", error,
                      lambda code, reason: recorded.append((code, reason)) or True)

    assert out == {"status": "failed"}
    assert recorded == [("TransientError", "TransientError: S3 slowed down")]


def test_a_failure_step_that_recorded_nothing_does_not_answer_failed():
    # the job is on another run now (resumed meanwhile): its record was not written
    out = chunks.fail("running", {"Error": "Boom"}, lambda code, reason: False)
    assert out == {"status": "running", "stale": True}


@pytest.mark.parametrize("status", chunks.ENDED)
def test_the_failure_step_leaves_an_ended_job_alone(status):
    out = chunks.fail(status, {"Error": "Boom"}, lambda *a: pytest.fail("recorded twice"))
    assert out == {"status": status}


def test_a_bulk_chunk_is_counted_once_even_when_two_record_it(aws):
    from oblio.core import clock
    from oblio.store.models import BulkJobModel

    BulkJobModel(tenant_id="acme", job_id="J1", status="running", created_at=clock.iso(),
                 erased=0).save()
    key = chunks.Work("acme", "bulk", "J1").chunk(0)

    def record() -> None:
        job = BulkJobModel.get("acme", "J1")
        job.update(actions=[BulkJobModel.erased.add(3), BulkJobModel.chunks_done.add({key})],
                   condition=~BulkJobModel.chunks_done.contains(key))

    assert chunks.record_once(record) is True
    assert chunks.record_once(record) is False
    job = BulkJobModel.get("acme", "J1")
    assert int(job.erased) == 3 and job.chunks_done == {key}


def test_a_million_line_jobs_chunks_done_fit_its_item_by_name_not_by_key():
    """4,000 chunks of 250 lines: their names fit DynamoDB's 400 KB item, their manifests'
    keys (as an earlier release recorded them) would not; both are read the same."""
    from oblio.jobs import chunks
    from oblio.store import units
    from oblio.store.models import BulkJobModel

    work = chunks.Work("a-tenant-of-a-typical-length", "bulk", "01JBULKJOB0000000000000000")
    keys = [work.chunk(n) for n in range(4000)]
    by_name = BulkJobModel(tenant_id="t", job_id="j", created_at="x", status="running",
                           chunks_done={chunks.chunk_name(k)
                                                                   for k in keys})
    by_key = BulkJobModel(tenant_id="t", job_id="j", created_at="x", status="running",
                          chunks_done=set(keys))
    assert units.item_size(by_name.serialize()) < 50 * 1024
    assert units.item_size(by_key.serialize()) > 240 * 1024  # and the report parts as much
    assert chunks.missing(work, 4001, by_key.chunks_done) == ["004000"]
    assert chunks.missing(work, 4001, by_name.chunks_done) == ["004000"]
