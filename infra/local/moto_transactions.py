"""Local only: moto's TransactWriteItems without a copy of every table it touches.

To roll back a cancelled transaction, moto deep-copies each table the transaction names before
it starts, so every transaction costs time in proportion to the whole table: 0.1 s per write
at a few thousand items in the consent ledger, where DynamoDB takes milliseconds whatever the
size. This shim snapshots only the items the transaction names, lets moto's own code do
every check and write, and on a cancellation puts those items back as they were. What moto
answers (the cancellation reasons, the errors) is unchanged.
"""

from __future__ import annotations

import copy as _copy
import threading
import types
from typing import Any

import moto.dynamodb.models as _models
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table

_original: Any = None
_lock = threading.Lock()


def _deepcopy(obj: Any, memo: Any = None) -> Any:
    # the only deep copy of a whole Table in moto's backend is the transaction's backup
    if isinstance(obj, Table):
        return obj
    return _copy.deepcopy(obj, memo)


_shim = types.SimpleNamespace(deepcopy=_deepcopy, copy=_copy.copy)


def _key(table: Table, op_type: str, op: dict[str, Any]) -> dict[str, Any] | None:
    if op_type != "Put":
        key: dict[str, Any] | None = op.get("Key")
        return key
    item = op.get("Item") or {}
    names = [table.hash_key_attr, *([table.range_key_attr] if table.range_key_attr else [])]
    if not all(n in item for n in names):
        return None
    return {n: item[n] for n in names}


def _transact(self: DynamoDBBackend, transact_items: list[dict[str, Any]]) -> None:
    snapshot: list[tuple[str, dict[str, Any], Any]] = []
    for entry in transact_items[:100]:
        op_type, op = next(iter(entry.items()))
        table = self.tables.get(op.get("TableName", "")) if isinstance(op, dict) else None
        key = _key(table, op_type, op) if table is not None else None
        if table is None or key is None:
            continue
        try:
            before = self.get_item(table.name, key)
        except Exception:  # noqa: BLE001 - moto's own call below reports a bad key
            continue
        snapshot.append((table.name, key, _copy.deepcopy(before.to_json()["Attributes"])
                         if before is not None else None))
    try:
        _original(self, transact_items)
    except Exception:
        for table_name, key, attrs in reversed(snapshot):
            if attrs is None:
                if self.get_item(table_name, key) is not None:
                    self.delete_item(table_name, key)
            else:
                self.put_item(table_name, attrs)
        raise


def install() -> None:
    global _original
    with _lock:
        if _original is not None:
            return
        _original = DynamoDBBackend.transact_write_items
        _models.copy = _shim  # type: ignore[assignment,attr-defined]
        DynamoDBBackend.transact_write_items = _transact  # type: ignore[method-assign]


def uninstall() -> None:
    global _original
    with _lock:
        if _original is None:
            return
        DynamoDBBackend.transact_write_items = _original  # type: ignore[method-assign]
        _models.copy = _copy  # type: ignore[attr-defined]
        _original = None
