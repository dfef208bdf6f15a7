"""Small readers of a synthesized CloudFormation template (a dict)."""

from __future__ import annotations

from typing import Any

Resources = dict[str, dict[str, Any]]


def of_type(resources: Resources, kind: str) -> Resources:
    """The template's resources of one CloudFormation type, by logical id."""
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def by_property(resources: Resources, kind: str, prop: str,
                ) -> dict[str, tuple[str, dict[str, Any]]]:
    """Resources of one type keyed by a string property (a physical name): value ->
    (logical id, properties)."""
    out = {}
    for logical_id, r in of_type(resources, kind).items():
        value = r.get("Properties", {}).get(prop)
        if isinstance(value, str):
            out[value] = (logical_id, r["Properties"])
    return out
