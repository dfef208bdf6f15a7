"""Local only: moto's DynamoDB answers written as JSON directly, and moto's per-request list
of a handler's methods remembered.

moto writes every answer by walking the operation's output shape in botocore's model, value
by value (an item's every attribute is a structure of its own): a fifth of the local stack's
time in a bulk job. A DynamoDB answer of the item operations is already plain JSON data once
moto has turned its attribute values into dicts (`DynamoResult`): for those, when the data
holds only strings, numbers, booleans, lists and maps (no bytes, no timestamp, no None),
it is written with `json.dumps`, as the shape walk would write it (DynamoDB's JSON protocol
names members as they are); anything else goes through moto's own serializer.

moto also lists a handler class's methods (`inspect.getmembers`) on every request to find
the action's method: the list is remembered per class.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from moto.core import responses as core_responses
from moto.dynamodb.responses import DynamoResult

#: the operations whose answers are item data (and counts, keys, capacity)
ITEM_OPERATIONS = frozenset({
    "Query", "Scan", "GetItem", "BatchGetItem", "PutItem", "UpdateItem", "DeleteItem",
    "BatchWriteItem", "TransactWriteItems", "TransactGetItems"})
CONTENT_TYPE = "application/x-amz-json-1.0"

_orig_execute = DynamoResult.execute_result
_orig_method_names = getattr(core_responses, "method_names_from_class")  # noqa: B009


def _plain(value: Any) -> bool:
    """Whether the value is JSON the shape walk would write as it is."""
    kind = type(value)
    if kind is str or kind is int or kind is float or kind is bool:
        return True
    if kind is dict:
        return all(type(k) is str and _plain(v) for k, v in value.items())
    if kind is list:
        return all(_plain(v) for v in value)
    return False


def _execute(self: Any, context: Any) -> Any:
    operation = context.operation_model
    if (operation.name in ITEM_OPERATIONS and not operation.http.get("responseCode")
            and type(self.result) is dict and _plain(self.result)):
        return 200, {"Content-Type": CONTENT_TYPE}, json.dumps(self.result,
                                                             separators=(",", ":"))
    return _orig_execute(self, context)


@cache
def _method_names(cls: type) -> list[str]:
    names: list[str] = _orig_method_names(cls)
    return names


def install() -> None:
    DynamoResult.execute_result = _execute  # type: ignore[method-assign]
    setattr(core_responses, "method_names_from_class", _method_names)  # noqa: B010


def uninstall() -> None:
    DynamoResult.execute_result = _orig_execute  # type: ignore[method-assign]
    setattr(core_responses, "method_names_from_class", _orig_method_names)  # noqa: B010
