"""The names resources get in a deployment: `<prefix>-<logical name>`, checked against the
rules AWS applies. Read by the settings (Lambda code) and by the resource catalogue (infra)."""

from __future__ import annotations

import re

_NAME_RULES = {
    "table": (re.compile(r"^[A-Za-z0-9_.-]{3,255}$"), "3-255 letters, digits, '_', '-', '.'"),
    "bucket": (re.compile(r"^(?!-)[a-z0-9.-]{3,63}(?<!-)$"),
               "3-63 lower-case letters, digits, '.', '-'"),
    "function": (re.compile(r"^[A-Za-z0-9_-]{1,64}$"), "1-64 letters, digits, '_', '-'"),
    "statemachine": (re.compile(r"^[A-Za-z0-9_-]{1,80}$"), "1-80 letters, digits, '_', '-'"),
    "queue": (re.compile(r"^[A-Za-z0-9_-]{1,80}$"), "1-80 letters, digits, '_', '-'"),
    "topic": (re.compile(r"^[A-Za-z0-9_-]{1,256}$"), "1-256 letters, digits, '_', '-'"),
    "bus": (re.compile(r"^[A-Za-z0-9/_.-]{1,256}$"), "1-256 letters, digits, '/._-'"),
    "secret": (re.compile(r"^[A-Za-z0-9/_+=.@-]{1,512}$"), "1-512 letters, digits, '/_+=.@-'"),
}


def physical_name(prefix: str, kind: str, name: str) -> str:
    """The name a resource gets in a deployment; raises ValueError if AWS would reject it."""
    full = f"{prefix}-{name}"
    pattern, rule = _NAME_RULES[kind]
    if not pattern.match(full):
        raise ValueError(f"catalogue {kind} {name!r} becomes {full!r}, which AWS rejects: {rule}")
    return full
