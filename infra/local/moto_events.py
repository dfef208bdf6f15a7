"""Local only: moto's EventBridge delivery to SQS without a pass over the whole queue per
message.

moto's SendMessage reads its queue's attributes (for FIFO content deduplication), and those
count the queue's visible, delayed and in-flight messages in three passes over every message
it holds, each message reading the clock twice or three times. The `events` queue keeps a copy
of every oblio event, so each event cost time in proportion to all the events before it: a
bulk job of 1,000 subjects spent nine tenths of the local stack's time there, and every other
request waited on the interpreter meanwhile. This shim counts the three in one pass at one
instant (the same figures: a message is visible when the clock is past its `visible_at`,
delayed while before its `delayed_until`), and skips the counts inside SendMessage on a queue
that is not FIFO, where moto reads none of them.

moto also builds a JSONPath parser for each of the eight paths of each event it delivers
(EventBridge's default input template): the parsed paths are kept, as they never change.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

import jsonpath_ng.ext as _jsonpath_ext
from moto.sqs import models as _sqs

_local = threading.local()
_COUNTS = ("approximate_number_of_messages", "approximate_number_of_messages_delayed",
           "approximate_number_of_messages_not_visible")
#: moto's own, taken at import (before any install)
_ORIGINAL: dict[str, Any] = {
    "attributes": _sqs.Queue.attributes, "send_message": _sqs.SQSBackend.send_message,
    "parse": _jsonpath_ext.parse,  # type: ignore[attr-defined]
    **{name: getattr(_sqs.Queue, name) for name in _COUNTS}}
_installed: list[bool] = []


def counts(queue: _sqs.Queue) -> tuple[int, int, int]:
    """(visible, delayed, not visible) of `queue` at one instant, in one pass: what moto's
    three properties count."""
    now = _sqs.unix_time_millis()  # type: ignore[attr-defined]
    visible = delayed = hidden = 0
    for m in list(queue._messages):
        shown, late = now > m.visible_at, now < m.delayed_until
        visible += shown and not late
        delayed += late
        hidden += not shown
    return visible, delayed, hidden


def attributes(queue: _sqs.Queue) -> dict[str, Any]:
    """moto's attributes of `queue`, its three counts taken in one pass (none inside a
    SendMessage on a queue that is not FIFO: moto reads none of them there)."""
    if getattr(_local, "sending", None) is queue and not queue.fifo_queue:
        known: tuple[int, int, int] = (0, 0, 0)
    else:
        known = counts(queue)
    _local.counts = (queue, known)
    try:
        result: dict[str, Any] = _ORIGINAL["attributes"].fget(queue)
        return result
    finally:
        _local.counts = None


def _count(i: int) -> property:
    original = _ORIGINAL[_COUNTS[i]]

    def get(self: _sqs.Queue) -> int:
        known = getattr(_local, "counts", None)
        if known is not None and known[0] is self:
            return int(known[1][i])
        return int(original.fget(self))

    return property(get)


def send_message(backend: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
    """moto's SendMessage, the queue it names marked as being sent to meanwhile."""
    try:
        _local.sending = backend.get_queue(queue_name)
    except Exception:  # noqa: BLE001 - moto's own call below reports the missing queue
        _local.sending = None
    try:
        return _ORIGINAL["send_message"](backend, queue_name, *args, **kwargs)
    finally:
        _local.sending = None


def install() -> None:
    if _installed:
        return
    _installed.append(True)
    _sqs.Queue.attributes = property(attributes)  # type: ignore[assignment,method-assign]
    for i, name in enumerate(_COUNTS):
        setattr(_sqs.Queue, name, _count(i))
    _sqs.SQSBackend.send_message = send_message  # type: ignore[method-assign,assignment]
    _jsonpath_ext.parse = functools.lru_cache(maxsize=256)(  # type: ignore[attr-defined]
        _ORIGINAL["parse"])


def uninstall() -> None:
    if not _installed:
        return
    _installed.clear()
    for name in ("attributes", *_COUNTS):
        setattr(_sqs.Queue, name, _ORIGINAL[name])
    _sqs.SQSBackend.send_message = _ORIGINAL["send_message"]  # type: ignore[method-assign]
    _jsonpath_ext.parse = _ORIGINAL["parse"]  # type: ignore[attr-defined]
