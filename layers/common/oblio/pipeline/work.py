"""Where a request's work lives between its steps: the work bucket's files of one request
(the frozen data map, one manifest of item keys per table, the identifying values an
anonymisation compares), and what the steps read back from the request record."""

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


def work_prefix(m: RequestModel) -> str:
    return f"work/{m.tenant_id}/{m.request_id}/"


def manifest_key(m: RequestModel, unit: Unit) -> str:
    return f"{work_prefix(m)}units/{unit.tenant_id}/{unit.table}.json"


def identifying_key(m: RequestModel, tenant_id: str) -> str:
    return f"{work_prefix(m)}identifying/{tenant_id}.json"


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
        _maps[digest] = datamap.from_json(json.dumps(objects.get_json(plan["datamap_key"])))
    return _maps[digest]


def planned_units(m: RequestModel) -> list[Unit]:
    return [Unit(u["tenant_id"], u["table"]) for u in (records.plan_of(m))["units"]]
