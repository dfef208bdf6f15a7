"""Refuse, before building anything, a catalogue that could not deploy: everything
`infra.catalogue.check` rejects, and what only the AWS deployment needs on top of it (handler
files, state machine placeholders and integrations, lifecycle expiries, rule targets, the
access map). Each error names the entry at fault."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from infra.catalogue import Catalogue, Function, StateMachine, check
from infra.cdk import access
from infra.cdk.config import ROOT
from infra.cdk.routes import routes

FUNCTIONS = ROOT / "functions"
STATEMACHINES = ROOT / "statemachines"
PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")
BUCKET_REF = re.compile(r"\$\{bucket:([^}]*)\}")
RULE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
SCHEDULE = re.compile(r"^(rate\(\d+ (minute|minutes|hour|hours|day|days)\)|cron\(\S+( \S+){5}\))$")
#: top-level fields of an EventBridge event pattern
PATTERN_FIELDS = ("source", "detail-type", "detail", "account", "region", "resources", "id",
                  "time", "version")
#: Task resources a definition may use besides the catalogue's function placeholders:
#: the stack grants the state machine's role what each needs
INTEGRATIONS = ("arn:aws:states:::s3:getObject",)


def is_chalice(f: Function) -> bool:
    """The function served through Chalice: its handler is the `app` object of an app.py."""
    return f.handler.endswith(".app.app")


def handler_file(f: Function) -> Path:
    *modules, _attr = f.handler.split(".")
    return FUNCTIONS.joinpath(*modules).with_suffix(".py")


def states(definition: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every state of a definition, nested ones (Map item processors, Parallel branches)
    included."""
    for state in (definition.get("States") or {}).values():
        yield state
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(key), dict):
                yield from states(state[key])
        for branch in state.get("Branches") or []:
            yield from states(branch)


def definition_text(sm: StateMachine) -> str:
    return (STATEMACHINES / sm.definition).read_text()


def _check_state_machine(sm: StateMachine, functions: set[str]) -> None:
    path = STATEMACHINES / sm.definition
    if not path.is_file():
        raise ValueError(f"state machine {sm.name!r}: definition file statemachines/"
                         f"{sm.definition} does not exist")
    text = path.read_text()
    used = set(PLACEHOLDER.findall(text))
    filled = set(sm.functions) | set(sm.values)
    for placeholder in sorted(used - filled):
        raise ValueError(f"state machine {sm.name!r}: ${{{placeholder}}} in {sm.definition} "
                         "is filled by no catalogue entry (functions or values)")
    for placeholder in sorted(filled - used):
        raise ValueError(f"state machine {sm.name!r}: the catalogue fills ${{{placeholder}}}, "
                         f"which {sm.definition} does not use")
    for placeholder, fn in sm.functions.items():
        if fn not in functions:
            raise ValueError(f"state machine {sm.name!r}: {placeholder} names unknown "
                             f"function {fn!r}")
    try:
        definition = json.loads(PLACEHOLDER.sub("x", text))
    except ValueError as exc:
        raise ValueError(f"state machine {sm.name!r}: {sm.definition} is not JSON: "
                         f"{exc}") from None
    for state in states(definition):
        resources = [state.get("Resource"), (state.get("ItemReader") or {}).get("Resource")]
        for resource in resources:
            if resource and resource != "x" and resource not in INTEGRATIONS:
                raise ValueError(f"state machine {sm.name!r}: Task resource {resource!r} is "
                                 "not granted by infra/cdk/stack.py (known: function "
                                 f"placeholders, {', '.join(INTEGRATIONS)})")


def validate(catalogue: Catalogue, prefix: str,
             schedules: Mapping[str, str] | None = None) -> None:
    """Raise ValueError, naming the entry, if the catalogue (with the deployment's schedule
    overrides) cannot be deployed to AWS."""
    check(catalogue, prefix)
    for b in catalogue.buckets:
        for r in b.lifecycle:
            if not all(isinstance(d, int) and d >= 1
                       for d in (r.expire_days, r.noncurrent_days)):
                raise ValueError(f"bucket {b.name!r}: lifecycle rule {r.id!r} (prefix "
                                 f"{r.prefix!r}) has no expiry: it must expire objects and "
                                 "old versions after at least one day")
        ids = [r.id for r in b.lifecycle]
        for dup in sorted({i for i in ids if ids.count(i) > 1}):
            raise ValueError(f"bucket {b.name!r}: lifecycle rule id {dup!r} is used twice")
    functions = {f.name for f in catalogue.functions}
    for f in catalogue.functions:
        path = handler_file(f)
        if not path.is_file():
            raise ValueError(f"function {f.name!r}: handler {f.handler!r} needs "
                             f"{path.relative_to(ROOT)}, which does not exist")
        if not 1 <= f.timeout_seconds <= 900 or not 128 <= f.memory_mb <= 10240:
            raise ValueError(f"function {f.name!r}: Lambda takes a timeout of 1-900 s and "
                             "128-10240 MB of memory")
    chalice = [f.name for f in catalogue.functions if is_chalice(f)]
    if len(chalice) > 1:
        raise ValueError(f"functions {chalice}: only one Chalice app is deployed")
    for sm in catalogue.state_machines:
        _check_state_machine(sm, functions)
    deployed_buckets = {b.name for b in catalogue.buckets if not b.demo}
    kinds = {"function": functions, "statemachine": {sm.name for sm in catalogue.state_machines},
             "queue": {q.name for q in catalogue.queues if not q.local_only}}
    names = [r.name for r in routes(catalogue, schedules)]
    for dup in sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"event rule {dup!r}: two catalogue rules or schedules share the name")
    for rule in routes(catalogue, schedules):
        if not RULE_NAME.match(f"{prefix}-{rule.name}"):
            raise ValueError(f"event rule {rule.name!r} becomes {prefix}-{rule.name!r}, which "
                             "AWS rejects: 1-64 letters, digits, '.', '_', '-'")
        kind, name = rule.target
        if kind not in kinds:
            raise ValueError(f"event rule {rule.name!r}: target kind {kind!r} is not one of "
                             f"{', '.join(kinds)}")
        if name not in kinds[kind]:
            raise ValueError(f"event rule {rule.name!r}: target {kind} {name!r} is not "
                             "deployed by the catalogue")
        if rule.bus not in ("oblio", "default"):
            raise ValueError(f"event rule {rule.name!r}: bus must be 'oblio' or 'default'")
        if rule.pattern is None and rule.schedule is None:
            raise ValueError(f"event rule {rule.name!r} has neither an event pattern nor a "
                             "schedule")
        if rule.schedule is not None and rule.bus != "default":
            raise ValueError(f"schedule {rule.name!r}: EventBridge runs schedules on the "
                             "default bus only")
        if rule.schedule is not None and not SCHEDULE.match(rule.schedule):
            raise ValueError(f"schedule {rule.name!r}: {rule.schedule!r} is not an "
                             "EventBridge schedule expression (rate(...) or cron(...))")
        for key in rule.pattern or {}:
            if key not in PATTERN_FIELDS:
                raise ValueError(f"event rule {rule.name!r}: {key!r} is not a field of an "
                                 "EventBridge event pattern")
        for ref in BUCKET_REF.findall(json.dumps(rule.pattern)):
            if ref not in deployed_buckets:
                raise ValueError(f"event rule {rule.name!r}: ${{bucket:{ref}}} names no "
                                 "deployed catalogue bucket")
    access.check(catalogue)
