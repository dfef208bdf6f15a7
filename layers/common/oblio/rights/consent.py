"""Consent through the API: record a grant or a withdrawal, read a subject's ledger, hand
out signed one-click withdrawal links, and honour them (`/v1/public/unsubscribe`)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from oblio.control import links, suppression
from oblio.control.ledger import (
    LINK_SOURCE,
    append,
    check_channel,
    check_purpose,
    connect,
    record_key,
    state_sk,
    subject_keys,
    subject_ledger,
    validate,
)
from oblio.control.tenants import Principal, get_tenant
from oblio.core import clock
from oblio.core.bodies import ConsentBody, IdentityQuery, LinkBody, parse
from oblio.core.errors import Invalid
from oblio.core.identity import parse_subject, readings
from oblio.core.observability import logger
from oblio.store.models import ConsentModel, plain


def record(principal: Principal, body: ConsentBody) -> dict[str, Any]:
    """`POST /v1/consents`: record a grant or a withdrawal (a withdrawal of a purpose never
    granted is recorded too: it is evidence). Returns what was recorded and what it changed."""
    tenant = get_tenant(principal.tenant_id)
    fields = validate(tenant, body)
    ids = parse_subject(body.subject.identities(), tenant.phone_region)
    return {**append(tenant, subject_keys(tenant, ids), tenant.keys.subject_ref(ids), fields,
                     recorded_by=principal.key_id),
            **readings(body.subject.identities(), tenant.phone_region)}


# -- reading ----------------------------------------------------------------------------------


def read(principal: Principal, q: IdentityQuery) -> dict[str, Any]:
    """`GET /v1/consents?email=...` (or phone, external_id)."""
    tenant = get_tenant(principal.tenant_id)
    raw = q.identities()
    if not raw:
        raise Invalid("email", "name the subject with ?email=, ?phone= or ?external_id=")
    return {**subject_ledger(tenant, parse_subject(raw, tenant.phone_region)),
            **readings(raw, tenant.phone_region)}


# -- one-click withdrawal links ---------------------------------------------------------------


def link(principal: Principal, body: LinkBody | Mapping[str, Any], base_url: str,
         ) -> dict[str, Any]:
    """`POST /v1/consents/links`: a signed one-click withdrawal URL for a subject and purpose,
    for the tenant to put in its messages. The token holds HMACs, never the identity."""
    if not isinstance(body, LinkBody):
        body = parse(LinkBody, body)
    tenant = get_tenant(principal.tenant_id)
    purpose, channel = check_purpose(tenant, body.purpose), check_channel(body.channel)
    ids = parse_subject(body.subject.identities(), tenant.phone_region)
    expires = clock.now() + timedelta(days=body.expires_in_days)
    token = links.sign(tenant, {"v": 1, "t": tenant.tenant_id, "k": subject_keys(tenant, ids),
                                "r": tenant.keys.subject_ref(ids), "p": purpose, "c": channel,
                                "x": int(expires.timestamp()), "n": secrets.token_hex(8),
                                "i": int(clock.now().timestamp())})
    return {"url": f"{base_url.rstrip('/')}/v1/public/unsubscribe?token={token}",
            "token": token, "purpose": purpose, "channel": channel,
            "subject_ref": tenant.keys.subject_ref(ids), "expires_at": clock.iso(expires)}


def _erased_since_issued(tenant_id: str, refs: dict[str, str], issued: Any) -> bool:
    """Whether the person was erased after the link was made (`i`, a Unix time): what such
    a link withdraws was erased with her. A link made after her erasure (she came back) is
    hers now, and its click is recorded; a link without `i` (made before links carried it)
    is taken as older than any erasure."""
    if not isinstance(issued, int):
        return any(s["reason"] == suppression.ERASURE
                   for s in suppression.lookup(tenant_id, refs))
    return suppression.erased_since(tenant_id, refs, clock.iso(
        datetime.fromtimestamp(issued, tz=UTC)))


@dataclass(frozen=True)
class Withdrawn:
    """What a one-click link did: the organisation no longer uses the person's data for the
    purpose (recorded now, or already by an earlier click or an erasure)."""

    organisation: str
    purpose: str


def unsubscribe(token: str | None) -> Withdrawn:
    """`GET /v1/public/unsubscribe?token=...`: withdraw the link's purpose. A link not signed
    by oblio (InvalidLink), or expired (ExpiredLink), changes nothing. A second click of the
    same link records nothing more."""
    tenant, claims = links.verify(token, needs={"p": str, "k": list, "c": str, "n": str})
    purpose, keys = str(claims["p"]), [str(k) for k in claims["k"]]
    if not keys or any("#" not in k for k in keys):
        raise links.InvalidLink("this link is not valid")
    done = Withdrawn(tenant.name, purpose)
    refs = {k.split("#", 1)[0]: k.split("#", 1)[1] for k in keys}
    if _erased_since_issued(tenant.tenant_id, refs, claims.get("i")):
        return done  # the person was erased: nothing is kept about them, nothing to add
    connect()
    states = ConsentModel.batch_get(
        [record_key(tenant.tenant_id, state_sk(k, purpose)) for k in keys], consistent_read=True)
    for state in states:
        proof = plain(state.proof)
        if state.status == "withdrawn" and (proof or {}).get("link_id") == claims["n"]:
            return done
    append(tenant, keys, str(claims.get("r") or "") or None,
           {"purpose": purpose, "status": "withdrawn", "channel": str(claims["c"]),
            "source": LINK_SOURCE, "proof": {"link_id": str(claims["n"])}},
           recorded_by=LINK_SOURCE)
    logger.info("consent withdrawn through a link", extra={"tenant_id": tenant.tenant_id,
                                                           "subject_ref": claims.get("r")})
    return done


# -- demo ---------------------------------------------------------------------------------------
