"""Data-map tools that look at live tables and buckets (the local stack's, or any endpoint):
`oblio datamap check FILE --data` samples them and warns about what the map misses, and
`oblio datamap draft --table NAME ...` writes a first map from their key schemas, indexes and
a sample of items.

Both read a bounded sample (`--sample`, a few hundred items per table, one paginated Scan of
that many, and as many object keys per bucket): they are diagnostics a person runs, never on
the path of a request. Nothing they print repeats an item's value: a warning names the table,
the attribute (or path) and how many sampled items showed it.
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import phonenumbers
import yaml
from boto3.dynamodb.types import TypeDeserializer

from oblio.core.datamap import DataMap
from oblio.core.identity import normalise_email

EMAIL = re.compile(r"^\s*[^@\s]+@[^@\s]+\.[^@\s]+\s*$")
PHONE = re.compile(r"^\s*\+?[\d][\d ().-]{6,}\d\s*$")
_deser = TypeDeserializer()


def _plain(image: dict[str, Any]) -> dict[str, Any]:
    return {k: _deser.deserialize(v) for k, v in image.items()}


def sample(dynamodb: Any, table: str, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` items of `table` (a bounded, paginated Scan)."""
    out: list[dict[str, Any]] = []
    params: dict[str, Any] = {"TableName": table, "Limit": min(limit, 100)}
    while len(out) < limit:
        resp = dynamodb.scan(**params)
        out += [_plain(i) for i in resp.get("Items", [])]
        if "LastEvaluatedKey" not in resp:
            break
        params["ExclusiveStartKey"] = resp["LastEvaluatedKey"]
    return out[:limit]


def paths(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every leaf of an item as (path, value): `address.street`, `annexes[].s3_key`."""
    if isinstance(value, dict):
        for k, v in value.items():
            yield from paths(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list | set | tuple) and not isinstance(value, str | bytes):
        for v in value:
            yield from paths(v, f"{prefix}[]")
    else:
        yield prefix, value


def looks_like(value: Any) -> str | None:
    """'email' or 'phone' when a value looks like one (a guess, for warnings and drafts)."""
    if not isinstance(value, str):
        return None
    if EMAIL.match(value):
        return "email"
    if PHONE.match(value) and sum(c.isdigit() for c in value) >= 8:
        return "phone"
    return None


def _canonical(kind: str, value: Any, region: str | None) -> bool:
    if not isinstance(value, str):
        return True
    try:
        if kind == "email":
            return normalise_email(value) == value
        if kind == "phone":
            n = phonenumbers.parse(value, region)
            return phonenumbers.format_number(n, phonenumbers.PhoneNumberFormat.E164) == value
    except Exception:  # noqa: BLE001 - a value that does not parse is not canonical
        return False
    return True


@dataclass
class Report:
    warnings: list[str] = field(default_factory=list)
    sampled: dict[str, int] = field(default_factory=dict)
    objects: dict[str, int] = field(default_factory=dict)

    def warn(self, text: str) -> None:
        self.warnings.append(text)


def check_data(dm: DataMap, dynamodb: Any, s3: Any, limit: int = 300,
               region: str | None = None) -> Report:
    """Sample every mapped table and bucket and say what the map misses."""
    rep = Report()
    pointed: set[tuple[str, str]] = set()
    for physical in sorted({t.table for t in dm.tables.values()}):
        if "{" in physical:  # silo tenancy: one table per tenant
            rep.warn(f"table {physical}: one table per tenant (a template of the tenant); not "
                     "sampled: check a tenant's table by mapping it under its own name")
            continue
        entries = {n: t for n, t in dm.tables.items() if t.table == physical}
        items = sample(dynamodb, physical, limit)
        rep.sampled[physical] = len(items)
        named: set[str] = {dm.tenant_attribute, dm.anonymised_marker}
        for t in entries.values():
            named |= set(t.attributes) | set(t.key.names)
            if t.ttl_attribute:
                named.add(t.ttl_attribute)
        unknown: Counter[str] = Counter()
        odd: Counter[tuple[str, str]] = Counter()
        looks: Counter[tuple[str, str]] = Counter()
        for item in items:
            for p, v in paths(item):
                top = p.split(".")[0].split("[")[0]
                if top not in named:
                    unknown[p] += 1
                    kind = looks_like(v)
                    if kind:
                        looks[(p, kind)] += 1
            for t in entries.values():
                for attr, spec in t.attributes.items():
                    v = item.get(attr)
                    if v is None:
                        continue
                    if spec.identity in ("email", "phone") and \
                            not _canonical(spec.identity, v, region):
                        odd[(attr, spec.identity)] += 1
                    if spec.category == "non_personal" and looks_like(v):
                        looks[(attr, str(looks_like(v)))] += 1
                    if spec.s3 and isinstance(v, str):
                        pointed.add((dm.buckets.get(spec.s3, ""), v))
        for (attr, kind), n in sorted(odd.items()):
            rep.warn(f"table {physical}: attribute '{attr}' holds {kind} values not stored "
                     f"canonically in {n} of {len(items)} sampled items (no shadow attribute "
                     "covers them: a search by the canonical form will not find them)")
        for p, n in sorted(unknown.items()):
            rep.warn(f"table {physical}: attribute '{p}' is in {n} of {len(items)} sampled "
                     "items but the map does not name it (give it a category and a rule)")
        for (p, kind), n in sorted(looks.items()):
            rep.warn(f"table {physical}: attribute '{p}' holds values that look like "
                     f"{kind}s in {n} sampled items, but the map calls it non-personal or does "
                     "not know it")
    for bucket in sorted(set(dm.buckets.values())):
        if "{" in bucket:
            rep.warn(f"bucket {bucket}: one bucket per tenant (a template of the tenant); not "
                     "sampled")
            continue
        keys = _object_keys(s3, bucket, limit)
        rep.objects[bucket] = len(keys)
        loose: Counter[str] = Counter()
        for key in keys:
            if (bucket, key) not in pointed:
                loose[key.rsplit("/", 1)[0] + "/" if "/" in key else "(top level)"] += 1
        for prefix, n in sorted(loose.items()):
            rep.warn(f"bucket {bucket}: {n} object(s) under {prefix} are not pointed to by any "
                     "sampled item's S3 attribute: no rule of the map may reach them")
    return rep


def _object_keys(s3: Any, bucket: str, limit: int) -> list[str]:
    try:
        resp = s3.list_objects_v2(Bucket=bucket, MaxKeys=limit)
    except s3.exceptions.NoSuchBucket:
        return []
    return [o["Key"] for o in resp.get("Contents", [])]


# -- draft ------------------------------------------------------------------------------------

_CONTACT = re.compile(r"name|address|street|city|zip|postcode|birth|gender", re.I)
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


def _guess(attr: str, values: list[Any]) -> tuple[dict[str, Any], str]:
    """An attribute's rule and the reason of the guess."""
    kinds = Counter(k for k in (looks_like(v) for v in values) if k)
    if kinds:
        kind = kinds.most_common(1)[0][0]
        return ({"category": "identity", "identity": kind, "anonymise": "null"},
                f"values look like {kind}s")
    if _CONTACT.search(attr):
        return {"category": "contact", "anonymise": "null"}, "its name suggests contact data"
    if values and all(isinstance(v, str) and _DATE.match(v) for v in values):
        return ({"category": "behaviour", "anonymise": "generalise"},
                "dates: kept as their month")
    if values and all(isinstance(v, int | float | Decimal | bool) for v in values):
        return {"category": "non_personal"}, "numbers or flags"
    return {"category": "content", "anonymise": "null"}, "free values: treated as content"


def draft(dynamodb: Any, tables: list[str], buckets: list[str], limit: int = 300,
          s3: Any = None) -> str:
    """A starting data map (YAML) for live tables, every guess marked `# review`."""
    objects = {(b, k) for b in buckets for k in (_object_keys(s3, b, limit) if s3 else [])}
    bucket_of = {b: re.sub(r"[^a-z0-9_]", "_", b.lower()) for b in buckets}
    described = {t: dynamodb.describe_table(TableName=t)["Table"] for t in tables}
    partitions = Counter(next(k["AttributeName"] for k in d["KeySchema"]
                              if k["KeyType"] == "HASH") for d in described.values())
    tenant = partitions.most_common(1)[0][0]
    notes: list[str] = []
    doc: dict[str, Any] = {"version": 1, "name": "draft", "tenant_attribute": tenant,
                           "identities": ["email", "phone", "external_id"],
                           "buckets": {v: k for k, v in bucket_of.items()}, "tables": {}}
    keys_by_table: dict[str, dict[str, str]] = {}
    for name, d in described.items():
        keys_by_table[name] = {k["KeyType"]: k["AttributeName"] for k in d["KeySchema"]}
    logical = {t: re.sub(r"[^a-z0-9_]", "_", t.lower()) for t in tables}
    for physical, d in described.items():
        lname = logical[physical]
        items = sample(dynamodb, physical, limit)
        key = keys_by_table[physical]
        entry: dict[str, Any] = {"table": physical, "key": {"partition": key["HASH"]}}
        if key.get("RANGE"):
            entry["key"]["sort"] = key["RANGE"]
        values: dict[str, list[Any]] = defaultdict(list)
        nested: set[str] = set()
        for item in items:
            for p, v in paths(item):
                if "." in p or "[" in p:
                    nested.add(p)
                values[p.split(".")[0].split("[")[0]].append(v)
        attrs: dict[str, Any] = {}
        for attr in sorted(values):
            if attr == tenant:
                continue
            if attr in key.values():
                attrs[attr] = {"category": "technical", "anonymise": "keep"}
                continue
            if any(o.get("RANGE") == attr for t, o in keys_by_table.items() if t != physical):
                attrs[attr] = {"category": "technical", "anonymise": "keep", "erase": "null"}
                notes.append(f"{lname}.{attr}: technical (another table's key: a reference) "
                             "# review")
                continue
            hits = [b for b in buckets
                    if any(isinstance(v, str) and (b, v) in objects for v in values[attr])]
            if hits:
                attrs[attr] = {"category": "content", "anonymise": "null",
                               "s3": bucket_of[hits[0]]}
                notes.append(f"{lname}.{attr}: an S3 pointer into {hits[0]} (its values are "
                             "object keys there) # review")
                continue
            rule, why = _guess(attr, values[attr])
            attrs[attr] = rule
            notes.append(f"{lname}.{attr}: {rule['category']} ({why}) # review")
        finds: list[dict[str, Any]] = []
        if key.get("RANGE") and key["HASH"] == tenant:
            kind = Counter(looks_like(v) for v in values.get(key["RANGE"], [])).most_common(1)
            if kind and kind[0][0]:
                finds.append({"identity": kind[0][0], "attribute": key["RANGE"]})
        gsis = d.get("GlobalSecondaryIndexes", [])
        for g in gsis:
            gk = {k["KeyType"]: k["AttributeName"] for k in g["KeySchema"]}
            if gk.get("HASH") != tenant or not gk.get("RANGE"):
                continue
            attr = gk["RANGE"]
            ident = (attrs.get(attr) or {}).get("identity")
            if ident:
                finds.append({"identity": ident, "index": g["IndexName"], "attribute": attr})
                continue
            for other, okeys in keys_by_table.items():
                if other != physical and okeys.get("RANGE") == attr:
                    finds.append({"from": f"{logical[other]}.{attr}", "index": g["IndexName"],
                                  "attribute": attr})
        entry["find"] = finds
        entry["on_erase"] = "delete"
        entry["attributes"] = attrs
        for p in sorted(nested):
            notes.append(f"{lname}.{p}: a nested path (this map version names top-level "
                         "attributes: the rule of its top-level attribute applies) # review")
        doc["tables"][lname] = entry
    # a table no find reaches from an identity cannot be in the map: leave it out and say so
    while True:
        gone = [n for n, e in doc["tables"].items() if not e["find"]]
        if not gone:
            break
        for n in gone:
            del doc["tables"][n]
            notes.append(f"{n}: left out: no index keyed by ({tenant}, an identity or another "
                         "mapped table's key) reaches it; add a find by hand # review")
        for e in doc["tables"].values():
            e["find"] = [f for f in e["find"]
                         if "from" not in f or f["from"].split(".")[0] in doc["tables"]]
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True, width=100)
    header = ("# A first data map drafted from live tables: every guess below is marked for "
              "review.\n# Check it with `oblio datamap check FILE` and compare it with your "
              "data with `--data`.\n")
    return header + "\n".join(f"# {n}" for n in notes) + "\n" + text
