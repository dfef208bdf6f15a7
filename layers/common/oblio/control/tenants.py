"""Tenants (with parent/child links and settings) and API keys (stored hashed, with scopes)."""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import DeleteError, DoesNotExist, PutError
from ulid import ULID

from oblio.control import crypto
from oblio.control.crypto import TenantKeys
from oblio.core import clock
from oblio.core.bodies import SCOPES, TenantPatch, TenantSettings, parse
from oblio.core.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from oblio.store import keys as kms
from oblio.store.models import ApiKeyModel, PublicSlugModel, TenantModel

#: a tenant's settings where it set none (what they are and take: `TenantSettings`)
DEFAULT_SETTINGS: dict[str, Any] = TenantSettings().model_dump()


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


def update_settings(tenant_id: str, changes: TenantPatch | Mapping[str, Any]) -> Tenant:
    """Change the tenant's settings (`{"settings": {name: value}}`, checked by the model;
    unknown names are refused) and answer the tenant as it is now."""
    if not isinstance(changes, TenantPatch):
        changes = parse(TenantPatch, changes)
    named = changes.settings.changes()
    m = TenantModel.get(tenant_id)
    stored = dict(m.settings.as_dict() if hasattr(m.settings, "as_dict") else m.settings or {})
    merged = {**DEFAULT_SETTINGS, **stored, **named}
    if "public_slug" in named:  # unique across tenants: claimed before it is set
        claim_slug(tenant_id, named["public_slug"], stored.get("public_slug"))
    if merged.get("default_phone_region"):
        merged["default_phone_region"] = str(merged["default_phone_region"]).upper()
    m.update(actions=[TenantModel.settings.set(merged)])
    with _lock:
        _cache.pop(tenant_id, None)
    return get_tenant(tenant_id)
