"""Search: where one subject appears, answered at once through the same walk as every action.
A read: it changes nothing, and leaves an audit entry."""

from __future__ import annotations

from typing import Any

from oblio.control import audit, exports, ledger, records, suppression
from oblio.control.tenants import Principal, get_tenant, reachable_tenants
from oblio.core import datamap
from oblio.core.bodies import SearchBody, SubjectQuery
from oblio.core.errors import Invalid
from oblio.core.identity import parse_subject, readings
from oblio.pipeline import find


def search(principal: Principal, q: SubjectQuery | SearchBody) -> dict[str, Any]:
    """`GET /v1/subjects?email=...` (or phone, external_id; include_children=true), or
    `POST /v1/subjects/search` with the same in its body."""
    dm = datamap.current()
    raw = q.identities()
    if not raw and isinstance(q, SearchBody):
        raise Invalid("subject", "name the subject by at least one of email, phone, "
                                 "external_id: {\"subject\": {\"email\": ...}}")
    if not raw:
        raise Invalid("email", "name the subject with ?email=, ?phone= or ?external_id=")
    out: dict[str, Any] = {}
    for tenant in reachable_tenants(principal, q.include_children):
        ids = parse_subject(raw, tenant.phone_region, tuple(dm.identities))
        fp = find.walk(dm, tenant.tenant_id, ids)
        tables: dict[str, Any] = {}
        pending: list[dict[str, Any]] = []
        for name in dm.order:
            t = dm.tables[name]
            items = fp.items.get(name, [])
            keys = [find.key_of(t, i) for i in items]
            # the physical table is the tenant's own (silo tenancy: `acme-employees`)
            tables[name] = {"table": t.physical(tenant.tenant_id), "count": len(items),
                            "keys": keys,
                            "files": len(find.s3_refs(dm, t, items, tenant.tenant_id))}
            if fp.roles.get(name):  # items she is in only in a role (e.g. as an author)
                tables[name]["roles"] = {r: {"count": len(i), "keys": [find.key_of(t, x)
                                                                      for x in i]}
                                         for r, i in fp.roles[name].items()}
            if t.files:  # files by key template or prefix
                fr = find.file_refs(dm, t, items, tenant.tenant_id)
                tables[name]["files"] += len(fr["templated"])
                tables[name]["file_prefixes"] = len(fr["prefixes"])
            if t.pending_deliveries and items:
                pending.append({"table": name, "count": len(items), "keys": keys})
        restricted = any(i.get(t.restriction_flag) is True for name, t in dm.tables.items()
                         if t.restriction_flag for i in fp.items.get(name, []))
        refs = {k: tenant.keys.hmac(k, v) for k, v in ids.items()}
        supp = suppression.lookup(tenant.tenant_id, refs)
        consents = ledger.subject_ledger(tenant, ids)  # one Query per identity
        out[tenant.tenant_id] = {
            "subject_ref": tenant.keys.subject_ref(ids), "found": fp.total > 0,
            "total": fp.total, "tables": tables, "pending_deliveries": pending,
            "suppressed": bool(supp), "suppression": supp, "restricted": restricted,
            "consents": {p: s["status"] for p, s in consents["state"].items()},
            "consent_history": consents["history"],
            "queries": fp.queries,
        }
    own = out.pop(principal.tenant_id)
    audit.append(principal.tenant_id, "subject_searched", actor=principal.key_id,
                 subject_ref=own["subject_ref"],
                 details={"found": own["total"], "children": sorted(out)})
    return {**own, "tables_found": sum(1 for t in own["tables"].values() if t["count"]),
            "children": out, **readings(raw, get_tenant(principal.tenant_id).phone_region)}


def export_rule(principal: Principal, subject_ref: str) -> dict[str, Any]:
    """The tenant's export-before-anonymisation rule for this subject: whether it applies,
    and the unexpired export that satisfies it (read only when the rule applies: it looks
    through the tenant's requests)."""
    if not get_tenant(principal.tenant_id).settings.get("require_export_before_anonymisation"):
        return {"required": False, "export": None}
    m = exports.latest_valid_export(principal.tenant_id, subject_ref)
    export = None if m is None else {"request_id": m.request_id,
                                     "expires_at": records.result_of(m).get("expires_at")}
    return {"required": True, "export": export}
