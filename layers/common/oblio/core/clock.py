"""The one clock: UTC, RFC 3339 strings. Tests and the local stack may move it forward."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_offset = timedelta()


def now() -> datetime:
    return datetime.now(UTC) + _offset


def iso(dt: datetime | None = None) -> str:
    return (dt or now()).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


def parse(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def add_months(dt: datetime, months: int) -> datetime:
    """Same day `months` later, clamped to the month's last day (Art. 12(3) deadlines)."""
    month0 = dt.month - 1 + months
    year, month = dt.year + month0 // 12, month0 % 12 + 1
    for day in (dt.day, 30, 29, 28):
        try:
            return dt.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    raise ValueError("unreachable")


def advance(delta: timedelta) -> None:
    """Move the clock forward (tests, local demos of expiry)."""
    global _offset
    _offset += delta


def reset() -> None:
    global _offset
    _offset = timedelta()
