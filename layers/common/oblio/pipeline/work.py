"""Where a request's work lives between its steps: the work bucket's one manifest of a
request (`manifest.json`: the frozen data map, the item keys of every table, the identifying
values an anonymisation compares), and what the steps read back from the request record.

Requests planned before the one manifest (in flight across a deployment) have one file per
table, one per tenant's identifying values and `datamap.json`: their plan names no
`manifest_key`, and the readers here read those files instead."""

from __future__ import annotations

import json
from typing import Any

from oblio.control import records
from oblio.core import datamap
from oblio.core.datamap import DataMap
from oblio.pipeline.rules import Unit
from oblio.store import objects
from oblio.store.models import RequestModel

_maps: dict[str, DataMap] = {}
#: the last manifest read or written by this process (key -> content): the steps of a small
#: request run in one invocation and read it once
_manifest: dict[str, Any] = {}


def work_prefix(m: RequestModel) -> str:
    return f"work/{m.tenant_id}/{m.request_id}/"


def request_manifest_key(m: RequestModel) -> str:
    return f"{work_prefix(m)}manifest.json"


def manifest_key(m: RequestModel, unit: Unit) -> str:
    """A unit's own manifest file (requests planned before the one manifest)."""
    return f"{work_prefix(m)}units/{unit.tenant_id}/{unit.table}.json"


def identifying_key(m: RequestModel, tenant_id: str) -> str:
    """A tenant's identifying values (requests planned before the one manifest)."""
    return f"{work_prefix(m)}identifying/{tenant_id}.json"


def write_manifest(m: RequestModel, content: dict[str, Any]) -> str:
    """Write the request's one manifest (`datamap`, `units` by unit id, `identifying` by
    tenant); returns its key."""
    key = request_manifest_key(m)
    objects.put_json(key, content)
    _manifest.clear()
    _manifest[key] = content
    return key


def _request_manifest(key: str) -> dict[str, Any]:
    if key not in _manifest:
        content = objects.get_json(key)
        _manifest.clear()
        _manifest[key] = content
    found: dict[str, Any] = _manifest[key]
    return found


def unit_manifest_of(m: RequestModel, unit: Unit) -> dict[str, Any]:
    """The planned item keys and files of one unit."""
    key = records.plan_of(m).get("manifest_key")
    if key is None:
        old: dict[str, Any] = objects.get_json(manifest_key(m, unit))
        return old
    found: dict[str, Any] = _request_manifest(key)["units"][unit.id]
    return found


def identifying_of(m: RequestModel, tenant_id: str) -> list[str]:
    """The HMACs of the identifying values an anonymisation compares, for one tenant."""
    key = records.plan_of(m).get("manifest_key")
    if key is None:
        old: list[str] = objects.get_json(identifying_key(m, tenant_id))
        return old
    found: list[str] = _request_manifest(key)["identifying"][tenant_id]
    return found


def request_params(m: RequestModel, tenant: Any) -> dict[str, Any]:
    """What the action needs beyond the identities: a scope of tables, purposes, and (held
    encrypted on the request) a rectification's new values."""
    options = records.options_of(m)
    params: dict[str, Any] = {"tables": options.get("tables"),
                              "purposes": options.get("purposes")}
    if m.changes_enc:
        params["changes"] = tenant.keys.decrypt(m.changes_enc)
    return params


def frozen_map(m: RequestModel) -> DataMap:
    """The data map as it was when the request was planned (frozen into the request)."""
    plan = records.plan_of(m)
    digest = plan["datamap_digest"]
    if digest not in _maps:
        key = plan["datamap_key"]
        frozen = _request_manifest(key)["datamap"] if plan.get("manifest_key") == key \
            else objects.get_json(key)
        _maps[digest] = datamap.from_json(json.dumps(frozen))
    return _maps[digest]


def planned_units(m: RequestModel) -> list[Unit]:
    return [Unit(u["tenant_id"], u["table"]) for u in (records.plan_of(m))["units"]]
