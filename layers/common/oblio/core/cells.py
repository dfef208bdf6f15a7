"""Cells of the CSV files oblio writes for people (export tables, bulk reports)."""

from __future__ import annotations

from typing import Any


def csv_safe(value: Any) -> str:
    """A cell that a spreadsheet will not run as a formula (CSV injection)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
