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
from oblio.core.settings import get_settings
from oblio.store import keys as kms
from oblio.store import secrets as secrets_store
from oblio.store.models import (
    ARCHIVE_INDEX_BUILT,
    ApiKeyModel,
    ArchiveIndexModel,
    PublicSlugModel,
    TenantModel,
)

#: the scope above tenants, held by the operator key alone (never by a tenant's key): create
#: tenants, manage any tenant's keys; it reads no tenant's data
OPERATOR = "operator"
OPERATOR_ID = "operator"
#: a tenant's settings where it set none (what they are and take: `TenantSettings`)
DEFAULT_SETTINGS: dict[str, Any] = TenantSettings().model_dump()


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant and scopes come from the key, never from the request."""

    tenant_id: str
    key_id: str
    scopes: frozenset[str]
    children: bool

    @property
    def is_operator(self) -> bool:
        return OPERATOR in self.scopes

    def require(self, scope: str) -> None:
        if scope == OPERATOR:
            if self.is_operator:
                return
            raise Forbidden("this needs the operator key (the scope above tenants), not a "
                            "tenant's key", details={"required_scope": OPERATOR})
        if not self.is_operator and ("admin" in self.scopes or scope in self.scopes):
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
_lock = threading.Lock()
CACHE_SECONDS = 30.0
#: the operator key's hash, read from its secret at most this often
OPERATOR_SECONDS = 300.0
_operator: tuple[float, str | None] = (0.0, None)


def hash_key(api_key: str) -> str:
    # API keys are 256-bit random secrets, so a plain hash is not guessable
    return crypto.sha256_hex(api_key)


def create_tenant(tenant_id: str, name: str, parent_id: str | None = None,
                  settings: dict[str, Any] | None = None) -> Tenant:
    model = TenantModel(tenant_id=tenant_id, name=name, parent_id=parent_id,
                        settings={**DEFAULT_SETTINGS, **(settings or {})},
                        key_blob=kms.new_data_key(), created_at=clock.iso())
    model.save(condition=TenantModel.tenant_id.does_not_exist())
    # no request yet: the tenant's archive index holds every archive (control.exports)
    ArchiveIndexModel(tenant_id=tenant_id, sk=ARCHIVE_INDEX_BUILT,
                      built_at=model.created_at).save()
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
        raise NotFound("no tenant with this tenant_id") from None
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
    return [key_json(k) for k in ApiKeyModel.by_tenant.query(tenant_id)]


def authenticate(authorization: str | None) -> Principal:
    """`Authorization: Bearer <key>` -> the principal; 401 when missing or unknown."""
    if not authorization or not authorization.startswith("Bearer ") or \
            not authorization[7:].strip():
        raise Unauthorized("missing API key: send 'Authorization: Bearer <api key>'")
    digest = hash_key(authorization[7:].strip())
    if digest == _operator_digest():
        return Principal(OPERATOR_ID, OPERATOR_ID, frozenset({OPERATOR}), False)
    # no cache: a revoked key is refused on its very next call, in every process
    try:
        k = ApiKeyModel.get(digest)
    except DoesNotExist:
        raise Unauthorized("unknown API key: check the key, or ask a tenant admin for a new "
                           "one") from None
    if k.revoked:
        raise Unauthorized("this API key has been revoked; ask a tenant admin for a new one")
    return Principal(k.tenant_id, k.key_id, frozenset(k.scopes) - {OPERATOR}, bool(k.children))


def _operator_digest() -> str | None:
    global _operator
    at, digest = _operator
    if at > time.monotonic():
        return digest
    value = secrets_store.read(get_settings().operator_secret_name)
    digest = hash_key(value) if value else None
    _operator = (time.monotonic() + OPERATOR_SECONDS, digest)
    return digest


def forget_operator_key() -> None:
    """Read the operator secret again on the next call (after it was changed)."""
    global _operator
    _operator = (0.0, None)


# -- tenants and keys as a product ------------------------------------------------------------

def new_tenant(tenant_id: str, name: str, parent_id: str | None = None,
               settings: dict[str, Any] | None = None, children: bool = True,
               ) -> tuple[Tenant, str, str]:
    """Create a tenant (under `parent_id` when given) with its first admin key. Returns the
    tenant, the key's id and the key itself (shown once; only its hash is stored). The id and
    name are checked by `TenantBody` where they come from a caller."""
    if parent_id is not None:
        get_tenant(parent_id)  # 404 for an unknown parent
    try:
        create_tenant(tenant_id, name.strip(), parent_id=parent_id, settings=settings)
    except PutError:
        raise Conflict("a tenant with this tenant_id exists already; choose another",
                       code="tenant_exists", details={"field": "tenant_id"}) from None
    key_id, key = create_api_key(tenant_id, ("admin",), name=f"{tenant_id} admin",
                                 children=children)
    return get_tenant(tenant_id), key_id, key


def _key_model(tenant_id: str, key_id: str) -> ApiKeyModel:
    for k in ApiKeyModel.by_tenant.query(tenant_id, ApiKeyModel.key_id == key_id):
        return k
    raise NotFound("no API key with this key_id in this tenant")


def get_api_key(tenant_id: str, key_id: str) -> dict[str, Any]:
    """One key of the tenant as the API shows it (404 for another tenant's)."""
    return key_json(_key_model(tenant_id, key_id))


def revoke_api_key(tenant_id: str, key_id: str) -> dict[str, Any]:
    """Revoke a key of the tenant at once (its next call is refused). Revoking twice is the
    same as once."""
    k = _key_model(tenant_id, key_id)
    if not k.revoked:
        k.update(actions=[ApiKeyModel.revoked.set(True),
                          ApiKeyModel.revoked_at.set(clock.iso())])
    return key_json(k)


def rotate_api_key(tenant_id: str, key_id: str) -> tuple[dict[str, Any], str]:
    """A new key with the same name, scopes and children access; the old one is revoked.
    Returns the new key's record and the key itself (shown once)."""
    old = _key_model(tenant_id, key_id)
    if old.revoked:
        raise Conflict("this key is revoked already; create a new key instead",
                       code="key_revoked")
    new_id, key = create_api_key(tenant_id, sorted(old.scopes), name=old.name,
                                 children=bool(old.children))
    revoke_api_key(tenant_id, key_id)
    return key_json(_key_model(tenant_id, new_id)) | {"replaces": key_id}, key


def key_json(k: ApiKeyModel) -> dict[str, Any]:
    """A key as the API shows it: never the key, never its hash."""
    return {"key_id": k.key_id, "name": k.name, "scopes": sorted(k.scopes),
            "children": k.children, "created_at": k.created_at, "revoked": k.revoked,
            "revoked_at": k.revoked_at}


def list_tenants(parent_id: str | None = None) -> list[dict[str, Any]]:
    """Every tenant (the operator's view), or the children of one."""
    rows = TenantModel.scan() if parent_id is None else \
        (TenantModel.get(c) for c in sorted(get_tenant(parent_id).children))
    return sorted(({"tenant_id": m.tenant_id, "name": m.name, "parent_id": m.parent_id,
                    "children": sorted(m.children or ()), "created_at": m.created_at}
                   for m in rows), key=lambda t: str(t["tenant_id"]))


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
