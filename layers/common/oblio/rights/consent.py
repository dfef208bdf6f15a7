"""Consent through the API: record a grant or a withdrawal, read a subject's ledger, hand
out signed one-click withdrawal links, and honour them (`/v1/public/unsubscribe`)."""

from __future__ import annotations

import html
import secrets
from datetime import timedelta
from typing import Any

from oblio.control import links, suppression
from oblio.control.ledger import (
    DEFAULT_LINK_DAYS,
    LINK_DAYS,
    LINK_SOURCE,
    append,
    connect,
    state_sk,
    subject_keys,
    subject_ledger,
    validate,
)
from oblio.control.links import ExpiredLink, InvalidLink
from oblio.control.tenants import Principal, get_tenant
from oblio.core import clock
from oblio.core.errors import BadRequest, Invalid
from oblio.core.identity import IDENTITY_KINDS, parse_subject
from oblio.core.observability import logger
from oblio.store.models import ConsentModel, plain


def record(principal: Principal, body: Any) -> tuple[int, dict[str, Any]]:
    """`POST /v1/consents`: record a grant or a withdrawal (a withdrawal of a purpose never
    granted is recorded too: it is evidence)."""
    tenant = get_tenant(principal.tenant_id)
    fields = validate(tenant, body)
    ids = parse_subject(body.get("subject"), tenant.phone_region)
    out = append(tenant, subject_keys(tenant, ids), tenant.keys.subject_ref(ids), fields,
                 recorded_by=principal.key_id)
    return 201, out


# -- reading ----------------------------------------------------------------------------------


def read(principal: Principal, params: dict[str, str]) -> dict[str, Any]:
    """`GET /v1/consents?email=...` (or phone, external_id)."""
    tenant = get_tenant(principal.tenant_id)
    raw = {k: v for k, v in params.items() if k in IDENTITY_KINDS}
    if not raw:
        raise Invalid("email", "name the subject with ?email=, ?phone= or ?external_id=")
    return subject_ledger(tenant, parse_subject(raw, tenant.phone_region))


# -- erasure and objection --------------------------------------------------------------------


def link(principal: Principal, body: Any, base_url: str) -> tuple[int, dict[str, Any]]:
    """`POST /v1/consents/links`: a signed one-click withdrawal URL for a subject and purpose,
    for the tenant to put in its messages. The token holds HMACs, never the identity."""
    tenant = get_tenant(principal.tenant_id)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object: {\"subject\": {\"email\": ...}, "
                         "\"purpose\": \"newsletter\"}")
    fields = validate(tenant, {**body, "status": "withdrawn",
                               "channel": body.get("channel", "email")})
    days = body.get("expires_in_days", DEFAULT_LINK_DAYS)
    if not isinstance(days, int) or isinstance(days, bool) or \
            not LINK_DAYS[0] <= days <= LINK_DAYS[1]:
        raise Invalid("expires_in_days", f"expires_in_days must be a whole number from "
                                         f"{LINK_DAYS[0]} to {LINK_DAYS[1]}")
    ids = parse_subject(body.get("subject"), tenant.phone_region)
    expires = clock.now() + timedelta(days=days)
    token = links.sign(tenant, {"v": 1, "t": tenant.tenant_id, "k": subject_keys(tenant, ids),
                          "r": tenant.keys.subject_ref(ids), "p": fields["purpose"],
                          "c": fields["channel"], "x": int(expires.timestamp()),
                          "n": secrets.token_hex(8)})
    return 201, {"url": f"{base_url.rstrip('/')}/v1/public/unsubscribe?token={token}",
                 "token": token, "purpose": fields["purpose"], "channel": fields["channel"],
                 "subject_ref": tenant.keys.subject_ref(ids), "expires_at": clock.iso(expires)}


def page(title: str, text: str) -> str:
    """A small HTML page for a person who followed a link (no key, no script)."""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta name=\"robots\" content=\"noindex\">"
            f"<title>{html.escape(title)}</title></head>"
            "<body style=\"font-family: sans-serif; max-width: 32em; margin: 3em auto\">"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>")


def unsubscribe(token: str | None) -> tuple[int, str]:
    """`GET /v1/public/unsubscribe?token=...`: withdraw the link's purpose, answer a small
    page. A link not signed by oblio, or expired, changes nothing and says so. A second click
    of the same link records nothing more."""
    try:
        tenant, claims = links.verify(token)
    except ExpiredLink:
        return 410, page("This link has expired",
                                "Nothing was changed. Use the link in a more recent "
                                "message, or contact the sender to withdraw your consent.")
    except InvalidLink:
        return 400, page("This link is not valid",
                                "Nothing was changed. The link may have been cut or altered: "
                                "copy the whole link from the message and try again.")
    purpose, keys = str(claims["p"]), [str(k) for k in claims["k"]]
    done = page("You are unsubscribed", f"{tenant.name} will no longer use your data for "
                                        f"{purpose}. You can close this page.")
    refs = {k.split("#", 1)[0]: k.split("#", 1)[1] for k in keys}
    if any(s["reason"] == "erasure" for s in suppression.lookup(tenant.tenant_id, refs)):
        return 200, done  # the person was erased: nothing is kept about them, nothing to add
    connect()
    states = ConsentModel.batch_get([(tenant.tenant_id, state_sk(k, purpose)) for k in keys],
                                    consistent_read=True)
    for state in states:
        proof = plain(state.proof)
        if state.status == "withdrawn" and (proof or {}).get("link_id") == claims["n"]:
            return 200, done
    append(tenant, keys, str(claims.get("r") or "") or None,
           {"purpose": purpose, "status": "withdrawn", "channel": str(claims["c"]),
            "source": LINK_SOURCE, "proof": {"link_id": str(claims["n"])}},
           recorded_by=LINK_SOURCE)
    logger.info("consent withdrawn through a link", extra={"tenant_id": tenant.tenant_id,
                                                           "subject_ref": claims.get("r")})
    return 200, done


# -- demo ---------------------------------------------------------------------------------------
