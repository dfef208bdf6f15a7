"""Actions on one table's share of a subject's items, and the check that they took.

One engine for every action: `mode()` says whether the table's items are deleted or rewritten
by the attribute rules (keep, null, mask, generalise, hmac, pseudonym) for an action, and
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
from oblio.planner import Item
from oblio.store import objects
from oblio.store import tables as store

Action = Literal["erase", "anonymise"]
MASK = "xxx"
_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?")


@dataclass(frozen=True)
class Unit:
    """One table of one tenant in a request's plan; its manifest lists the item keys."""

    tenant_id: str
    table: str

    @property
    def id(self) -> str:
        return f"{self.tenant_id}/{self.table}"


def mode(t: TableMap, action: Action) -> Literal["delete", "anonymise"]:
    return t.on_erase if action == "erase" else t.on_anonymise


def rewrite(dm: DataMap, t: TableMap, item: Item, action: Action, keys: TenantKeys,
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


def apply_unit(dm: DataMap, action: Action, unit: Unit, manifest: dict[str, Any],
               keys: TenantKeys, subject_ref: str, marker: str) -> dict[str, int]:
    """Apply `action` to the unit's items and S3 objects; returns its counts."""
    t = dm.tables[unit.table]
    item_keys: list[Item] = manifest["keys"]
    counts = {"matched": len(item_keys), "deleted": 0, "anonymised": 0, "kept": 0,
              "files_deleted": 0}
    if mode(t, action) == "delete":
        store.batch_delete(t.table, item_keys)
        counts["deleted"] = len(item_keys)
    else:
        for item in store.batch_get(t.table, item_keys):
            sets, removes = rewrite(dm, t, item, action, keys, subject_ref)
            sets[dm.anonymised_marker] = marker
            store.update(t.table, {k: item[k] for k in t.key.names}, sets, removes,
                         marker=(dm.anonymised_marker, marker))
            counts["anonymised"] += 1
    refs = [(b, k) for b, k in manifest.get("s3", [])]
    if refs:
        counts["files_deleted"] = objects.delete_all_versions(refs)
    return counts


def check_unit(dm: DataMap, action: Action, unit: Unit, manifest: dict[str, Any],
               marker: str) -> dict[str, int]:
    """Read the unit's items back: deleted ones must be gone; rewritten ones must carry the
    marker and no attribute whose rule removes it. Returns what is left that should not be."""
    t = dm.tables[unit.table]
    item_keys: list[Item] = manifest["keys"]
    left = store.batch_get(t.table, item_keys) if item_keys else []
    bad = 0
    if mode(t, action) == "delete":
        bad = len(left)
    else:
        for item in left:
            if item.get(dm.anonymised_marker) != marker or any(
                    t.rule(a, action) == "null" for a in item
                    if a not in t.key.names and a != dm.anonymised_marker
                    and a != dm.tenant_attribute):
                bad += 1
    refs = [(b, k) for b, k in manifest.get("s3", [])]
    return {"checked": len(item_keys), "items_remaining": bad,
            "files_remaining": objects.versions_left(refs) if refs else 0}
