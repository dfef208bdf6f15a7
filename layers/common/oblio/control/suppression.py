"""The suppression list: HMACs of erased (and objecting) subjects' identities, per tenant.
It keeps no identity in clear; it lets a tenant check an address before sending, and lets an
erasure be replayed after a backup restore."""

from __future__ import annotations

from oblio.core import clock
from oblio.store import shards
from oblio.store.models import SuppressionModel


def add(tenant_id: str, refs: dict[str, list[str]], reason: str, request_id: str) -> int:
    """Record each `kind -> [hmac, ...]`; returns how many entries were written."""
    n = 0
    with SuppressionModel.batch_write() as batch:
        for kind, macs in sorted(refs.items()):
            for mac in sorted(set(macs)):
                batch.save(SuppressionModel(tenant_id=tenant_id, ref=f"{kind}#{mac}",
                                            reason=reason, request_id=request_id,
                                            at=clock.iso()))
                n += 1
    return n


def lookup(tenant_id: str, refs: dict[str, str]) -> list[dict[str, str]]:
    """The suppression entries matching any of `kind -> hmac`."""
    keys = [(shards.key(tenant_id, ref), ref) for ref in (f"{k}#{v}" for k, v in refs.items())]
    return [{"ref": m.ref.split("#", 1)[0], "reason": m.reason, "at": m.at}
            for m in SuppressionModel.batch_get(keys)] if keys else []
