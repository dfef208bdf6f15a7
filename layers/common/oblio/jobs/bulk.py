"""Bulk erasure ("mass forgetting"): a CSV of people to forget, dropped into S3.

One pipeline, four steps, each a task of `statemachines/bulk_erasure.asl.json`:

- `validate`: streams the uploaded CSV (UTF-8 with or without BOM, comma or semicolon,
  quoted fields, blank lines), checks every row, collapses duplicates, writes chunk manifests
  of `bulk_chunk_size` subjects to the work bucket and an index of them for the Distributed
  Map, records each bad row with its line and reason, and deletes the upload (every
  version). A file that cannot be read as a CSV of identities fails the job at once,
  nothing erased.
- `erase_chunk`: erases one chunk's subjects through the same engine as a single erasure,
  batched across the chunk (one BatchWriteItem per 25 items whoever they belong to), verifies
  each subject, and gives each erased subject the same request record, certificate,
  suppression entries and event as a single erasure, each exactly once however often the
  chunk runs; the chunk's one audit entry commits to all its certificates (a Merkle root).
- `report`: checks every chunk of the index against the chunks recorded done (the Map's
  own verdict is not trusted) and streams the per-line outcomes into one CSV under the
  tenant's report prefix (no identity in clear: the subject's HMAC reference only; every
  cell safe from CSV injection), a row for every line; a chunk not done ends the job
  `failed` or `completed_with_errors`, naming it, its plans kept.
- `fail`: records a failure the state machine caught (the plans kept once chunks are cut).
- `retry`: a new attempt reruns the chunks not done; every task carries its attempt, and
  one of an earlier attempt writes nothing to the job.

The work prefix, the chunk manifests and their index, the Map's input, a chunk recorded once
and the failure step are the chunked pipeline that retention sweeps share (`jobs.chunks`).

Memory stays flat in the file's size, but for the duplicate check: 8 bytes a distinct subject.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import heapq
import io
import json
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError
from ulid import ULID

from oblio.control import audit, exports, ledger, metering, records, suppression
from oblio.control.tenants import Principal, Tenant, get_tenant
from oblio.core import clock, datamap, meter, parallel
from oblio.core.bodies import BulkBody
from oblio.core.boundary import BulkEvent
from oblio.core.cells import csv_safe
from oblio.core.errors import Conflict, Invalid, NotFound, TooLarge, Unprocessable
from oblio.core.identity import IDENTITY_KINDS, normalise
from oblio.core.observability import count, logger
from oblio.core.settings import get_settings
from oblio.jobs import chunks, sizing
from oblio.pipeline import apply, evidence, find, outcome, rules, verify
from oblio.pipeline import plan as planner
from oblio.store import archives, aws, objects, outbound, workflows
from oblio.store.models import BulkJobModel, RequestModel, plain
from oblio.store.tables import add_to_map

REPORT_COLUMNS = ("line", "outcome", "subject_ref", "matched", "deleted", "anonymised",
                  "files_deleted", "retained", "held", "request_id", "reason",
                  # her access-export archives written while the chunk ran, deleted after
                  # her certificate (not counted in it): `record_erasure`, step 3
                  "late_archives_deleted")
_TRUE = {"1", "true", "yes", "y"}


def prefix(tenant_id: str) -> str:
    """Where a tenant's CSVs are dropped in the ingest bucket."""
    return f"bulk/{tenant_id}/"


def _work(tenant_id: str, job_id: str) -> chunks.Work:
    return chunks.Work(tenant_id, "bulk", job_id)


# -- jobs --------------------------------------------------------------------------------------

def to_json(job: BulkJobModel) -> dict[str, Any]:
    s = get_settings()
    url = None
    if job.report_key:
        url = objects.presign("get_object", s.bucket("exports"), job.report_key)
    return {
        "job_id": job.job_id, "status": job.status, "dry_run": bool(job.dry_run),
        "created_at": job.created_at, "completed_at": job.completed_at,
        "rows_total": int(job.rows_total or 0), "rows_done": int(job.rows_done or 0),
        "erased": int(job.erased or 0), "not_found": int(job.not_found or 0),
        "invalid": int(job.invalid or 0), "duplicates": int(job.duplicates or 0),
        "failed": int(job.failed or 0), "would_erase": int(job.would_erase or 0),
        "retained": int(job.retained or 0), "held": int(job.held or 0),
        "blank_lines": int(job.blank_lines or 0),
        "ignored_columns": sorted(job.ignored_columns or ()), "error": job.error,
        "report_url": url, "message": job.message, "attempt": attempt_of(job),
        "chunks": int(job.chunks or 0), "chunks_done": len(job.chunks_done or ()),
        "chunks_failed": sorted(job.chunks_failed or ()),
        "chunks_missing": sorted(job.chunks_missing or ()), "audit_entry": job.audit_entry,
        # every call the job's invocations made, and per line worked
        "io": meter.view(plain(job.meter), plain(job.io), per=int(job.rows_done or 0),
                          attempt=attempt_of(job)),
    }


def list_jobs(tenant_id: str, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
    """The tenant's jobs, newest first (job ids are ULIDs), one page at a time."""
    after = {"tenant_id": {"S": tenant_id}, "job_id": {"S": cursor}} if cursor else None
    it = BulkJobModel.query(tenant_id, scan_index_forward=False, limit=limit,
                            last_evaluated_key=after)
    rows = list(it)
    more = len(rows) == limit and it.last_evaluated_key is not None
    return {"items": [to_json(j) for j in rows], "next_cursor": rows[-1].job_id if more
            else None}


def load(tenant_id: str, job_id: str) -> BulkJobModel:
    try:
        return BulkJobModel.get(tenant_id, job_id, consistent_read=True)
    except DoesNotExist:
        raise NotFound("no bulk erasure job with this id in this tenant") from None


def create_job(principal: Principal, body: BulkBody) -> dict[str, Any]:
    """A job waiting for its CSV, and a presigned PUT to upload it."""
    dry_run = body.dry_run
    job_id = str(ULID())
    key = f"{prefix(principal.tenant_id)}{job_id}.csv"
    # filed, not started: the upload's event starts the run
    metering.bill_to(BulkEvent(tenant_id=principal.tenant_id, job_id=job_id))
    BulkJobModel(tenant_id=principal.tenant_id, job_id=job_id, status="awaiting_upload",
                 upload_key=key, dry_run=dry_run, created_at=clock.iso(),
                 requested_by=principal.key_id, io={}, attempt=1).save()
    s = get_settings()
    url = objects.presign("put_object", s.bucket("ingest"), key)
    audit.append(principal.tenant_id, "bulk_erasure_created", actor=principal.key_id,
                 details={"job_id": job_id, "dry_run": dry_run})
    return {"job_id": job_id, "upload_url": url, "upload_key": key,
            "upload_bucket": s.bucket("ingest"), "expires_in": s.presign_seconds}


def upload_url(tenant_id: str, job_id: str) -> str:
    """A fresh presigned PUT for a job still waiting for its CSV (the replay of its
    creation: the first URL is never kept); 409 once the upload was received."""
    job = load(tenant_id, job_id)
    if job.status != "awaiting_upload":
        raise Conflict(f"bulk erasure job {job_id} has received its CSV already (status "
                       f"{job.status}); follow it with GET /v1/bulk-erasures/{job_id}",
                       code="upload_received", details={"status": job.status})
    return objects.presign("put_object", get_settings().bucket("ingest"), str(job.upload_key))


#: a file sent through the API (PUT .../file): API Gateway hands Lambda at most 6 MB, and a
#: binary body arrives base64-encoded; larger files go by the presigned URL or straight to S3
API_UPLOAD_MAX_BYTES = 4 * 1024 * 1024


def upload(principal: Principal, job_id: str, data: bytes) -> dict[str, Any]:
    """The job's CSV sent through the API instead of its presigned URL: stored where the
    presigned PUT would have put it, so that the same S3 event starts the job. Once only."""
    job = load(principal.tenant_id, job_id)
    if len(data) > API_UPLOAD_MAX_BYTES:
        raise TooLarge(f"the file is {len(data)} bytes; through the API a file may have at "
                       f"most {API_UPLOAD_MAX_BYTES} bytes: PUT a larger one to the job's "
                       "upload_url (oblio bulk-erase does), or drop it in the ingest bucket",
                       code="file_too_large",
                       details={"field": "file", "max_bytes": API_UPLOAD_MAX_BYTES})
    if not data:
        raise Invalid("file", "the file is empty: it needs a header row naming email, phone "
                              "or external_id, then one row per person")
    if job.status != "awaiting_upload" or job.uploaded_at or not job.upload_key:
        raise Conflict(f"this job already has its file (status {job.status}); create a new "
                       "job for another file", code="already_uploaded",
                       details={"status": job.status})
    try:
        job.update(actions=[BulkJobModel.uploaded_at.set(clock.iso())],
                   condition=(BulkJobModel.status == "awaiting_upload")
                   & BulkJobModel.uploaded_at.does_not_exist())
    except UpdateError:
        raise Conflict("this job already has its file; create a new job for another file",
                       code="already_uploaded") from None
    try:
        objects.put_encrypted(get_settings().bucket("ingest"), job.upload_key, data,
                              content_type="text/csv")
    except Exception:
        job.update(actions=[BulkJobModel.uploaded_at.remove()])  # let a retry upload again
        raise
    audit.append(principal.tenant_id, "bulk_erasure_uploaded", actor=principal.key_id,
                 details={"job_id": job_id, "bytes": len(data)})
    return to_json(load(principal.tenant_id, job_id))


def start_from_upload(bucket: str, key: str) -> dict[str, Any]:
    """An object landed under a tenant's bulk prefix: start (or create, for a CSV dropped
    straight into S3) its job's state machine."""
    parts = key.split("/")
    if len(parts) < 3 or parts[0] != "bulk" or not parts[1]:
        return {"ignored": key}
    tenant_id, name = parts[1], parts[-1]
    get_tenant(tenant_id)  # an unknown tenant's prefix: NotFound
    job_id = name[:-4] if name.endswith(".csv") else ""
    try:
        job = BulkJobModel.get(tenant_id, job_id) if job_id else None
    except DoesNotExist:
        job = None
    if job is not None and job.upload_key and job.upload_key != key:
        # named as a job but not where that job's file goes (`bulk/<tenant>/x/<job>.csv`):
        # a file dropped straight into S3, of a job of its own; it never starts another's
        job = None
    if job is None:
        # a file dropped straight into S3: its job is named after this upload of it, so that
        # the event delivered again (EventBridge and S3 deliver at least once) finds the job
        # it made instead of making a second
        version = objects.version_of(bucket, key)
        if version is None:  # gone: erased by the job of an earlier delivery, or deleted
            logger.info("bulk upload gone before its event", extra={"tenant_id": tenant_id})
            return {"ignored": key, "reason": "the file is no longer there"}
        job = BulkJobModel(tenant_id=tenant_id, job_id=dropped_job_id(key, *version),
                           status="awaiting_upload", upload_key=key, dry_run=False,
                           created_at=clock.iso(), requested_by="s3-upload", io={}, attempt=1)
        try:
            job.save(condition=BulkJobModel.job_id.does_not_exist())
        except PutError as exc:
            if not chunks.condition_failed(exc):
                raise
            job = BulkJobModel.get(tenant_id, job.job_id, consistent_read=True)
    if job.status != "awaiting_upload":
        return {"job_id": job.job_id, "status": job.status}  # a repeated event
    metering.bill_to(BulkEvent(tenant_id=tenant_id, job_id=job.job_id))
    job.update(actions=[BulkJobModel.status.set("validating"),
                        BulkJobModel.upload_key.set(key)])
    try:
        workflows.start("bulk_erasure", f"bulk-{job.job_id}", {
            "tenant_id": tenant_id, "job_id": job.job_id, "bucket": bucket, "key": key,
            "attempt": attempt_of(job)})
    except workflows.AlreadyStarted:
        # a start that raised after AWS had made the execution (its answer lost), then
        # rolled back: the run is the one it made, and this call is its starter now
        pass
    except Exception:
        # nothing runs: the job waits for its file again, so that the event's retry (S3
        # events are delivered again to a function that raised) starts it
        try:
            job.update(actions=[BulkJobModel.status.set("awaiting_upload")],
                       condition=BulkJobModel.status == "validating")
        except Exception as exc:  # noqa: BLE001 - the start's error is the one raised
            logger.warning("a bulk job that did not start stays validating",
                           extra={"job_id": job.job_id, "raised": type(exc).__name__})
        raise
    metering.started(attempt_of(job))
    return {"job_id": job.job_id, "status": "validating"}


def dropped_job_id(key: str, written: float, version: str) -> str:
    """The id of the job of a file dropped into S3: a ULID of when that upload was written
    and of a hash of its key and version, the same for every delivery of its event, another
    for another upload of the same key."""
    digest = hashlib.sha256(f"{key}\n{version}".encode()).digest()[:10]
    return str(ULID.from_bytes(int(written * 1000).to_bytes(6, "big") + digest))


# -- validation --------------------------------------------------------------------------------

class _Rejected(Unprocessable):
    code = "invalid_file"


def _sniff(sample: bytes) -> str:
    if b"\x00" in sample:
        raise _Rejected("the file is binary, not a CSV: upload a UTF-8 text file with a header "
                        "row naming email, phone or external_id")
    first = sample.split(b"\n", 1)
    try:
        text = sample.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        if exc.start < len(first[0]) and (len(first) > 1 or exc.start < len(sample) - 4):
            # the header itself cannot be read (a byte cut at the sample's end is no error);
            # a bad byte on a later line is reported with its line number, not here
            raise _Rejected("the file is not UTF-8 text: save it as CSV UTF-8") from None
        text = sample.decode("utf-8-sig", errors="replace")
    if not text.strip():
        raise _Rejected("the file is empty: it needs a header row naming email, phone or "
                        "external_id, then one row per person")
    try:
        return csv.Sniffer().sniff(text.split("\n", 1)[0] + "\n", delimiters=",;").delimiter
    except csv.Error:
        return ","


#: what a row the csv module cannot read, or that holds bytes that are not UTF-8, is reported as
NOT_UTF8 = "the line is not UTF-8 text: save the file as CSV UTF-8"
FIELD_TOO_LONG = (f"the line has a field over {csv.field_size_limit()} characters (no identity "
                  "is that long): check the quoting of this line")
#: how many ignored columns a job names (by position, never by the header's text)
IGNORED_SHOWN = 20


class BadLine(NamedTuple):
    """A line that could not be read as CSV cells, and why (no cell's text)."""
    reason: str


def _undecodable(cells: list[str]) -> bool:
    return any("\udc80" <= ch <= "\udcff" for c in cells for ch in c)


def _rows(body: Any, delimiter: str) -> Iterator[tuple[int, list[str] | BadLine]]:
    """(line number, cells) of a streamed body; quoted fields may span lines. A line that is
    not UTF-8, or has a field over the csv module's limit, comes as a BadLine and the reading
    goes on with the next line."""
    text = codecs.getreader("utf-8-sig")(body, "surrogateescape")
    reader = csv.reader(text, delimiter=delimiter)
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield reader.line_num, BadLine(FIELD_TOO_LONG if "field limit" in str(exc)
                                           else "the line cannot be read as CSV: check its "
                                                "quotes")
            continue
        yield reader.line_num, (BadLine(NOT_UTF8) if _undecodable(cells) else cells)


def validate(tenant_id: str, job_id: str, bucket: str, key: str) -> dict[str, Any]:
    """Check the upload and cut it into chunk manifests; returns the Map's input.

    The upload is deleted (every version) whatever happens: read to its end, refused, or an
    error of oblio's own (the job then fails saying so, nothing erased)."""
    job = load(tenant_id, job_id)
    if job.chunks is not None:  # a retried step: the upload is gone, the chunks are there
        return _map_input(job)
    try:
        got = _cut(job, bucket, key)
    except _Rejected as exc:
        objects.delete_all_versions([(bucket, key)])
        finish_failed(job, exc.message)
        return {"failed": True, "chunks": 0}
    except Exception as exc:  # noqa: BLE001 - whatever broke, the upload is deleted
        # the upload holds personal data: it never outlives a validation that broke. The
        # exception's text may quote the file; only its type is logged and kept.
        objects.delete_all_versions([(bucket, key)])
        logger.error("bulk validation failed", extra={"job_id": job_id,
                                                       "error_type": type(exc).__name__})
        finish_failed(job, f"the file could not be validated ({type(exc).__name__}); nothing "
                           "was erased and the upload was deleted: upload it again")
        return {"failed": True, "chunks": 0}
    # the upload holds personal data: gone as soon as it is cut into chunks
    objects.delete_all_versions([(bucket, key)])
    parts, rejects, stats, ignored = got
    work = _work(tenant_id, job_id)
    index = work.write_index(parts.keys)
    total = stats["valid"] + stats["invalid"] + stats["duplicates"]
    job.update(actions=[
        BulkJobModel.status.set("running"), BulkJobModel.rows_total.set(total),
        BulkJobModel.rows_done.set(stats["invalid"] + stats["duplicates"]),
        BulkJobModel.invalid.set(stats["invalid"]),
        BulkJobModel.duplicates.set(stats["duplicates"]),
        BulkJobModel.blank_lines.set(stats["blank"]),
        BulkJobModel.ignored_columns.set(set(ignored) or None),
        BulkJobModel.chunks.set(len(parts.keys)), BulkJobModel.index_key.set(index),
        BulkJobModel.reject_keys.set(rejects.keys or None),
    ])
    logger.info("bulk file validated", extra={"job_id": job_id, **stats,
                                              "chunks": len(parts.keys)})
    return _map_input(load(tenant_id, job_id))


def _ignored(header: list[str], used: set[int]) -> list[str]:
    """The columns that are no identity, by position ("column 3"), never by their text (a
    header may be a row of personal data); at most IGNORED_SHOWN, then how many more."""
    idle = [i for i, c in enumerate(header) if i not in used and c and c != "dry_run"]
    shown = [f"column {i + 1}" for i in idle[:IGNORED_SHOWN]]
    if len(idle) > IGNORED_SHOWN:
        shown.append(f"and {len(idle) - IGNORED_SHOWN} more columns")
    return shown


def _cut(job: BulkJobModel, bucket: str, key: str) -> tuple[chunks.Parts, chunks.Parts,
                                                            dict[str, int], list[str]]:
    """Read the upload into chunk manifests and reject parts; raises _Rejected for a file
    that is no CSV of identities."""
    s = get_settings()
    tenant = get_tenant(job.tenant_id)
    work = _work(job.tenant_id, job.job_id)
    size = objects.size_of(bucket, key)
    if size == 0:
        _sniff(b"")  # says it is empty
    if size > s.bulk_max_bytes:
        raise _Rejected(f"the file is {size} bytes, over the limit of "
                        f"{s.bulk_max_bytes}: split it into smaller files")
    delimiter = _sniff(objects.read_head(bucket, key, 65536))
    rows = _rows(objects.stream(bucket, key), delimiter)
    header_line = None
    for n, c in rows:
        if isinstance(c, BadLine):
            raise _Rejected(f"the header (line {n}) cannot be read: {c.reason}")
        if any(x.strip() for x in c):
            header_line = (n, c)
            break
    if header_line is None:
        raise _Rejected("the file has no header row")
    header = [c.strip().lower() for c in header_line[1]]
    columns: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in IDENTITY_KINDS:
            columns.setdefault(name, i)
    if not columns:
        raise _Rejected("no identity column: the header must name at least one of "
                        "email, phone, external_id")
    ignored = _ignored(header, set(columns.values()))
    dry_col = header.index("dry_run") if "dry_run" in header else None
    parts = chunks.Parts(work, "chunks", s.bulk_chunk_size)
    rejects = chunks.Parts(work, "rejects", 1000)
    seen: set[int] = set()
    stats = {"valid": 0, "invalid": 0, "duplicates": 0, "blank": 0}
    for line, cells in rows:
        if not isinstance(cells, BadLine) and not any(c.strip() for c in cells):
            stats["blank"] += 1
            continue
        if stats["valid"] + stats["invalid"] + stats["duplicates"] >= s.bulk_max_rows:
            raise _Rejected(f"the file has more than {s.bulk_max_rows} rows: split it")
        if isinstance(cells, BadLine):
            stats["invalid"] += 1
            rejects.add({"line": line, "outcome": "invalid", "reason": cells.reason})
            continue
        ids, problem = {}, None
        for kind, i in columns.items():
            value = cells[i].strip() if i < len(cells) else ""
            if not value:
                continue
            try:
                ids[kind] = normalise(kind, value, tenant.phone_region, field=kind)
            except Invalid as exc:
                problem = exc.message
                break
        if problem is None and not ids:
            problem = "no identity in this row"
        if problem:
            stats["invalid"] += 1
            rejects.add({"line": line, "outcome": "invalid", "reason": problem})
            continue
        digest = int.from_bytes(hashlib.blake2b(
            json.dumps(ids, sort_keys=True).encode(), digest_size=8).digest(), "big")
        if digest in seen:
            stats["duplicates"] += 1
            rejects.add({"line": line, "outcome": "duplicate",
                         "reason": "the same person as an earlier line"})
            continue
        seen.add(digest)
        stats["valid"] += 1
        row_dry = dry_col is not None and dry_col < len(cells) and \
            cells[dry_col].strip().lower() in _TRUE
        parts.add({"line": line, "identities": ids, "dry_run": row_dry})
    parts.flush()
    rejects.flush()
    return parts, rejects, stats, ignored


def _map_input(job: BulkJobModel) -> dict[str, Any]:
    """The Map's input: the chunks its index lists (every chunk on a first run, the chunks
    not done on a retry), its concurrency sized from them (`jobs.sizing`)."""
    todo = chunks.missing(_work(job.tenant_id, job.job_id), int(job.chunks or 0),
                          job.chunks_done)
    return chunks.map_input(len(todo), job.index_key, sizing.job_concurrency(
        len(todo), get_tenant(job.tenant_id).settings, get_settings().bulk_concurrency),
        failed=False)


# -- attempts ----------------------------------------------------------------------------------

def attempt_of(job: BulkJobModel) -> int:
    return chunks.run_of(job)


def current(attempt: int | None) -> Any:
    """The condition of a write by a task of run `attempt`: the job is still on that run."""
    return chunks.current(BulkJobModel, attempt)


def stale(job: BulkJobModel, attempt: int | None) -> bool:
    """Whether a task of run `attempt` belongs to an earlier run than the job's: it writes
    nothing (logged, never applied)."""
    return chunks.stale("bulk job", {"job_id": job.job_id}, job, attempt)


# -- erasure of one chunk ----------------------------------------------------------------------

def erase_chunk(tenant_id: str, job_id: str, chunk_key: str,
                attempt: int | None = None) -> dict[str, Any]:
    """Erase a chunk's subjects, batched across the chunk; a chunk done is not done again.

    The chunk's plan (per line: the keys and files found, the identities' HMACs, the request
    id to record) is saved before anything is erased, so that a retry of a half-done chunk
    erases what is left of the same plan and reports each line as the first attempt would
    have, instead of finding nothing and calling everyone not found."""
    job = load(tenant_id, job_id)
    name = chunks.chunk_name(chunk_key)
    if name in chunks.names(job.chunks_done):
        return {"chunk": chunk_key, "skipped": True}
    if stale(job, attempt) or job.status in chunks.ENDED:
        return {"chunk": chunk_key, "skipped": True, "stale": True}
    dm = datamap.current()
    tenant = get_tenant(tenant_id)
    rows: list[dict[str, Any]] = objects.get_json(chunk_key)
    # on AWS each chunk runs in an Express child execution of the job's Distributed Map
    aws.note("stepfunctions.express_executions")
    marker = f"bulk:{job_id}"
    work = _work(tenant_id, job_id)
    plan_key = work.beside("plans", chunk_key)
    outcomes: list[dict[str, Any]] = []
    with aws.counting() as io_:
        plans: list[dict[str, Any]] | None = objects.get_json(plan_key) \
            if objects.exists(plan_key) else None
        if plans is None:
            plans = parallel.ordered(lambda row: _plan_line(dm, tenant, row), rows,
                                     get_settings().bulk_lookup_concurrency)
            # her access-export archives that S3 still holds: the archive index read once
            # for all the chunk's lines
            for plan, found in zip(plans, exports.archives_of_many(
                    tenant_id, [p["refs"] for p in plans]), strict=True):
                plan["archives"] = exports.stored(found)
            objects.put_json(plan_key, plans)
        todo: list[tuple[dict[str, Any], dict[str, Any]]] = []
        for row, plan in zip(rows, plans, strict=True):
            ref = tenant.keys.subject_ref(row["identities"])
            if not plan["matched"] and not plan.get("ledger") and not plan["archives"]:
                outcomes.append({"line": row["line"], "outcome": "not_found",
                                 "subject_ref": ref})
            elif job.dry_run or row.get("dry_run"):
                outcomes.append({"line": row["line"], "outcome": "would_erase",
                                 "subject_ref": ref, "matched": plan["matched"]})
            else:
                todo.append((row, plan))
        left = _erase_merged(dm, tenant, [p for _, p in todo], marker)
        exports.delete_archives([a for _, p in todo for a in p.get("archives", [])])
        evidence_key, certs = _certified(dm, tenant, job, chunk_key, todo, left)
        late = record_erasure(tenant, job_id, chunk_key, evidence_key,
                              [(row, plan, cert) for (row, plan), cert in zip(todo, certs,
                                                                              strict=True)])
    outcomes += [_line_outcome(c, n) for c, n in zip(certs, late, strict=True)]
    outcomes.sort(key=lambda o: int(o["line"]))
    part = work.beside("report", chunk_key)
    objects.put_json(part, outcomes)
    counts = {k: sum(1 for o in outcomes if o["outcome"] == k)
              for k in ("erased", "not_found", "failed", "would_erase")}
    kept = {k: sum(int(o.get(k, 0)) for o in outcomes if o["outcome"] == "erased")
            for k in ("retained", "held")}
    if not chunks.record_once(lambda: job.update(actions=[
        BulkJobModel.rows_done.add(len(rows)), BulkJobModel.erased.add(counts["erased"]),
        BulkJobModel.not_found.add(counts["not_found"]),
        BulkJobModel.failed.add(counts["failed"]),
        BulkJobModel.would_erase.add(counts["would_erase"]),
        BulkJobModel.retained.add(kept["retained"]), BulkJobModel.held.add(kept["held"]),
        # the chunk's name, not its key: 4,000 names fit the job's item, 4,000 keys do not
        BulkJobModel.chunks_done.add({name}),
    ], condition=~BulkJobModel.chunks_done.contains(name)
            & ~BulkJobModel.chunks_done.contains(chunk_key) & current(attempt))):
        return {"chunk": chunk_key, "skipped": True}  # a parallel duplicate recorded it
    add_to_map(BulkJobModel.Meta.table_name, {"tenant_id": tenant_id, "job_id": job_id}, "io",
               dict(io_.calls))
    # the chunk's erasures are requests that ended: one metric line each status, counted
    # once with the job's counters (a subject recorded by an attempt that died is counted here)
    for status, n in (("completed", counts["erased"]), ("completed_with_errors",
                                                         counts["failed"])):
        if n:
            count("RequestsCompleted", n, type="erasure", status=status)
    return {"chunk": chunk_key, **counts}


def _plan_line(dm: datamap.DataMap, tenant: Tenant, row: dict[str, Any]) -> dict[str, Any]:
    """What one line will erase, kept without personal values: per table the same manifest
    a single erasure plans (item keys, files by pointer, key template and prefix, items on
    legal hold, items she is in only in a role), the HMACs of the identities named and found
    (for the suppression list), her subject reference and the id of the request record that
    will certify it."""
    fp = find.walk(dm, tenant.tenant_id, row["identities"], include_expired=True)
    tables: dict[str, Any] = {}
    for name in dm.order:
        manifest = planner.unit_manifest(dm, name, "erase", {}, fp, tenant.tenant_id)
        if manifest is None:
            continue
        # the objects under each prefix, counted now: what the line's files_deleted says
        manifest["prefixed"] = sum(len(objects.current_keys(b, p))
                                   for b, p in manifest.get("prefixes", []))
        tables[name] = manifest
    refs = find.identity_refs(dm, tenant.keys, fp, row["identities"], tenant.phone_region)
    return {"line": row["line"], "matched": fp.total, "tables": tables,
            # a person found in no table may still be in the consent ledger (a sign-up's
            # consent with no account): then she is erased there, as a single erasure does
            "ledger": 0 if fp.total else ledger.count_records(tenant.tenant_id, refs),
            "subject_ref": tenant.keys.subject_ref(row["identities"]),
            "refs": refs, "request_id": str(ULID()),
            # items past their TTL (planned like the rest); her archives: the chunk adds them
            "expired": fp.expired, "archives": []}


def _key(t: Any, key: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(key[a] for a in t.key.names)


def _merge(t: Any, manifests: list[dict[str, Any]]) -> dict[str, Any]:
    """One table's manifests of several subjects as one: each item, file and prefix once."""
    out: dict[str, Any] = {"keys": [], "s3": [], "templated": [], "prefixes": [], "held": []}
    seen: set[Any] = set()
    for m in manifests:
        for key in m.get("keys", []):
            if ("k", _key(t, key)) not in seen:
                seen.add(("k", _key(t, key)))
                out["keys"].append(key)
        for kind in ("s3", "templated", "prefixes"):
            for ref in m.get(kind, []):
                if (kind, tuple(ref)) not in seen:
                    seen.add((kind, tuple(ref)))
                    out[kind].append(list(ref))
        for h in m.get("held", []):
            if ("h", _key(t, h["key"])) not in seen:
                seen.add(("h", _key(t, h["key"])))
                out["held"].append(h)
    return out


def _erase_merged(dm: datamap.DataMap, tenant: Tenant, plans: list[dict[str, Any]],
                  marker: str) -> set[tuple[str, tuple[Any, ...]]]:
    """Apply the erasure to every table once for all the chunk's subjects (and, per
    subject, to the items she is in only in a role: their markers are hers), then read
    back; returns the (table, key) of items that are not as they should be, and (table,
    ("files",)) where a file the erasure deletes is left."""
    left: set[tuple[str, tuple[Any, ...]]] = set()
    for name in dm.order:
        t = dm.tables[name]
        planned = [p for p in plans if name in p["tables"]]
        if not planned:
            continue
        unit = rules.Unit(tenant.tenant_id, name)
        manifest = _merge(t, [p["tables"][name] for p in planned])
        if manifest["keys"] or manifest["held"]:
            apply.apply_unit(dm, "erase", unit, manifest, tenant.keys, "bulk", marker=marker)
            for bad in verify.remaining_keys(dm, "erase", unit, manifest, marker,
                                             subject_ref="bulk"):
                left.add((name, _key(t, bad)))
            if rules.table_mode(dm, name, "erase") in ("delete", "anonymise") and any(
                    f["left"] for f in verify.files_left(manifest).values()):
                left.add((name, ("files",)))
        for p in planned:
            roles = p["tables"][name].get("roles")
            if not roles:
                continue
            group = {"keys": [], "roles": roles}
            apply.apply_unit(dm, "erase", unit, group, tenant.keys, p["subject_ref"],
                             marker=marker)
            for bad in verify.remaining_keys(dm, "erase", unit, group, marker,
                                             subject_ref=p["subject_ref"]):
                left.add((name, _key(t, bad)))
    return left


def _line_counts(dm: datamap.DataMap, name: str, p: dict[str, Any]) -> dict[str, int]:
    """One table's counts for one line, as a single erasure counts them."""
    mode = rules.table_mode(dm, name, "erase")
    n, held = len(p.get("keys", [])), len(p.get("held", []))
    c = dict.fromkeys(rules.COUNTS, 0)
    c["matched"], c["held"] = n + held, held
    c["deleted" if mode == "delete" else "anonymised" if mode == "anonymise"
      else "retained" if mode == "retain" else "kept"] += n
    for role, group in (p.get("roles") or {}).items():
        rm = rules.role_mode(dm, name, role, "erase")
        k, h = len(group.get("keys", [])), len(group.get("held", []))
        c["matched"] += k + h
        c["held"] += h
        c["deleted" if rm == "delete" else "anonymised" if rm == "anonymise"
          else "retained" if rm == "retain" else "kept"] += k
    if mode in ("delete", "anonymise"):  # a retained item keeps its files
        c["files_deleted"] = len(p.get("s3", [])) + len(p.get("templated", [])) + \
            int(p.get("prefixed", 0))
    return c


def line_request_id(job_id: str, line: int) -> str:
    """The id of the request record of a job's line: derived from the job and the line (a
    ULID with the job's time), so every run of the line's chunk names the same record."""
    digest = hashlib.blake2b(f"{job_id}:{int(line)}".encode(), digest_size=16).digest()
    try:
        stamp = ULID.from_str(job_id).bytes[:6]
    except ValueError:  # a job id that is no ULID (tests): the digest only
        stamp = digest[:6]
    return str(ULID.from_bytes(stamp + digest[6:]))


def _certify(dm: datamap.DataMap, tenant: Tenant, job: BulkJobModel, row: dict[str, Any],
             plan_: dict[str, Any], left: set[tuple[str, tuple[Any, ...]]]) -> dict[str, Any]:
    """One erased line's certificate, the same figures as a single erasure's (its audit entry
    is its chunk's, which commits to it: see `record_erasure`). A fresh search from her
    identities must find nothing but what stays by design (items retained by law, items on
    legal hold). Her consent ledger goes here: the certificate counts what went."""
    ids = row["identities"]
    again = find.walk(dm, tenant.tenant_id, ids, include_expired=True)
    planned = {name: plan_["tables"].get(name, {}) for name in dm.order}
    mine = {(name, _key(dm.tables[name], k)) for name, p in planned.items()
            for k in [*p.get("keys", []),
                      *(k for g in (p.get("roles") or {}).values() for k in g["keys"])]}
    remaining: dict[str, int] = {}
    for n, k in left:
        if (n, k) in mine or (k == ("files",) and n in plan_["tables"]):
            remaining[n] = remaining.get(n, 0) + 1
    for name, p in planned.items():
        # her pointers oblio does not follow (a bucket the map does not declare, a value
        # that names no file it can read): her files may be left, as a single erasure says
        pointed = int(p.get("outside", 0)) + int(p.get("unreadable", 0))
        if pointed and rules.table_mode(dm, name, "erase") in ("delete", "anonymise"):
            remaining[name] = remaining.get(name, 0) + pointed
    for name, items in again.items.items():
        t = dm.tables[name]
        if rules.table_mode(dm, name, "erase") == "retain":
            continue  # kept by law (checked above: without what its erase rules remove)
        held = {_key(t, h["key"]) for h in planned[name].get("held", [])}
        rest = [i for i in items if _key(t, find.key_of(t, i)) not in held]
        if rest:
            remaining[name] = remaining.get(name, 0) + len(rest)
    archived = plan_.get("archives", [])
    archives_left = exports.archives_left(archived)
    if archives_left:
        remaining[exports.UNIT] = archives_left
    tables = {name: _line_counts(dm, name, p) for name, p in planned.items()}
    verification = {"passed": not remaining, "items_checked": plan_["matched"],
                    "remaining": remaining, "at": clock.iso(),
                    "checked": {"archives": {"objects": len(archived), "left": archives_left}}}
    passed = not remaining
    consents = ledger.erase_subject(tenant.tenant_id, plan_["refs"])  # the ledger goes too
    # what stays by design (retained by law, on legal hold), as a single erasure says it
    exempt = outcome.exemptions(dm, {tenant.tenant_id: tables}, {})
    request_id = line_request_id(job.job_id, row["line"])
    cert = evidence.certificate(
        request_id=request_id, tenant_id=tenant.tenant_id, type_="erasure",
        subject_ref=tenant.keys.subject_ref(ids), tables=tables, tenants={},
        verification=verification,
        suppressed=suppression.entries_of(plan_["refs"]) if passed else 0,
        started_at=verification["at"], entry=None, datamap_digest=dm.digest)
    return {"found": True, **exempt, **cert, "consent_records_deleted": consents,
            "archives_deleted": len(archived) - archives_left,
            "expired_items_included": int(plan_.get("expired", 0)),
            "bulk_job": job.job_id, "line": int(row["line"])}


def _line_outcome(cert: dict[str, Any], late: dict[str, int] | None = None,
                  ) -> dict[str, Any]:
    """A certified line as the report gives it (with the archives found after her
    certificate, `late_archives_deleted`, when there were any)."""
    head: dict[str, Any] = {"line": int(cert["line"]), "subject_ref": cert["subject_ref"],
                            "request_id": cert["request_id"]}
    if late and late["found"]:
        head["late_archives_deleted"] = late["deleted"]
    if not cert["verification"]["passed"]:
        return {**head, "outcome": "failed",
                "reason": "items remained after the erasure; retry the job"}
    tables = cert["tables"].values()
    return {**head, "outcome": "erased", **{k: sum(int(t[k]) for t in tables) for k in
            ("matched", "deleted", "anonymised", "files_deleted", "retained", "held")}}


def _certified(dm: datamap.DataMap, tenant: Tenant, job: BulkJobModel, chunk_key: str,
               todo: list[tuple[dict[str, Any], dict[str, Any]]],
               left: set[tuple[str, tuple[Any, ...]]]) -> tuple[str, list[dict[str, Any]]]:
    """The chunk's certificates, one per erased line in line order, stored once as the
    chunk's evidence object before anything records them: a rerun reads them back instead of
    certifying again (the ledger is gone by then, the counts would differ)."""
    key = audit.evidence_key(tenant.tenant_id, job.job_id, chunk_key)
    if objects.exists(key):
        stored: list[dict[str, Any]] = objects.get_json(key)
        return key, stored
    certs = parallel.ordered(lambda line: _certify(dm, tenant, job, *line, left), todo,
                             get_settings().bulk_lookup_concurrency)
    objects.put_json(key, certs)
    return key, audit.as_stored(certs)


def record_erasure(tenant: Tenant, job_id: str, chunk_key: str, key: str,
                   lines: list[tuple[dict[str, Any], dict[str, Any], dict[str, Any]]],
                   ) -> list[dict[str, int]]:
    """A chunk's erased lines (row, plan, certificate; the certificates stored at `key`),
    recorded as single erasures are, each exactly once however often the chunk runs:

    1. one audit entry for the chunk (the Merkle root of its certificates, the count and the
       subjects' references), appended once (keyed by the job and the chunk);
    2. the suppression entries of the lines that passed verification, in batches of 25;
    3. the archive index read again for all the lines (`exports.late_archives`): an export
       that was still writing its archive when the chunk was planned has it deleted now
       (what it found noted beside the certificates first, so a rerun still reports it);
    4. the request records, each with its certificate, the chunk entry and its inclusion
       proof, in batches of 25, keyed by the line's id (a rewrite is the same record): a
       record says completed only once step 3 has left nothing of hers behind;
    5. a SubjectErased event per line, in PutEvents of 10 recorded in the chunk's outbox
       (a batch sent but not yet recorded when a run dies is sent again: at-least-once).

    Returns, per line, the archives step 3 found, deleted and left."""
    if not lines:
        return []
    certs = [c for _, _, c in lines]
    actor = f"bulk:{job_id}"
    entry = audit.commit_chunk(tenant.tenant_id, actor=actor, job_id=job_id,
                               chunk=chunk_key, key=key, certificates=certs)
    due = get_settings().due_months
    models = []
    for index, (row, _, cert) in enumerate(lines):
        ids = row["identities"]
        status = "completed" if cert["verification"]["passed"] else "completed_with_errors"
        exempt: dict[str, Any] = {k: cert[k] for k in ("retained", "held", "exemptions",
                                                   "holds") if k in cert}
        message = outcome.exemption_message(exempt)
        done = str(cert["completed_at"])
        models.append(RequestModel(
            tenant_id=tenant.tenant_id, sk=records.request_sk(cert["request_id"]),
            request_id=cert["request_id"], type="erasure", status=status,
            subject_ref=cert["subject_ref"],
            identity_refs={k: tenant.keys.hmac(k, v) for k, v in ids.items()},
            created_at=cert["started_at"], completed_at=done,
            due_at=clock.iso(clock.add_months(clock.parse(done), due)),
            requested_by=actor, reason=f"bulk erasure job {job_id}",
            options={"bulk_job": job_id, "action": "erase"},
            timeline=[records.event(at=cert["started_at"], event="received", by=actor),
                      records.event(at=done, event=status)],
            # the certificate stays in the chunk's evidence object: the record points at it
            # (its tables, totals and verification are read from it: `records.to_json`)
            result={"found": True, **exempt, "tenants": {}, "bulk_job": job_id,
                    "evidence": audit.pointer(key, index, cert, entry),
                    **({"message": message} if message else {})},
            units={}, io={}, attempt=1))
    suppression.add_many(tenant.tenant_id, [
        (plan["refs"], cert["request_id"], str(cert["completed_at"]))
        for _, plan, cert in lines if cert["verification"]["passed"]], reason="erasure")
    # the lines with suppression entries only (an export beside a line that failed
    # verification is not withdrawn either: its archive is not taken from under it)
    # what it finds is noted beside the certificates before it deletes: a rerun after the
    # deletion reports it still
    noted_key = key.removesuffix(".json") + ".late.json"
    late = exports.late_archives(
        tenant.tenant_id,
        [plan["refs"] if cert["verification"]["passed"] else {} for _, plan, cert in lines],
        noted=objects.get_json(noted_key) if objects.exists(noted_key) else None,
        note=lambda found: objects.put_json(noted_key, found))
    # a record says completed once nothing of hers is left that the chunk could see
    records.put_many(models)
    outbound.emit_many(tenant.tenant_id, [
        ("SubjectErased", {"request_id": c["request_id"], "subject_ref": c["subject_ref"],
                           "type": "erasure", "bulk_job": job_id}) for c in certs],
        outbox=key.removesuffix(".json") + ".outbox.json")
    return late


# -- the report --------------------------------------------------------------------------------

def _part_rows(keys: Iterable[str]) -> Iterator[dict[str, Any]]:
    """The rows of JSON parts, one part in memory at a time."""
    for key in keys:
        yield from objects.get_json(key)


class Chunks(NamedTuple):
    """Every chunk of a job's index by its outcome: recorded `done`, `failed` (it started:
    its plan is saved, so some of its subjects may be erased) or `missing` (it never ran)."""
    done: list[str]
    failed: list[str]
    missing: list[str]

    @property
    def not_done(self) -> list[str]:
        return sorted(self.failed + self.missing)


def chunk_outcomes(job: BulkJobModel) -> Chunks:
    """The chunk index checked against what was recorded: the Map's own verdict is not
    trusted (an emulator may report success for a chunk that failed, and a tolerated
    failure would too)."""
    work = _work(job.tenant_id, job.job_id)
    total, done = int(job.chunks or 0), chunks.names(job.chunks_done)
    out = Chunks([], [], [])
    for n in range(total):
        key = work.chunk(n)
        if chunks.chunk_name(key) in done:
            out.done.append(chunks.chunk_name(key))
        elif objects.exists(work.beside("plans", key)):
            out.failed.append(chunks.chunk_name(key))
        else:
            out.missing.append(chunks.chunk_name(key))
    return out


def _named(names: list[str]) -> str:
    return ", ".join(names[:20]) + (f" and {len(names) - 20} more" if len(names) > 20 else "")


def _not_done_reason(got: Chunks) -> str:
    parts = []
    if got.failed:
        parts.append(f"{len(got.failed)} chunk(s) failed after they started erasing "
                     f"({_named(got.failed)}): their subjects may be partly erased")
    if got.missing:
        parts.append(f"{len(got.missing)} chunk(s) never ran ({_named(got.missing)})")
    return (f"{len(got.not_done)} of {len(got.done) + len(got.not_done)} chunks did not "
            f"finish: {'; '.join(parts)}. Their saved plans are kept: retry the job "
            "(POST /v1/bulk-erasures/{job_id}/retry) to resume them")


def _chunk_rows(job: BulkJobModel, got: Chunks) -> Iterator[dict[str, Any]]:
    """Every valid line in line order, chunk after chunk (chunks are cut in line order):
    a done chunk's outcomes, or, for a chunk not done, each of its lines `not_done` (from
    its kept manifest; the subject's reference only). One chunk in memory at a time."""
    work = _work(job.tenant_id, job.job_id)
    tenant = get_tenant(job.tenant_id)
    failed = set(got.failed)
    for n in range(int(job.chunks or 0)):
        key = work.chunk(n)
        name = chunks.chunk_name(key)
        if name in got.done:
            yield from objects.get_json(work.beside("report", key))
            continue
        why = "failed after it started erasing" if name in failed else "never ran"
        for row in objects.get_json(key):
            yield {"line": row["line"], "outcome": "not_done",
                   "subject_ref": tenant.keys.subject_ref(row["identities"]),
                   "reason": f"its chunk {name} {why}: retry the job"}


def write_report(job: BulkJobModel, got: Chunks, key: str) -> int:
    """Stream the job's report into a multipart upload: the chunks' rows and the rejected
    lines merged in line order, a part at a time (memory stays flat whatever the number of
    lines). Returns the number of lines written (the header not counted)."""
    s = get_settings()
    rejects = _part_rows(list(job.reject_keys or ()))
    rows = heapq.merge(_chunk_rows(job, got), rejects, key=lambda r: int(r["line"]))
    line = io.StringIO()
    w = csv.writer(line)
    n = 0
    ttl = str(get_tenant(job.tenant_id).settings.get("export_ttl_days", 14))
    with archives.MultipartWriter(s.bucket("exports"), key,
                                  part_size=s.export_part_mb * archives.MiB,
                                  content_type="text/csv", tags={"oblio-ttl": ttl}) as out:
        w.writerow(REPORT_COLUMNS)
        for row in rows:
            w.writerow([csv_safe(row.get(c, "")) for c in REPORT_COLUMNS])
            n += 1
            if line.tell() > 64 * 1024:
                out.write(line.getvalue().encode())
                line.seek(0)
                line.truncate()
        out.write(line.getvalue().encode())
    return n


def report(tenant_id: str, job_id: str, attempt: int | None = None) -> dict[str, Any]:
    """One CSV of every line's outcome, in line order; the job ends.

    Every chunk of the index is checked: all done, the job is `completed` (or
    `completed_with_errors` when lines failed their verification); a chunk failed or
    missing, the job is `completed_with_errors` when other chunks are done, `failed` when
    none is, naming the chunks either way, and the work files stay for a retry. The report
    has a row for every line of the file (`not_done` for a chunk not done); its audit entry
    and event are written before the job's status, once per run."""
    job = load(tenant_id, job_id)
    if stale(job, attempt):
        _ended(job, attempt=attempt)  # its own run's end, counted once
        return {"status": job.status, "stale": True}
    if job.status in chunks.ENDED:  # run again after the job ended: counted once
        _ended(job)
        return {"status": job.status}
    n = attempt if attempt is not None else attempt_of(job)  # this task's run, whatever
    got = chunk_outcomes(job)                                 # the record says later
    key = f"reports/{tenant_id}/bulk-{job_id}.csv"
    lines = write_report(job, got, key)
    job = load(tenant_id, job_id)
    total = int(job.rows_total or 0)
    message = None
    if got.not_done:
        status = "completed_with_errors" if got.done else "failed"
        message = _not_done_reason(got)
    else:
        status = "completed_with_errors" if job.failed else "completed"
        if not job.erased and not job.failed and job.not_found and not job.dry_run:
            message = "nobody in the file was found: nothing was erased"
    if lines != total:  # never expected: the report says so rather than pass it over
        message = (f"{message} " if message else "") + \
            f"The report has {lines} lines of the file's {total}."
    counts = {k: int(getattr(job, k) or 0) for k in
              ("rows_total", "erased", "not_found", "invalid", "duplicates", "failed",
               "retained", "held")}
    details = {"job_id": job_id, "status": status, "attempt": n,
               "report_lines": lines, **counts,
               **({"chunks_failed": got.failed} if got.failed else {}),
               **({"chunks_missing": got.missing} if got.missing else {})}
    if not _announce(job, n, "bulk_erasure_failed" if status == "failed"
                     else "bulk_erasure_completed", details) or not chunks.write_on_run(job, [
            BulkJobModel.status.set(status), BulkJobModel.completed_at.set(clock.iso()),
            BulkJobModel.report_key.set(key),
            *([BulkJobModel.chunks_failed.set(set(got.failed))] if got.failed else []),
            *([BulkJobModel.chunks_missing.set(set(got.missing))] if got.missing else []),
            *([BulkJobModel.message.set(message)] if message else []),
            *([BulkJobModel.error.set(message)] if status == "failed" and message else []),
            ], n):
        # the job was retried while this report ran: the new run's report ends it
        _ended(job, attempt=n)
        return {"status": job.status, "stale": True}
    if not got.not_done:
        _work(tenant_id, job_id).clear()
    _ended(job, attempt=n)  # Report is the job's last task
    return {"status": status, **({"chunks_failed": got.failed} if got.failed else {}),
            **({"chunks_missing": got.missing} if got.missing else {})}


def _announce(job: BulkJobModel, n: int, action: str, details: dict[str, Any]) -> bool:
    """The audit entry and the BulkErasureCompleted event of the end of the job's run `n`,
    each written once per run and end (`failed` or not) and recorded on the job before its
    status moves: a rerun of the step finds them recorded and writes neither again (the
    entry is keyed by the run and the end; a crash between the event and its record can
    repeat it: the event carries `event_id`, the same each time, for consumers to drop a
    repeat). A run whose report announced its end and then failed before writing the status
    (the failure step came next) announces its failure as well: the trail and the events
    end where the job does. False, and nothing written, once the job is on another run
    (retried meanwhile: the entry's append is guarded by it)."""
    status = details["status"]
    end = "failed" if status == "failed" else "end"
    once = f"bulk:{job.job_id}:{n}:{end}"
    unkept = any(int(a or 0) == n and s is None for a, s in (
        (job.audited_attempt, job.audited_status),
        (job.announced_attempt, job.announced_status)))
    legacy = _legacy_end(job, n) if end == "failed" or unkept else None
    if legacy == "failed":  # a release that keyed both ends alike appended this failure
        once = f"bulk:{job.job_id}:{n}:end"
    if not _said(job.audited_attempt, job.audited_status, n, status, legacy):
        entry = chunks.audit_end(job, n, action, once, details)
        if entry is None or not chunks.write_on_run(
                job, [BulkJobModel.audit_entry.set(entry),
                      BulkJobModel.audited_attempt.set(n),
                      BulkJobModel.audited_status.set(status)], n):
            return False
    if not _said(job.announced_attempt, job.announced_status, n, status, legacy):
        keep = ("rows_total", "erased", "not_found", "invalid", "duplicates", "failed",
                "retained", "held", "chunks_failed", "chunks_missing")
        outbound.emit("BulkErasureCompleted", job.tenant_id, job_id=job.job_id,
                      status=status, attempt=n,
                      event_id=f"bulk-{job.job_id}-{n}" + ("-failed" if end == "failed"
                                                            else ""),
                      **{k: v for k, v in details.items() if k in keep})
        if not chunks.write_on_run(job, [BulkJobModel.announced_attempt.set(n),
                                         BulkJobModel.announced_status.set(status)], n):
            return False
    return True


def _said(attempt: float | None, status: str | None, n: int, now: str,
          legacy: str | None) -> bool:
    """Whether the end `now` of run `n` was already written (audited or announced): the
    run's end said before, a failure for a failure, an end for an end. A record written
    before statuses were kept says which by the entry the run appended (`legacy`: `failed`
    or `end`, None when it appended none)."""
    if int(attempt or 0) != n:
        return False
    said = status if status is not None else legacy
    return said is not None and (said == "failed") == (now == "failed")


def _legacy_end(job: BulkJobModel, n: int) -> str | None:
    """Which end run `n`'s entry keyed `bulk:<job>:<n>:end` is (`failed` or `end`; None:
    none was appended): a release before this one appended a failure under that key too."""
    action = audit.appended_action(job.tenant_id, f"bulk:{job.job_id}:{n}:end")
    return None if action is None else ("failed" if action == "bulk_erasure_failed"
                                        else "end")


def finish_failed(job: BulkJobModel, reason: str, keep_work: bool = False,
                  attempt: int | None = None) -> bool:
    """End the job's run `attempt` (None: the record's) failed with `reason`; its work files
    go unless `keep_work` (chunk manifests and saved plans: what a retry resumes from). The
    audit entry and event come first, once per run; a run that is no longer the job's
    (retried meanwhile) writes nothing, keeps the files and answers False."""
    n = attempt if attempt is not None else attempt_of(job)
    done = _announce(job, n, "bulk_erasure_failed", {
        "job_id": job.job_id, "status": "failed", "attempt": n, "reason": reason}) and \
        chunks.write_on_run(job, [BulkJobModel.status.set("failed"),
                                  BulkJobModel.error.set(reason),
                                  BulkJobModel.completed_at.set(clock.iso())], n)
    if not done:
        logger.warning("a bulk job's run ended after the job was retried: nothing recorded",
                       extra={"job_id": job.job_id, "task_attempt": n})
    elif not keep_work:
        _work(job.tenant_id, job.job_id).clear()
    _ended(job, after=1, attempt=n)  # and the Fail state after it
    return done


def _ended(job: BulkJobModel, after: int = 0, attempt: int | None = None) -> None:
    """`metering.last_step` for the job's run `attempt` (None: its current one), with its
    meter as this task read it (a step run again counts the end once)."""
    n = attempt if attempt is not None else attempt_of(job)
    metering.last_step(_execution(job, n), n, after=after, meter=plain(job.meter))


def _execution(job: BulkJobModel, n: int) -> str:
    """The ARN of the job's run `n` (`start_from_upload`, then `retry`)."""
    return workflows.execution_arn("bulk_erasure",
                                   f"bulk-{job.job_id}" + (f"-{n}" if n > 1 else ""))


def fail(tenant_id: str, job_id: str, error: dict[str, Any],
         attempt: int | None = None) -> dict[str, Any]:
    """Record a failure the state machine caught (not for a task of an earlier run). Once
    the file is cut into chunks its work files stay, so that a retry resumes the chunks not
    done."""
    job = load(tenant_id, job_id)
    if stale(job, attempt):
        _ended(job, after=1, attempt=attempt)  # its own run's end, counted once
        return {"status": job.status, "stale": True}
    if job.status in chunks.ENDED:  # ended before (by Report, or by this step run again)
        _ended(job, after=1)
    return chunks.fail(job.status, error, lambda code, reason: finish_failed(
        job, reason, keep_work=job.chunks is not None, attempt=attempt))


# -- retry -------------------------------------------------------------------------------------

def retry(principal: Principal, job_id: str) -> dict[str, Any]:
    """Run again, from their kept manifests and plans, the chunks of a failed job (or of one
    completed with errors because chunks did not finish) that are not done: a new run
    (`attempt`), so that a task of the earlier one writes nothing to the job."""
    job = load(principal.tenant_id, job_id)
    if job.status not in ("failed", "completed_with_errors"):
        raise Conflict(f"only a failed bulk erasure job can be retried; this one is "
                       f"{job.status}", code="not_failed", details={"status": job.status})
    work = _work(job.tenant_id, job_id)
    todo = chunks.missing(work, int(job.chunks or 0), job.chunks_done)
    if job.chunks is None or not job.index_key:
        raise Conflict("the job failed before its file was cut into chunks: nothing was "
                       "erased and there is nothing to resume; upload the file again in a "
                       "new job", code="nothing_to_resume", details={"status": job.status})
    if not todo:
        raise Conflict("every chunk of this job is done: there is nothing to resume (lines "
                       "that failed their verification are named in its report; erase them "
                       "again in a new job)", code="nothing_to_resume",
                       details={"status": job.status})
    keys = [work.chunk(int(name)) for name in todo]
    if not all(objects.exists(k) for k in keys):
        raise Conflict("the job's saved chunks are gone: there is nothing to resume; upload "
                       "the file again in a new job", code="nothing_to_resume",
                       details={"status": job.status})
    before, n = job.status, attempt_of(job)
    work.write_index(keys)
    try:
        job.update(actions=[
            BulkJobModel.attempt.set(n + 1), BulkJobModel.status.set("running"),
            BulkJobModel.error.remove(), BulkJobModel.message.remove(),
            BulkJobModel.completed_at.remove(), BulkJobModel.report_key.remove(),
            BulkJobModel.chunks_failed.remove(), BulkJobModel.chunks_missing.remove(),
        ], condition=(BulkJobModel.status == before) & current(n))
    except UpdateError as exc:
        if not chunks.condition_failed(exc):
            raise
        raise Conflict("the job was retried or changed meanwhile; follow it with GET "
                       f"/v1/bulk-erasures/{job_id}", code="not_failed") from None
    s = get_settings()
    metering.bill_to(BulkEvent(tenant_id=job.tenant_id, job_id=job_id))
    try:
        workflows.start("bulk_erasure", f"bulk-{job_id}-{n + 1}", {
            "tenant_id": job.tenant_id, "job_id": job_id, "bucket": s.bucket("ingest"),
            "key": job.upload_key or "", "attempt": n + 1})
    except Exception:
        # nothing runs: the job goes back to how it was, so that a retry can start it again
        job.update(actions=[BulkJobModel.attempt.set(n), BulkJobModel.status.set(before)],
                   condition=current(n + 1))
        raise
    metering.started(n + 1)
    audit.append(job.tenant_id, "bulk_erasure_retried", actor=principal.key_id,
                 details={"job_id": job_id, "attempt": n + 1, "chunks": todo})
    logger.info("bulk job retried", extra={"job_id": job_id, "attempt": n + 1,
                                           "chunks": len(todo)})
    return to_json(load(principal.tenant_id, job_id))
