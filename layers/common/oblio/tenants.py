"""Tenants (with parent/child links and settings) and API keys (stored hashed, with scopes)."""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import DoesNotExist
from ulid import ULID

from oblio import clock, crypto
from oblio.crypto import TenantKeys
from oblio.errors import Forbidden, Invalid, NotFound, Unauthorized
from oblio.models import ApiKeyModel, TenantModel

SCOPES = ("dsr:read", "dsr:write", "dsr:erase", "consent:write", "consent:read", "audit:read",
          "admin")
DEFAULT_SETTINGS: dict[str, Any] = {
    "export_ttl_days": 14,
    "require_export_before_anonymisation": False,
    "default_phone_region": None,
    # consent ledger (oblio.consent) and self-service requests (oblio.selfservice)
    "purposes": ["marketing", "newsletter", "analytics", "profiling"],
    "public_slug": None,
    "selfservice_requires_approval": False,
    "selfservice_due_pauses_until_verified": False,
    "public_requests_per_hour": 20,
}


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant and scopes come from the key, never from the request."""

    tenant_id: str
    key_id: str
    scopes: frozenset[str]
    children: bool

    def require(self, scope: str) -> None:
        if "admin" in self.scopes or scope in self.scopes:
            return
        raise Forbidden(f"this API key lacks the '{scope}' scope; ask a tenant admin for a key "
                        "that has it", details={"required_scope": scope})


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    name: str
    parent_id: str | None
    children: tuple[str, ...]
    settings: dict[str, Any]
    keys: TenantKeys

    @property
    def phone_region(self) -> str | None:
        region = self.settings.get("default_phone_region")
        return str(region) if region else None


_cache: dict[str, tuple[float, Tenant]] = {}
_key_cache: dict[str, tuple[float, Principal]] = {}
_lock = threading.Lock()
CACHE_SECONDS = 30.0


def hash_key(api_key: str) -> str:
    # API keys are 256-bit random secrets, so a plain hash is not guessable
    return crypto.sha256_hex(api_key)


def create_tenant(tenant_id: str, name: str, parent_id: str | None = None,
                  settings: dict[str, Any] | None = None) -> Tenant:
    model = TenantModel(tenant_id=tenant_id, name=name, parent_id=parent_id,
                        settings={**DEFAULT_SETTINGS, **(settings or {})},
                        key_blob=crypto.new_data_key(), created_at=clock.iso())
    model.save(condition=TenantModel.tenant_id.does_not_exist())
    if parent_id:
        TenantModel(tenant_id=parent_id).update(actions=[TenantModel.children.add({tenant_id})])
        _cache.pop(parent_id, None)
    return get_tenant(tenant_id)


def get_tenant(tenant_id: str) -> Tenant:
    hit = _cache.get(tenant_id)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    try:
        m = TenantModel.get(tenant_id)
    except DoesNotExist:
        raise NotFound(f"tenant {tenant_id!r} does not exist") from None
    tenant = Tenant(tenant_id=m.tenant_id, name=m.name, parent_id=m.parent_id,
                    children=tuple(sorted(m.children or ())),
                    settings={**DEFAULT_SETTINGS, **(m.settings.as_dict() if hasattr(
                        m.settings, "as_dict") else dict(m.settings or {}))},
                    keys=crypto.tenant_keys(m.tenant_id, bytes(m.key_blob)))
    with _lock:
        _cache[tenant_id] = (time.monotonic() + CACHE_SECONDS, tenant)
    return tenant


def create_api_key(tenant_id: str, scopes: list[str] | tuple[str, ...], name: str = "",
                   children: bool = False, api_key: str | None = None) -> tuple[str, str]:
    """Create a key; returns (key id, the key itself). Only its hash is stored."""
    bad = [s for s in scopes if s not in SCOPES]
    if bad or not scopes:
        raise Invalid("scopes", f"unknown scopes {bad}; use any of {', '.join(SCOPES)}"
                      if bad else "scopes must name at least one scope")
    api_key = api_key or f"obl_{secrets.token_urlsafe(32)}"
    key_id = f"key_{ULID()}"
    ApiKeyModel(key_hash=hash_key(api_key), key_id=key_id, tenant_id=tenant_id, name=name,
                scopes=set(scopes), children=children, created_at=clock.iso()).save()
    return key_id, api_key


def list_api_keys(tenant_id: str) -> list[dict[str, Any]]:
    return [{"key_id": k.key_id, "name": k.name, "scopes": sorted(k.scopes),
             "children": k.children, "created_at": k.created_at, "revoked": k.revoked}
            for k in ApiKeyModel.by_tenant.query(tenant_id)]


def authenticate(authorization: str | None) -> Principal:
    """`Authorization: Bearer <key>` -> the principal; 401 when missing or unknown."""
    if not authorization or not authorization.startswith("Bearer ") or \
            not authorization[7:].strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <api key>'")
    digest = hash_key(authorization[7:].strip())
    hit = _key_cache.get(digest)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    try:
        k = ApiKeyModel.get(digest)
    except DoesNotExist:
        raise Unauthorized("unknown API key: check the key, or ask a tenant admin for a new "
                           "one") from None
    if k.revoked:
        raise Unauthorized("this API key has been revoked; ask a tenant admin for a new one")
    principal = Principal(k.tenant_id, k.key_id, frozenset(k.scopes), bool(k.children))
    with _lock:
        _key_cache[digest] = (time.monotonic() + CACHE_SECONDS, principal)
    return principal


def reachable_tenants(principal: Principal, include_children: bool) -> list[Tenant]:
    """The key's tenant, and its children when asked and the key may act on them."""
    tenant = get_tenant(principal.tenant_id)
    if not include_children:
        return [tenant]
    if not principal.children:
        raise Forbidden("this API key may not act on child tenants; use a parent key created "
                        "with children access", details={"field": "include_children"})
    return [tenant, *(get_tenant(c) for c in tenant.children)]


EXPORT_TTL_DAYS = (10, 14, 30)


def update_settings(tenant_id: str, changes: Any) -> Tenant:
    """Change the tenant's settings; each value is checked, unknown names are refused."""
    import phonenumbers

    if not isinstance(changes, dict) or not isinstance(changes.get("settings", changes), dict):
        raise Invalid("settings", "send {\"settings\": {name: value}}")
    changes = dict(changes.get("settings", changes))
    for name, value in changes.items():
        field = f"settings.{name}"
        if name not in DEFAULT_SETTINGS:
            raise Invalid(field, f"unknown setting '{name}'; settings are "
                                 f"{', '.join(DEFAULT_SETTINGS)}")
        if name == "export_ttl_days" and value not in EXPORT_TTL_DAYS:
            raise Invalid(field, "export_ttl_days must be 10, 14 or 30")
        if name == "require_export_before_anonymisation" and not isinstance(value, bool):
            raise Invalid(field, f"{name} must be true or false")
        if name == "default_phone_region" and value is not None and (
                not isinstance(value, str) or
                value.upper() not in phonenumbers.SUPPORTED_REGIONS):
            raise Invalid(field, "default_phone_region must be a two-letter region code such "
                                 "as 'IT' or 'FR', or null")
        if name == "purposes" or name.startswith(("public_", "selfservice_")):
            from oblio import consent, selfservice  # both import this module

            check = consent.check_setting if name == "purposes" else selfservice.check_setting
            changes[name] = check(name, value, field)
    m = TenantModel.get(tenant_id)
    stored = dict(m.settings.as_dict() if hasattr(m.settings, "as_dict") else m.settings or {})
    merged = {**DEFAULT_SETTINGS, **stored, **changes}
    if "public_slug" in changes:  # unique across tenants: claimed before it is set
        from oblio import selfservice

        selfservice.claim_slug(tenant_id, changes["public_slug"], stored.get("public_slug"))
    if merged.get("default_phone_region"):
        merged["default_phone_region"] = str(merged["default_phone_region"]).upper()
    m.update(actions=[TenantModel.settings.set(merged)])
    with _lock:
        _cache.pop(tenant_id, None)
    return get_tenant(tenant_id)
