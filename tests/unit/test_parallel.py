"""Bounded concurrency: the calls overlap, never more than the bound at once, the results
keep the items' order, the caller's context (its meter) goes with each call, and an error
is not swallowed."""

from __future__ import annotations

import contextvars
import threading
import time

import pytest

from oblio.core import parallel

_seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="none")


def test_results_keep_the_items_order_and_the_bound_holds():
    running, peak, lock = [0], [0], threading.Lock()

    def slow(x: int) -> int:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.02 * (x % 3))
        with lock:
            running[0] -= 1
        return x * x

    assert parallel.ordered(slow, range(20), 4) == [x * x for x in range(20)]
    assert 1 < peak[0] <= 4


def test_each_call_sees_the_callers_context():
    _seen.set("the invocation's")
    assert parallel.ordered(lambda _: _seen.get(), range(5), 3) == ["the invocation's"] * 5


def test_an_error_is_raised_and_width_one_is_serial():
    def boom(x: int) -> int:
        if x == 3:
            raise ValueError("line 3")
        return x

    with pytest.raises(ValueError, match="line 3"):
        parallel.ordered(boom, range(6), 3)
    order: list[int] = []
    parallel.ordered(order.append, range(5), 1)
    assert order == list(range(5))


def test_what_the_worker_threads_do_is_counted_by_the_callers_meter():
    """A bulk chunk's lookups run on worker threads: its meter counts them all."""
    from oblio.store import aws

    def call(_: int) -> None:
        aws.note("looked_up")

    with aws.counting() as c:
        parallel.ordered(call, range(12), 8)
    assert c.notes["looked_up"] == 12
