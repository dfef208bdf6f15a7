"""Access and portability exports (GDPR Art. 15 and 20): the subject's data as one ZIP that
expires.

The steps of `statemachines/access_export.asl.json` after the plan that every action shares
(the walk through the data map, which writes one manifest of item keys per table):

- `collect`, one Map iteration per table: reads the table's items in BatchGetItem calls of
  100, keeps what the map lets the subject see (drops `export: false` attributes, redacts
  `other_person: true` ones), and writes the table's part to the work bucket: the items as
  JSON lines, the same items as a CSV, and the S3 objects they point to. Items never travel
  through the state machine's payload.
- `package`: streams README.txt, one CSV per table, the subject's files under `files/`, and
  `subject.json` (items grouped by table with each attribute's category, and the Art. 15
  information sheet from the data map's processing register) into one ZIP written straight
  into an S3 multipart upload: SSE-KMS, tagged with the tenant's TTL so that the bucket's
  lifecycle rule removes it. Memory stays flat whatever the export's size. A file that an
  item points to but S3 no longer holds is listed as missing in `subject.json`.
- `finish`: the result (archive size, items per table, expiry, io), the audit entry, the
  `RequestCompleted` event, and an e-mail through SES to the requester's address that says
  nothing about the subject (a self-service request's person gets a signed link to the
  archive instead). `completed_with_errors` when a file was missing.

`download` answers `GET /v1/requests/{id}/download`: a presigned URL of minutes; 409 when
there is no archive to give; 410 once the archive's date has passed, whatever S3 still holds.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from typing import IO, Any

from boto3.dynamodb.types import Binary

from oblio import audit, aws, clock, events, workflow
from oblio import requests as reqs
from oblio.datamap import DataMap, TableMap
from oblio.engine import Unit
from oblio.errors import Conflict, Gone, Invalid, TransientError
from oblio.identity import normalise_email
from oblio.models import RequestModel
from oblio.observability import logger
from oblio.settings import get_settings
from oblio.store import exports as archives
from oblio.store import objects
from oblio.store import tables as store
from oblio.tenants import Principal, Tenant, get_tenant

FORMAT = "oblio-access-export/1"
CONSENT_COLUMNS = ("at", "purpose", "status", "channel", "source", "policy_version", "proof",
                   "recorded_at", "event_id")
REDACTED = "[redacted: about another person]"
UNCLASSIFIED = "unclassified"  # an attribute the data map does not name
ARCHIVE_READY = frozenset({"completed", "completed_with_errors"})
#: how many missing files the request's result lists (subject.json lists them all)
LISTED = 50
_SPOOL = 1024 * 1024


# -- request options -------------------------------------------------------------------------

def notify_option(body: dict[str, Any], tenant: Tenant) -> dict[str, str]:
    """The request's `notify_email` (the requester's address, not the subject's), validated
    like an identity and held encrypted until the export is finished."""
    raw = body.get("notify_email")
    if raw is None:
        return {}
    if body.get("type") != "access":
        raise Invalid("notify_email", "notify_email applies to access requests: oblio "
                                      "e-mails that address when the archive is ready")
    address = normalise_email(raw, field="notify_email")
    return {"notify_enc": tenant.keys.encrypt({"email": address})}


def latest_valid_export(tenant_id: str, subject_ref: str) -> RequestModel | None:
    """The newest finished access request of the subject whose archive has not expired (what
    a tenant that requires an export before anonymisation checks)."""
    return reqs.latest_valid_export(tenant_id, subject_ref)


# -- where things are ----------------------------------------------------------------------

def archive_key(tenant_id: str, request_id: str) -> str:
    return f"exports/{tenant_id}/{request_id}.zip"


def archive_name(request_id: str) -> str:
    return f"data-export-{request_id}.zip"


def _part_key(m: RequestModel, u: Unit, suffix: str) -> str:
    return f"{workflow._work(m)}export/{u.tenant_id}/{u.table}.{suffix}"


def _prefix(request_tenant: str, unit_tenant: str) -> str:
    """Where a unit's CSV and files go in the archive: a child tenant's under its name."""
    return "" if unit_tenant == request_tenant else f"tenants/{_safe(unit_tenant)}/"


def _safe(text: str, limit: int = 120) -> str:
    """A path segment: no separators, no dot-dot, nothing a ZIP tool could misread."""
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", text).strip("._")[:limit] or "_"


# -- one item as the subject sees it ---------------------------------------------------------

def plain(value: Any) -> Any:
    """A DynamoDB value as JSON: numbers as int or float, sets as sorted lists, binary as
    base64."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Binary):
        value = value.value
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(bytes(value)).decode()
    if isinstance(value, set | frozenset):
        return sorted(plain(v) for v in value)
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def columns(dm: DataMap, t: TableMap) -> list[str]:
    """The table's exported attributes in the map's order: its key, then every mapped
    attribute whose `export` is true (redacted ones keep their column)."""
    internal = {dm.tenant_attribute, dm.anonymised_marker}
    out = [k for k in t.key.names if k not in internal]
    out += [a for a, spec in t.attributes.items()
            if spec.export and a not in out and a not in internal]
    return out


def category(t: TableMap, attribute: str) -> str:
    spec = t.attributes.get(attribute)
    return spec.category if spec else UNCLASSIFIED


class TablePart:
    """One table's share of the export, built item by item."""

    def __init__(self, dm: DataMap, name: str, prefix: str) -> None:
        self.dm, self.name, self.t, self.prefix = dm, name, dm.tables[name], prefix
        self.columns = columns(dm, self.t)
        self.unmapped: set[str] = set()
        self.redacted: set[str] = set()
        self.dropped: set[str] = set()
        self._paths: set[str] = set()

    def item_id(self, item: dict[str, Any]) -> str:
        own = [str(plain(item[k])) for k in self.t.key.names
               if k != self.dm.tenant_attribute and k in item]
        return _safe("_".join(own) or "item")

    def export(self, item: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """The item as exported (attributes in column order; an S3 attribute holds the file's
        path in the archive) and the files it points to."""
        t, dm = self.t, self.dm
        out: dict[str, Any] = {}
        files: list[dict[str, str]] = []
        for attr, value in item.items():
            if attr in (dm.tenant_attribute, dm.anonymised_marker):
                continue
            spec = t.attributes.get(attr)
            if spec is None:
                self.unmapped.add(attr)
            elif not spec.export:
                self.dropped.add(attr)
                continue
            elif spec.other_person:
                self.redacted.add(attr)
                out[attr] = REDACTED
                continue
            value = plain(value)
            if spec is not None and spec.s3 and isinstance(value, str) and value:
                path = self._path(item, attr, value)
                files.append({"bucket": dm.buckets[spec.s3], "key": value, "path": path,
                              "table": self.name, "attribute": attr,
                              "item": self.item_id(item)})
                value = path
            out[attr] = value
        ordered = {c: out[c] for c in self.columns if c in out}
        ordered.update({c: out[c] for c in sorted(out) if c not in ordered})
        return ordered, files

    def _path(self, item: dict[str, Any], attr: str, key: str) -> str:
        base = f"{self.prefix}files/{_safe(self.name)}/{self.item_id(item)}"
        path = f"{base}-{_safe(key.rsplit('/', 1)[-1])}"
        if path in self._paths:
            path = f"{base}-{_safe(attr)}-{_safe(key.rsplit('/', 1)[-1])}"
        n = 1
        while path in self._paths:
            n += 1
            path = f"{base}-{n}-{_safe(key.rsplit('/', 1)[-1])}"
        self._paths.add(path)
        return path

    def header(self) -> list[str]:
        return [*self.columns, *sorted(self.unmapped - set(self.columns))]


def csv_cell(value: Any) -> str:
    """A CSV cell a spreadsheet opens as text: JSON for lists and maps, true/false, and a
    leading apostrophe where a spreadsheet would run a formula (CSV injection)."""
    from oblio.bulk import csv_safe

    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return csv_safe(json.dumps(value, ensure_ascii=False))
    return csv_safe(value)


# -- collect ---------------------------------------------------------------------------------

def _key_of(t: TableMap, item: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(item.get(k) for k in t.key.names)


def collect(request_id: str, tenant_id: str, unit: dict[str, str]) -> dict[str, Any]:
    """Read one table's planned items and write its part: `<table>.jsonl` (the items as
    exported), `<table>.csv` and `<table>.files.jsonl` (the objects the items point to)."""
    m = reqs.load(tenant_id, request_id)
    u = Unit(unit["tenant_id"], unit["table"])
    done = (reqs._plain(m.units) or {}).get(u.id)
    if done and done.get("status") == "done":
        return {"unit": u.id, "skipped": True}
    dm = workflow.frozen_map(m)
    t = dm.tables[u.table]
    part = TablePart(dm, u.table, _prefix(tenant_id, u.tenant_id))
    exported = files = 0
    with aws.counting() as io_, \
            tempfile.SpooledTemporaryFile(max_size=_SPOOL) as lines, \
            tempfile.SpooledTemporaryFile(max_size=_SPOOL) as refs:
        keys: list[dict[str, Any]] = objects.get_json(workflow._manifest_key(m, u))["keys"]
        for start in range(0, len(keys), 100):
            batch = keys[start:start + 100]
            got = {_key_of(t, i): i for i in store.batch_get(t.table, batch)}
            for key in batch:  # the plan's order; an item deleted since is not exported
                item = got.get(_key_of(t, key))
                if item is None:
                    continue
                out, pointed = part.export(item)
                lines.write(json.dumps(out, ensure_ascii=False).encode() + b"\n")
                for ref in pointed:
                    refs.write(json.dumps(ref).encode() + b"\n")
                exported += 1
                files += len(pointed)
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL) as table_csv:
            _write_csv(table_csv, part.header(), _lines(lines))
            archives.put_work_file(_part_key(m, u, "csv"), table_csv, table_csv.tell(),
                                   "text/csv")
        archives.put_work_file(_part_key(m, u, "jsonl"), lines, lines.tell(),
                               "application/x-ndjson")
        if files:
            archives.put_work_file(_part_key(m, u, "files.jsonl"), refs, refs.tell(),
                                   "application/x-ndjson")
    outcome = {"status": "done", "at": clock.iso(), "matched": len(keys),
               "exported": exported, "gone": len(keys) - exported, "files": files,
               "columns": part.header(), "unmapped": sorted(part.unmapped),
               "redacted": sorted(part.redacted), "dropped": sorted(part.dropped)}
    reqs.record_unit(m, u.id, outcome, dict(io_.calls))
    logger.info("export unit collected", extra={"request_id": request_id, "unit": u.id,
                                                "exported": exported, "files": files})
    return {"unit": u.id, "exported": exported, "files": files}


def _lines(spool: IO[bytes]) -> Iterator[dict[str, Any]]:
    end = spool.tell()
    spool.seek(0)
    while spool.tell() < end:
        yield json.loads(spool.readline())


def _write_csv(out: IO[bytes], header: list[str], rows: Iterable[dict[str, Any]]) -> None:
    """UTF-8 with a byte-order mark (spreadsheets then read the accents right), a header."""
    text = io.StringIO()
    w = csv.writer(text)
    out.write("\ufeff".encode())
    w.writerow(header)
    for row in rows:
        w.writerow([csv_cell(row.get(c)) for c in header])
        if text.tell() > 64 * 1024:
            out.write(text.getvalue().encode())
            text.seek(0)
            text.truncate()
    out.write(text.getvalue().encode())


# -- package ---------------------------------------------------------------------------------

def information(dm: DataMap, tables: list[str]) -> dict[str, Any]:
    """The Art. 15(1) information about the processing of the tables that hold the subject's
    data, from the data map's processing register."""
    reg = dm.processing_register
    purposes: dict[str, dict[str, Any]] = {}
    recipients: set[str] = set()
    categories: set[str] = set()
    retention: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name in tables:
        t, e = dm.tables[name], reg.entry(name)
        p = purposes.setdefault(t.purpose or "not stated", {"legal_basis": set(),
                                                             "tables": []})
        if e.legal_basis:
            p["legal_basis"].add(e.legal_basis)
        p["tables"].append(name)
        recipients.update(e.recipients)
        categories.update(a.category for a in t.attributes.values()
                          if a.export and a.category != "non_personal")
        retention[name] = e.retention or "not stated in the processing register"
        sources[name] = e.source or "not stated in the processing register"
    return {
        "controller": reg.controller or None, "contact": reg.contact or None,
        "purposes": [{"purpose": k, "legal_basis": sorted(v["legal_basis"]),
                      "tables": v["tables"]} for k, v in purposes.items()],
        "categories": sorted(categories), "recipients": sorted(recipients),
        "retention": retention, "sources": sources, "rights": reg.rights,
        "complaint": reg.complaint, "automated_decisions": reg.automated_decisions,
    }


def _table_meta(dm: DataMap, name: str, outcome: dict[str, Any], csv_path: str,
                ) -> dict[str, Any]:
    t, e = dm.tables[name], dm.processing_register.entry(name)
    header = list(outcome.get("columns") or columns(dm, t))
    redacted = set(outcome.get("redacted") or ())
    attrs = {c: {"category": category(t, c), **({"redacted": True} if c in redacted else {})}
             for c in header}
    by_category: dict[str, list[str]] = {}
    for c in header:
        by_category.setdefault(category(t, c), []).append(c)
    return {"purpose": t.purpose or None, "legal_basis": e.legal_basis or None,
            "recipients": e.recipients, "retention": e.retention or None,
            "source": e.source or None, "csv": csv_path,
            "count": int(outcome.get("exported", 0)), "attributes": attrs,
            "categories": by_category}


def _stamp(name: str, when: datetime, stored: bool = False) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=when.timetuple()[:6])
    info.compress_type = zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


class _Json:
    """subject.json written as it goes: one object, its items streamed one per line."""

    def __init__(self, out: IO[bytes]) -> None:
        self.out = out
        self.first: list[bool] = []

    def _sep(self) -> None:
        if self.first[-1]:
            self.first[-1] = False
        else:
            self.out.write(b",")
        self.out.write(b"\n" + b"  " * len(self.first))

    def open(self, key: str | None = None, bracket: bytes = b"{") -> None:
        if key is not None:
            self._sep()
            self.out.write(json.dumps(key).encode() + b": ")
        self.out.write(bracket)
        self.first.append(True)

    def close(self, bracket: bytes = b"}") -> None:
        self.first.pop()
        self.out.write(b"\n" + b"  " * len(self.first) + bracket)

    def field(self, key: str, value: Any) -> None:
        self._sep()
        self.out.write(json.dumps(key).encode() + b": " +
                       json.dumps(value, ensure_ascii=False).encode())

    def element(self, raw: bytes) -> None:
        self._sep()
        self.out.write(raw)


def package(request_id: str, tenant_id: str) -> dict[str, Any]:
    """Stream the export into `exports/<tenant>/<request>.zip`; a package already made is not
    made again."""
    m = reqs.load(tenant_id, request_id)
    units = reqs._plain(m.units) or {}
    made = units.get("_package")
    if made and made.get("status") == "done":
        return {"size": made["size"], "parts": made["parts"], "files": made["files"],
                "files_missing": made["files_missing"]}
    s = get_settings()
    dm = workflow.frozen_map(m)
    tenant = get_tenant(tenant_id)
    planned = workflow._units(m)
    ttl = int(tenant.settings.get("export_ttl_days") or 14)
    now = clock.now()
    expires = clock.iso(now + timedelta(days=ttl))
    key = archive_key(tenant_id, request_id)
    missing: list[dict[str, str]] = []
    included = 0
    with aws.counting() as io_:
        out = archives.MultipartWriter(s.bucket("exports"), key,
                                       part_size=s.export_part_mb * archives.MiB,
                                       content_type="application/zip",
                                       tags={"oblio-ttl": str(ttl)},
                                       filename=archive_name(request_id))
        with out, zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            ledgers = consent_ledgers(m)
            zf.writestr(_stamp("README.txt", now),
                        readme(dm, m, planned, units, expires, ledgers))
            for u in planned:
                included += _add_unit(zf, m, u, units.get(u.id) or {}, now, missing)
            for t, led in ledgers.items():
                if led["history"]:
                    with zf.open(_stamp(f"{_prefix(tenant_id, t)}consents.csv", now), "w") as w:
                        _write_csv(w, list(CONSENT_COLUMNS), led["history"])
            with zf.open(_stamp("subject.json", now), "w") as w:
                _subject_json(w, dm, m, planned, units, expires, included, missing, ledgers)
    made = {"status": "done", "at": clock.iso(), "size": out.size, "sha256": out.sha256,
            "parts": out.parts, "files": included, "files_missing": len(missing),
            "missing": missing[:LISTED], "expires_at": expires, "key": key,
            "ttl_days": ttl}
    reqs.record_unit(m, "_package", made, dict(io_.calls))
    logger.info("export packaged", extra={"request_id": request_id, "size": out.size,
                                          "files": included, "files_missing": len(missing)})
    return {"size": out.size, "parts": out.parts, "files": included,
            "files_missing": len(missing)}


def consent_ledgers(m: RequestModel) -> dict[str, dict[str, Any]]:
    """The subject's consent ledger in each tenant of the request (Art. 7(1): what they
    agreed to and withdrew, when, how): the state per purpose and every event."""
    from oblio import consent

    tenant = get_tenant(m.tenant_id)
    ids = reqs.identities_of(m, tenant)
    tenants = [tenant]
    if (reqs._plain(m.options) or {}).get("include_children"):
        tenants += [get_tenant(c) for c in tenant.children]
    out: dict[str, dict[str, Any]] = {}
    for t in tenants:
        led = consent.ledger(t, ids)
        out[t.tenant_id] = {"state": led["state"], "history": led["history"]}
    return out


def _add_unit(zf: zipfile.ZipFile, m: RequestModel, u: Unit, outcome: dict[str, Any],
              now: datetime, missing: list[dict[str, str]]) -> int:
    """A table's CSV and the files its items point to, streamed into the archive; returns how
    many files it held, and adds those S3 no longer holds to `missing`."""
    prefix = _prefix(m.tenant_id, u.tenant_id)
    with zf.open(_stamp(f"{prefix}{u.table}.csv", now), "w") as w:
        for chunk in archives.work_chunks(_part_key(m, u, "csv")):
            w.write(chunk)
    included = 0
    if not int(outcome.get("files", 0)):
        return included
    for line in archives.work_lines(_part_key(m, u, "files.jsonl")):
        ref = json.loads(line)
        found = archives.open_object(ref["bucket"], ref["key"])
        if found is None:
            missing.append({k: ref[k] for k in ("table", "attribute", "item", "path")})
            continue
        chunks, size = found
        info = _stamp(ref["path"], now, stored=True)  # attachments are compressed already
        info.file_size = size  # lets zipfile choose ZIP64 for a large file
        with zf.open(info, "w") as w:
            for chunk in chunks:
                w.write(chunk)
        included += 1
    return included


def _subject_json(w: IO[bytes], dm: DataMap, m: RequestModel, planned: list[Unit],
                  units: dict[str, Any], expires: str, included: int,
                  missing: list[dict[str, str]], ledgers: dict[str, dict[str, Any]]) -> None:
    own = m.tenant_id
    found = [u for u in planned if int((units.get(u.id) or {}).get("exported", 0))]
    consented = any(led["history"] for led in ledgers.values())
    j = _Json(w)
    j.open()
    j.field("format", FORMAT)
    j.field("request", {"id": m.request_id, "type": "access", "tenant": own,
                        "received_at": m.created_at, "generated_at": clock.iso(),
                        "expires_at": expires})
    j.field("found", bool(found) or consented)
    if not found and not consented:
        j.field("message", "No data about you was found in any of the places this service "
                           "keeps personal data.")
    j.field("information", information(dm, list(dict.fromkeys(u.table for u in found))))
    j.field("redaction", f"values marked {REDACTED!r} are about another person and are "
                         "not part of your data")
    by_tenant: dict[str, list[Unit]] = {}
    for u in planned:
        by_tenant.setdefault(u.tenant_id, []).append(u)
    children = [t for t in dict.fromkeys([*by_tenant, *ledgers]) if t != own]

    def tables(group: list[Unit]) -> None:
        j.open("tables")
        for u in group:
            outcome = units.get(u.id) or {}
            prefix = _prefix(own, u.tenant_id)
            j.open(u.table)
            for k, v in _table_meta(dm, u.table, outcome, f"{prefix}{u.table}.csv").items():
                j.field(k, v)
            j.open("items", b"[")
            for line in archives.work_lines(_part_key(m, u, "jsonl")):
                j.element(line)
            j.close(b"]")
            j.close()
        j.close()

    tables(by_tenant.get(own, []))
    j.field("consents", ledgers.get(own))
    if children:
        j.open("tenants")
        for child in children:
            j.open(child)
            tables(by_tenant.get(child, []))
            j.field("consents", ledgers.get(child))
            j.close()
        j.close()
    j.field("files", {"included": included, "missing": missing,
                      "note": "a missing file is one that an item points to but that the "
                              "storage no longer holds"})
    j.close()
    w.write(b"\n")


def readme(dm: DataMap, m: RequestModel, planned: list[Unit], units: dict[str, Any],
           expires: str, ledgers: dict[str, dict[str, Any]]) -> str:
    """README.txt: what each file of the archive is, for the person it is about."""
    rows = []
    for u in planned:
        outcome = units.get(u.id) or {}
        prefix = _prefix(m.tenant_id, u.tenant_id)
        purpose = dm.tables[u.table].purpose or u.table
        rows.append(f"  {prefix}{u.table}.csv  {int(outcome.get('exported', 0))} record(s): "
                    f"{purpose}")
    for t, led in ledgers.items():
        if led["history"]:
            rows.append(f"  {_prefix(m.tenant_id, t)}consents.csv  {len(led['history'])} "
                        "event(s): what you agreed to and withdrew, when and how")
    found = any(int((units.get(u.id) or {}).get("exported", 0)) for u in planned) or \
        any(led["history"] for led in ledgers.values())
    lines = [
        "Your personal data",
        "==================",
        "",
        f"This archive answers the access request {m.request_id} (GDPR Art. 15 and 20).",
        f"It was made on {clock.iso()[:10]} and is deleted on {expires[:10]}.",
        "",
    ]
    if not found:
        lines += ["No data about you was found in any of the places this service keeps "
                  "personal data.", ""]
    lines += [
        "subject.json",
        "  All of your data, grouped by where it is kept (the tables), with the category of",
        "  each piece of information, and what the law says you must be told: the purposes",
        "  of the processing, its legal basis, who receives the data, how long it is kept,",
        "  where it comes from, and your rights. Machine-readable (JSON), for moving your",
        "  data to another service (Art. 20).",
        "",
    ]
    if rows:
        lines += ["One CSV file per table (UTF-8, first line the column names; opens in any "
                  "spreadsheet):", *rows, "",
                  "  A cell that starts with = + - or @ carries a leading apostrophe so that "
                  "a", "  spreadsheet shows it as text; subject.json holds the exact values.",
                  ""]
    if any(int((units.get(u.id) or {}).get("files", 0)) for u in planned):
        lines += ["files/", "  The files kept with your data (attachments, documents, "
                  "photos), named after the", "  record they belong to. subject.json lists "
                  "any file that could not be included.", ""]
    lines += [f"Values shown as {REDACTED} are about another",
              "person and are not part of your data.", ""]
    reg = dm.processing_register
    if reg.controller or reg.contact:
        lines += ["Questions: " + ", ".join(x for x in (reg.controller, reg.contact) if x), ""]
    return "\n".join(lines)


# -- finish ----------------------------------------------------------------------------------

def _counts(m: RequestModel, units: dict[str, Any]) -> dict[str, dict[str, dict[str, int]]]:
    out: dict[str, dict[str, dict[str, int]]] = {m.tenant_id: {}}
    missing: dict[str, int] = {}
    for f in (units.get("_package") or {}).get("missing", []):
        missing[f["table"]] = missing.get(f["table"], 0) + 1
    for u in workflow._units(m):
        got = units.get(u.id) or {}
        out.setdefault(u.tenant_id, {})[u.table] = {
            "matched": int(got.get("matched", 0)), "exported": int(got.get("exported", 0)),
            "files": int(got.get("files", 0)),
            "files_missing": missing.get(u.table, 0) if u.tenant_id == m.tenant_id else 0}
    return out


def _notify(m: RequestModel, tenant: Tenant, expires: str) -> dict[str, Any]:
    """E-mail the requester that the archive is ready: the request id and the date, nothing
    about the subject. A refused address does not fail the export; throttling is retried.
    When the person asked through the self-service page, they get a signed link instead."""
    options = reqs._plain(m.options) or {}
    if options.get("self_service"):  # the person asked: they get a signed link
        from oblio import selfservice

        return selfservice.tell_export_ready(m, tenant, expires)
    blob = options.get("notify_enc")
    if not blob:
        return {"sent": False, "reason": "no notify_email in the request"}
    s = get_settings()
    address = tenant.keys.decrypt(blob)["email"]
    text = (f"The access export of request {m.request_id} is ready.\n\n"
            f"Download it before {expires[:16].replace('T', ' ')} UTC: "
            f"GET /v1/requests/{m.request_id}/download with an API key of {tenant.name} gives "
            "a link that works for a few minutes. After that date the archive is deleted.\n\n"
            "This message says nothing about the person the export is about.\n")
    ses = aws.client("ses")
    try:
        ses.send_email(Source=s.ses_sender, Destination={"ToAddresses": [address]}, Message={
            "Subject": {"Data": "Your data export is ready", "Charset": "UTF-8"},
            "Body": {"Text": {"Data": text, "Charset": "UTF-8"}}})
    except ses.exceptions.ClientError as exc:
        code = exc.response["Error"]["Code"]
        if code in ("Throttling", "ThrottlingException", "ServiceUnavailable"):
            raise TransientError("SES is throttling: the e-mail will be retried") from None
        logger.warning("export e-mail refused", extra={"request_id": m.request_id,
                                                       "code": code})
        return {"sent": False, "reason": code, "at": clock.iso()}
    return {"sent": True, "at": clock.iso()}


def finish(request_id: str, tenant_id: str) -> dict[str, Any]:
    """The result, the audit entry, the e-mail and the event; the request completes
    (`completed_with_errors` when a file the items point to was missing)."""
    m = reqs.load(tenant_id, request_id)
    if m.status in reqs.ENDED:
        return {"status": m.status}
    tenant = get_tenant(tenant_id)
    units = reqs._plain(m.units) or {}
    plan_ = reqs._plain(m.plan) or {}
    made = units["_package"]
    counts = _counts(m, units)
    totals = {k: sum(c[k] for t in counts.values() for c in t.values())
              for k in ("matched", "exported", "files", "files_missing")}
    status = "completed_with_errors" if made["files_missing"] else "completed"
    export = {"size": int(made["size"]), "sha256": made["sha256"],
              "items": totals["exported"], "files": int(made["files"]),
              "files_missing": int(made["files_missing"]), "expires_at": made["expires_at"],
              "ttl_days": int(made["ttl_days"]), "format": FORMAT}
    if "_audit" in units:  # a retried finish: the entry is written already
        entry = audit.Entry(units["_audit"]["id"], units["_audit"]["hash"])
    else:
        entry = audit.append(tenant_id, "access_completed", actor="oblio",
                             request_id=request_id, subject_ref=m.subject_ref, details={
                                 "type": "access", "status": status, "size": export["size"],
                                 "sha256": export["sha256"], "items": export["items"],
                                 "files": export["files"],
                                 "files_missing": export["files_missing"],
                                 "expires_at": export["expires_at"],
                                 "tables": {n: c["exported"] for n, c in
                                            counts[tenant_id].items()}})
        reqs.record_unit(m, "_audit", {"id": entry.id, "hash": entry.hash}, {})
    notified = units.get("_notify")
    if notified is None:
        notified = _notify(m, tenant, export["expires_at"])
        reqs.record_unit(m, "_notify", notified, {})
        m.update(actions=[RequestModel.options["notify_enc"].remove()])
    io_ = {k: int(v) for k, v in (reqs._plain(m.io) or {}).items()}
    io_.setdefault("dynamodb.Scan", 0)
    redacted = {u.table: units[u.id]["redacted"] for u in workflow._units(m)
                if u.tenant_id == tenant_id and (units.get(u.id) or {}).get("redacted")}
    result: dict[str, Any] = {
        "found": totals["exported"] > 0, "tables": counts[tenant_id],
        "tenants": {t: {"tables": c} for t, c in counts.items() if t != tenant_id},
        "totals": totals, "export": export, "expires_at": export["expires_at"],
        "missing_files": made.get("missing", []), "redacted": redacted,
        "notified": bool(notified.get("sent")), "io": io_,
        "queries_planned": plan_.get("queries", 0), "audit_entry": entry.id}
    if not result["found"]:
        result["message"] = ("no item of the subject was found in any mapped table: the "
                             "archive says so")
    events.emit("RequestCompleted", tenant_id, request_id=request_id,
                subject_ref=m.subject_ref, type=m.type, status=status)
    objects.delete_prefix(workflow._work(m))
    reqs.end(m, status, result)
    logger.info("request finished", extra={"request_id": request_id, "status": status,
                                           "subject_ref": m.subject_ref})
    return {"status": status}


# -- download --------------------------------------------------------------------------------

def download(principal: Principal, request_id: str) -> dict[str, Any]:
    """A presigned URL of the request's archive, valid for minutes (never past the archive's
    own expiry); 409 when there is no archive to give, 410 when it has expired."""
    return presigned(reqs.load(principal.tenant_id, request_id), actor=principal.key_id)


def presigned(m: RequestModel, actor: str) -> dict[str, Any]:
    """What `download` answers, for a request already loaded (the API key's tenant, or the
    person's signed link of a self-service request); the download is audited as `actor`'s."""
    request_id = m.request_id
    if m.type != "access":
        raise Conflict(f"request {request_id} is of type {m.type}; only access requests "
                       "have an archive to download", code="not_an_access_request",
                       details={"type": m.type})
    if m.status not in ARCHIVE_READY:
        raise Conflict(f"the request is {m.status}: its archive is ready once the request is "
                       f"completed; poll GET /v1/requests/{request_id}", code="export_not_ready",
                       details={"status": m.status})
    export = (reqs._plain(m.result) or {}).get("export") or {}
    expires = export.get("expires_at")
    now = clock.now()
    if not expires or clock.parse(expires) <= now:
        raise Gone(f"the archive expired on {expires}; file a new access request for a fresh "
                   "one", code="export_expired", details={"expired_at": expires})
    s = get_settings()
    bucket = s.bucket("exports")
    key = archive_key(m.tenant_id, request_id)
    if not archives.exists(bucket, key):
        raise Gone("the archive is no longer stored; file a new access request for a fresh "
                   "one", code="export_expired", details={"expired_at": expires})
    seconds = int(min(s.presign_seconds, (clock.parse(expires) - now).total_seconds()))
    url = archives.presign_get(bucket, key, seconds, archive_name(request_id))
    audit.append(m.tenant_id, "export_downloaded", actor=actor,
                 request_id=request_id, subject_ref=m.subject_ref,
                 details={"url_seconds": seconds})
    return {"url": url, "expires_at": clock.iso(now + timedelta(seconds=seconds)),
            "archive_expires_at": expires, "size": export.get("size"),
            "sha256": export.get("sha256")}
