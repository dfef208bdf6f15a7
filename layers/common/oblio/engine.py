"""Actions on one table's share of a subject's items, and the check that they took.

One engine for every action. `mode()` says what an action does to a table's items: delete
them, rewrite them by the attribute rules (keep, null, mask, generalise, hmac, pseudonym),
update given attributes (rectification), set or clear the restriction flag, or nothing.
`apply_unit` does it in batched calls: BatchWriteItem for deletes, BatchGetItem + one
conditional UpdateItem per rewritten item, DeleteObjects for every version of the S3 objects
the items point to. A unit applied twice changes nothing the second time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from oblio.crypto import TenantKeys
from oblio.datamap import DataMap, TableMap
from oblio.identity import IDENTITY_KINDS
from oblio.planner import Item
from oblio.store import objects
from oblio.store import tables as store

Action = Literal["erase", "anonymise", "rectify", "restrict", "unrestrict", "object", "export",
                 "purge"]
#: "read": the items are collected into an access export (oblio.exporter), not changed
Mode = Literal["delete", "anonymise", "update", "flag", "unflag", "read", "none"]
#: "purge": a retention policy's delete, the items go whatever erasure would keep
ACTIONS: tuple[str, ...] = ("erase", "anonymise", "rectify", "restrict", "unrestrict", "object",
                            "export", "purge")
MASK = "xxx"
_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?")
COUNTS = ("matched", "deleted", "anonymised", "updated", "kept", "files_deleted")


@dataclass(frozen=True)
class Unit:
    """One table of one tenant in a request's plan; its manifest lists the item keys."""

    tenant_id: str
    table: str

    @property
    def id(self) -> str:
        return f"{self.tenant_id}/{self.table}"


def changes_for(t: TableMap, changes: dict[str, Any]) -> dict[str, Any]:
    """The attributes of `t` that a rectification's `changes` set: an identity kind (email,
    phone, external_id) reaches every attribute holding that identity; any other name, the
    attribute of that name. A key attribute is included: `apply_unit` moves such an item to
    its new key (DynamoDB cannot rewrite a key in place)."""
    out: dict[str, Any] = {}
    for name, value in changes.items():
        if name in IDENTITY_KINDS:
            for attr, kind in t.identity_attributes().items():
                if kind == name:
                    out[attr] = value
        elif name in t.attributes:
            out[name] = value
    return out


def mode(t: TableMap, action: str, params: dict[str, Any] | None = None) -> Mode:
    """What `action` does to the table's items."""
    params = params or {}
    if action == "export":
        return "read"
    if action == "purge":
        return "delete"
    if action == "erase":
        return t.on_erase
    if action == "anonymise":
        scope = params.get("tables")
        return t.on_anonymise if not scope or t.table in scope or \
            params.get("_name") in scope else "none"
    if action == "rectify":
        return "update" if changes_for(t, params.get("changes") or {}) else "none"
    if action == "restrict":
        if t.restriction_flag:
            return "flag"
        return "delete" if t.pending_deliveries else "none"
    if action == "unrestrict":
        return "unflag" if t.restriction_flag else "none"
    if action == "object":
        wanted = set(params.get("purposes") or ())
        if t.pending_deliveries and (not wanted or wanted & set(t.purposes)):
            return "delete"
        return "none"
    raise ValueError(f"unknown action {action!r}")


def table_mode(dm: DataMap, name: str, action: str, params: dict[str, Any] | None = None
               ) -> Mode:
    """`mode` for the table named `name` in the map (a `tables` scope names map tables)."""
    return mode(dm.tables[name], action, {**(params or {}), "_name": name})


def rewrite(dm: DataMap, t: TableMap, item: Item, action: str, keys: TenantKeys,
            subject_ref: str) -> tuple[dict[str, Any], list[str]]:
    """The SET values and REMOVE names that the table's rules make of one item."""
    sets: dict[str, Any] = {}
    removes: list[str] = []
    for attr, value in item.items():
        if attr in t.key.names or attr == dm.anonymised_marker or \
                attr == dm.tenant_attribute:
            continue
        rule = t.rule(attr, action)
        if rule == "keep":
            continue
        if rule == "null":
            removes.append(attr)
        elif rule == "mask":
            sets[attr] = MASK
        elif rule == "generalise":
            if isinstance(value, str) and _DATE.match(value):
                sets[attr] = value[:7]  # a date or time to its month
            else:
                removes.append(attr)
        elif rule == "hmac":
            sets[attr] = "h_" + keys.hmac(f"attr:{t.table}.{attr}", str(value))[:32]
        elif rule.startswith("pseudonym:"):
            sets[attr] = rule.split(":", 1)[1].format(n=keys.pseudonym_number(subject_ref))
    return sets, removes


def value_refs(keys: TenantKeys, values: list[Any]) -> set[str]:
    """HMACs of identifying values, compared without case or surrounding blanks."""
    return {keys.hmac("value", str(v).strip().lower()) for v in values
            if isinstance(v, str | int) and str(v).strip()}


def identifying_values(dm: DataMap, name: str, items: list[Item]) -> list[Any]:
    """The values of a table's identity attributes (category identity, or holding an
    identity) in the subject's items: what must not survive anonymisation."""
    t = dm.tables[name]
    attrs = [a for a, spec in t.attributes.items()
             if (spec.category == "identity" or spec.identity) and a not in t.key.names]
    return [i[a] for i in items for a in attrs if a in i]


def apply_unit(dm: DataMap, action: str, unit: Unit, manifest: dict[str, Any],
               keys: TenantKeys, subject_ref: str, marker: str,
               params: dict[str, Any] | None = None) -> dict[str, int]:
    """Apply `action` to the unit's items and S3 objects; returns its counts."""
    t = dm.tables[unit.table]
    m = table_mode(dm, unit.table, action, params)
    item_keys: list[Item] = manifest["keys"]
    counts = dict.fromkeys(COUNTS, 0)
    counts["matched"] = len(item_keys)
    if m == "delete":
        store.batch_delete(t.table, item_keys)
        counts["deleted"] = len(item_keys)
    elif m == "anonymise":
        for item in store.batch_get(t.table, item_keys):
            done = item.get(dm.anonymised_marker)
            if done is not None:
                # done by this request before a retry, or by an earlier request: not again
                counts["anonymised" if done == marker else "kept"] += 1
                continue
            sets, removes = rewrite(dm, t, item, action, keys, subject_ref)
            sets[dm.anonymised_marker] = marker
            store.update(t.table, {k: item[k] for k in t.key.names}, sets, removes,
                         only_if_absent=dm.anonymised_marker)
            counts["anonymised"] += 1
    elif m in ("update", "flag", "unflag"):
        values = changes_for(t, (params or {}).get("changes") or {}) if m == "update" \
            else {t.restriction_flag or "": m == "flag"}
        if any(a in t.key.names for a in values):
            _move(t, item_keys, values)
            counts["updated"] = len(item_keys)
        else:
            for key in item_keys:
                store.update(t.table, key, values, [])
                counts["updated"] += 1
    else:
        counts["kept"] = len(item_keys)
    refs = [(b, k) for b, k in manifest.get("s3", [])]
    if refs and m in ("delete", "anonymise"):
        counts["files_deleted"] = objects.delete_all_versions(refs)
    return counts


def _move(t: TableMap, item_keys: list[Item], values: dict[str, Any]) -> None:
    """Rectify items whose key holds a changed value: each is written at its new key first,
    then removed from the old one, so that a retry finds it moved (the old key gone) and
    nothing is ever lost between the two."""
    items = store.batch_get(t.table, item_keys)
    moved = [{**item, **values} for item in items]
    gone = [{k: i[k] for k in t.key.names} for i, n in zip(items, moved, strict=True)
            if any(i[k] != n[k] for k in t.key.names)]
    store.batch_put(t.table, moved)
    store.batch_delete(t.table, gone)


def remaining_keys(dm: DataMap, action: str, unit: Unit, manifest: dict[str, Any],
                   marker: str, params: dict[str, Any] | None = None,
                   keys: TenantKeys | None = None, identifying: set[str] | None = None,
                   ) -> list[Item]:
    """Read the unit's items back; the keys of those not as the action left them: deleted
    ones must be gone; anonymised ones must carry the marker, no attribute whose rule removes
    it and no value of the subject's identifying attributes; updated ones must hold the new
    values."""
    t = dm.tables[unit.table]
    m = table_mode(dm, unit.table, action, params)
    item_keys: list[Item] = manifest["keys"]
    left = store.batch_get(t.table, item_keys) if item_keys and m != "none" else []
    bad: list[Item] = []
    for item in left:
        wrong = False
        if m == "delete":
            wrong = True
        elif m == "anonymise":
            own = [a for a in item if a not in t.key.names and a != dm.anonymised_marker
                   and a != dm.tenant_attribute]
            leaked = bool(identifying and keys and
                          value_refs(keys, [item[a] for a in own]) & identifying)
            wrong = item.get(dm.anonymised_marker) is None or leaked or any(
                t.rule(a, action) == "null" for a in own)
        elif m == "update":
            want = changes_for(t, (params or {}).get("changes") or {})
            wrong = any(item.get(a) != v for a, v in want.items())
        elif m in ("flag", "unflag"):
            wrong = item.get(t.restriction_flag or "") is not (m == "flag")
        if wrong:
            bad.append({k: item[k] for k in t.key.names})
    return bad


def check_unit(dm: DataMap, action: str, unit: Unit, manifest: dict[str, Any],
               marker: str, params: dict[str, Any] | None = None,
               keys: TenantKeys | None = None, identifying: set[str] | None = None,
               ) -> dict[str, int]:
    """What `remaining_keys` finds, counted, and S3 objects with any version left."""
    m = table_mode(dm, unit.table, action, params)
    bad = remaining_keys(dm, action, unit, manifest, marker, params, keys, identifying)
    refs = [(b, k) for b, k in manifest.get("s3", [])]
    files = objects.versions_left(refs) if refs and m in ("delete", "anonymise") else 0
    return {"checked": len(manifest["keys"]), "items_remaining": len(bad),
            "files_remaining": files}
