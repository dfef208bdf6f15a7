"""The rules of every action, as pure decisions: what an action does to a table's items
(`mode`: delete them, rewrite them by the attribute rules, update given attributes, set or
clear the restriction flag, or nothing), what a rewrite makes of one item, which values
identify the subject. `pipeline.apply` carries them out; `pipeline.verify` checks them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from oblio.control.crypto import TenantKeys
from oblio.core import paths, shadows, templates
from oblio.core.datamap import DataMap, TableMap
from oblio.core.identity import IDENTITY_KINDS
from oblio.core.paths import Location
from oblio.pipeline.find import Item

Action = Literal["erase", "anonymise", "rectify", "restrict", "unrestrict", "object", "export",
                 "purge"]


#: "read": the items are collected into an access export (oblio.exporter), not changed
#: "retain": the law requires the items kept (an exemption); only explicit `erase:` rules
Mode = Literal["delete", "anonymise", "retain", "update", "flag", "unflag", "read", "none"]

#: the modes that destroy data, which a legal hold blocks
DESTRUCTIVE: frozenset[str] = frozenset({"delete", "anonymise", "retain"})


#: "purge": a retention policy's delete, the items go whatever erasure would keep
ACTIONS: tuple[str, ...] = ("erase", "anonymise", "rectify", "restrict", "unrestrict", "object",
                            "export", "purge")


MASK = "xxx"


_DATE = re.compile(r"^\d{4}-\d{2}(-\d{2})?")


COUNTS = ("matched", "deleted", "anonymised", "updated", "kept", "files_deleted", "retained",
          "held")


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
    # an identity stored as typed gets its new canonical form in its shadow too, so that
    # the old one is neither found nor kept
    for attr, shadow in shadows.names(t).items():
        a = t.attributes[attr]
        canonical = shadows.shadow_value(a.identity or "", out[attr], a.region) \
            if attr in out else None
        if canonical is not None:
            out[shadow] = canonical
    return out


def located(item: Item, values: dict[str, Any]) -> dict[Location, Any]:
    """A rectification's values for one item: a top-level attribute is set as it is, a path
    wherever the item has it (a member of a map that exists, every element of a list)."""
    out: dict[Location, Any] = {}
    for attr, value in values.items():
        if not paths.nested(attr):
            out[attr] = value
            continue
        for loc, _ in paths.values(item, attr):
            out[loc] = value
    return out


def holds(item: Item, values: dict[str, Any]) -> bool:
    """The item holds the values: each top-level attribute equal, each path equal wherever
    the item has it."""
    for attr, value in values.items():
        if not paths.nested(attr):
            if item.get(attr) != value:
                return False
        elif any(v != value for _, v in paths.values(item, attr)):
            return False
    return True


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


def role_mode(dm: DataMap, name: str, role: str, action: str,
              params: dict[str, Any] | None = None) -> Mode:
    """What `action` does to the items of table `name` that she appears in only in `role`:
    the role's on_erase / on_anonymise ("keep": nothing), a read for an export, nothing for
    the other actions (her rectification or restriction does not change others' items)."""
    r = dm.tables[name].roles[role]
    if action == "export":
        return "read"
    if action == "erase":
        return "none" if r.on_erase == "keep" else r.on_erase
    if action == "anonymise":
        if table_mode(dm, name, action, params) == "none":
            return "none"  # out of the anonymisation's scope of tables
        return "none" if r.on_anonymise == "keep" else r.on_anonymise
    return "none"


def role_rewrite(t: TableMap, role: str, item: Item, action: str, keys: TenantKeys,
                 subject_ref: str) -> tuple[dict[Location, Any], list[Location]]:
    """What `role`'s rules make of an item she appears in only in that role: the attributes
    the role names are rewritten, everything else (about someone else) is kept."""
    r = t.roles[role]
    sets: dict[Location, Any] = {}
    removes: list[Location] = []
    for attr in r.attributes:
        for loc, v in paths.values(item, attr):
            apply_rule(r.rule(attr, action), attr, loc, v, t, keys, subject_ref, sets,
                       removes)
    removes += role_shadows(t, role, item, action)
    return sets, removes


def role_shadows(t: TableMap, role: str, item: Item, action: str) -> list[Location]:
    """The shadows (canonical copies) of the as-typed identities a role rewrites that the
    item holds: they go with the value they copy."""
    r = t.roles[role]
    return [shadow for attr, shadow in shadows.names(t).items()
            if attr in r.attributes and r.rule(attr, action) != "keep" and shadow in item]


def role_remains(t: TableMap, role: str, item: Item, action: str) -> list[Location]:
    """The places of an item in `role` that the role's rules remove and the item holds."""
    r = t.roles[role]
    return [loc for attr in r.attributes if r.rule(attr, action) == "null"
            for loc, _ in paths.values(item, attr)] + role_shadows(t, role, item, action)


def table_mode(dm: DataMap, name: str, action: str, params: dict[str, Any] | None = None
               ) -> Mode:
    """`mode` for the table named `name` in the map (a `tables` scope names map tables)."""
    return mode(dm.tables[name], action, {**(params or {}), "_name": name})


def places(dm: DataMap, t: TableMap, item: Item, action: str
           ) -> Iterator[tuple[str, str, Location, Any]]:
    """Each place of the item that a rule decides on alone, with that rule: (the attribute
    path that decides it, the rule, the location, the value). A rule on a path (`address.
    street`, `annexes[].s3_key`) decides only what the path reaches; inside a map or list
    that holds mapped paths, what the map does not name follows its nearest mapped
    ancestor's rule (none: it goes, as an unmapped top-level attribute does). Keys, the
    tenant attribute and oblio's markers are never rewritten. The shadow of an identity
    stored as typed (its canonical copy) is kept only where that identity is kept, and
    removed wherever its rule changes it (an HMAC or a pseudonym has no canonical form)."""
    shadowed = {shadow: attr for attr, shadow in shadows.names(t).items()}
    for attr, value in item.items():
        if attr in t.key.names or dm.is_marker(attr) or attr == dm.tenant_attribute:
            continue
        if attr in shadowed:
            kept = t.rule(shadowed[attr], action) == "keep"
            yield attr, "keep" if kept else "null", attr, value
            continue
        for owner, loc, v in t.tree.walk(attr, value):
            name = t.path_names.get(owner) if owner else None
            # no mapped ancestor: unknown to the map, so it goes ("null")
            rule = t.rule(name, action) if name is not None else "null"
            yield name or paths.location_text(loc), rule, loc, v


def rewrite(dm: DataMap, t: TableMap, item: Item, action: str, keys: TenantKeys,
            subject_ref: str) -> tuple[dict[Location, Any], list[Location]]:
    """The SET values and REMOVE locations that the table's rules make of one item (see
    `places`). A top-level location is its name, a nested one a tuple of names and
    indexes."""
    sets: dict[Location, Any] = {}
    removes: list[Location] = []
    for attr, rule, loc, v in places(dm, t, item, action):
        apply_rule(rule, attr, loc, v, t, keys, subject_ref, sets, removes)
    return sets, removes


def to_remove(dm: DataMap, t: TableMap, item: Item, action: str) -> list[Location]:
    """The places of the item whose rule removes them ("null"): what a rewritten item must
    no longer hold."""
    return [loc for _, rule, loc, _ in places(dm, t, item, action) if rule == "null"]


def apply_rule(rule: str, attr: str, loc: Location, value: Any, t: TableMap,
                keys: TenantKeys, subject_ref: str, sets: dict[Location, Any],
                removes: list[Location]) -> None:
    if rule == "keep":
        return
    if rule == "null":
        removes.append(loc)
    elif rule == "mask":
        sets[loc] = MASK
    elif rule == "generalise":
        if isinstance(value, str) and _DATE.match(value):
            sets[loc] = value[:7]  # a date or time to its month
        else:
            removes.append(loc)
    elif rule == "hmac":
        sets[loc] = "h_" + keys.hmac(f"attr:{t.table}.{attr}", str(value))[:32]
    elif rule.startswith("pseudonym:"):
        sets[loc] = rule.split(":", 1)[1].format(n=keys.pseudonym_number(subject_ref))


def held(t: TableMap, item: Item) -> bool:
    """The item is on legal hold: its hold attribute is true or a non-empty string."""
    if t.legal_hold is None:
        return False
    flag = item.get(t.legal_hold.attribute)
    return flag is True or (isinstance(flag, str) and flag.strip().lower() not in
                            ("", "false", "no", "0"))


def hold_reason(t: TableMap, item: Item) -> str:
    """Why an item is held, as results and certificates show it: the reason attribute (a
    case number or short text, with e-mails and numbers cut) or the map's reason."""
    from oblio.core.boundary import scrub

    hold = t.legal_hold
    if hold is None:
        return ""
    raw = item.get(hold.reason_attribute) if hold.reason_attribute else None
    if isinstance(raw, str) and raw.strip():
        return scrub(raw.strip())[:120]
    return hold.reason


def split_held(t: TableMap, items: list[Item]) -> tuple[list[Item], list[tuple[Item, str]]]:
    """The items an erasure or anonymisation acts on, and those on legal hold with their
    reasons."""
    acted: list[Item] = []
    kept: list[tuple[Item, str]] = []
    for item in items:
        if held(t, item):
            kept.append((item, hold_reason(t, item)))
        else:
            acted.append(item)
    return acted, kept


def retained_places(dm: DataMap, t: TableMap, item: Item) -> Iterator[tuple[str, str, Location,
                                                                             Any]]:
    """The places a retained item's explicit `erase:` rules rewrite (all else is kept); the
    shadow of an as-typed identity follows that identity's rule."""
    shadowed = {shadow: attr for attr, shadow in shadows.names(t).items()}
    for attr, rule, loc, v in places(dm, t, item, "erase"):
        spec = t.attributes.get(shadowed.get(attr, attr))
        if spec is not None and spec.erase is not None and rule != "keep":
            yield attr, rule, loc, v


def value_refs(keys: TenantKeys, values: list[Any]) -> set[str]:
    """HMACs of identifying values (the scalars inside maps and lists too), compared without
    case or surrounding blanks."""
    return {keys.hmac("value", str(v).strip().lower()) for v in paths.leaves(values)
            if isinstance(v, str | int) and str(v).strip()}


def key_fields(t: TableMap, item: Item) -> list[Any]:
    """The values a key template of the item carries beside the tenant (the e-mail inside
    `USER#{email}`): what the key holds that its attribute's value alone does not show."""
    out: list[Any] = []
    for part in t.key.parts:
        try:
            tpl = part.parsed
        except templates.TemplateError:
            continue
        got = tpl.match(item.get(part.attribute)) if tpl is not None else None
        out += [v for f, v in (got or {}).items() if f != templates.TENANT]
    return out


def identifying_values(dm: DataMap, name: str, items: list[Item]) -> list[Any]:
    """The values of a table's identity attributes (category identity, or holding an
    identity) in the subject's items: what must not survive anonymisation. An attribute about
    another person (`other_person`: the author of a review about her) is not hers: its value
    (another person's name, or a pseudonym an earlier request gave them) is kept."""
    t = dm.tables[name]
    attrs = [a for a, spec in t.attributes.items()
             if (spec.category == "identity" or spec.identity) and a not in t.key.names
             and not spec.other_person]
    # an identity stored as typed also in its canonical form (its shadow): a phone typed
    # "06 12 34 56 78" is "+33612345678" in the shadow, and neither may survive
    attrs += [shadow for attr, shadow in shadows.names(t).items()
              if not t.attributes[attr].other_person]
    return [v for i in items for a in attrs for _, v in paths.values(i, a)]
