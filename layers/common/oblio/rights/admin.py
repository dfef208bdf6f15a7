"""Tenant administration through the API: the tenant's settings and its API keys."""

from __future__ import annotations

from typing import Any

from oblio.control import audit, tenants
from oblio.control.tenants import Principal, Tenant
from oblio.core.bodies import KeyBody, TenantPatch


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


def create_key(principal: Principal, body: KeyBody) -> dict[str, Any]:
    """`POST /v1/keys`: a new key of the tenant, shown this once (only its hash is kept). It
    may act on child tenants only if the key that creates it may."""
    key_id, key = tenants.create_api_key(principal.tenant_id, list(body.scopes),
                                         name=body.name or "",
                                         children=body.children and principal.children)
    return {"key_id": key_id, "api_key": key, "scopes": sorted(body.scopes)}
