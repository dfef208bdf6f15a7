"""A deadline for the work of one invocation, checked where stopping is safe.

Work runs a small request inside an Express execution, capped at 5 minutes (retries
included), which ends with no failure step when it runs out. It sets a deadline
(`until`); the steps it runs that only read, or write what is thrown away when they stop
(the walk of the data map, an export's archive streaming), call `check` between two pieces
of work, and `PastDeadline` leaves them: Work then hands the request over to its Standard
twin, which does the whole of it. A step that changes the tenant's data never checks (it
is not stopped halfway). Outside `until`, `check` does nothing."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_at: ContextVar[float | None] = ContextVar("oblio_deadline", default=None)


class PastDeadline(Exception):
    """The deadline passed while a step that may stop was under way."""


@contextmanager
def until(at: float | None) -> Iterator[None]:
    """Within the block, `check` raises once `time.monotonic()` is past `at`."""
    token = _at.set(at)
    try:
        yield
    finally:
        _at.reset(token)


def passed() -> bool:
    at = _at.get()
    return at is not None and time.monotonic() > at


def check() -> None:
    """Raise `PastDeadline` if the running block's deadline has passed."""
    if passed():
        raise PastDeadline("the step was still under way at its deadline")
