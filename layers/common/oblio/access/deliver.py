"""Deliver: an access export's end. Finish, through the closing sequence every subject
request shares (`evidence.finish_request`), writes the result (archive size, items per table,
expiry, io), the audit entry and the `RequestCompleted` event, and tells the requester (an
e-mail that says nothing about the subject; a self-service request's person gets a signed
link to the archive instead); `completed_with_errors` when a file was missing. `download`
answers `GET /v1/requests/{id}/download`: a presigned URL of minutes; 409 when there is no
archive to give; 410 once the archive's date has passed, whatever S3 still holds."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from oblio.access.package import FORMAT, archive_name
from oblio.control import audit, exports, links, records
from oblio.control.tenants import Principal, Tenant, get_tenant
from oblio.core import clock
from oblio.core.errors import Conflict, Gone, Invalid, MessageRefused, TransientError
from oblio.core.identity import normalise_email
from oblio.core.observability import logger
from oblio.core.settings import get_settings
from oblio.pipeline import evidence, work
from oblio.store import archives, outbound
from oblio.store.models import RequestModel

ARCHIVE_READY = frozenset({"completed", "completed_with_errors"})


def notify_option(body: dict[str, Any], tenant: Tenant) -> dict[str, str]:
    """The request's `notify_email` (the requester's address, not the subject's), validated
    like an identity and held encrypted until the export is finished."""
    raw = body.get("notify_email")
    if raw is None:
        return {}
    if body.get("type") != "access":
        raise Invalid("notify_email", "notify_email applies to access requests: oblio "
                                      "e-mails that address when the archive is ready")
    address = normalise_email(raw, field="notify_email")
    return {"notify_enc": tenant.keys.encrypt({"email": address})}


# -- where things are ----------------------------------------------------------------------

def _counts(m: RequestModel, units: dict[str, Any]) -> dict[str, dict[str, dict[str, int]]]:
    out: dict[str, dict[str, dict[str, int]]] = {m.tenant_id: {}}
    missing: dict[str, int] = {}
    for f in (units.get("_package") or {}).get("missing", []):
        missing[f["table"]] = missing.get(f["table"], 0) + 1
    for u in work.planned_units(m):
        got = units.get(u.id) or {}
        out.setdefault(u.tenant_id, {})[u.table] = {
            "matched": int(got.get("matched", 0)), "exported": int(got.get("exported", 0)),
            "files": int(got.get("files", 0)),
            "files_missing": missing.get(u.table, 0) if u.tenant_id == m.tenant_id else 0}
    return out


def _notify(m: RequestModel, tenant: Tenant, expires: str) -> dict[str, Any]:
    """E-mail the requester that the archive is ready: the request id and the date, nothing
    about the subject. A refused address does not fail the export; throttling is retried.
    When the person asked through the self-service page, they get a signed link instead."""
    options = records.options_of(m)
    if options.get("self_service"):  # the person asked: they get a signed link
        return tell_export_ready(m, tenant, expires)
    blob = options.get("notify_enc")
    if not blob:
        return {"sent": False, "reason": "no notify_email in the request"}
    address = tenant.keys.decrypt(blob)["email"]
    text = (f"The access export of request {m.request_id} is ready.\n\n"
            f"Download it before {expires[:16].replace('T', ' ')} UTC: "
            f"GET /v1/requests/{m.request_id}/download with an API key of {tenant.name} gives "
            "a link that works for a few minutes. After that date the archive is deleted.\n\n"
            "This message says nothing about the person the export is about.\n")
    try:
        outbound.send_mail(address, "Your data export is ready", text)
    except MessageRefused as exc:  # throttling (TransientError) is retried by the workflow
        logger.warning("export e-mail refused", extra={"request_id": m.request_id,
                                                       "code": exc.provider_code})
        return {"sent": False, "reason": exc.provider_code, "at": clock.iso()}
    return {"sent": True, "at": clock.iso()}


def finish(request_id: str, tenant_id: str) -> dict[str, Any]:
    """The result, the audit entry, the e-mail and the event; the request completes
    (`completed_with_errors` when a file the items point to was missing)."""
    return evidence.finish_request(request_id, tenant_id, _ending)


def _ending(m: RequestModel) -> evidence.Ending:
    """What an access export says as it ends: the archive made, and the requester told."""
    tenant = get_tenant(m.tenant_id)
    units = records.units_of(m)
    made = units["_package"]
    counts = _counts(m, units)
    totals = evidence.totals_of(counts, ("matched", "exported", "files", "files_missing"))
    status = "completed_with_errors" if made["files_missing"] else "completed"
    export = {"size": int(made["size"]), "sha256": made["sha256"],
              "items": totals["exported"], "files": int(made["files"]),
              "files_missing": int(made["files_missing"]), "expires_at": made["expires_at"],
              "ttl_days": int(made["ttl_days"]), "format": FORMAT}
    details = {"type": "access", "status": status, "size": export["size"],
               "sha256": export["sha256"], "items": export["items"],
               "files": export["files"], "files_missing": export["files_missing"],
               "expires_at": export["expires_at"],
               "tables": {n: c["exported"] for n, c in counts[m.tenant_id].items()}}

    def result(entry: audit.Entry) -> dict[str, Any]:
        notified = units.get("_notify")
        if notified is None:
            notified = _notify(m, tenant, export["expires_at"])
            records.record_unit(m, "_notify", notified, {})
            m.update(actions=[RequestModel.options["notify_enc"].remove()])
        redacted = {u.table: units[u.id]["redacted"] for u in work.planned_units(m)
                    if u.tenant_id == m.tenant_id and (units.get(u.id) or {}).get("redacted")}
        out: dict[str, Any] = {
            "export": export, "expires_at": export["expires_at"],
            "missing_files": made.get("missing", []), "redacted": redacted,
            "notified": bool(notified.get("sent"))}
        if not totals["exported"]:
            out["message"] = ("no item of the subject was found in any mapped table: the "
                              "archive says so")
        return out

    return evidence.Ending(status=status, counts=counts, totals=totals,
                           found=totals["exported"] > 0, details=details, result=result)


# -- download --------------------------------------------------------------------------------


def download(principal: Principal, request_id: str) -> dict[str, Any]:
    """A presigned URL of the request's archive, valid for minutes (never past the archive's
    own expiry); 409 when there is no archive to give, 410 when it has expired."""
    return presigned(records.load(principal.tenant_id, request_id), actor=principal.key_id)


def presigned(m: RequestModel, actor: str) -> dict[str, Any]:
    """What `download` answers, for a request already loaded (the API key's tenant, or the
    person's signed link of a self-service request); the download is audited as `actor`'s."""
    request_id = m.request_id
    if m.type != "access":
        raise Conflict(f"request {request_id} is of type {m.type}; only access requests "
                       "have an archive to download", code="not_an_access_request",
                       details={"type": m.type})
    if m.status not in ARCHIVE_READY:
        raise Conflict(f"the request is {m.status}: its archive is ready once the request is "
                       f"completed; poll GET /v1/requests/{request_id}", code="export_not_ready",
                       details={"status": m.status})
    export = (records.result_of(m)).get("export") or {}
    expires = export.get("expires_at")
    now = clock.now()
    if not expires or clock.parse(expires) <= now:
        raise Gone(f"the archive expired on {expires}; file a new access request for a fresh "
                   "one", code="export_expired", details={"expired_at": expires})
    s = get_settings()
    bucket = s.bucket("exports")
    key = exports.archive_key(m.tenant_id, request_id)
    if not archives.exists(bucket, key):
        raise Gone("the archive is no longer stored; file a new access request for a fresh "
                   "one", code="export_expired", details={"expired_at": expires})
    seconds = int(min(s.presign_seconds, (clock.parse(expires) - now).total_seconds()))
    url = archives.presign_get(bucket, key, seconds, archive_name(request_id))
    audit.append(m.tenant_id, "export_downloaded", actor=actor,
                 request_id=request_id, subject_ref=m.subject_ref,
                 details={"url_seconds": seconds})
    return {"url": url, "expires_at": clock.iso(now + timedelta(seconds=seconds)),
            "archive_expires_at": expires, "size": export.get("size"),
            "sha256": export.get("sha256")}



# -- the export, handed to the person who asked through the self-service page ---------------

EXPORT_LINK = "export-link"


def export_link(m: RequestModel, tenant: Tenant, expires: str) -> str:
    """The person's link to their archive: signed for this request, valid until the archive
    expires. It names the request, never the person."""

    options = records.options_of(m)
    base = get_settings().public_base_url or \
        (options.get("self_service") or {}).get("base_url") or ""
    token = links.sign(tenant, {"v": 1, "t": tenant.tenant_id, "r": m.request_id,
                                  "x": int(clock.parse(expires).timestamp())}, use=EXPORT_LINK)
    return f"{base.rstrip('/')}/v1/public/requests/{m.request_id}/download?token={token}"


def tell_export_ready(m: RequestModel, tenant: Tenant, expires: str) -> dict[str, Any]:
    """Send the person who asked for their data the link to it, at the address they proved.
    A message that cannot be sent does not fail the export: the result says so, and the
    tenant can still download the archive and hand it over."""
    kind, address = next(iter(records.identities_of(m, tenant).items()))
    until = expires[:16].replace("T", " ")
    try:
        outbound.tell(kind, address, f"Your data from {tenant.name} is ready",
              f"The copy of your data that you asked {tenant.name} for (request "
              f"{m.request_id}) is ready.\n\nDownload it here before {until} UTC:\n"
              f"{export_link(m, tenant, expires)}\n\nAfter that date it is deleted. Keep "
              "this link to yourself: anyone who has it can download your data.\n",
              tenant_id=tenant.tenant_id, request_id=m.request_id)
    except (TransientError, MessageRefused):
        return {"sent": False, "reason": "not_sent", "at": clock.iso(), "to": "subject"}
    return {"sent": True, "at": clock.iso(), "to": "subject"}
