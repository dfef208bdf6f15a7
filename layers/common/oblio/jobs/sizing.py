"""How many chunks of a bulk job run at once: the Distributed Map's MaxConcurrency.

One chunk worker per chunk, up to the tenant's own cap (`bulk_max_concurrency`, a tenant
setting: a tenant whose tables take fewer writes a second lowers it) and oblio's global cap
(`bulk_concurrency`, the deployment's setting: it must stay under the account's Lambda
concurrency, 1,000 by default, with room for the API and single requests). Never 0: a
MaxConcurrency of 0 means "no limit" to Step Functions."""

from __future__ import annotations

from typing import Any


def concurrency(chunks: int, tenant_cap: int | None, global_cap: int) -> int:
    """The chunk workers of a job of `chunks` chunks: one each, capped by the tenant's cap
    (None: none) and the global cap; at least 1."""
    cap = global_cap if tenant_cap is None else min(tenant_cap, global_cap)
    return max(1, min(chunks, cap))


def job_concurrency(chunks: int, tenant_settings: dict[str, Any], global_cap: int) -> int:
    """`concurrency` with the tenant's cap read from its settings."""
    cap = tenant_settings.get("bulk_max_concurrency")
    return concurrency(chunks, int(cap) if cap is not None else None, global_cap)
