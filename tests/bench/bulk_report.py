"""Bulk report benchmark: the report step's peak memory and time, whatever the job's size.

    python -m tests.bench.bulk_report                       # 1,000 and 1,000,000 lines
    python -m tests.bench.bulk_report --lines 1000,100000 --part-rows 250

For each number of lines (a fresh process and in-process AWS each): a synthetic job whose
every chunk is done, its result parts (`--part-rows` lines each, the shape a chunk writes:
line, outcome, subject reference, counts, request id) and one part of rejected lines in the
work bucket, then `bulk.report` runs under tracemalloc; printed: parts, seconds, peak Python
heap of the step (allocations made from its start: the synthetic parts written before are
not counted), and the report's lines. The report's own upload goes to a counter of its bytes
and lines instead of moto, which would keep the whole report in this process's heap (AWS
keeps it in S3), and the clearing of the work files is counted instead of made (each of
moto's version listings deep-copies the whole bucket): what is measured is the step's
memory, not the emulator's. (The clearing, left out, holds the keys of the job's work files:
about 12,000 at a million lines, a few MB.) The report streams into a multipart upload, a part
of the job in memory at a time: the peak must stay flat from 1,000 to 1,000,000 lines.
"""

from __future__ import annotations

import argparse
from typing import Any

from tests.bench.harness import emit, run_sizes, timed_peak


class _Sink:
    """The report's multipart upload received by a counter, not kept, and the clearing of
    the job's work files counted, not made: moto keeps every byte uploaded to it in this
    process's heap, and each of its version listings deep-copies every object of the bucket
    (AWS does neither in the function), which would be counted as the step's. Every other
    S3 call goes to moto."""

    def __init__(self, bucket: str) -> None:
        self.bucket, self.bytes, self.lines, self.parts, self.completed = bucket, 0, 0, 0, False
        self.deleted = 0

    def wrap(self, client: Any) -> Any:
        sink = self

        class Client:
            def __getattr__(self, name: str) -> Any:
                return getattr(client, name)

            def create_multipart_upload(self, **kw: Any) -> dict[str, Any]:
                return {"UploadId": "sink"} if kw["Bucket"] == sink.bucket else \
                    client.create_multipart_upload(**kw)

            def upload_part(self, **kw: Any) -> dict[str, Any]:
                if kw["Bucket"] != sink.bucket:
                    return client.upload_part(**kw)
                for block in iter(lambda: kw["Body"].read(1 << 20), b""):
                    sink.bytes += len(block)
                    sink.lines += block.count(b"\n")
                sink.parts += 1
                return {"ETag": f'"{sink.parts}"'}

            def complete_multipart_upload(self, **kw: Any) -> dict[str, Any]:
                if kw["Bucket"] != sink.bucket:
                    return client.complete_multipart_upload(**kw)
                sink.completed = True
                return {}

        return Client()


def run_one(lines: int, part_rows: int) -> dict[str, Any]:
    from tests.unit import world
    from tests.unit.conftest import _fresh_aws

    with _fresh_aws(), world.provisioned():
        from oblio.jobs import bulk
        from oblio.store import aws, objects
        from oblio.store.models import BulkJobModel

        tenant = world.new_tenant("bench").tenant_id
        job_id = "01BENCHREPORT0000000000000"
        work = bulk._work(tenant, job_id)
        rejects = max(1, lines // 100)  # one line in a hundred rejected, in its own part
        valid = lines - rejects
        reject_rows = [{"line": 2 + i * 100, "outcome": "invalid",
                        "reason": "the e-mail address has no domain"} for i in range(rejects)]
        rejected = {r["line"] for r in reject_rows}
        numbers = (n for n in range(2, lines + 2 + rejects) if n not in rejected)
        done, n = set(), 0
        while n * part_rows < valid:
            rows = []
            for _ in range(min(part_rows, valid - n * part_rows)):
                line = next(numbers)
                rows.append({"line": line, "outcome": "erased",
                             "subject_ref": f"sr_{line:040d}", "matched": 17, "deleted": 12,
                             "anonymised": 4, "files_deleted": 3, "retained": 1, "held": 0,
                             "request_id": f"01REQUEST{line:017d}"})
            key = work.chunk(n)
            objects.put_json(work.beside("report", key), rows)
            done.add(bulk.chunks.chunk_name(key))  # as the job records them: by name
            n += 1
        reject_key = work.part("rejects", 0)
        objects.put_json(reject_key, reject_rows)
        BulkJobModel(tenant_id=tenant, job_id=job_id, status="running", created_at="x",
                     dry_run=False, rows_total=lines, rows_done=lines, erased=valid,
                     invalid=rejects, chunks=n, chunks_done=done,
                     reject_keys=[reject_key], index_key=work.index_key, io={},
                     # (a release before attempts were kept: its report is measured too)
                     **({"attempt": 1} if hasattr(BulkJobModel, "attempt") else {})).save()

        from oblio.core.settings import get_settings

        sink = _Sink(get_settings().bucket("exports"))
        real, real_delete = aws.bucket_client, objects.delete_prefix
        aws.bucket_client = lambda bucket: sink.wrap(real(bucket))  # type: ignore[assignment]

        def delete_prefix(prefix: str) -> int:
            sink.deleted += 1  # counted, not made: see _Sink
            return 0

        objects.delete_prefix = delete_prefix  # type: ignore[assignment]
        try:
            out, seconds, peak = timed_peak(lambda: bulk.report(tenant, job_id))
        finally:
            aws.bucket_client = real  # type: ignore[assignment]
            objects.delete_prefix = real_delete  # type: ignore[assignment]
        written = sink.lines - 1  # the header
        assert sink.completed, "the report's upload was not completed"
        assert sink.deleted == 1, "the job's work files were not cleared"
        return {"lines": lines, "parts": n + 1, "status": out["status"],
                "report_lines": written, "seconds": round(seconds, 2),
                "report_mb": round(sink.bytes / 2**20, 1),
                "peak_mb": round(peak / 2**20, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lines", default="1000,1000000")
    p.add_argument("--part-rows", type=int, default=500,
                   help="lines per result part (a chunk's size; 500 as issue 18 measured)")
    p.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.one:
        emit(run_one(args.one, args.part_rows))
        return
    for r in run_sizes("tests.bench.bulk_report", args.lines, "--part-rows",
                       str(args.part_rows)):
        print(f"{r['lines']:>9} lines  {r['parts']:>5} parts  {r['seconds']:>7.2f} s  "
              f"peak {r['peak_mb']:>7.1f} MB  report lines {r['report_lines']} "
              f"({r.get('report_mb', 0):.1f} MB)  "
              f"({r['status']})")


if __name__ == "__main__":
    main()
