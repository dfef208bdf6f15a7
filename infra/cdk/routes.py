"""The catalogue's EventBridge rules and schedules in one shape, for the stack, its checks and
the tests. A rule (`infra.catalogue.EventRule`) matches events by pattern; a schedule runs its
target on a `rate(...)` or `cron(...)` expression. Schedules are read from a rule's
`schedule` (or `expression`) and from a catalogue `schedules` collection where there is one,
so a new catalogue entry of either kind becomes an AWS rule without a change here."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from infra.catalogue import Catalogue


@dataclass(frozen=True)
class Route:
    """One EventBridge rule of the stack: a catalogue event rule (`pattern`) or schedule
    (`schedule`, a `rate(...)` or `cron(...)` expression), with its AWS target."""

    name: str
    target: tuple[str, str]  # ("function" | "statemachine" | "queue", name)
    pattern: dict[str, Any] | None = None
    schedule: str | None = None
    bus: str = "oblio"
    #: the constant input a schedule hands its target (None: the event itself)
    input: Any = None


def _schedule_of(entry: Any) -> str | None:
    for attr in ("schedule", "expression", "cron", "rate"):
        value = getattr(entry, attr, None)
        if isinstance(value, str) and value:
            if attr in ("cron", "rate") and not value.startswith(attr + "("):
                value = f"{attr}({value})"
            return value
    return None


def _target_of(entry: Any) -> tuple[str, str]:
    target = getattr(entry, "target", None)
    if isinstance(target, tuple | list) and len(target) == 2:
        return (str(target[0]), str(target[1]))
    for kind, attr in (("statemachine", "state_machine"), ("function", "function"),
                       ("queue", "queue")):
        if isinstance(getattr(entry, attr, None), str):
            return (kind, getattr(entry, attr))
    raise ValueError(f"catalogue rule or schedule {getattr(entry, 'name', entry)!r} names no "
                     "target: give it target=(kind, name)")


def routes(catalogue: Catalogue, schedules: Mapping[str, str] | None = None) -> list[Route]:
    """Every rule and schedule of the catalogue, in one shape. Rules carry an event pattern
    and may also carry a schedule; a catalogue `schedules` collection, where there is one,
    adds schedule rules (EventBridge runs schedules on the default bus). `schedules` overrides
    expressions by rule name (the deployment's `schedules` context value)."""
    out = []
    for rule in catalogue.rules:
        schedule = _schedule_of(rule)
        out.append(Route(rule.name, _target_of(rule), rule.pattern or None, schedule,
                         "default" if schedule and not rule.pattern else rule.bus,
                         getattr(rule, "input", None)))
    for entry in getattr(catalogue, "schedules", None) or ():
        out.append(Route(entry.name, _target_of(entry), None, _schedule_of(entry), "default",
                         getattr(entry, "input", None) or getattr(entry, "payload", None)))
    overrides = dict(schedules or {})
    for name in sorted(set(overrides) - {r.name for r in out if r.schedule}):
        raise ValueError(f"context value 'schedules': the catalogue has no schedule {name!r}")
    return [replace(r, schedule=overrides.get(r.name, r.schedule)) for r in out]
