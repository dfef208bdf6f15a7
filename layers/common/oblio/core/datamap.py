"""The data map: which tables hold a tenant's subjects, how to find a subject's items, and
what each action does to each attribute.

`load()` reads the YAML, validates it against the schema (pydantic; `schema()` gives the JSON
Schema), then checks what a schema cannot: every table reachable from an identity, every
reference pointing at a mapped attribute, no cycle, no personal attribute without a rule, no
key attribute that an action would have to change. `check_tables()` compares the map with the
live tables (key schema, indexes). Every problem found is reported at once, each naming the
table and attribute.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from oblio.core import mapcheck
from oblio.core.errors import DataMapError
from oblio.core.mapmodel import (
    PERSONAL,
    Attribute,
    Category,
    DataMap,
    FileRule,
    Find,
    KeySchema,
    LegalHold,
    Register,
    RegisterEntry,
    Retain,
    Role,
    RoleRule,
    Sweep,
    TableMap,
)
from oblio.core.settings import get_settings

__all__ = ["PERSONAL", "Attribute", "Category", "DataMap", "FileRule", "Find", "KeySchema",
           "LegalHold", "Register", "RegisterEntry", "Retain", "Role", "RoleRule", "Sweep",
           "TableMap", "check_tables", "current", "from_json", "load", "parse", "schema",
           "summary"]



def schema() -> dict[str, Any]:
    """The JSON Schema of a data map file."""
    return DataMap.model_json_schema(by_alias=True)


def summary(dm: DataMap) -> dict[str, Any]:
    """What a client needs to build its forms from the map, and nothing of where the data
    lives (no physical table or bucket names): the tables in walk order with what erasure
    and anonymisation do to them and their attributes' categories, the purposes an objection
    may name, and the names a rectification may change."""
    tables = []
    for name in dm.order:
        t = dm.tables[name]
        tables.append({
            "name": name, "purpose": t.purpose, "on_erase": t.on_erase,
            "on_anonymise": t.on_anonymise, "pending_deliveries": t.pending_deliveries,
            "purposes": list(t.purposes), "restriction_flag": t.restriction_flag is not None,
            "key": list(t.key.names), "files": bool(t.s3_attributes()),
            "attributes": [{"name": a, "category": attr.category, "identity": attr.identity,
                            "files": attr.s3 is not None}
                           for a, attr in t.attributes.items()],
        })
    # what a person asks to correct (Art. 16): who they are and how to reach them
    keys = {a for t in dm.tables.values() for a in t.key.names}
    rectifiable = sorted({a for t in dm.tables.values() for a, attr in t.attributes.items()
                          if a not in keys and attr.identity is None and attr.s3 is None
                          and attr.category in ("identity", "contact")})
    return {"name": dm.name, "identities": list(dm.identities), "tables": tables,
            "objection_purposes": sorted({p for t in dm.tables.values()
                                          if t.pending_deliveries for p in t.purposes}),
            "rectifiable": [*dm.identities, *rectifiable]}


def parse(data: Any, source: str = "data map") -> DataMap:
    """Validate an already-parsed data map; raises DataMapError listing every problem."""
    try:
        dm = DataMap.model_validate(data)
    except ValidationError as exc:
        raise DataMapError([
            f"{'.'.join(str(p) for p in e['loc']) or source}: {e['msg']}" for e in exc.errors()
        ]) from None
    problems = mapcheck.problems(dm)
    try:
        _ = dm.order  # raises on a cycle
    except DataMapError as exc:
        problems += exc.problems
    if problems:
        raise DataMapError(problems)
    return dm


def load(path: Path | str) -> DataMap:
    """Read and validate a data map file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataMapError([f"{path}: no such file"]) from None
    except yaml.YAMLError as exc:
        raise DataMapError([f"{path}: not valid YAML ({exc})"]) from None
    return parse(data, str(path))


def from_json(text: str) -> DataMap:
    return parse(json.loads(text))


def check_tables(dm: DataMap, dynamodb: Any, tenants: Iterable[str] = ()) -> None:
    """Compare the map with the live tables (a silo table's for each tenant given); raises
    DataMapError naming each mismatch."""
    problems = own_name_problems(dm, tenants) + mapcheck.live_problems(dm, dynamodb, tenants)
    if problems:
        raise DataMapError(problems)


def own_name_problems(dm: DataMap, tenants: Iterable[str] = ()) -> list[str]:
    """Tables and buckets of the map named like oblio's own (the deployment's resource
    prefix): oblio would take them for its own and route them so."""
    s = get_settings()
    out: list[str] = []
    for name, t in dm.tables.items():
        for physical in dict.fromkeys(t.physical(x) for x in (*tenants, "tenant")):
            if s.own_resource(physical):
                out.append(f"table '{name}' ({physical}): its name starts with oblio's "
                           f"resource prefix '{s.resource_prefix}-', which names oblio's own "
                           "tables; rename it, or deploy oblio with another "
                           "OBLIO_RESOURCE_PREFIX")
                break
    for logical, bucket in dm.buckets.items():
        if s.own_resource(bucket):
            out.append(f"bucket '{logical}' ({bucket}): its name starts with oblio's "
                       f"resource prefix '{s.resource_prefix}-'; rename it, or deploy oblio "
                       "with another OBLIO_RESOURCE_PREFIX")
    return out


_current: dict[tuple[str, float], DataMap] = {}


def current() -> DataMap:
    """The deployment's data map (settings.datamap), validated once per process and read
    again only when the file changes."""
    path = Path(get_settings().datamap)
    key = (str(path), path.stat().st_mtime if path.exists() else 0.0)
    found = _current.get(key)
    if found is None:
        found = _current[key] = load(path)
    return found
