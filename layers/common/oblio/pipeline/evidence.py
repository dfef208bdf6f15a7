"""Evidence: how a subject's request ends. Finish writes the audit entry, the certificate
of an erasure or anonymisation, the suppression entries and the consent ledger's records,
emits the events, and ends the request; Fail records what the state machine caught."""

from __future__ import annotations

from typing import Any

from oblio.control import audit, ledger, records, suppression
from oblio.control.tenants import get_tenant
from oblio.core import clock
from oblio.core.boundary import caught
from oblio.core.datamap import DataMap
from oblio.core.observability import count, logger
from oblio.pipeline import outcome, rules
from oblio.pipeline.work import frozen_map, work_prefix
from oblio.store import objects, outbound
from oblio.store.models import RequestModel

SUBJECT_EVENTS: dict[str, tuple[str, ...]] = {
    "erase": ("SubjectErased",), "anonymise": ("SubjectAnonymised",),
    "rectify": ("SubjectRectified",), "restrict": ("SubjectRestricted",),
    # an objection's ConsentChanged events come from the ledger, one per purpose withdrawn
    "unrestrict": ("SubjectRestricted",), "object": ("SubjectRestricted",),
}


def certificate(*, request_id: str, tenant_id: str, type_: str, subject_ref: str,
                tables: dict[str, Any], tenants: dict[str, Any], verification: dict[str, Any],
                suppressed: int, started_at: str | None, entry: audit.Entry,
                datamap_digest: str | None) -> dict[str, Any]:
    """The evidence of an erasure or anonymisation: no personal data, only counts, the
    verification's outcome and the hash of the audit entry that records it."""
    return {"request_id": request_id, "tenant_id": tenant_id, "type": type_,
            "subject_ref": subject_ref, "tables": tables, "tenants": tenants,
            "verification": verification, "suppression_entries": suppressed,
            "started_at": started_at, "completed_at": clock.iso(),
            "audit_entry": {"id": entry.id, "hash": entry.hash},
            "datamap_digest": datamap_digest}


def _counts(m: RequestModel, dm: DataMap) -> dict[str, dict[str, dict[str, int]]]:
    units = records.units_of(m)
    plan_ = records.plan_of(m)
    out: dict[str, dict[str, dict[str, int]]] = {}
    tenants = sorted({u["tenant_id"] for u in plan_.get("units", [])} | {m.tenant_id})
    for t in tenants:
        out[t] = {}
        for name in dm.order:
            got = units.get(f"{t}/{name}", {})
            out[t][name] = {k: int(got.get(k, 0)) for k in rules.COUNTS}
    return out


def _rectification_audit(m: RequestModel, tenant: Any) -> dict[str, Any]:
    """HMACs of the new value of each change and of the old values of each attribute it
    replaced: the audit proves what changed without holding either value."""
    changes = tenant.keys.decrypt(m.changes_enc) if m.changes_enc else {}
    old: dict[str, set[str]] = {}
    for u in (records.units_of(m)).values():
        for attr, refs in (u.get("old") or {}).items():
            old.setdefault(attr, set()).update(refs)
    return {"new": {name: sorted(rules.value_refs(tenant.keys, [value]))
                    for name, value in changes.items()},
            "old": {attr: sorted(refs) for attr, refs in sorted(old.items())}}


def finish(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """Audit entry, certificate (erasure, anonymisation), suppression entries, events; the
    request completes."""
    m = records.load(tenant_id, request_id)
    if m.status in records.ENDED:
        return {"status": m.status}
    dm = frozen_map(m)
    tenant = get_tenant(tenant_id)
    plan_ = records.plan_of(m)
    units = records.units_of(m)
    verification = units.get("_verification", {"passed": False, "reason": "not run"})
    counts = _counts(m, dm)
    totals = {k: sum(c[k] for t in counts.values() for c in t.values()) for k in rules.COUNTS}
    status = outcome.status_of(verification)
    io = {k: int(v) for k, v in (records.io_of(m)).items()}
    io.setdefault("dynamodb.Scan", 0)
    options = records.options_of(m)
    body: dict[str, Any] = {
        "found": totals["matched"] > 0,  # the ledger's records count too (below)
        "type": m.type, "verification_passed": verification.get("passed") is True,
        "total": totals["matched"],
        "counts": {t: {n: c for n, c in tables.items() if c["matched"]}
                   for t, tables in counts.items()}}
    if action == "rectify":
        body.update(_rectification_audit(m, tenant))
    if action == "object":
        body["purposes"] = options.get("purposes") or ["marketing"]
    # the consent ledger: an erasure removes the subject's records, an objection records the
    # withdrawals (once: a retried finish reuses the outcome)
    consented = units.get("_consent") or {}
    if action in ("erase", "object") and "_consent" not in units:
        consented = ledger.on_request_finished(m, action, plan_.get("identity_refs", {}),
                                             body.get("purposes") or [])
        records.record_unit(m, "_consent", consented, {})
    if action == "erase":
        body["consent_records_deleted"] = sum(consented.get("deleted", {}).values())
    found = body["found"] = outcome.found(totals["matched"],
                                          int(body.get("consent_records_deleted", 0)))
    exempt = outcome.exemptions(dm, counts, units) if action in ("erase", "anonymise") \
        else None
    if exempt and (exempt["retained"] or exempt["held"]):
        # the audit says what stays and under which law; the reasons are the certificate's
        body["retained"], body["held"] = exempt["retained"], exempt["held"]
        body["legal_bases"] = sorted({e["legal_basis"] for e in exempt.get("exemptions", [])})
    if "_audit" in units:  # a retried finish: the entry is written already
        entry = audit.Entry(units["_audit"]["id"], units["_audit"]["hash"])
    else:
        entry = audit.append(tenant_id, f"{m.type}_completed", actor="oblio",
                             request_id=request_id, subject_ref=m.subject_ref, details=body)
        records.record_unit(m, "_audit", {"id": entry.id, "hash": entry.hash}, {})
    refs = plan_.get("identity_refs", {})
    suppressed = 0
    # a subject found nowhere was not erased: the suppression list would say it was
    if (action == "erase" and found) or \
            (action == "object" and "marketing" in body["purposes"]):
        reason = "erasure" if action == "erase" else "objection:marketing"
        for t, kinds in refs.items():
            suppressed += suppression.add(t, kinds, reason=reason, request_id=request_id)
    result: dict[str, Any] = {
        "found": found, "tables": counts[tenant_id],
        "tenants": {t: {"tables": c} for t, c in counts.items() if t != tenant_id},
        "totals": totals, "verification": verification, "io": io,
        "queries_planned": plan_.get("queries", 0), "audit_entry": entry.id}
    if action in ("erase", "anonymise"):
        result["certificate"] = certificate(
            request_id=request_id, tenant_id=tenant_id, type_=m.type or "",
            subject_ref=m.subject_ref or "", tables=counts[tenant_id],
            tenants={t: c for t, c in counts.items() if t != tenant_id},
            verification=verification, suppressed=suppressed,
            started_at=plan_.get("started_at"), entry=entry,
            datamap_digest=plan_.get("datamap_digest"))
        result["certificate"] = {"found": found, **(exempt or {}), **result["certificate"]}
        if not found:
            result["certificate"]["statement"] = outcome.NOT_FOUND_STATEMENT
    if action == "erase":
        result["certificate"]["consent_records_deleted"] = body["consent_records_deleted"]
    if consented:
        result["consent"] = consented
    if suppressed:
        result["suppression_entries"] = suppressed
    if not any((plan_.get("found") or {}).values()):
        result["message"] = "no item of the subject was found in any mapped table" + (
            ": nothing was erased and the subject was not added to the suppression list"
            if action == "erase" and not found else "")
    elif exempt and outcome.exemption_message(exempt):
        result["message"] = outcome.exemption_message(exempt)
    elif action == "anonymise" and totals["anonymised"] + totals["deleted"] == 0:
        result["message"] = "the subject was already anonymised: nothing changed"
    if exempt:  # at the top, after found: what stays by design
        result = {"found": found, **exempt, **result}
    # events and clean-up before the status: a client that sees "completed" can rely on them
    for t in counts:
        for detail_type in SUBJECT_EVENTS.get(action, ()):
            outbound.emit(detail_type, t, request_id=request_id, subject_ref=m.subject_ref,
                        type=m.type, parent_tenant_id=tenant_id if t != tenant_id else None,
                        found=any(c["matched"] for c in counts[t].values()) or (
                            t == tenant_id and found),
                        **({"purposes": body["purposes"]} if action == "object" else {}))
    outbound.emit("RequestCompleted", tenant_id, request_id=request_id,
                subject_ref=m.subject_ref, type=m.type, status=status)
    objects.delete_prefix(work_prefix(m))
    records.end(m, status, result)
    logger.info("request finished", extra={"request_id": request_id, "status": status,
                                           "subject_ref": m.subject_ref})
    return {"status": status}


def fail(request_id: str, tenant_id: str, error: dict[str, Any]) -> dict[str, Any]:
    """Record the failure that the state machine caught; `retry` resumes from here."""
    m = records.load(tenant_id, request_id)
    if m.status in records.ENDED:
        return {"status": m.status}
    code, message = caught(error)
    failure = {"code": code, "message": message, "at": clock.iso(),
               "attempt": int(m.attempt or 1)}
    count("RequestsCompleted", type=m.type or "", status="failed")
    m.update(actions=[
        RequestModel.status.set("failed"), RequestModel.error.set(failure),
        RequestModel.timeline.set(RequestModel.timeline.append([records.event(
            event="failed", code=code)])),
    ])
    audit.append(tenant_id, "request_failed", actor="oblio", request_id=request_id,
                 subject_ref=m.subject_ref, details={"code": code})
    outbound.emit("RequestFailed", tenant_id, request_id=request_id, subject_ref=m.subject_ref,
                type=m.type, code=code)
    logger.warning("request failed", extra={"request_id": request_id, "code": code})
    return {"status": "failed"}
