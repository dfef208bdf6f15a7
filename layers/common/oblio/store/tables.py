"""The adapter for the tenants' mapped DynamoDB tables (low-level client, typed values).

Every read is a Query on a key or an index, paginated; writes are batched (BatchWriteItem of
25, UnprocessedItems retried with backoff). The one Scan is `scan_page`: the fallback a data
map must declare (`sweep: {scan_segments: N}`) for a table that retention sweeps cannot query,
and the shadow backfill of a table that is not one partition of the tenant's.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import BotoCoreError

from oblio.core.errors import TransientError
from oblio.store import aws

_ser = TypeSerializer()
_de = TypeDeserializer()
MAX_ATTEMPTS = 8

Item = dict[str, Any]


def to_ddb(item: Item) -> dict[str, Any]:
    return {k: _ser.serialize(v) for k, v in item.items()}


def from_ddb(item: dict[str, Any]) -> Item:
    return {k: _de.deserialize(v) for k, v in item.items()}


def _backoff(attempt: int) -> None:
    time.sleep(min(2.0, 0.05 * (2**attempt)) * (0.5 + random.random() / 2))


def query_eq(table: str, partition: tuple[str, str], sort: tuple[str, Any],
             index: str | None = None, projection: Iterable[str] | None = None,
             ) -> Iterator[Item]:
    """Items whose partition key and sort key (of the table or of `index`) equal the values."""
    return _pages(_key_query(table, index, partition, sort, "=", projection))


def query_key(table: str, partition: tuple[str, Any],
              sort: tuple[str, str, Any] | None = None, index: str | None = None,
              projection: Iterable[str] | None = None) -> Iterator[Item]:
    """Items of one partition (of the table or of `index`), optionally only those whose sort
    key equals a value (`=`) or starts with one (`begins_with`); paginated."""
    if sort is None:
        return _pages(_key_query(table, index, partition, None, "=", projection))
    attr, op, value = sort
    return _pages(_key_query(table, index, partition, (attr, value), op, projection))


def _pages(params: dict[str, Any]) -> Iterator[Item]:
    """Every item a Query answers, page after page."""
    ddb = aws.table_client(params["TableName"])
    while True:
        page = ddb.query(**params)
        for raw in page.get("Items", []):
            yield from_ddb(raw)
        if "LastEvaluatedKey" not in page:
            return
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def batch_get(table: str, keys: list[Item]) -> list[Item]:
    """The items that exist among `keys` (100 a call, unprocessed keys retried)."""
    ddb = aws.table_client(table)
    out: list[Item] = []
    for start in range(0, len(keys), 100):
        pending: dict[str, Any] = {table: {"Keys": [to_ddb(k) for k in keys[start:start + 100]],
                                           "ConsistentRead": True}}
        for attempt in range(MAX_ATTEMPTS):
            resp = ddb.batch_get_item(RequestItems=pending, ReturnConsumedCapacity="TOTAL")
            out.extend(from_ddb(i) for i in resp.get("Responses", {}).get(table, []))
            pending = resp.get("UnprocessedKeys") or {}
            if not pending:
                break
            _backoff(attempt)
        else:
            raise TransientError(f"DynamoDB left keys of table {table} unprocessed")
    return out


def batch_delete(table: str, keys: list[Item]) -> int:
    """Delete `keys` in BatchWriteItem calls of 25; returns how many deletes were sent."""
    ddb = aws.table_client(table)
    for start in range(0, len(keys), 25):
        pending: dict[str, Any] = {table: [{"DeleteRequest": {"Key": to_ddb(k)}}
                                           for k in keys[start:start + 25]]}
        for attempt in range(MAX_ATTEMPTS):
            resp = ddb.batch_write_item(RequestItems=pending, ReturnConsumedCapacity="TOTAL")
            pending = resp.get("UnprocessedItems") or {}
            if not pending:
                break
            _backoff(attempt)
        else:
            raise TransientError(f"DynamoDB left deletes on table {table} unprocessed")
    return len(keys)


Location = str | tuple[str | int, ...]


def _document_path(loc: Location, names: dict[str, str]) -> str:
    """`#n0.#n1[2].#n2` for a location: a top-level name, or a tuple of map member names and
    list indexes. Every name goes through ExpressionAttributeNames (reserved words, dots)."""
    parts = (loc,) if isinstance(loc, str) else loc
    out = ""
    for seg in parts:
        if isinstance(seg, int):
            out += f"[{seg}]"
            continue
        alias = next((k for k, v in names.items() if v == seg and k.startswith("#n")), None)
        if alias is None:
            alias = f"#n{sum(1 for k in names if k.startswith('#n'))}"
            names[alias] = seg
        out += ("." if out else "") + alias
    return out


def _order(loc: Location) -> tuple[Any, ...]:
    parts = (loc,) if isinstance(loc, str) else loc
    return tuple((1, s) if isinstance(s, int) else (0, s) for s in parts)


def update(table: str, key: Item, set_values: dict[Location, Any], remove: list[Location],
           only_if_absent: str | None = None) -> bool:
    """Rewrite one existing item: SET and REMOVE attributes, or places inside them (a
    location is a top-level name, or a tuple of map member names and list indexes). With
    `only_if_absent`, the update applies only if the item does not carry that attribute yet
    (the anonymisation marker), which makes a repeated pass a no-op. Returns False when a
    condition held it back (the item is gone, or already marked)."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets, removes = [], []
    for i, (loc, value) in enumerate(sorted(set_values.items(), key=lambda kv: _order(kv[0]))):
        values[f":s{i}"] = _ser.serialize(value)
        sets.append(f"{_document_path(loc, names)} = :s{i}")
    # list elements removed from the last index down, so that no removal shifts another
    for loc in sorted(remove, key=_order, reverse=True):
        removes.append(_document_path(loc, names))
    key_attr = next(iter(key))
    names["#k"] = key_attr
    condition = "attribute_exists(#k)"
    if only_if_absent:
        names["#m"] = only_if_absent
        condition += " AND attribute_not_exists(#m)"
    expr = ""
    if sets:
        expr += "SET " + ", ".join(sets)
    if removes:
        expr += " REMOVE " + ", ".join(removes)
    params: dict[str, Any] = {
        "TableName": table, "Key": to_ddb(key), "UpdateExpression": expr.strip(),
        "ConditionExpression": condition, "ExpressionAttributeNames": names,
        "ReturnConsumedCapacity": "TOTAL",
    }
    if values:
        params["ExpressionAttributeValues"] = values
    ddb = aws.table_client(table)
    try:
        ddb.update_item(**params)
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def set_if_unchanged(table: str, key: Item, set_values: dict[str, Any], remove: Iterable[str],
                     expect: dict[str, Any]) -> bool:
    """One UpdateItem of top-level attributes (SET `set_values`, REMOVE `remove`), made only if
    the item still exists and each attribute of `expect` still holds its value (None: is still
    absent): a concurrent write is never overwritten by what was computed from the value it
    replaced. Returns False when the condition held the write back."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    sets, removes = [], []
    for i, (attr, value) in enumerate(sorted(set_values.items())):
        names[f"#s{i}"], values[f":s{i}"] = attr, _ser.serialize(value)
        sets.append(f"#s{i} = :s{i}")
    for i, attr in enumerate(sorted(remove)):
        names[f"#r{i}"] = attr
        removes.append(f"#r{i}")
    names["#k"] = next(iter(key))
    conditions = ["attribute_exists(#k)"]
    for i, (attr, value) in enumerate(sorted(expect.items())):
        names[f"#e{i}"] = attr
        if value is None:
            conditions.append(f"attribute_not_exists(#e{i})")
        else:
            values[f":e{i}"] = _ser.serialize(value)
            conditions.append(f"#e{i} = :e{i}")
    expr = " ".join(part for part in (
        "SET " + ", ".join(sets) if sets else "",
        "REMOVE " + ", ".join(removes) if removes else "") if part)
    if not expr:
        return True
    params: dict[str, Any] = {
        "TableName": table, "Key": to_ddb(key), "UpdateExpression": expr,
        "ConditionExpression": " AND ".join(conditions), "ExpressionAttributeNames": names,
        "ReturnConsumedCapacity": "TOTAL"}
    if values:
        params["ExpressionAttributeValues"] = values
    ddb = aws.table_client(table)
    try:
        ddb.update_item(**params)
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def get_item(table: str, key: Item) -> Item | None:
    """One item by its key, read consistently; None when there is none."""
    got = aws.table_client(table).get_item(TableName=table, Key=to_ddb(key),
                                           ConsistentRead=True)
    return from_ddb(got["Item"]) if "Item" in got else None


def claim(table: str, key: Item, names: list[str], value: Any) -> bool:
    """Set each top-level attribute of `names` to `value` in one UpdateItem (the item is
    made by the first claim), only if none of them is set yet: False when another writer
    claimed any of them first, and then nothing is written."""
    attrs = {f"#c{i}": name for i, name in enumerate(names)}
    ddb = aws.table_client(table)
    try:
        ddb.update_item(
            TableName=table, Key=to_ddb(key), ExpressionAttributeNames=attrs,
            ExpressionAttributeValues={":v": _ser.serialize(value)},
            UpdateExpression="SET " + ", ".join(f"{a} = :v" for a in attrs),
            ConditionExpression=" AND ".join(f"attribute_not_exists({a})" for a in attrs))
    except ddb.exceptions.ConditionalCheckFailedException:
        return False
    return True


def unclaim(table: str, key: Item, names: list[str]) -> bool:
    """Give claims back: REMOVE each of the top-level attributes `names`; False when
    DynamoDB refused the write (the caller has a failure of its own to report)."""
    attrs = {f"#c{i}": name for i, name in enumerate(names)}
    ddb = aws.table_client(table)
    try:
        ddb.update_item(TableName=table, Key=to_ddb(key), ExpressionAttributeNames=attrs,
                        UpdateExpression="REMOVE " + ", ".join(attrs))
    except (ddb.exceptions.ClientError, BotoCoreError):  # refused, or never answered
        return False
    return True


def batch_put(table: str, items: list[Item]) -> None:
    """Write items in batches of 25 (used by the demo loader and tests)."""
    ddb = aws.table_client(table)
    for start in range(0, len(items), 25):
        pending: dict[str, Any] = {table: [{"PutRequest": {"Item": to_ddb(i)}}
                                           for i in items[start:start + 25]]}
        for attempt in range(MAX_ATTEMPTS):
            resp = ddb.batch_write_item(RequestItems=pending)
            pending = resp.get("UnprocessedItems") or {}
            if not pending:
                break
            _backoff(attempt)
        else:
            raise TransientError(f"DynamoDB left writes on table {table} unprocessed")


class ConditionFailed(Exception):
    """A conditional write was refused: the item is not as the writer expected."""


def add_counts(table: str, key: Item, counts: dict[str, float]) -> None:
    """One atomic update adding each count to the item's attribute of that name (ADD: the
    item and its attributes are made by the first add; parallel writers never lose one)."""
    if not counts:
        return
    names = {f"#a{i}": name for i, name in enumerate(sorted(counts))}
    values = {f":n{i}": {"N": str(counts[name])} for i, name in enumerate(sorted(counts))}
    aws.table_client(table).update_item(
        TableName=table, Key=to_ddb(key), ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
        UpdateExpression="ADD " + ", ".join(f"#a{i} :n{i}" for i in range(len(counts))))


def add_to_map(table: str, key: Item, attribute: str, counts: dict[str, int],
               entries: dict[str, tuple[str, Any]] | None = None,
               only_if: dict[str, Any] | None = None) -> None:
    """One atomic update: add `counts` into the map `attribute` (which must exist), and set
    `entries`, each `name -> (map attribute, value)`. Parallel writers never lose a count
    (DynamoDB's ADD does not reach into maps; SET with if_not_exists does). With `only_if`
    (attribute -> value), the update is made only if each attribute equals its value; else
    ConditionFailed and nothing is written."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    parts = []
    conditions = []
    for i, (name, value) in enumerate(sorted((only_if or {}).items())):
        names[f"#f{i}"], values[f":f{i}"] = name, _ser.serialize(value)
        conditions.append(f"#f{i} = :f{i}")
    for i, (entry, (container, value)) in enumerate(sorted((entries or {}).items())):
        names[f"#c{i}"], names[f"#e{i}"] = container, entry
        values[f":e{i}"] = _ser.serialize(value)
        parts.append(f"#c{i}.#e{i} = :e{i}")
    if counts:
        names["#m"] = attribute
        values[":z"] = {"N": "0"}
    for i, (name, n) in enumerate(sorted(counts.items())):
        names[f"#o{i}"] = name
        values[f":n{i}"] = {"N": str(n)}
        parts.append(f"#m.#o{i} = if_not_exists(#m.#o{i}, :z) + :n{i}")
    if not parts:
        return
    params: dict[str, Any] = {}
    if conditions:
        params["ConditionExpression"] = " AND ".join(conditions)
    ddb = aws.table_client(table)
    try:
        ddb.update_item(
            TableName=table, Key=to_ddb(key), UpdateExpression="SET " + ", ".join(parts),
            ExpressionAttributeNames=names, ExpressionAttributeValues=values, **params)
    except ddb.exceptions.ConditionalCheckFailedException:
        raise ConditionFailed(f"the update of {table} was refused by its condition") from None


def _key_query(table: str, index: str | None, partition: tuple[str, Any],
               sort: tuple[str, Any] | None, op: str, projection: Iterable[str] | None,
               ) -> dict[str, Any]:
    """A Query's parameters: the partition key equal to a value, and the sort key (when
    given) compared to one with `op` (`=`, `<`, `begins_with`), on the table or `index`,
    reading only `projection` when given."""
    names = {"#p": partition[0]}
    values = {":p": _ser.serialize(partition[1])}
    cond = "#p = :p"
    if sort is not None:
        names["#s"], values[":s"] = sort[0], _ser.serialize(sort[1])
        cond += " AND begins_with(#s, :s)" if op == "begins_with" else f" AND #s {op} :s"
    params: dict[str, Any] = {"TableName": table, "KeyConditionExpression": cond,
                              "ExpressionAttributeValues": values,
                              "ReturnConsumedCapacity": "TOTAL"}
    if index:
        params["IndexName"] = index
    _projected(params, names, projection)
    return params


def _projected(params: dict[str, Any], names: dict[str, str],
               projection: Iterable[str] | None) -> None:
    if projection:
        attrs = sorted(set(projection))
        for i, a in enumerate(attrs):
            names[f"#a{i}"] = a
        params["ProjectionExpression"] = ", ".join(f"#a{i}" for i in range(len(attrs)))
    params["ExpressionAttributeNames"] = names


def query_below(table: str, index: str, partition: tuple[str, str], sort: tuple[str, str],
                limit: int, start: dict[str, Any] | None = None,
                projection: Iterable[str] | None = None,
                ) -> tuple[list[Item], dict[str, Any] | None]:
    """One page of `index`'s items in one partition whose sort key is below a value (the
    retention sweep index: a month bucket, dates before the cutoff); returns the items and
    the page's LastEvaluatedKey (raw, to resume from), or None at the end."""
    params = _key_query(table, index, partition, sort, "<", projection)
    params["Limit"] = limit
    if start:
        params["ExclusiveStartKey"] = start
    page = aws.table_client(table).query(**params)
    return [from_ddb(i) for i in page.get("Items", [])], page.get("LastEvaluatedKey")


def scan_page(table: str, segment: int, segments: int, limit: int,
              start: dict[str, Any] | None = None, projection: Iterable[str] | None = None,
              where: tuple[str, str, Any] | None = None,
              ) -> tuple[list[Item], dict[str, Any] | None]:
    """One page of one segment of a parallel Scan (the declared retention fallback and the
    shadow backfill only: its cost grows with the table); returns the items and the
    LastEvaluatedKey or None. `where` (attribute, "=" or "begins_with", value) filters the
    page (one tenant's items of a pooled table): DynamoDB still reads, and bills, every item
    of the page, filtered or not; `limit` bounds the items read, not the items returned."""
    items, last, _ = scan_page_counted(table, segment, segments, limit, start, projection,
                                       where)
    return items, last


def query_page(table: str, partition: tuple[str, Any], limit: int,
               start: dict[str, Any] | None = None, projection: Iterable[str] | None = None,
               ) -> tuple[list[Item], dict[str, Any] | None, int]:
    """One page of one partition of the table (a tenant's items of a pooled table keyed by
    the tenant): the items, the LastEvaluatedKey or None, and how many items were read."""
    params = _key_query(table, None, partition, None, "=", projection)
    params["Limit"] = limit
    if start:
        params["ExclusiveStartKey"] = start
    page = aws.table_client(table).query(**params)
    items = [from_ddb(i) for i in page.get("Items", [])]
    return items, page.get("LastEvaluatedKey"), int(page.get("ScannedCount", len(items)))


def scan_page_counted(table: str, segment: int, segments: int, limit: int,
                      start: dict[str, Any] | None = None,
                      projection: Iterable[str] | None = None,
                      where: tuple[str, str, Any] | None = None,
                      ) -> tuple[list[Item], dict[str, Any] | None, int]:
    """`scan_page`, and how many items DynamoDB read for it (its ScannedCount: with a
    filter, more than it returned; what the page costs)."""
    params: dict[str, Any] = {"TableName": table, "Segment": segment,
                              "TotalSegments": segments, "Limit": limit,
                              "ReturnConsumedCapacity": "TOTAL"}
    if start:
        params["ExclusiveStartKey"] = start
    names: dict[str, str] = {}
    if where is not None:
        attr, op, value = where
        names["#w"] = attr
        params["ExpressionAttributeValues"] = {":w": _ser.serialize(value)}
        params["FilterExpression"] = "begins_with(#w, :w)" if op == "begins_with" \
            else "#w = :w"
        params["ExpressionAttributeNames"] = names
    if projection:
        _projected(params, names, projection)
    page = aws.table_client(table).scan(**params)
    items = [from_ddb(i) for i in page.get("Items", [])]
    return items, page.get("LastEvaluatedKey"), int(page.get("ScannedCount", len(items)))
