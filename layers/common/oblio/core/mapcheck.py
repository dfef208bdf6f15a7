"""What a data map's schema cannot say, checked at load: every table reachable from an
identity, every reference pointing at a mapped attribute, every path and template
resolvable, every read carrying the tenant, no personal attribute without a rule, no key
attribute that an action would have to change; and the map against the live tables. Every
problem is reported at once, each naming the table, the attribute or template, and the fix.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import phonenumbers

from oblio.core import layout, paths, templates
from oblio.core.identity import shadow_name
from oblio.core.mapmodel import PERSONAL, Attribute, DataMap, TableMap, parses


def problems(dm: DataMap) -> list[str]:
    out: list[str] = [f"register: tables names an unmapped table '{n}'"
                      for n in dm.processing_register.tables if n not in dm.tables]
    out += _bucket_problems(dm) + shared_table_problems(dm)
    for name, t in dm.tables.items():
        where = f"table '{name}'"
        if dm.version < 2 and t.key.partition_part.attribute != dm.tenant_attribute:
            out.append(f"{where}: its partition key '{t.key.partition_part.attribute}' must "
                       f"be the tenant attribute '{dm.tenant_attribute}' (every key carries "
                       "the tenant; version 2 also takes key templates and silo tables)")
        if not t.find:
            out.append(f"{where}: no 'find' rule, so it cannot be reached from any identity; "
                       "add a find by identity or 'from' another table")
        known = set(t.attributes) | set(t.key.names)
        out += _path_problems(where, t)
        out += _file_problems(dm, where, t)
        out += _exemption_problems(dm, where, t)
        out += _role_problems(dm, where, t)
        out += _layout_problems(dm, where, t)
        out += _key_identity_problems(where, t)
        for i, f in enumerate(t.find):
            fw = f"{where}, find #{i + 1}"
            if (f.identity is None) == (f.from_ is None):
                out.append(f"{fw}: give exactly one of 'identity' or 'from'")
            if f.identity and f.identity not in dm.identities:
                out.append(f"{fw}: identity '{f.identity}' is not in the map's identities")
            if f.attribute not in known:
                out.append(f"{fw}: attribute '{f.attribute}' is not an attribute of the table")
            elif parses(f.attribute) and paths.nested(f.attribute):
                out.append(f"{fw}: attribute '{f.attribute}' is a path inside a map or list, "
                           "which DynamoDB cannot query; find by a top-level attribute (copy "
                           "the value to one, with an index on it)")
            sort_attr = t.key.sort_part.attribute if t.key.sort_part else None
            if dm.version < 2 and f.index is None and f.attribute != sort_attr:
                out.append(f"{fw}: attribute '{f.attribute}' is not the table's sort key, so "
                           "it needs an 'index' keyed by the tenant attribute and it")
            elif dm.version >= 2 and f.attribute in known:
                out += layout.problems(dm, name, t, i + 1, f)
            if f.source:
                src, attr = f.source
                if src not in dm.tables:
                    out.append(f"{fw}: 'from: {f.from_}' names an unmapped table '{src}'")
                elif attr not in dm.tables[src].attributes and attr not in \
                        dm.tables[src].key.names:
                    out.append(f"{fw}: 'from: {f.from_}': table '{src}' has no attribute "
                               f"'{attr}'")
        if t.restriction_flag and t.restriction_flag not in t.attributes:
            out.append(f"{where}: restriction_flag '{t.restriction_flag}' is not an attribute "
                       "of the table")
        if t.sweep is not None:
            sw = t.sweep
            if sw.index is None and not sw.scan_segments:
                out.append(f"{where}: sweep needs an 'index' (keyed by its bucket and date "
                           "attributes) or 'scan_segments' (the declared Scan fallback)")
            for attr in ([sw.bucket_attribute] if sw.index else []) + \
                    ([sw.date_attribute] if sw.date_attribute else []):
                if attr not in known:
                    out.append(f"{where}: sweep attribute '{attr}' is not an attribute of "
                               "the table")
            if sw.index and not sw.date_attribute:
                out.append(f"{where}: a sweep index needs its 'date_attribute'")
        for attr in t.key_types:
            if attr not in known:
                out.append(f"{where}: key_types names '{attr}', which is not an attribute of "
                           "the table")
        if t.ttl_attribute and t.ttl_attribute not in known:
            out.append(f"{where}: ttl_attribute '{t.ttl_attribute}' is not an attribute of "
                       "the table")
        if t.purposes and not t.pending_deliveries:
            out.append(f"{where}: 'purposes' applies to pending deliveries; set "
                       "pending_deliveries: true or remove it")
        for attr, a in t.attributes.items():
            aw = f"{where}, attribute '{attr}'"
            if a.category in PERSONAL and a.anonymise is None and attr not in t.key.names:
                out.append(f"{aw}: category '{a.category}' is personal data but has no "
                           "'anonymise' rule (keep, null, mask, generalise, hmac, pseudonym:...)")
            if a.s3 and a.s3 not in dm.buckets:
                out.append(f"{aw}: s3 bucket '{a.s3}' is not declared under 'buckets'")
            if a.identity and a.identity not in dm.identities:
                out.append(f"{aw}: identity '{a.identity}' is not in the map's identities")
            out += _stored_problems(aw, attr, a, t)
            shadow = shadow_name(attr)
            taken = "oblio's anonymised marker" if dm.is_marker(shadow) else \
                "a mapped attribute" if shadow in known else None
            if a.stored == "as_typed" and taken:
                out.append(f"{aw}: its shadow '{shadow}' would be {taken}; rename the "
                           "attribute (or the other one), or store it canonically")
            rewrites = t.on_erase == "anonymise" or t.on_anonymise == "anonymise"
            # (a key that holds an identity is reported once, by _key_identity_problems)
            if attr in t.key.names and a.anonymise not in (None, "keep") and rewrites \
                    and not holds_identity(a):
                out.append(f"{aw}: it is part of the table's key, which cannot be rewritten in "
                           f"place, but its rule is '{a.anonymise}'; make the rule 'keep' or "
                           "make on_erase and on_anonymise 'delete'")
            if attr in t.key.names and a.erase not in (None, "keep") and \
                    t.on_erase == "anonymise" and not holds_identity(a):
                out.append(f"{aw}: it is part of the table's key, which cannot be rewritten in "
                           f"place, but its erase rule is '{a.erase}'; make the rule 'keep' or "
                           "make on_erase 'delete'")
    return out


def holds_identity(a: Attribute) -> bool:
    """The attribute holds an identity of the item's subject (category identity, or an
    identity kind), not another person's."""
    return (a.category == "identity" or a.identity is not None) and not a.other_person


def _key_identity_problems(where: str, t: TableMap) -> list[str]:
    """A table rewritten in place (on_erase or on_anonymise 'anonymise') must not have an
    identity attribute as its partition or sort key: DynamoDB cannot rewrite a key, so
    every item called anonymised would still name the subject. (An identity carried inside
    a key template is caught by the verification's leak check, not refused here.)"""
    modes = [f"{s}: anonymise" for s, m in (("on_erase", t.on_erase),
                                            ("on_anonymise", t.on_anonymise))
             if m == "anonymise"]
    out: list[str] = []
    for kind, part in (("partition", t.key.partition_part), ("sort", t.key.sort_part)):
        a = t.attributes.get(part.attribute) if part is not None else None
        if not modes or part is None or a is None or not holds_identity(a):
            continue
        rules = sorted({r for r in (a.anonymise, a.erase) if r not in (None, "keep")})
        also = f" (nor could its rule {' or '.join(repr(r) for r in rules)} be applied)" \
            if rules else ""
        kinds = f", identity '{a.identity}'" if a.identity else ""
        out.append(f"{where}, attribute '{part.attribute}': it is part of the table's key "
                   f"({kind}) and holds an identity (category '{a.category}'{kinds}), but "
                   f"{' and '.join(modes)} rewrites the item in place, and a key cannot be "
                   "rewritten: every item called anonymised would still name the "
                   f"subject{also}; make on_erase and on_anonymise 'delete' (or 'retain', "
                   "with the law that requires it), or key the table by an attribute that "
                   "is not an identity")
    return out


def _layout_problems(dm: DataMap, where: str, t: TableMap) -> list[str]:
    """Key templates, indexes, entity types and silo tables: version 2, templates that
    parse and name declared attributes, a table name that is a template of the tenant
    only."""
    out: list[str] = []
    v2_only = [what for what, used in (
        ("key templates", t.key.templated), ("'indexes'", bool(t.indexes)),
        ("'entity'", t.entity is not None),
        ("a table name template", templates.is_template(t.table))) if used]
    if v2_only and dm.version < 2:
        out.append(f"{where}: {', '.join(v2_only)} need version: 2")
    if templates.is_template(t.table):
        try:
            fields = templates.parse(t.table).fields
        except templates.TemplateError as exc:
            fields = ()
            out.append(f"{where}: table {exc}")
        if set(fields) != {templates.TENANT}:
            out.append(f"{where}: table name template '{t.table}' may name only {{tenant}} "
                       "(one table per tenant: silo tenancy)")
    known = set(t.attributes) | set(t.key.names)
    layouts = [("the table's key", t.key), *((f"index '{n}'", k) for n, k in t.indexes.items())]
    for label, keys in layouts:
        for part in keys.parts:
            if not part.template:
                continue
            try:
                tpl = templates.parse(part.template)
            except templates.TemplateError as exc:
                out.append(f"{where}: {label}, '{part.attribute}': {exc}")
                continue
            for name in tpl.fields:
                if name != templates.TENANT and name not in known:
                    out.append(f"{where}: {label}: template '{part.template}' of "
                               f"'{part.attribute}' names '{{{name}}}', which is not an "
                               "attribute of the table; declare it under 'attributes' "
                               "(it may live only inside the key) or use {tenant}")
    e = t.entity
    if e is not None:
        if (e.attribute is None) != (e.value is None):
            out.append(f"{where}: entity needs both 'attribute' and 'value' (the type "
                       "attribute and this entity's value of it)")
        if e.attribute and e.attribute not in t.attributes:
            out.append(f"{where}: entity attribute '{e.attribute}' is not an attribute of "
                       "the table; declare it (category non_personal)")
        elif e.attribute and t.rule(e.attribute) != "keep":
            out.append(f"{where}: entity attribute '{e.attribute}' must be kept ('keep' or "
                       "non_personal): a rewritten item would no longer be told apart")
    sw = t.sweep
    if sw is not None and sw.index is None and sw.scan_segments and \
            t.key.partition_part.attribute != dm.tenant_attribute:
        out.append(f"{where}: the sweep's Scan fallback tells tenants apart by the tenant "
                   f"attribute '{dm.tenant_attribute}', which is not this table's partition "
                   "key; give the sweep an index")
    return out


def shared_table_problems(dm: DataMap) -> list[str]:
    """Entity types sharing one physical table must each be selected by a sort-key prefix
    or a type value that no other entity of the table shares."""
    out: list[str] = []
    by_table: dict[str, list[str]] = {}
    for name, t in dm.tables.items():
        by_table.setdefault(t.table, []).append(name)
    for physical, names in sorted(by_table.items()):
        if len(names) < 2:
            continue
        selectors: dict[str, tuple[str | None, str | None]] = {}
        for name in names:
            t = dm.tables[name]
            try:
                prefix = layout.sort_prefix(t)
            except templates.TemplateError:
                prefix = None
            typed = t.entity.value if t.entity and t.entity.attribute else None
            if not prefix and typed is None:
                out.append(f"table '{name}': it shares table '{physical}' with "
                           f"{', '.join(repr(n) for n in names if n != name)} but no sort-key "
                           "prefix or type value selects its items; give its sort template a "
                           "constant start (e.g. 'PAYSLIP#{month}') or entity: {attribute, "
                           "value}")
            selectors[name] = (prefix, typed)
        for i, a in enumerate(names):
            for b in names[i + 1:]:
                (pa, ta), (pb, tb) = selectors[a], selectors[b]
                if not (pa or ta) or not (pb or tb):
                    continue
                types_differ = ta is not None and tb is not None and ta != tb
                prefixes_differ = bool(pa and pb and not pa.startswith(pb)
                                       and not pb.startswith(pa))
                if not types_differ and not prefixes_differ:
                    out.append(f"table '{a}' and table '{b}' share table '{physical}' and "
                               "nothing tells their items apart (sort-key prefixes "
                               f"'{pa or ''}' and '{pb or ''}'); give each a distinct prefix "
                               "or entity: {attribute, value}")
    return out


def _bucket_problems(dm: DataMap) -> list[str]:
    out: list[str] = []
    for logical, name in dm.buckets.items():
        if not templates.is_template(name):
            continue
        if dm.version < 2:
            out.append(f"bucket '{logical}': a bucket name template needs version: 2")
        try:
            fields = templates.parse(name).fields
        except templates.TemplateError as exc:
            out.append(f"bucket '{logical}': {exc}")
            continue
        if set(fields) != {templates.TENANT}:
            out.append(f"bucket '{logical}': name template '{name}' may name only {{tenant}} "
                       "(one bucket per tenant)")
    return out


def _role_problems(dm: DataMap, where: str, t: TableMap) -> list[str]:
    out: list[str] = []
    used = {f.role for f in t.find if f.role}
    if (used or t.roles) and dm.version < 2:
        out.append(f"{where}: roles need version: 2")
    for role in sorted(used - set(t.roles)):
        out.append(f"{where}: a find names the role '{role}', which 'roles' does not "
                   "declare; declare it with the attributes that name the subject")
    for role in sorted(set(t.roles) - used):
        out.append(f"{where}: role '{role}' is declared but no find names it; add "
                   f"'role: {role}' to the find that reaches those items, or remove it")
    for name, r in t.roles.items():
        for attr, rule in r.attributes.items():
            aw = f"{where}, role '{name}', attribute '{attr}'"
            if attr not in t.attributes and attr not in t.key.names:
                out.append(f"{aw}: not an attribute of the table; declare it under "
                           "'attributes'")
            rewrites = {x for x in (rule.anonymise, rule.erase) if x not in (None, "keep")}
            if attr in t.key.names and rewrites:
                out.append(f"{aw}: it is part of the table's key, which cannot be rewritten "
                           "in place; make the rule 'keep'")
    return out


def _exemption_problems(dm: DataMap, where: str, t: TableMap) -> list[str]:
    out: list[str] = []
    retains = "retain" in (t.on_erase, t.on_anonymise)
    if (retains or t.retain or t.legal_hold) and dm.version < 2:
        out.append(f"{where}: exemptions (on_erase: retain, retain, legal_hold) need "
                   "version: 2")
    if retains and t.retain is None:
        out.append(f"{where}: on_erase or on_anonymise is 'retain' but no 'retain: "
                   "{legal_basis, period}' says which law requires it and for how long")
    if t.retain is not None and not retains:
        out.append(f"{where}: 'retain' is given but neither on_erase nor on_anonymise is "
                   "'retain'; set on_erase: retain or remove it")
    hold = t.legal_hold
    if hold is not None:
        for setting, attr in (("attribute", hold.attribute),
                              ("reason_attribute", hold.reason_attribute)):
            if attr is None:
                continue
            if attr not in t.attributes and attr not in t.key.names:
                out.append(f"{where}: legal_hold {setting} '{attr}' is not an attribute of "
                           "the table; declare it under 'attributes'")
            elif parses(attr) and paths.nested(attr):
                out.append(f"{where}: legal_hold {setting} '{attr}' must be a top-level "
                           "attribute, not a path")
    return out


def _file_problems(dm: DataMap, where: str, t: TableMap) -> list[str]:
    """File rules: version 2, a declared bucket, exactly one of key and prefix, a template
    of declared attributes; a prefix that ends with '/' after its last field and names
    something of the item (else it would hold other subjects' files too)."""
    out: list[str] = []
    if t.files and dm.version < 2:
        out.append(f"{where}: 'files' (objects by key template or prefix) needs version: 2")
    known = set(t.attributes) | set(t.key.names)
    for i, r in enumerate(t.files):
        fw = f"{where}, files #{i + 1}"
        if r.bucket not in dm.buckets:
            out.append(f"{fw}: bucket '{r.bucket}' is not declared under 'buckets'")
        if (r.key is None) == (r.prefix is None):
            out.append(f"{fw}: give exactly one of 'key' (a key template) or 'prefix'")
            continue
        text = r.prefix if r.prefix is not None else r.key
        try:
            tpl = r.template
        except templates.TemplateError as exc:
            out.append(f"{fw}: {exc}")
            continue
        for name in tpl.fields:
            if name != templates.TENANT and name not in known:
                out.append(f"{fw}: template '{text}' names '{{{name}}}', which is not an "
                           "attribute of the table; declare it under 'attributes' or use "
                           "{tenant}")
        if not [f for f in tpl.fields if f != templates.TENANT]:
            out.append(f"{fw}: template '{text}' names no attribute of the item, so every "
                       "subject would get the same files; put the item's id in it, e.g. "
                       "'{tenant}/employees/{employee_id}/'")
        if r.prefix is not None and (tpl.constant or not tpl.parts[-1].endswith("/")):
            out.append(f"{fw}: prefix '{text}' must end with '/' after its last field, or "
                       "it would also reach the files of items whose id starts the same "
                       "(employee 1 and employee 10)")
    return out


def _stored_problems(aw: str, attr: str, a: Attribute, t: TableMap) -> list[str]:
    """`stored: as_typed` and `region` make sense only where a shadow can sit beside them."""
    out: list[str] = []
    if a.stored == "as_typed":
        if not a.identity:
            out.append(f"{aw}: 'stored: as_typed' applies to identity attributes; add "
                       "'identity: email|phone|external_id' or remove 'stored'")
        elif parses(attr) and paths.nested(attr):
            out.append(f"{aw}: 'stored: as_typed' needs a top-level attribute (its shadow "
                       f"'{shadow_name(attr)}' is indexed beside it); copy the value "
                       "to a top-level attribute")
        elif attr in t.key.names:
            out.append(f"{aw}: a key attribute cannot be 'stored: as_typed' (the key is "
                       "queried as stored); find through an index on its shadow "
                       f"'{shadow_name(attr)}' instead, or store it canonically")
    if a.region is not None:
        if a.identity != "phone":
            out.append(f"{aw}: 'region' applies to phone attributes only; remove it")
        elif a.region not in phonenumbers.SUPPORTED_REGIONS:
            out.append(f"{aw}: region '{a.region}' is not a region code; give a two-letter "
                       "ISO 3166 code such as 'FR' or 'DE'")
    return out


def _path_problems(where: str, t: TableMap) -> list[str]:
    """Attribute paths that do not parse, that use one attribute as both a map and a list,
    that reach into a key attribute; flags that must be top-level attributes."""
    out: list[str] = []
    shapes: dict[paths.Pattern, set[str]] = {}
    for attr in t.attributes:
        try:
            pat = paths.parse(attr)
        except paths.PathError as exc:
            out.append(f"{where}, attribute '{attr}': {exc}")
            continue
        if len(pat) > 1 and pat[0] in t.key.names:
            out.append(f"{where}, attribute '{attr}': it reaches into the key attribute "
                       f"'{pat[0]}', which holds no map or list; name the key attribute "
                       "itself")
        for i in range(1, len(pat)):
            shapes.setdefault(pat[:i], set()).add("list" if pat[i] == paths.ALL else "map")
    for pat, kinds in shapes.items():
        if len(kinds) > 1:
            name = paths.text(pat)
            out.append(f"{where}: attribute path '{name}' is used both as a list "
                       f"('{name}[]...') and as a map ('{name}.<member>'); give each path "
                       "the shape the items have")
    flags = {"restriction_flag": t.restriction_flag, "ttl_attribute": t.ttl_attribute}
    for setting, flag in flags.items():
        if flag and parses(flag) and paths.nested(flag):
            out.append(f"{where}: {setting} '{flag}' must be a top-level attribute, not a "
                       "path")
    return out


def live_problems(dm: DataMap, dynamodb: Any, tenants: Iterable[str] = ()) -> list[str]:
    """The map against the live tables: key schema, indexes (keys, projection ALL), sweep
    index. A silo table (a template of the tenant) is checked for each tenant given."""
    problems: list[str] = []
    for name, t in dm.tables.items():
        physical = [t.physical(x) for x in tenants] if templates.is_template(t.table) \
            else [t.table]
        for table in dict.fromkeys(physical):
            problems += _live_table(dm, name, t, table, dynamodb)
    return problems


def _live_table(dm: DataMap, name: str, t: TableMap, table: str, dynamodb: Any) -> list[str]:
    problems: list[str] = []
    where = f"table '{name}' ({table})"
    try:
        desc = dynamodb.describe_table(TableName=table)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        return [f"{where}: the table does not exist"]
    keys = {k["KeyType"]: k["AttributeName"] for k in desc["KeySchema"]}
    live = (keys.get("HASH"), keys.get("RANGE"))
    want = (*t.key.names, None)[:2]
    if live != want:
        problems.append(f"{where}: the map says key ({want[0]}, {want[1]}) but "
                        f"the table's key is ({live[0]}, {live[1]})")
    indexes = {i["IndexName"]: i for i in desc.get("GlobalSecondaryIndexes", [])}
    for f in t.find:
        if f.index is None:
            continue
        idx = indexes.get(f.index)
        if idx is None:
            problems.append(f"{where}: index '{f.index}' (used to find by "
                            f"'{f.attribute}') does not exist")
            continue
        ik = {k["KeyType"]: k["AttributeName"] for k in idx["KeySchema"]}
        iwant = (*layout.target(dm, t, f).names, None)[:2]
        if (ik.get("HASH"), ik.get("RANGE")) != iwant:
            problems.append(f"{where}: index '{f.index}' is keyed ({ik.get('HASH')}, "
                            f"{ik.get('RANGE')}), not ({iwant[0]}, {iwant[1]})")
        if idx["Projection"]["ProjectionType"] != "ALL":
            problems.append(f"{where}: index '{f.index}' must project ALL attributes")
    sw = t.sweep
    if sw is not None and sw.index:
        idx = indexes.get(sw.index)
        ik = {k["KeyType"]: k["AttributeName"] for k in (idx or {}).get("KeySchema", [])}
        if idx is None:
            problems.append(f"{where}: sweep index '{sw.index}' does not exist")
        elif (ik.get("HASH"), ik.get("RANGE")) != (sw.bucket_attribute, sw.date_attribute):
            problems.append(f"{where}: sweep index '{sw.index}' is keyed ({ik.get('HASH')}"
                            f", {ik.get('RANGE')}), not ({sw.bucket_attribute}, "
                            f"{sw.date_attribute})")
    return problems


