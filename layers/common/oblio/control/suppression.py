"""The suppression list: HMACs of erased (and objecting) subjects' identities, per tenant.
It keeps no identity in clear; it lets a tenant check an address before sending, and lets an
erasure be replayed after a backup restore."""

from __future__ import annotations

from collections.abc import Sequence

from pynamodb.exceptions import PutError

from oblio.core import clock
from oblio.store import shards
from oblio.store.models import SuppressionModel

#: the reason of an erased subject's entries: an entry of another reason never replaces one
ERASURE = "erasure"


def entries_of(refs: dict[str, list[str]]) -> int:
    """How many suppression entries `kind -> [hmac, ...]` makes (each distinct one once)."""
    return sum(len(set(macs)) for macs in refs.values())


def add(tenant_id: str, refs: dict[str, list[str]], reason: str, request_id: str,
        at: str | None = None) -> int:
    """Record each `kind -> [hmac, ...]` (`at` None: now); returns how many entries now say
    `reason` for her (an objection's leaves an erasure's as it is: not counted)."""
    return add_many(tenant_id, [(refs, request_id, at)], reason)[0]


def add_many(tenant_id: str, subjects: Sequence[tuple[dict[str, list[str]], str, str | None]],
             reason: str) -> list[int]:
    """Record the suppression entries of many subjects (`(refs, request_id, at)`; `at` None:
    now); returns, per subject, how many entries now say `reason` for her. An entry is keyed
    by its identity's HMAC, so writing the same subjects again (a rerun) leaves one entry
    each, as it was when given the same `at`.

    An erasure's entries are written in batches (BatchWriteItem of 25) and replace whatever
    was there. Another reason's (an objection) are written one by one, each on condition that
    its identity's entry does not say it was erased (`_keep_erasure`)."""
    owners: dict[tuple[str, str], list[int]] = {}
    entries = []
    for index, (refs, request_id, at) in enumerate(subjects):
        for kind, macs in sorted(refs.items()):
            for mac in sorted(set(macs)):
                if (kind, mac) not in owners:  # one batch may not name a key twice
                    owners[(kind, mac)] = []
                    entries.append(SuppressionModel(tenant_id=tenant_id, ref=f"{kind}#{mac}",
                                                    reason=reason, request_id=request_id,
                                                    at=at or clock.iso()))
                owners[(kind, mac)].append(index)
    if reason == ERASURE:
        with SuppressionModel.batch_write() as batch:
            for entry in entries:
                batch.save(entry)
        written = set(owners)
    else:
        written = {(kind, mac) for (kind, mac), e in zip(owners, entries, strict=True)
                   if _keep_erasure(e)}
    counts = [0] * len(subjects)
    for key, indexes in owners.items():
        if key in written:
            for index in indexes:
                counts[index] += 1
    return counts


def _keep_erasure(entry: SuppressionModel) -> bool:
    """Write an entry of another reason (an objection) unless its identity's entry says it
    was erased; returns whether it was written. The erasure entry is what replays her
    erasure after a backup restore and what withdraws an export running beside it, and an
    objection says less (one conditional write each: an objection names a handful of
    identities)."""
    try:
        entry.save(condition=SuppressionModel.reason.does_not_exist()
                   | (SuppressionModel.reason != ERASURE))
    except PutError as exc:
        if exc.cause_response_code != "ConditionalCheckFailedException":
            raise
        return False
    return True


def erased_since(tenant_id: str, refs: dict[str, str], since: str) -> bool:
    """Whether an erasure of one of `kind -> hmac` ended at or after `since` (its suppression
    entry says when): strongly consistent, so an entry written a moment ago is read."""
    keys = _keys(tenant_id, refs)
    return any(m.reason == ERASURE and str(m.at) >= since
               for m in SuppressionModel.batch_get(keys, consistent_read=True)) if keys else False


def _keys(tenant_id: str, refs: dict[str, str]) -> list[tuple[str, str]]:
    return [(shards.key(tenant_id, ref), ref) for ref in (f"{k}#{v}" for k, v in refs.items())]


def lookup(tenant_id: str, refs: dict[str, str]) -> list[dict[str, str]]:
    """The suppression entries matching any of `kind -> hmac`."""
    keys = _keys(tenant_id, refs)
    return [{"ref": m.ref.split("#", 1)[0], "reason": m.reason, "at": m.at}
            for m in SuppressionModel.batch_get(keys)] if keys else []
