"""Package: stream README.txt, one CSV per table, the subject's files under `files/`, and
`subject.json` (items grouped by table with each attribute's category, and the Art. 15
information sheet from the data map's processing register) into one ZIP written straight into
an S3 multipart upload: SSE-KMS, tagged with the tenant's TTL so that the bucket's lifecycle
rule removes it. Memory stays flat whatever the export's size. A file that an item points to
but S3 no longer holds is listed as missing in `subject.json`."""

from __future__ import annotations

import json
import zipfile
from datetime import datetime, timedelta
from typing import IO, Any

from oblio.access.collect import (
    REDACTED,
    archive_prefix,
    category,
    columns,
    part_key,
    write_csv,
)
from oblio.control import exports, ledger, records, suppression
from oblio.control.exports import archive_key, index_archive
from oblio.control.tenants import get_tenant
from oblio.core import clock, deadline, shadows
from oblio.core.datamap import DataMap
from oblio.core.errors import NotFound, SubjectErased, TransientError
from oblio.core.observability import logger
from oblio.core.settings import get_settings
from oblio.pipeline import work
from oblio.pipeline.rules import Unit
from oblio.store import archives, aws, objects
from oblio.store.models import RequestModel, plain

FORMAT = "oblio-access-export/1"


CONSENT_COLUMNS = ("at", "purpose", "status", "channel", "source", "policy_version", "proof",
                   "recorded_at", "event_id")


#: how many missing files the request's result lists (subject.json lists them all)
LISTED = 50


def archive_name(request_id: str) -> str:
    return f"data-export-{request_id}.zip"


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
    meta: dict[str, Any] = {
        "purpose": t.purpose or None, "legal_basis": e.legal_basis or None,
        "recipients": e.recipients, "retention": e.retention or None,
        "source": e.source or None, "csv": csv_path,
        "count": int(outcome.get("exported", 0)), "attributes": attrs,
        "categories": by_category}
    derived = derived_by_oblio(dm, name)
    if derived:
        meta["derived_by_oblio"] = derived
    return meta


def derived_by_oblio(dm: DataMap, name: str) -> dict[str, str]:
    """The attributes oblio adds to a table's items and leaves out of the items exported,
    each with what it holds: the shadow of an identity stored as typed is its canonical
    form (so that nothing is hidden, the export says it exists and where its value is)."""
    return {shadow: f"the normalised form of '{attr}' (as oblio compares it), which oblio "
                    f"keeps to find these records; its value is the one under '{attr}', "
                    "written the canonical way"
            for attr, shadow in shadows.names(dm.tables[name]).items()}


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
    made again. Before it is made, and once it is written, the suppression list is read: when
    the subject was erased since the export was filed, the archive and the work files go
    (`withdraw`). Under a deadline (`core.deadline`: Work's), `PastDeadline` once it has
    passed, between two files or two chunks of one: the upload aborted, nothing recorded."""
    m = records.load(tenant_id, request_id)
    units = records.units_of(m)
    made = units.get("_package")
    if made and made.get("status") == WITHDRAWN:
        raise SubjectErased(ERASED_MEANWHILE, details={"request_id": request_id})
    if made and made.get("status") == "done":
        return {"size": made["size"], "parts": made["parts"], "files": made["files"],
                "files_missing": made["files_missing"]}
    if erased_meanwhile(m):  # before anything is written too (a retried withdrawal)
        withdraw(m)
    s = get_settings()
    dm = work.frozen_map(m)
    tenant = get_tenant(tenant_id)
    planned = work.planned_units(m)
    ttl = int(tenant.settings.get("export_ttl_days") or 14)
    now = clock.now()
    expires = clock.iso(now + timedelta(days=ttl))
    key = archive_key(tenant_id, request_id)
    missing: list[dict[str, str]] = []
    included = 0
    with aws.counting() as io_:
        # indexed before it is written: every erasure planned once it is in S3 finds it (in
        # a child tenant too, for what it holds of her there)
        for t, refs in tenant_refs(m).items():
            index_archive(t, request_id, refs, m.subject_ref if t == tenant_id else None,
                          expires, owner=tenant_id)
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
                    with zf.open(_stamp(f"{archive_prefix(tenant_id, t)}consents.csv", now), "w") as w:
                        write_csv(w, list(CONSENT_COLUMNS), led["history"])
            with zf.open(_stamp("subject.json", now), "w") as w:
                _subject_json(w, dm, m, planned, units, expires, included, missing, ledgers)
    if erased_meanwhile(m):
        withdraw(m)
    made = {"status": "done", "at": clock.iso(), "size": out.size, "sha256": out.sha256,
            "parts": out.parts, "files": included, "files_missing": len(missing),
            "missing": missing[:LISTED], "expires_at": expires, "key": key,
            "ttl_days": ttl}
    records.record_unit(m, "_package", made, dict(io_.calls))
    logger.info("export packaged", extra={"request_id": request_id, "size": out.size,
                                          "files": included, "files_missing": len(missing)})
    return {"size": out.size, "parts": out.parts, "files": included,
            "files_missing": len(missing)}


#: the package unit's status once the archive was withdrawn
WITHDRAWN = "withdrawn"
ERASED_MEANWHILE = ("the subject was erased while this export ran: what it had collected may "
                    "hold what the erasure deleted, so its archive and work files were deleted "
                    "instead of delivered. File a new access request to export what is left")


def tenant_refs(m: RequestModel) -> dict[str, dict[str, str]]:
    """The HMAC of each identity the export was filed with, in each tenant it reads (tenant
    -> kind -> HMAC): its own, and each child's (keyed by the child's own key) when it
    includes the children."""
    out = {m.tenant_id: plain(m.identity_refs) or {}}
    if records.options_of(m).get("include_children"):
        tenant = get_tenant(m.tenant_id)
        ids = records.identities_of(m, tenant)
        # the children the plan read, and those whose ledgers the archive holds (a child
        # made since); one deleted since has nothing of her left to erase
        for child_id in sorted(({u.tenant_id for u in work.planned_units(m)}
                                | set(tenant.children)) - {m.tenant_id}):
            try:
                child = get_tenant(child_id)
            except NotFound:
                continue
            out[child_id] = {k: child.keys.hmac(k, v) for k, v in ids.items()}
    return out


def erased_meanwhile(m: RequestModel) -> bool:
    """Whether the subject was erased, in a tenant the export reads, since the export was
    filed (her suppression entry says when; a strongly consistent read a tenant)."""
    return bool(m.created_at) and any(
        suppression.erased_since(t, refs, str(m.created_at))
        for t, refs in tenant_refs(m).items())


def withdraw(m: RequestModel) -> None:
    """An erasure of the subject ended after this export was filed (its suppression entry
    says when): the export may have read her items before the erasure deleted them, and the
    erasure may have looked for her archives before this one was in S3. Every version of the
    archive and the export's work files are deleted, the package unit says so, the marker of
    the open request goes (a new access request of the subject is filed, not answered with
    this one) and the request fails with `SubjectErased` (a retry fails the same way)."""
    archive = [{"tenant_id": m.tenant_id, "request_id": m.request_id}]
    deleted = exports.delete_archives(archive)
    work_left = objects.delete_prefix(work.work_prefix(m))
    left = exports.archives_left(archive)
    if left or work_left:  # never recorded as withdrawn over what is left: the step retries
        raise TransientError("the withdrawn export's archive or work files are still in S3 "
                             "after their deletion; the step is retried")
    with records.written_now():  # stands though the step fails (a small export's block)
        records.record_unit(m, "_package", {"status": WITHDRAWN, "at": clock.iso(),
                                            "archive_deleted": bool(deleted),
                                            "archive_left": 0, "work_files_left": 0}, {})
    records.release_open(m)
    logger.warning("export withdrawn: the subject was erased while it ran",
                   extra={"request_id": m.request_id, "subject_ref": m.subject_ref})
    raise SubjectErased(ERASED_MEANWHILE, details={"request_id": m.request_id})


def consent_ledgers(m: RequestModel) -> dict[str, dict[str, Any]]:
    """The subject's consent ledger in each tenant of the request (Art. 7(1): what they
    agreed to and withdrew, when, how): the state per purpose and every event."""

    tenant = get_tenant(m.tenant_id)
    ids = records.identities_of(m, tenant)
    tenants = [tenant]
    if (records.options_of(m)).get("include_children"):
        tenants += [get_tenant(c) for c in tenant.children]
    out: dict[str, dict[str, Any]] = {}
    for t in tenants:
        led = ledger.subject_ledger(t, ids)
        out[t.tenant_id] = {"state": led["state"], "history": led["history"]}
    return out


def _add_unit(zf: zipfile.ZipFile, m: RequestModel, u: Unit, outcome: dict[str, Any],
              now: datetime, missing: list[dict[str, str]]) -> int:
    """A table's CSV and the files its items point to, streamed into the archive; returns how
    many files it held, and adds those S3 no longer holds to `missing`."""
    prefix = archive_prefix(m.tenant_id, u.tenant_id)
    with zf.open(_stamp(f"{prefix}{u.table}.csv", now), "w") as w:
        write_csv(w, list(outcome.get("columns") or []),
                  (json.loads(line) for line in archives.work_lines(part_key(m, u, "jsonl"))))
    included = 0
    if not int(outcome.get("files", 0)):
        return included
    for line in archives.work_lines(part_key(m, u, "files.jsonl")):
        deadline.check()
        ref = json.loads(line)
        if ref.get("outside") or ref.get("unreadable"):
            # a pointer oblio does not follow: no file of it is in the archive, and it says so
            missing.append({**{k: ref[k] for k in ("table", "attribute", "item", "path")},
                            "reason": "in a bucket the map does not declare"
                            if ref.get("outside") else
                            "its value names no file oblio can read"})
            continue
        found = archives.open_object(ref["bucket"], ref["key"])
        if found is None and ref.get("optional"):
            continue  # a key template names a file by convention; none is there
        if found is None:
            missing.append({k: ref[k] for k in ("table", "attribute", "item", "path")})
            continue
        chunks, size = found
        info = _stamp(ref["path"], now, stored=True)  # attachments are compressed already
        info.file_size = size  # lets zipfile choose ZIP64 for a large file
        with zf.open(info, "w") as w:
            for chunk in chunks:
                deadline.check()
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
            prefix = archive_prefix(own, u.tenant_id)
            j.open(u.table)
            for k, v in _table_meta(dm, u.table, outcome, f"{prefix}{u.table}.csv").items():
                j.field(k, v)
            j.open("items", b"[")
            for line in archives.work_lines(part_key(m, u, "jsonl")):
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
                              "storage no longer holds, or (with its reason) one that oblio "
                              "does not read: in a bucket the data map does not declare, or "
                              "named by a value that is not a file's key"})
    j.close()
    w.write(b"\n")


def readme(dm: DataMap, m: RequestModel, planned: list[Unit], units: dict[str, Any],
           expires: str, ledgers: dict[str, dict[str, Any]]) -> str:
    """README.txt: what each file of the archive is, for the person it is about."""
    rows = []
    for u in planned:
        outcome = units.get(u.id) or {}
        prefix = archive_prefix(m.tenant_id, u.tenant_id)
        purpose = dm.tables[u.table].purpose or u.table
        rows.append(f"  {prefix}{u.table}.csv  {int(outcome.get('exported', 0))} record(s): "
                    f"{purpose}")
    for t, led in ledgers.items():
        if led["history"]:
            rows.append(f"  {archive_prefix(m.tenant_id, t)}consents.csv  {len(led['history'])} "
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
