"""Verify: read back every planned item and object, and walk the map again from the
identities: what the action should have left is what is there, and nothing of an erased
subject can be found."""

from __future__ import annotations

from typing import Any

from oblio.control import exports, records
from oblio.control.crypto import TenantKeys
from oblio.control.tenants import get_tenant
from oblio.core import clock, paths, shadows
from oblio.core.datamap import DataMap
from oblio.pipeline import find
from oblio.pipeline.apply import spare_held
from oblio.pipeline.find import Item
from oblio.pipeline.outcome import verdict
from oblio.pipeline.rules import (
    Unit,
    changes_for,
    held,
    holds,
    key_fields,
    retained_places,
    role_mode,
    role_remains,
    table_mode,
    to_remove,
    value_refs,
)
from oblio.pipeline.work import (
    frozen_map,
    identifying_of,
    planned_units,
    request_params,
    unit_manifest_of,
)
from oblio.store import aws, objects
from oblio.store import tables as store


def remaining_keys(dm: DataMap, action: str, unit: Unit, manifest: dict[str, Any],
                   marker: str, params: dict[str, Any] | None = None,
                   keys: TenantKeys | None = None, identifying: set[str] | None = None,
                   subject_ref: str = "", late_held: list[Item] | None = None) -> list[Item]:
    """Read the unit's items back; the keys of those not as the action left them: deleted
    ones must be gone; anonymised ones must carry the subject's marker, no attribute whose
    rule removes it and no value of the subject's identifying attributes; retained ones
    nothing their erase rules remove; updated ones must hold the new values. Items she is in
    only in a role are checked by that role's rules. With `late_held`, an item a delete or
    an anonymisation finds on legal hold (set after the plan: the apply read it again and
    left it) is added there, not counted left."""
    t = dm.tables[unit.table]
    table = t.physical(unit.tenant_id)
    bad = _remaining(dm, t, table, table_mode(dm, unit.table, action, params), action,
                     manifest, None, params, keys, identifying, subject_ref, late_held)
    for role, group in sorted((manifest.get("roles") or {}).items()):
        bad += _remaining(dm, t, table, role_mode(dm, unit.table, role, action, params),
                          action, group, role, params, keys, identifying, subject_ref)
    return bad


def _remaining(dm: DataMap, t: Any, table: str, m: str, action: str, group: dict[str, Any],
               role: str | None, params: dict[str, Any] | None, keys: TenantKeys | None,
               identifying: set[str] | None, subject_ref: str,
               late_held: list[Item] | None = None) -> list[Item]:
    item_keys: list[Item] = group["keys"]
    left = store.batch_get(table, item_keys) if item_keys and m != "none" else []
    mark = dm.marker(subject_ref, role)
    bad: list[Item] = []
    for item in left:
        if late_held is not None and m in ("delete", "anonymise") and held(t, item):
            late_held.append(item)  # on hold since the plan: left by the apply, by design
            continue
        wrong = False
        if m == "delete":
            wrong = True
        elif m == "retain":  # kept, without what its explicit erase rules remove
            wrong = any(rule == "null" for _, rule, _, _ in retained_places(dm, t, item))
        elif m == "anonymise":
            # in a role, only what the role names is hers (the rest is about someone else)
            # (a shadow is the canonical copy of the identity it shadows: checked with it);
            # the key is compared too, and the fields its templates carry: an identity in
            # the key survives a rewrite in place, and such an item is not anonymous
            own = [a for a in item if not dm.is_marker(a)
                   and a != dm.tenant_attribute] if role is None else \
                [*t.roles[role].attributes,
                 *(s for a, s in shadows.names(t).items() if a in t.roles[role].attributes)]
            values = [item[a] for a in own if a in item] if role is None else \
                [v for a in own for _, v in paths.values(item, a)]
            if role is None:
                values += key_fields(t, item)
            leaked = bool(identifying and keys and value_refs(keys, values) & identifying)
            rest = to_remove(dm, t, item, action) if role is None else \
                role_remains(t, role, item, action)
            wrong = item.get(mark) is None or leaked or bool(rest)
        elif m == "update":
            wrong = not holds(item, changes_for(t, (params or {}).get("changes") or {}))
        elif m in ("flag", "unflag"):
            wrong = item.get(t.restriction_flag or "") is not (m == "flag")
        if wrong:
            bad.append({k: item[k] for k in t.key.names})
    return bad


def check_unit(dm: DataMap, action: str, unit: Unit, manifest: dict[str, Any],
               marker: str, params: dict[str, Any] | None = None,
               keys: TenantKeys | None = None, identifying: set[str] | None = None,
               subject_ref: str = "") -> dict[str, Any]:
    """What `remaining_keys` finds, counted, and S3 objects with any version left (per file
    rule under `files` when the table has rules beside pointers)."""
    out = _check(dm, action, unit, manifest, marker, params, keys, identifying, subject_ref)
    out.pop("late_held")
    if "templated" not in manifest and "prefixes" not in manifest:
        out.pop("files")
    return out


def _check(dm: DataMap, action: str, unit: Unit, manifest: dict[str, Any],
           marker: str, params: dict[str, Any] | None = None,
           keys: TenantKeys | None = None, identifying: set[str] | None = None,
           subject_ref: str = "") -> dict[str, Any]:
    m = table_mode(dm, unit.table, action, params)
    late: list[Item] = []
    bad = remaining_keys(dm, action, unit, manifest, marker, params, keys, identifying,
                         subject_ref, late_held=late)
    if late:  # their files stay with them (as the apply left them): not checked as left
        kept, _, _ = spare_held(dm, dm.tables[unit.table], unit.tenant_id, manifest, late)
        manifest = {**manifest, **{k: v for k, v in kept.items() if k in manifest}}
    files = files_left(manifest) if m in ("delete", "anonymise") else {}
    checked = len(manifest["keys"]) + sum(len(g["keys"]) for g in
                                          (manifest.get("roles") or {}).values())
    return {"checked": checked, "items_remaining": len(bad),
            "files_remaining": sum(f["left"] for f in files.values()), "files": files,
            "late_held": late}


def _key(t: Any, item: Item) -> tuple[Any, ...]:
    return tuple(item.get(k) for k in t.key.names)


def files_left(manifest: dict[str, Any]) -> dict[str, dict[str, int]]:
    """Per file rule, what was checked and what is left (any version or delete marker):
    the pointers' objects, the key templates' objects, and every object under the
    prefixes."""
    out: dict[str, dict[str, int]] = {}
    pointers = [(b, k) for b, k in manifest.get("s3", [])]
    out["pointer"] = {"objects": len(pointers),
                      "left": objects.versions_left(pointers) if pointers else 0}
    templated = [(b, k) for b, k in manifest.get("templated", [])]
    if "templated" in manifest:
        out["key_template"] = {"objects": len(templated),
                               "left": objects.versions_left(templated) if templated else 0}
    prefixes = [(b, p) for b, p in manifest.get("prefixes", [])]
    if "prefixes" in manifest:
        out["prefix"] = {"prefixes": len(prefixes),
                         "left": objects.left_under(prefixes) if prefixes else 0}
    return out


def verify(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """Read back every planned item and object, and walk the map again from the identities:
    nothing of the subject may be found. Records the outcome on the request."""
    m = records.load(tenant_id, request_id)
    if not records.proceed(m):
        return {"cancelled": True}
    dm = frozen_map(m)
    tenant = get_tenant(tenant_id)
    ids = records.identities_of(m, tenant)
    params = request_params(m, tenant)
    remaining: dict[str, int] = {}
    checked = files_left = lookups = outside = unreadable = unnamed = late_held = 0
    per_rule: dict[str, dict[str, int]] = {"pointer": {"objects": 0, "left": 0}}
    compared: dict[str, int] = {}
    #: (tenant, table) -> keys that stay by design (retained by law, on legal hold): a
    #: fresh search finding them again finds nothing left behind
    stays: dict[tuple[str, str], set[tuple[Any, ...]]] = {}
    exempt = {"retained": 0, "held": 0}
    with aws.counting() as io:
        for u in planned_units(m):
            identifying = set(identifying_of(m, u.tenant_id)) \
                if action == "anonymise" else None
            if identifying is not None:
                compared[u.tenant_id] = len(identifying)
            manifest = unit_manifest_of(m, u)
            tm = dm.tables[u.table]
            mine = stays.setdefault((u.tenant_id, u.table), set())
            mine.update(_key(tm, h["key"]) for h in manifest.get("held", []))
            exempt["held"] += len(manifest.get("held", []))
            if table_mode(dm, u.table, action, params) == "retain":
                mine.update(_key(tm, k) for k in manifest["keys"])
                exempt["retained"] += len(manifest["keys"])
            if table_mode(dm, u.table, action, params) in ("delete", "anonymise"):
                # pointers to buckets the map does not declare: the subject's files, left
                outside += int(manifest.get("outside", 0))
                # and values that name no file oblio can tell: they may be left
                unreadable += int(manifest.get("unreadable", 0))
                # file rules an item lacks an attribute for: no file named, none checked
                unnamed += int(manifest.get("unresolved", 0))
            r = _check(dm, action, u, manifest, marker=request_id, params=params,
                       keys=get_tenant(u.tenant_id).keys, identifying=identifying,
                       subject_ref=m.subject_ref or "")
            checked += r["checked"]
            # on hold since the plan: stays by design, as one held at the plan does
            mine.update(_key(tm, i) for i in r["late_held"])
            exempt["held"] += len(r["late_held"])
            late_held += len(r["late_held"])
            files_left += r["files_remaining"]
            for kind, got in r["files"].items():
                rule = per_rule.setdefault(kind, dict.fromkeys(got, 0))
                for k, v in got.items():
                    rule[k] += v
            if r["items_remaining"]:
                remaining[u.id] = r["items_remaining"]
        tenants = {u.tenant_id for u in planned_units(m)} | {tenant_id}
        if action in ("erase", "anonymise"):
            for t in sorted(tenants):
                # version 2 markers are per subject and role: read whole items to see them
                fp = find.walk(dm, t, ids, full_items=dm.version >= 2,
                               include_expired=True)
                lookups += fp.queries
                for name, roles in fp.roles.items():
                    # in a role: done when her marker for it is there, or the role keeps
                    left = [i for r, items in roles.items()
                            if role_mode(dm, name, r, action, params) != "none"
                            for i in items if dm.marker(m.subject_ref or "", r) not in i
                            and _key(dm.tables[name], i) not in stays.get((t, name), set())]
                    if left:
                        remaining[f"{t}/{name}"] = max(remaining.get(f"{t}/{name}", 0),
                                                       len(left))
                for name, items in fp.items.items():
                    kept = stays.get((t, name), set())
                    items = [i for i in items if _key(dm.tables[name], i) not in kept]
                    if action == "anonymise":
                        # found again is fine for what is out of scope or anonymised
                        if table_mode(dm, name, action, params) == "none":
                            continue
                        items = [i for i in items if dm.marker(m.subject_ref or "") not in i]
                    if items:
                        remaining[f"{t}/{name}"] = max(remaining.get(f"{t}/{name}", 0),
                                                       len(items))
        # the subject's access-export archives an erasure deleted: no version may be left
        archived = (records.plan_of(m).get("archives") or []) if action == "erase" else []
        archives_left = exports.archives_left(archived)
    fresh = action in ("erase", "anonymise")
    per_rule["pointer"]["outside_the_map"] = outside
    per_rule["pointer"]["unreadable"] = unreadable
    if unnamed:
        # said, not failed: an item without the attribute a key template or prefix names
        # usually has no such file, and oblio cannot tell which one it would be
        per_rule["unnamed"] = {"item_rules": unnamed}
    files_checked = sum(f.get("objects", 0) + f.get("prefixes", 0) for f in per_rule.values())
    # retained items are read back (their explicit erase rules checked) but stay by design:
    # like held ones, they are not what a "passed" verification may be called on
    outcome = {**verdict(planned=checked - exempt["retained"] - late_held,
                         files_planned=files_checked + len(archived), remaining=remaining,
                         files_remaining=files_left + outside + unreadable + archives_left,
                         exempt=exempt["retained"] + exempt["held"]),
               "items_checked": checked, "remaining": remaining,
               "files_remaining": files_left + outside + unreadable + archives_left,
               "identity_lookup_tenants": len(tenants),
               # what was checked, so that nobody reads "passed" into what was not
               "checked": {"items_read_back": checked,
                           "files": per_rule,
                           "archives": {"objects": len(archived), "left": archives_left},
                           "fresh_search": {"tenants": len(tenants) if fresh else 0,
                                            "queries": lookups},
                           # read back as kept, and not counted as left by a fresh search
                           "exempt": exempt},
               "at": clock.iso()}
    if action == "anonymise":
        # no value of the subject's identifying attributes may survive in a rewritten item
        outcome["identifying_values_compared"] = sum(compared.values())
    records.record_unit(m, "_verification", outcome, dict(io.calls))
    return {"passed": outcome["passed"]}
