"""Collect, one Map iteration per table of an access export: read the table's items in
BatchGetItem calls of 100, keep what the map lets the subject see (drop `export: false`
attributes, redact `other_person: true` ones), and write the table's part to the work bucket:
the items as JSON lines, the same items as a CSV, and the S3 objects they point to. Items
never travel through the state machine's payload."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import tempfile
from collections.abc import Iterable
from decimal import Decimal
from typing import IO, Any

from boto3.dynamodb.types import Binary

from oblio.control import records
from oblio.core import clock, paths, pointers, shadows
from oblio.core.cells import csv_safe
from oblio.core.datamap import DataMap, TableMap
from oblio.core.observability import logger
from oblio.pipeline import work
from oblio.pipeline.rules import Unit
from oblio.store import archives, aws, objects
from oblio.store import tables as store
from oblio.store.models import RequestModel

SPOOL = 1024 * 1024


# -- request options -------------------------------------------------------------------------


def archive_prefix(request_tenant: str, unit_tenant: str) -> str:
    """Where a unit's CSV and files go in the archive: a child tenant's under its name."""
    return "" if unit_tenant == request_tenant else f"tenants/{safe_name(unit_tenant)}/"


def safe_name(text: str, limit: int = 120) -> str:
    """A path segment: no separators, no dot-dot, nothing a ZIP tool could misread."""
    return re.sub(r"[^A-Za-z0-9._@+-]", "_", text).strip("._")[:limit] or "_"


# -- one item as the subject sees it ---------------------------------------------------------


REDACTED = "[redacted: about another person]"

_DROP = object()  # a nested place left out of the export


UNCLASSIFIED = "unclassified"  # an attribute the data map does not name


def part_key(m: RequestModel, u: Unit, suffix: str) -> str:
    return f"{work.work_prefix(m)}export/{u.tenant_id}/{u.table}.{suffix}"


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

    def __init__(self, dm: DataMap, name: str, prefix: str, tenant_id: str | None = None,
                 ) -> None:
        self.dm, self.name, self.t, self.prefix = dm, name, dm.tables[name], prefix
        self.tenant_id = tenant_id
        self.columns = columns(dm, self.t)
        self.unmapped: set[str] = set()
        self.redacted: set[str] = set()
        self.dropped: set[str] = set()
        self._paths: set[str] = set()

    def item_id(self, item: dict[str, Any]) -> str:
        own = [str(plain(item[k])) for k in self.t.key.names
               if k != self.dm.tenant_attribute and k in item]
        return safe_name("_".join(own) or "item")

    def export(self, item: dict[str, Any], role: str | None = None,
               ) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """The item as exported (attributes in column order; an S3 attribute holds the file's
        path in the archive) and the files it points to. An item she is in only in a
        `role` (a review she wrote about a colleague) shows what the role names of her;
        the rest is about someone else and is redacted, and its files are not hers."""
        t, dm = self.t, self.dm
        out: dict[str, Any] = {}
        files: list[dict[str, Any]] = []
        mine = {paths.top(a) for a in t.roles[role].attributes} if role else set()
        derived = set(shadows.names(t).values())
        for attr, value in item.items():
            # a shadow is oblio's canonical copy of an attribute shown beside it: the
            # table's `derived_by_oblio` names it instead (see package._table_meta)
            if attr == dm.tenant_attribute or dm.is_marker(attr) or attr in derived:
                continue
            if role is not None and attr not in mine and attr not in t.key.names:
                if t.attributes.get(attr) is None or t.attributes[attr].export:
                    self.redacted.add(attr)
                    out[attr] = REDACTED
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
            if t.tree.has_below((attr,)):
                value = self._nested(item, (attr,), value, files)
            elif spec is not None and spec.s3:
                value = self._file(item, attr, spec.s3, value, files)
            out[attr] = value
        ordered = {c: out[c] for c in self.columns if c in out}
        ordered.update({c: out[c] for c in sorted(out) if c not in ordered})
        return ordered, files

    def rule_files(self, item: dict[str, Any], tenant_id: str) -> list[dict[str, Any]]:
        """The files the table's rules give the item: the object of each key template (if
        it exists: a convention promises no file), every current object under each prefix
        (listed now)."""
        out: list[dict[str, Any]] = []
        for i, r in enumerate(self.t.files):
            text = r.template.render(lambda f: self.t.field(item, f, tenant_id))
            if text is None:
                continue
            bucket = self.dm.bucket(r.bucket, tenant_id)
            rule = f"files #{i + 1}"
            keys = objects.current_keys(bucket, text) if r.kind == "prefix" else [text]
            for key in keys:
                out.append({"bucket": bucket, "key": key, "path": self._path(item, rule, key),
                            "table": self.name, "attribute": rule, "item": self.item_id(item),
                            **({"optional": True} if r.kind == "key_template" else {})})
        return out

    def _file(self, item: dict[str, Any], attr: str, bucket: str, value: Any,
              files: list[dict[str, Any]]) -> Any:
        """A pointer (`core.pointers`: a key, a `{bucket, key}` map, an S3 URL, or a list or
        set of them) becomes the path in the archive of each file it names of a declared
        bucket. One that names a bucket the map does not declare, or that names no file
        oblio can tell, stays as it is and is listed (`outside` / `unreadable`), so that the
        archive says it holds no file for it rather than nothing at all."""
        got = pointers.read(value, self.dm.bucket(bucket, self.tenant_id),
                            self.dm.physical_buckets(self.tenant_id))
        if not got:
            return value
        out: list[Any] = []
        for p in got:
            where = {"table": self.name, "attribute": attr, "item": self.item_id(item)}
            if p.kind != "file" or not p.bucket or not p.key:
                files.append({**where, p.kind: True, "path": ""})
                continue
            path = self._path(item, attr, p.key)
            files.append({"bucket": p.bucket, "key": p.key, "path": path, **where})
            out.append(path)
        if len(out) != len(got):
            return value
        is_many = isinstance(value, (list, tuple, set, frozenset))
        return sorted(out) if isinstance(value, (set, frozenset)) else \
            out if is_many else out[0]

    def _nested(self, item: dict[str, Any], pattern: paths.Pattern, value: Any,
                files: list[dict[str, str]]) -> Any:
        """A map or list that holds mapped paths, as exported: each mapped place dropped
        (`export: false`), redacted (`other_person`) or turned into its file's path (`s3`);
        the rest as it is."""
        t = self.t
        name = t.path_names.get(pattern)
        spec = t.attributes.get(name) if name else None
        if spec is not None:
            if not spec.export:
                self.dropped.add(name or "")
                return _DROP
            if spec.other_person:
                self.redacted.add(name or "")
                return REDACTED
            if spec.s3:
                return self._file(item, name or "", spec.s3, value, files)
        if not t.tree.has_below(pattern):
            return value
        if isinstance(value, dict):
            out = {k: self._nested(item, (*pattern, k), v, files) for k, v in value.items()}
            return {k: v for k, v in out.items() if v is not _DROP}
        if isinstance(value, list):
            got = [self._nested(item, (*pattern, paths.ALL), v, files) for v in value]
            return [v for v in got if v is not _DROP]
        return value

    def _path(self, item: dict[str, Any], attr: str, key: str) -> str:
        base = f"{self.prefix}files/{safe_name(self.name)}/{self.item_id(item)}"
        path = f"{base}-{safe_name(key.rsplit('/', 1)[-1])}"
        if path in self._paths:
            path = f"{base}-{safe_name(attr)}-{safe_name(key.rsplit('/', 1)[-1])}"
        n = 1
        while path in self._paths:
            n += 1
            path = f"{base}-{n}-{safe_name(key.rsplit('/', 1)[-1])}"
        self._paths.add(path)
        return path

    def header(self) -> list[str]:
        return [*self.columns, *sorted(self.unmapped - set(self.columns))]


def csv_cell(value: Any) -> str:
    """A CSV cell a spreadsheet opens as text: JSON for lists and maps, true/false, and a
    leading apostrophe where a spreadsheet would run a formula (CSV injection)."""
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
    exported, which the package also writes as `<table>.csv` under the recorded `columns`)
    and `<table>.files.jsonl` (the objects the items point to)."""
    m = records.load(tenant_id, request_id)
    u = Unit(unit["tenant_id"], unit["table"])
    done = (records.units_of(m)).get(u.id)
    if done and done.get("status") == "done":
        return {"unit": u.id, "skipped": True}
    dm = work.frozen_map(m)
    t = dm.tables[u.table]
    part = TablePart(dm, u.table, archive_prefix(tenant_id, u.tenant_id), u.tenant_id)
    exported = files = 0
    with aws.counting() as io_, \
            tempfile.SpooledTemporaryFile(max_size=SPOOL) as lines, \
            tempfile.SpooledTemporaryFile(max_size=SPOOL) as refs:
        manifest = work.unit_manifest_of(m, u)
        keys: list[dict[str, Any]] = manifest["keys"]
        roles = {_key_of(t, k): r for r, g in sorted((manifest.get("roles") or {}).items())
                 for k in g["keys"]}
        keys = keys + [k for r, g in sorted((manifest.get("roles") or {}).items())
                       for k in g["keys"]]
        for start in range(0, len(keys), 100):
            batch = keys[start:start + 100]
            got = {_key_of(t, i): i for i in store.batch_get(t.physical(u.tenant_id), batch)}
            for key in batch:  # the plan's order; an item deleted since is not exported
                item = got.get(_key_of(t, key))
                if item is None:
                    continue
                role = roles.get(_key_of(t, key))
                out, pointed = part.export(item, role)
                if role is None:
                    pointed += part.rule_files(item, u.tenant_id)
                else:
                    out = {"_role": role, **out}  # the role she appears in
                lines.write(json.dumps(out, ensure_ascii=False).encode() + b"\n")
                for ref in pointed:
                    refs.write(json.dumps(ref).encode() + b"\n")
                exported += 1
                files += len(pointed)
        # the table's CSV is made from these lines as the package streams it (one work file
        # a table, not two: each is a PUT)
        archives.put_work_file(part_key(m, u, "jsonl"), lines, lines.tell(),
                               "application/x-ndjson")
        if files:
            archives.put_work_file(part_key(m, u, "files.jsonl"), refs, refs.tell(),
                                   "application/x-ndjson")
    outcome = {"status": "done", "at": clock.iso(), "matched": len(keys),
               "exported": exported, "gone": len(keys) - exported, "files": files,
               "columns": part.header(), "unmapped": sorted(part.unmapped),
               "redacted": sorted(part.redacted), "dropped": sorted(part.dropped)}
    records.record_unit(m, u.id, outcome, dict(io_.calls))
    logger.info("export unit collected", extra={"request_id": request_id, "unit": u.id,
                                                "exported": exported, "files": files})
    return {"unit": u.id, "exported": exported, "files": files}


def write_csv(out: IO[bytes], header: list[str], rows: Iterable[dict[str, Any]]) -> None:
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
