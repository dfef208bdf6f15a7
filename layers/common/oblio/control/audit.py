"""The append-only, hash-chained audit log. Each entry's hash covers the previous entry's hash
and its own content; a HEAD item records the last sequence number and hash, and each append
moves HEAD and writes the entry in one conditional transaction, so concurrent writers can
never fork the chain. Entries name subjects by their HMAC reference only."""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from oblio.control import crypto
from oblio.core import clock
from oblio.core.errors import TransientError
from oblio.store.models import AuditModel, plain

HEAD = "HEAD"
GENESIS = "0" * 64
_SEQ_WIDTH = 12


def _seq(n: int) -> str:
    return str(n).zfill(_SEQ_WIDTH)


def _digest(prev_hash: str, body: dict[str, Any]) -> str:
    canon = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return crypto.sha256_hex(prev_hash + canon)


def _body(m: AuditModel) -> dict[str, Any]:
    return {"seq": m.seq, "at": m.at, "action": m.action, "actor": m.actor,
            "request_id": m.request_id, "subject_ref": m.subject_ref,
            "details": (plain(m.details) or {})}




@dataclass(frozen=True)
class Entry:
    id: str
    hash: str


ONCE_PREFIX = "once#"


def _written(tenant_id: str, once: str | None) -> Entry | None:
    """The entry appended earlier under the key `once`, if any."""
    if once is None:
        return None
    try:
        got = AuditModel.get(tenant_id, ONCE_PREFIX + once, consistent_read=True)
    except DoesNotExist:
        return None
    return Entry(str((plain(got.details) or {})["entry"]), got.hash or "")


def append(tenant_id: str, action: str, *, actor: str, request_id: str | None = None,
           subject_ref: str | None = None, details: dict[str, Any] | None = None,
           once: str | None = None) -> Entry:
    """Append one entry to the tenant's chain; returns its id (sequence) and hash.

    With `once` (a key such as `<request id>:completed`), the entry is appended at most once
    whatever the number of callers: a marker under that key is written in the same
    transaction as the entry, and a caller that finds it gets the entry appended first
    (a task delivered twice, or two runs of it at once, never write two entries)."""
    details = json.loads(json.dumps(details or {}, default=str))
    # the model's own connection: a new one would build a new botocore client each time
    conn = AuditModel._get_connection().connection
    for attempt in range(20):
        if attempt:  # another writer moved the head: wait a jittered moment, read it again
            time.sleep(random.uniform(0, 0.005 * 2 ** min(attempt, 7)))
        earlier = _written(tenant_id, once)
        if earlier is not None:
            return earlier
        try:
            head = AuditModel.get(tenant_id, HEAD, consistent_read=True)
            last, prev = int(head.last or 0), head.hash or GENESIS
        except DoesNotExist:
            head, last, prev = None, 0, GENESIS
        entry = AuditModel(tenant_id=tenant_id, seq=_seq(last + 1), at=clock.iso(),
                           action=action, actor=actor, request_id=request_id,
                           subject_ref=subject_ref, details=details, prev_hash=prev)
        entry.hash = _digest(prev, _body(entry))
        try:
            with TransactWrite(connection=conn) as tx:
                if head is None:
                    tx.save(AuditModel(tenant_id=tenant_id, seq=HEAD, last=last + 1,
                                       hash=entry.hash),
                            condition=AuditModel.seq.does_not_exist())
                else:
                    tx.update(head, actions=[AuditModel.last.set(last + 1),
                                             AuditModel.hash.set(entry.hash)],
                              condition=AuditModel.last == last)
                tx.save(entry, condition=AuditModel.seq.does_not_exist())
                if once is not None:
                    tx.save(AuditModel(tenant_id=tenant_id, seq=ONCE_PREFIX + once,
                                       at=entry.at, details={"entry": entry.seq},
                                       hash=entry.hash),
                            condition=AuditModel.seq.does_not_exist())
        except TransactWriteError:
            continue
        return Entry(entry.seq, entry.hash)
    raise TransientError("the audit log is busy; try again")


def to_json(m: AuditModel) -> dict[str, Any]:
    return {"id": m.seq, **{k: v for k, v in _body(m).items() if k != "seq"},
            "prev_hash": m.prev_hash, "hash": m.hash}


def entries(tenant_id: str, newest_first: bool = True, limit: int | None = None,
            start: str | None = None) -> tuple[list[AuditModel], str | None]:
    """One page of entries, and the id to continue after (None at the end)."""
    cond: Any = AuditModel.seq.between(_seq(1), _seq(10**_SEQ_WIDTH - 1))
    if start:
        # HEAD sorts after every entry id: whatever the cursor, it is never an entry
        cond = AuditModel.seq < min(start, HEAD) if newest_first else AuditModel.seq > start
    it = AuditModel.query(tenant_id, cond, scan_index_forward=not newest_first, limit=limit,
                          page_size=limit)
    out = [m for m in it if m.seq != HEAD]
    more = limit is not None and len(out) == limit and it.last_evaluated_key is not None
    return out, (out[-1].seq if more else None)


def verify(tenant_id: str) -> dict[str, Any]:
    """Recompute the chain: `{"valid", "entries", "first_broken"}`. A changed entry, a removed
    one (a gap in the sequence or a head that points past the last) breaks it."""
    prev, n, expected = GENESIS, 0, 1
    for m in AuditModel.query(tenant_id, AuditModel.seq.between(
            _seq(1), _seq(10**_SEQ_WIDTH - 1)), consistent_read=True):
        n += 1
        if int(m.seq) != expected or m.prev_hash != prev or m.hash != _digest(prev, _body(m)):
            return {"valid": False, "entries": n, "first_broken": m.seq}
        prev, expected = m.hash or "", expected + 1
    try:
        head = AuditModel.get(tenant_id, HEAD, consistent_read=True)
        if int(head.last or 0) != n or head.hash != prev:
            return {"valid": False, "entries": n, "first_broken": _seq(n + 1)}
    except DoesNotExist:
        if n:
            return {"valid": False, "entries": n, "first_broken": _seq(n)}
    return {"valid": True, "entries": n, "first_broken": None}
