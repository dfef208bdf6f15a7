"""Your own tables in the local stack: every table, index and bucket a data map names that the
local AWS does not have yet is created from the map, and a fixture directory is loaded into
them.

What the map says is enough for a map like the README's example: a table's key attributes are
strings unless its `key_types` says otherwise (`N`, `B`); an index that a find names is keyed
by the tenant attribute and the find's attribute and projects every attribute; a sweep index
is keyed by its bucket and date attributes; a TTL attribute gets DynamoDB TTL; buckets are
versioned. What exists already is left as it is (and `check_tables` then says whether it fits
the map).

A fixture directory holds `<physical table>.jsonl` (one plain-JSON item per line: numbers stay
numbers, maps and lists as they are) and `s3/<physical bucket>/<key>` files. Everything is read
and checked before anything is written: a bad line names its file and line, and nothing is
loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from oblio.core import layout, templates
from oblio.core.datamap import DataMap, TableMap
from oblio.core.errors import DataMapError


class Refused(DataMapError):
    """What `oblio local up` was given and cannot use; each problem says where and the fix."""

    code = "refused"
    what = "the local stack cannot start"

    def __init__(self, problems: list[str]) -> None:
        super().__init__(problems)
        self.message = f"{self.what}:\n  - " + "\n  - ".join(problems)


class FixtureError(Refused):
    """A fixture directory that cannot be loaded; each problem names the file and line."""

    code = "invalid_fixtures"
    what = "the fixtures cannot be loaded (nothing was loaded)"


@dataclass
class TableSpec:
    """What CreateTable needs for one physical table."""

    name: str
    key: tuple[str, str | None]
    #: index name -> (partition, sort)
    indexes: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    types: dict[str, str] = field(default_factory=dict)
    ttl_attribute: str | None = None

    def type_of(self, attribute: str) -> str:
        return self.types.get(attribute, "S")


def physical_tables(dm: DataMap, t: TableMap, tenants: Iterable[str] = ()) -> list[str]:
    """The physical tables of one map entry: its name, or (silo tenancy, `{tenant}-employees`)
    one per tenant given."""
    if not templates.is_template(t.table):
        return [t.table]
    return [t.physical(x) for x in tenants]


def table_specs(dm: DataMap, tenants: Iterable[str] = ()) -> list[TableSpec]:
    """One spec per physical table the map names (entries sharing a table merge); a silo
    table once per tenant given. Key templates are string attributes; a declared index is
    keyed as declared, an undeclared one by the tenant attribute and the find's attribute."""
    specs: dict[str, TableSpec] = {}
    tenants = list(tenants)
    for t in dm.tables.values():
        for name in physical_tables(dm, t, tenants):
            _add_spec(dm, t, specs.setdefault(name, TableSpec(
                name, (t.key.names[0], t.key.names[1] if len(t.key.names) > 1 else None))))
    return list(specs.values())


def _add_spec(dm: DataMap, t: TableMap, spec: TableSpec) -> None:
    spec.types.update(t.key_types)
    for f in t.find:
        if f.index:
            names = layout.target(dm, t, f).names
            spec.indexes.setdefault(f.index, (names[0], names[1] if len(names) > 1
                                              else None))
    if t.sweep is not None and t.sweep.index and t.sweep.date_attribute:
        spec.indexes.setdefault(t.sweep.index,
                                (t.sweep.bucket_attribute, t.sweep.date_attribute))
    spec.ttl_attribute = spec.ttl_attribute or t.ttl_attribute


def _create_table(dynamodb: Any, spec: TableSpec) -> None:
    attrs: dict[str, str] = {}

    def key_schema(partition: str, sort: str | None) -> list[dict[str, str]]:
        out = [{"AttributeName": partition, "KeyType": "HASH"}]
        attrs[partition] = spec.type_of(partition)
        if sort:
            out.append({"AttributeName": sort, "KeyType": "RANGE"})
            attrs[sort] = spec.type_of(sort)
        return out

    params: dict[str, Any] = {"TableName": spec.name, "KeySchema": key_schema(*spec.key),
                              "BillingMode": "PAY_PER_REQUEST"}
    if spec.indexes:
        params["GlobalSecondaryIndexes"] = [
            {"IndexName": name, "KeySchema": key_schema(*keys),
             "Projection": {"ProjectionType": "ALL"}} for name, keys in spec.indexes.items()]
    params["AttributeDefinitions"] = [{"AttributeName": k, "AttributeType": v}
                                      for k, v in attrs.items()]
    dynamodb.create_table(**params)
    if spec.ttl_attribute:
        dynamodb.update_time_to_live(TableName=spec.name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": spec.ttl_attribute})


def physical_buckets(dm: DataMap, tenants: Iterable[str] = ()) -> set[str]:
    """The map's buckets; a bucket named by a template of the tenant once per tenant."""
    out = dm.physical_buckets(None)
    for x in tenants:
        out |= dm.physical_buckets(x)
    return out


def create_missing(dm: DataMap, dynamodb: Any, s3: Any, region: str,
                   tenants: Iterable[str] = ()) -> list[str]:
    """Create the map's tables and buckets that do not exist (silo ones for each tenant);
    returns what was created, as lines to print (`table my-contacts (2 indexes)`, `bucket
    my-files (versioned)`)."""
    tenants = list(tenants)
    existing = set(dynamodb.list_tables().get("TableNames", []))
    made: list[str] = []
    for spec in table_specs(dm, tenants):
        if spec.name in existing:
            continue
        _create_table(dynamodb, spec)
        extra = f" ({len(spec.indexes)} index{'es' if len(spec.indexes) != 1 else ''})" \
            if spec.indexes else ""
        made.append(f"table {spec.name}{extra}")
    buckets = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for name in sorted(physical_buckets(dm, tenants) - buckets):
        if region == "us-east-1":
            s3.create_bucket(Bucket=name)
        else:
            s3.create_bucket(Bucket=name,
                             CreateBucketConfiguration={"LocationConstraint": region})
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        made.append(f"bucket {name} (versioned)")
    return made


# -- fixtures ---------------------------------------------------------------------------------

@dataclass
class Fixtures:
    items: dict[str, list[dict[str, Any]]]
    files: list[tuple[str, str, Path]]

    def summary(self) -> str:
        n = sum(len(v) for v in self.items.values())
        return (f"{n} item{'s' if n != 1 else ''} in {len(self.items)} "
                f"table{'s' if len(self.items) != 1 else ''}, {len(self.files)} "
                f"file{'s' if len(self.files) != 1 else ''}")


def _number(text: str) -> Decimal:
    return Decimal(text)


def _keys_of(dm: DataMap, physical: str, tenants: list[str]) -> list[tuple[str, TableMap]]:
    return [(n, t) for n, t in dm.tables.items() if physical in physical_tables(dm, t, tenants)]


def read_fixtures(dm: DataMap, directory: Path, tenants: Iterable[str] = ()) -> Fixtures:
    """Read and check a fixture directory against the map (a silo table's file is named for
    one of the tenants given, `acme-employees.jsonl`); raises FixtureError listing every
    problem (file and line), before anything is written."""
    tenants = list(tenants)
    problems: list[str] = []
    if not directory.is_dir():
        raise FixtureError([f"{directory}: no such directory; give --fixtures a directory "
                            "holding <table>.jsonl files and s3/<bucket>/<key> files"])
    tables = {n for t in dm.tables.values() for n in physical_tables(dm, t, tenants)}
    buckets = physical_buckets(dm, tenants)
    items: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(directory.glob("*.jsonl")):
        physical = path.stem
        if physical not in tables:
            problems.append(f"{path}: the data map names no table '{physical}'; name the file "
                            f"after a mapped table ({', '.join(sorted(tables))}) or map it")
            continue
        key = {a for _, t in _keys_of(dm, physical, tenants) for a in t.key.names}
        rows: list[dict[str, Any]] = []
        with path.open(encoding="utf-8", errors="strict") as fh:
            try:
                for n, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        item = json.loads(line, parse_float=_number, parse_int=_number)
                    except ValueError as exc:
                        problems.append(f"{path}:{n}: not a JSON object ({exc.msg} at column "
                                        f"{exc.colno}); write one item per line")
                        continue
                    if not isinstance(item, dict):
                        problems.append(f"{path}:{n}: not a JSON object; write one item "
                                        "(an object) per line")
                        continue
                    missing = sorted(a for a in key if a not in item or item[a] in (None, ""))
                    if missing:
                        problems.append(f"{path}:{n}: the item has no {', '.join(missing)} "
                                        f"(the key of table {physical}); add it")
                        continue
                    rows.append(item)
            except UnicodeDecodeError:
                problems.append(f"{path}: not UTF-8 text; save it as UTF-8")
        items[physical] = rows
    files: list[tuple[str, str, Path]] = []
    s3_dir = directory / "s3"
    if s3_dir.is_dir():
        for bucket_dir in sorted(p for p in s3_dir.iterdir()):
            if not bucket_dir.is_dir():
                problems.append(f"{bucket_dir}: put files under s3/<bucket>/<key>")
                continue
            if bucket_dir.name not in buckets:
                problems.append(f"{bucket_dir}: the data map declares no bucket "
                                f"'{bucket_dir.name}' under buckets; declare it or rename the "
                                "folder")
                continue
            for f in sorted(p for p in bucket_dir.rglob("*") if p.is_file()):
                files.append((bucket_dir.name, f.relative_to(bucket_dir).as_posix(), f))
    others = [p for p in directory.iterdir()
              if p.name != "s3" and not (p.is_file() and p.suffix == ".jsonl")]
    problems += [f"{p}: not a fixture (expected <table>.jsonl files and an s3/ folder)"
                 for p in sorted(others)]
    if problems:
        raise FixtureError(problems)
    return Fixtures(items, files)


def load_fixtures(fixtures: Fixtures, dynamodb: Any, s3: Any) -> None:
    """Write the checked fixtures: items in batches of 25, files as they are."""
    from boto3.dynamodb.types import TypeSerializer

    ser = TypeSerializer()
    for table, rows in fixtures.items.items():
        for start in range(0, len(rows), 25):
            batch = [{"PutRequest": {"Item": {k: ser.serialize(v) for k, v in row.items()}}}
                     for row in rows[start:start + 25]]
            while batch:
                resp = dynamodb.batch_write_item(RequestItems={table: batch})
                batch = resp.get("UnprocessedItems", {}).get(table, [])
    for bucket, key, path in fixtures.files:
        s3.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
