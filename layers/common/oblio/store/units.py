"""DynamoDB's billing units of one call, by its documented item-size rules, and the owner of
what a call touched (the tenant's data or oblio's own resources).

DynamoDB reports the capacity a call consumed (`ReturnConsumedCapacity`); the local stack's
moto does not report it faithfully, so there the units are estimated from what the call sent
and received:

- a read unit per 4 KB of items read (rounded up per item for GetItem / BatchGetItem /
  TransactGetItems, per page for Query / Scan), halved for an eventually consistent read,
  doubled in a transaction;
- a write unit per 1 KB of an item written (PutItem, the puts of a BatchWriteItem), at least
  one per item; an UpdateItem or DeleteItem is estimated at the size it sent (its key and
  values) since the stored item's size is not known to the caller, so a large item updated
  by a small expression is under-estimated (`estimated` says so); doubled in a transaction.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any


def value_size(v: dict[str, Any]) -> int:
    """The size DynamoDB bills for one attribute value (its item-size rules)."""
    (kind, x), = v.items()
    if kind == "S":
        return len(x.encode())
    if kind == "N":
        return (len(str(x).strip("-").replace(".", "")) + 1) // 2 + 1
    if kind == "B":
        return len(x)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(k.encode()) + value_size(e) + 1 for k, e in x.items())
    if kind == "L":
        return 3 + sum(value_size(e) + 1 for e in x)
    return sum(len(e) if isinstance(e, bytes) else len(str(e).encode()) for e in x)


def item_size(item: dict[str, Any]) -> int:
    """Bytes of an item in DynamoDB's wire format (attribute names and values)."""
    return sum(len(k.encode()) + value_size(v) for k, v in item.items())


def _write(size: int) -> float:
    return float(max(1, math.ceil(size / 1024)))


def _read(size: int) -> float:
    return float(max(1, math.ceil(size / 4096)))


def tables_of(params: dict[str, Any]) -> list[str]:
    """The tables a DynamoDB call names (several for a batch or a transaction)."""
    if "TableName" in params:
        return [str(params["TableName"])]
    if "RequestItems" in params:
        return [str(t) for t in params["RequestItems"]]
    items = params.get("TransactItems") or []
    return sorted({str(next(iter(t.values())).get("TableName", "")) for t in items})


def estimate(operation: str, params: dict[str, Any], parsed: dict[str, Any],
             ) -> Iterable[tuple[str, str, float]]:
    """(table, "read" | "write", units) of one DynamoDB call, estimated."""
    half = 1.0 if params.get("ConsistentRead") else 0.5
    if operation == "GetItem":
        yield params["TableName"], "read", _read(item_size(parsed.get("Item") or {})) * half
    elif operation in ("Query", "Scan"):
        size = sum(item_size(i) for i in parsed.get("Items") or [])
        yield params["TableName"], "read", _read(size) * half
    elif operation == "BatchGetItem":
        for table, items in (parsed.get("Responses") or {}).items():
            yield table, "read", sum(_read(item_size(i)) for i in items) * 0.5
    elif operation == "TransactGetItems":
        for t, got in zip(params.get("TransactItems") or [], parsed.get("Responses") or [],
                          strict=False):
            yield t["Get"]["TableName"], "read", 2 * _read(item_size(got.get("Item") or {}))
    elif operation == "PutItem":
        yield params["TableName"], "write", _write(item_size(params.get("Item") or {}))
    elif operation in ("UpdateItem", "DeleteItem"):
        yield params["TableName"], "write", _write(_sent(params))
    elif operation == "BatchWriteItem":
        for table, writes in (params.get("RequestItems") or {}).items():
            yield table, "write", sum(
                _write(item_size(w["PutRequest"]["Item"])) if "PutRequest" in w else 1.0
                for w in writes)
    elif operation == "TransactWriteItems":
        for t in params.get("TransactItems") or []:
            kind, body = next(iter(t.items()))
            size = item_size(body["Item"]) if kind == "Put" else _sent(body)
            yield body.get("TableName", ""), "write", 2 * _write(size)


def _sent(body: dict[str, Any]) -> int:
    return item_size(body.get("Key") or {}) + sum(
        value_size(v) for v in (body.get("ExpressionAttributeValues") or {}).values())


def reported(operation: str, parsed: dict[str, Any]) -> Iterable[tuple[str, str, float]]:
    """(table, "read" | "write", units) of what DynamoDB reported it consumed
    (`ReturnConsumedCapacity: TOTAL`: a total per table, read or write by the operation)."""
    kind = "write" if operation in WRITES else "read"
    cc = parsed.get("ConsumedCapacity")
    for entry in cc if isinstance(cc, list) else [cc] if cc else []:
        yield str(entry.get("TableName", "")), kind, float(entry.get("CapacityUnits", 0))


#: the DynamoDB operations that take ReturnConsumedCapacity
CAPACITY_OPERATIONS = frozenset({
    "GetItem", "PutItem", "UpdateItem", "DeleteItem", "Query", "Scan", "BatchGetItem",
    "BatchWriteItem", "TransactGetItems", "TransactWriteItems"})
WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem",
                    "TransactWriteItems"})


def owner_of(service: str, params: dict[str, Any], operation: str,
             own: Callable[[str], bool]) -> str:
    """"tenant" for a call on the tenant's own tables or buckets (the data map's), "oblio"
    for everything else: oblio's tables and buckets, keys, events, workflows, e-mail."""
    if service == "dynamodb":
        names = tables_of(params)
    elif service == "s3" and params.get("Bucket"):
        names = [str(params["Bucket"])]
    else:
        return "oblio"
    return "tenant" if any(n and not own(n) for n in names) else "oblio"
