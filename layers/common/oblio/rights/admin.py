"""Tenant administration through the API: the tenant's settings and its API keys (a tenant
admin acts on its own tenant), and tenants and any tenant's keys (the operator key)."""

from __future__ import annotations

from typing import Any

from oblio.control import audit, tenants
from oblio.control.tenants import Principal, Tenant
from oblio.core.bodies import KeyBody, TenantBody, TenantPatch
from oblio.core.errors import Conflict


def tenant_json(t: Tenant) -> dict[str, Any]:
    return {"tenant_id": t.tenant_id, "name": t.name, "parent_id": t.parent_id,
            "children": list(t.children), "settings": t.settings}


def show(principal: Principal) -> dict[str, Any]:
    """`GET /v1/tenant`: the caller's tenant, its settings and children."""
    return tenant_json(tenants.get_tenant(principal.tenant_id))


def update(principal: Principal, body: TenantPatch) -> dict[str, Any]:
    """`PATCH /v1/tenant`: change settings; the audit entry names them (not their values)."""
    t = tenants.update_settings(principal.tenant_id, body)
    audit.append(principal.tenant_id, "tenant_settings_changed", actor=principal.key_id,
                 details={"settings": sorted(body.settings.changes())})
    return tenant_json(t)


def _tenant_of(principal: Principal, tenant_id: str | None) -> str:
    """The tenant whose keys are meant: the caller's own, or (the operator key) the one named
    in the path, which must exist."""
    if tenant_id is None:
        return principal.tenant_id
    principal.require(tenants.OPERATOR)
    return tenants.get_tenant(tenant_id).tenant_id


def create_key(principal: Principal, body: KeyBody, tenant_id: str | None = None,
               ) -> dict[str, Any]:
    """`POST /v1/keys`: a new key of the tenant, shown this once (only its hash is kept). It
    may act on child tenants only if the key that creates it may (the operator's may)."""
    owner = _tenant_of(principal, tenant_id)
    children = body.children and (principal.children or principal.is_operator)
    key_id, key = tenants.create_api_key(owner, list(body.scopes), name=body.name or "",
                                         children=children)
    audit.append(owner, "api_key_created", actor=principal.key_id,
                 details={"key_id": key_id, "scopes": sorted(body.scopes)})
    return {"key_id": key_id, "api_key": key, "scopes": sorted(body.scopes)}


def list_keys(principal: Principal, tenant_id: str | None = None) -> dict[str, Any]:
    """`GET /v1/keys`: the tenant's keys, revoked ones included (never a key or its hash)."""
    return {"items": tenants.list_api_keys(_tenant_of(principal, tenant_id)),
            "next_cursor": None}


def revoke_key(principal: Principal, key_id: str, tenant_id: str | None = None,
               ) -> dict[str, Any]:
    """`POST /v1/keys/{key_id}/revoke`: refused from its very next call on. The key making
    the call cannot revoke itself (a tenant would lock itself out): revoke it with another
    admin key, or rotate it."""
    owner = _tenant_of(principal, tenant_id)
    if key_id == principal.key_id:
        raise Conflict("this is the key making the call; revoke it with another admin key, "
                       "or rotate it", code="key_in_use", details={"field": "key_id"})
    was = tenants.get_api_key(owner, key_id)
    key = tenants.revoke_api_key(owner, key_id)
    if not was["revoked"]:
        audit.append(owner, "api_key_revoked", actor=principal.key_id,
                     details={"key_id": key_id})
    return key


def rotate_key(principal: Principal, key_id: str, tenant_id: str | None = None,
               ) -> dict[str, Any]:
    """`POST /v1/keys/{key_id}/rotate`: a new key with the same name, scopes and children
    access, shown this once; the old one is revoked at once."""
    owner = _tenant_of(principal, tenant_id)
    new, key = tenants.rotate_api_key(owner, key_id)
    audit.append(owner, "api_key_rotated", actor=principal.key_id,
                 details={"key_id": new["key_id"], "replaces": key_id})
    return {**new, "api_key": key}


def create_tenant(principal: Principal, body: TenantBody) -> dict[str, Any]:
    """`POST /v1/tenants` (the operator key): the tenant and its first admin key, shown this
    once. Its audit log starts with the creation."""
    principal.require(tenants.OPERATOR)
    tenant, key_id, key = tenants.new_tenant(body.tenant_id, body.name, body.parent_id)
    if body.settings is not None and body.settings.changes():
        tenant = tenants.update_settings(tenant.tenant_id, TenantPatch(settings=body.settings))
    audit.append(tenant.tenant_id, "tenant_created", actor=principal.key_id,
                 details={"parent_id": body.parent_id, "key_id": key_id,
                          "settings": sorted(body.settings.changes()) if body.settings else []})
    return {"tenant": tenant_json(tenant), "key_id": key_id, "api_key": key,
            "scopes": ["admin"]}


def list_tenants(principal: Principal) -> dict[str, Any]:
    """`GET /v1/tenants` (the operator key): every tenant, with its parent and children."""
    principal.require(tenants.OPERATOR)
    return {"items": tenants.list_tenants(), "next_cursor": None}
