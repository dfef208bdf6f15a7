"""Signed links oblio hands to people (one-click consent withdrawal, a self-service
export's download): claims signed with a key derived from the tenant's data key, for one use.
A token holds HMACs and ids, never an identity."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

from oblio.control.tenants import Tenant, get_tenant
from oblio.core import clock
from oblio.core.errors import BadRequest, Gone, OblioError


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


#: what a link is for, signed with it: a token made for one use is refused for another
CONSENT_LINK = "consent-link"


def _signature(tenant: Tenant, payload: str, use: str) -> str:
    return _b64(hmac.new(tenant.keys.link_key, f"{use}:".encode() + payload.encode(),
                         hashlib.sha256).digest())


def sign(tenant: Tenant, claims: dict[str, Any], use: str = CONSENT_LINK) -> str:
    """A token of `claims` (`t` the tenant, `x` the expiry as a Unix time) signed for `use`."""
    payload = _b64(json.dumps(claims, separators=(",", ":"), sort_keys=True).encode())
    return f"{payload}.{_signature(tenant, payload, use)}"


class InvalidLink(BadRequest):
    """A link oblio did not sign as it is (cut, altered, made up)."""

    code = "invalid_link"


class ExpiredLink(Gone):
    code = "link_expired"


def verify(token: str | None, use: str = CONSENT_LINK,
           needs: Mapping[str, type | tuple[type, ...]] | None = None,
           ) -> tuple[Tenant, dict[str, Any]]:
    """The tenant and claims of a token oblio signed for `use`; InvalidLink or ExpiredLink
    otherwise. The signature is checked before any claim is trusted; then each claim of
    `needs` must be there, of its type (a token signed by an older or another version that
    lacks one is invalid, not an error)."""
    invalid = InvalidLink("this link is not valid")
    try:
        tenant = get_tenant(str(_claims(token)["t"]))
    except (KeyError, TypeError, OblioError):
        raise invalid from None
    claims = opened(tenant, token, use)
    if claims is None:
        raise invalid
    if any(not isinstance(claims.get(name), kind) for name, kind in (needs or {}).items()):
        raise invalid
    if not isinstance(claims.get("x"), int) or claims["x"] < clock.now().timestamp():
        raise ExpiredLink("this link has expired")
    return tenant, claims


def _claims(token: str | None) -> Any:
    """The claims a token says it has, unchecked (None: not a token's shape)."""
    if not token or len(token) > 2000 or token.count(".") != 1:
        return None
    try:
        return json.loads(_unb64(token.split(".")[0]))
    except (ValueError, binascii.Error):
        return None


def opened(tenant: Tenant, token: str | None, use: str) -> dict[str, Any] | None:
    """The claims of a token this tenant's key signed for `use` as it is, None for any other
    (cut, altered, made up, signed for another use or by another tenant). No expiry: a
    caller whose tokens expire checks `x` itself (`verify`)."""
    claims = _claims(token)
    if not isinstance(claims, dict) or claims.get("t") != tenant.tenant_id:
        return None
    payload, signature = str(token).split(".")
    # compare_digest refuses a str that is not ASCII (TypeError): no signature of ours is
    if not signature.isascii() or not hmac.compare_digest(signature,
                                                          _signature(tenant, payload, use)):
        return None
    return claims
