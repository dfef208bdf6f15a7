"""Bounded concurrency for the round trips of one invocation."""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def ordered(fn: Callable[[T], R], items: Iterable[T], width: int) -> list[R]:
    """`[fn(x) for x in items]`, at most `width` at once, in the items' order. Each call
    runs in a copy of the caller's context (so that the invocation's AWS calls are counted
    by its meter, and its attempt fences its writes); the first error is raised once the
    calls under way have ended."""
    todo = list(items)
    if width <= 1 or len(todo) <= 1:
        return [fn(x) for x in todo]
    with ThreadPoolExecutor(min(width, len(todo))) as pool:
        futures = [pool.submit(contextvars.copy_context().run, fn, x) for x in todo]
        return [f.result() for f in futures]
