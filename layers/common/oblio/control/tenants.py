"""Tenants (with parent/child links and settings) and API keys (stored hashed, with scopes)."""

from __future__ import annotations

import contextlib
import re
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

import phonenumbers
from pynamodb.exceptions import DeleteError, DoesNotExist, PutError
from ulid import ULID

from oblio.control import crypto
from oblio.control.crypto import TenantKeys
from oblio.core import clock
from oblio.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from oblio.store import keys as kms
from oblio.store.models import ApiKeyModel, PublicSlugModel, TenantModel

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
                        key_blob=kms.new_data_key(), created_at=clock.iso())
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


def revoke_api_key(principal: Principal, key_id: str) -> dict[str, Any]:
    """Revoke one of the tenant's keys for good (a repeat answers the same). The calling key
    cannot revoke itself, so that an admin cannot lock the tenant out by mistake. Other
    processes notice within CACHE_SECONDS."""
    found = list(ApiKeyModel.by_tenant.query(principal.tenant_id,
                                             ApiKeyModel.key_id == key_id, limit=1))
    if not found:
        raise NotFound(f"no API key {key_id!r} in this tenant")
    if key_id == principal.key_id:
        raise Conflict("this is the key you are signed in with; revoke it with another admin "
                       "key", code="revoking_own_key")
    k = found[0]
    if not k.revoked:
        ApiKeyModel(key_hash=k.key_hash).update(actions=[ApiKeyModel.revoked.set(True)])
    with _lock:
        _key_cache.pop(k.key_hash, None)
    return {"key_id": k.key_id, "name": k.name, "scopes": sorted(k.scopes),
            "children": k.children, "created_at": k.created_at, "revoked": True}


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
#: a tenant's public name (its self-service page), and a consent purpose's name
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,38})[a-z0-9]$")
_PURPOSE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
_MAX_PURPOSES = 50


def _check_purposes(name: str, value: Any, field: str) -> list[str]:
    """The tenant setting `purposes`: a list of distinct lower-case names."""
    if not isinstance(value, list) or not value or len(value) > _MAX_PURPOSES or \
            not all(isinstance(p, str) and _PURPOSE.match(p) for p in value):
        raise Invalid(field, f"{name} must be a list of 1 to {_MAX_PURPOSES} purpose names of "
                             "lower-case letters, digits, '_' or '-' (at most 40 characters), "
                             "e.g. [\"marketing\", \"newsletter\"]")
    if len(set(value)) != len(value):
        raise Invalid(field, f"{name} names a purpose twice")
    return list(value)


def _check_selfservice(name: str, value: Any, field: str) -> Any:
    """Validate one of the self-service tenant settings; returns the value to store."""
    if name == "public_slug":
        if value is None:
            return None
        if not isinstance(value, str) or not SLUG.match(value.lower()):
            raise Invalid(field, "public_slug must be 3 to 40 lower-case letters, digits or "
                                 "'-' (not first or last), or null to close the self-service "
                                 "page")
        return value.lower()
    if name in ("selfservice_requires_approval", "selfservice_due_pauses_until_verified"):
        if not isinstance(value, bool):
            raise Invalid(field, f"{name} must be true or false")
        return value
    if name == "public_requests_per_hour":
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 10_000:
            raise Invalid(field, "public_requests_per_hour must be a whole number from 1 to "
                                 "10000 (requests from one address per hour)")
        return value
    raise Invalid(field, f"unknown setting '{name}'")


def claim_slug(tenant_id: str, slug: str | None, previous: str | None) -> None:
    """Make `slug` the tenant's public name (409 if another tenant has it) and free its
    previous one."""
    if slug and slug != previous:
        try:
            PublicSlugModel(slug=slug, tenant_id=tenant_id, at=clock.iso()).save(
                condition=PublicSlugModel.slug.does_not_exist()
                | (PublicSlugModel.tenant_id == tenant_id))
        except PutError:
            raise Conflict("another tenant already uses this public_slug; choose another",
                           code="slug_taken", details={"field": "settings.public_slug"}) \
                from None
    if previous and previous != slug:
        with contextlib.suppress(DeleteError):
            PublicSlugModel(slug=previous).delete(
                condition=PublicSlugModel.tenant_id == tenant_id)


def update_settings(tenant_id: str, changes: Any) -> Tenant:
    """Change the tenant's settings; each value is checked, unknown names are refused."""
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
        if name == "purposes":
            changes[name] = _check_purposes(name, value, field)
        elif name.startswith(("public_", "selfservice_")):
            changes[name] = _check_selfservice(name, value, field)
    m = TenantModel.get(tenant_id)
    stored = dict(m.settings.as_dict() if hasattr(m.settings, "as_dict") else m.settings or {})
    merged = {**DEFAULT_SETTINGS, **stored, **changes}
    if "public_slug" in changes:  # unique across tenants: claimed before it is set
        claim_slug(tenant_id, changes["public_slug"], stored.get("public_slug"))
    if merged.get("default_phone_region"):
        merged["default_phone_region"] = str(merged["default_phone_region"]).upper()
    m.update(actions=[TenantModel.settings.set(merged)])
    with _lock:
        _cache.pop(tenant_id, None)
    return get_tenant(tenant_id)
