"""The append-only, hash-chained audit log. Each entry's hash covers the previous entry's hash
and its own content; a HEAD item records the last sequence number and hash, and each append
moves HEAD and writes the entry in one conditional transaction, so concurrent writers can
never fork the chain. Entries name subjects by their HMAC reference only.

An append may be keyed (`once=`): a marker item written in the same transaction makes a
second append with the same key (a rerun of the same bulk chunk) append nothing and answer
the first entry. An append may also be guarded (`guard=`): a condition on another item of
oblio's tables, checked in the same transaction (a job's record still on the run of the task
that appends its end), so that a task of a run that is over appends nothing. A bulk chunk
appends one entry for all its subjects (`commit_chunk`): the
root of a Merkle tree (core/merkle.py) over their certificates, which are stored as one
object per chunk; `verify` recomputes each chunk's root from that object, and `included`
proves one subject's certificate is in its chunk's entry."""

from __future__ import annotations

import hashlib
import json
import random
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite

from oblio.control import crypto, links
from oblio.control.tenants import get_tenant
from oblio.core import clock, merkle
from oblio.core.errors import Invalid, NotFound, TransientError
from oblio.store import objects
from oblio.store.models import AuditModel, plain

HEAD = "HEAD"
#: the sort key prefix of the marker of a keyed append (never an entry: entries are digits)
ONCE = "once#"
#: how many chunk certificates one verification call reads before it answers a cursor
CERTIFICATES_PER_CALL = 20_000
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


@dataclass(frozen=True)
class Guard:
    """What must hold of one item of oblio's tables for an entry to be appended: `condition`
    on the item of `model` with these keys, checked in the entry's transaction."""

    model: Any
    hash_key: Any
    range_key: Any
    condition: Any


class Refused(Exception):
    """An append's guard did not hold: nothing was appended."""


def _appended(tenant_id: str, once: str) -> Entry | None:
    """The entry a keyed append already wrote, if any."""
    try:
        m = AuditModel.get(tenant_id, ONCE + once, consistent_read=True)
    except DoesNotExist:
        return None
    return Entry(_seq(int(m.last or 0)), m.hash or "")


def appended_action(tenant_id: str, once: str) -> str | None:
    """The action of the entry a keyed append already wrote under `once`, if any."""
    try:
        return AuditModel.get(tenant_id, ONCE + once, consistent_read=True).action
    except DoesNotExist:
        return None


def append(tenant_id: str, action: str, *, actor: str, request_id: str | None = None,
           subject_ref: str | None = None, details: dict[str, Any] | None = None,
           once: str | None = None, guard: Guard | None = None) -> Entry:
    """Append one entry to the tenant's chain; returns its id (sequence) and hash. With
    `once`, at most one entry is ever appended for that key: a repeated call answers the
    entry the first one appended (its marker is written in the entry's transaction). With
    `guard`, the entry is appended only while its condition holds: `Refused` when it does
    not (an entry appended before under `once` is still answered)."""
    details = json.loads(json.dumps(details or {}, default=str))
    if once is not None and (done := _appended(tenant_id, once)) is not None:
        return done
    # the model's own connection: a new one would build a new botocore client each time
    conn = AuditModel._get_connection().connection
    for attempt in range(20):
        if attempt:  # another writer moved the head: wait a jittered moment, read it again
            time.sleep(random.uniform(0, 0.005 * 2 ** min(attempt, 7)))
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
                if guard is not None:  # first: its refusal is the first reason
                    tx.condition_check(guard.model, guard.hash_key, guard.range_key,
                                       condition=guard.condition)
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
                    tx.save(AuditModel(tenant_id=tenant_id, seq=ONCE + once, last=last + 1,
                                       hash=entry.hash, action=action),
                            condition=AuditModel.seq.does_not_exist())
        except TransactWriteError as exc:
            if once is not None and (done := _appended(tenant_id, once)) is not None:
                return done  # a concurrent run of the same key appended it
            if guard is not None and _guard_refused(exc):
                raise Refused("the append's guard did not hold: nothing appended") from None
            continue
        return Entry(entry.seq, entry.hash)
    raise TransientError("the audit log is busy; try again")


def _guard_refused(exc: TransactWriteError) -> bool:
    """Whether the guard (the transaction's first item) is what refused it."""
    reasons = exc.cancellation_reasons
    return bool(reasons) and reasons[0] is not None and \
        reasons[0].code == "ConditionalCheckFailed"


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
    out = [m for m in it if m.seq.isdigit()]
    more = limit is not None and len(out) == limit and it.last_evaluated_key is not None
    return out, (out[-1].seq if more else None)


# -- chunk evidence ------------------------------------------------------------------------------

def leaf(certificate: dict[str, Any]) -> bytes:
    """A certificate as a Merkle leaf: its canonical JSON."""
    return json.dumps(certificate, sort_keys=True, separators=(",", ":"),
                      default=_canon).encode()


def _canon(value: Any) -> Any:
    if isinstance(value, Decimal):  # what a stored certificate's numbers read back as
        return int(value) if value == value.to_integral_value() else float(value)
    return str(value)


def as_stored(certificates: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The certificates as they read back from their object (what the root is computed on)."""
    out: list[dict[str, Any]] = json.loads(json.dumps(certificates, default=_canon),
                                           parse_float=Decimal)
    return out


def evidence_key(tenant_id: str, job_id: str, chunk: str) -> str:
    """Where a bulk chunk's certificates are kept: outside the expiring work prefix (they hold
    no personal data: subject references, counts, times)."""
    name = chunk.rsplit("/", 1)[-1].removesuffix(".json")
    return f"evidence/{tenant_id}/bulk/{job_id}/{name}.json"


def commit_chunk(tenant_id: str, *, actor: str, job_id: str, chunk: str,
                 key: str, certificates: list[dict[str, Any]]) -> Entry:
    """One audit entry for a chunk's subjects, once however often the chunk runs: the Merkle
    root of their certificates (stored at `key` before this is called), the chunk, their
    number and their subject references (no identity)."""
    leaves = [leaf(c) for c in as_stored(certificates)]
    return append(tenant_id, "bulk_chunk_erased", actor=actor, once=f"bulk:{job_id}:{chunk}",
                  details={"job_id": job_id, "chunk": chunk, "count": len(leaves),
                           "evidence": {"key": key, "merkle_root": merkle.root(leaves)},
                           "subject_refs": [c["subject_ref"] for c in certificates]})


def included(tenant_id: str, certificate: dict[str, Any], chunk: dict[str, Any]) -> bool:
    """Whether `certificate` is leaf `chunk["index"]` of the chunk entry `chunk["entry"]`
    of the tenant's chain, as its inclusion proof says (the entry's root, not the proof's,
    is what counts: one GetItem, no certificate file read)."""
    try:
        m = AuditModel.get(tenant_id, str(chunk["entry"]), consistent_read=True)
    except (DoesNotExist, KeyError):
        return False
    details = plain(m.details) or {}
    ev = details.get("evidence") or {}
    size = int(details.get("count", 0))
    return int(chunk.get("size", -1)) == size and merkle.included(
        leaf(as_stored([certificate])[0]), int(chunk.get("index", -1)), size,
        list(chunk.get("path") or []), str(ev.get("merkle_root", "")))


def digest_of(certificate: dict[str, Any]) -> str:
    """The SHA-256 of a certificate's leaf: what a bulk line's record keeps of it."""
    return hashlib.sha256(leaf(as_stored([certificate])[0])).hexdigest()


def pointer(key: str, index: int, certificate: dict[str, Any], entry: Entry) -> dict[str, Any]:
    """What a bulk line's record keeps of its certificate: where it is (the chunk's evidence
    object, its position), its digest and the chunk's entry. The certificate itself is read
    from the evidence object (`from_pointer`): one copy, kept with the chain's evidence,
    and a line's record stays under 1 KB (one write unit instead of four)."""
    return {"key": key, "index": index, "digest": digest_of(certificate),
            "entry": entry.id, "entry_hash": entry.hash}


def from_pointer(ptr: dict[str, Any], cache: dict[str, Any] | None = None,
                 ) -> dict[str, Any] | None:
    """A bulk line's certificate as its answer shows it (with its chunk entry and its
    inclusion proof, computed from the evidence object), or None when the evidence object
    does not hold, at the line's position, the certificate whose digest the record keeps.
    `cache`: evidence objects already read (and their leaves) by the caller: a page of
    lines of one chunk reads and hashes it once."""
    key = str(ptr["key"])
    got = None if cache is None else cache.get(key)
    if got is None:
        try:
            certs = objects.get_json(key)
        except Exception:  # noqa: BLE001 - gone or unreadable: no certificate to show
            return None
        if not isinstance(certs, list):
            return None
        leaves = [leaf(c) for c in as_stored(certs)]
        got = (certs, leaves, merkle.root(leaves))
        if cache is not None:
            cache[key] = got
    certs, leaves, root = got
    i = int(ptr["index"])
    if not 0 <= i < len(certs) or hashlib.sha256(leaves[i]).hexdigest() != ptr["digest"]:
        return None
    proof = {"index": i, "size": len(leaves), "path": merkle.proof(leaves, i),
             "merkle_root": root}
    return {**json.loads(json.dumps(certs[i], default=_canon)),
            "audit_entry": {"id": ptr["entry"], "hash": ptr["entry_hash"]},
            "chunk": {"entry": ptr["entry"], "evidence": key, **proof}}


def certificate_inclusion(tenant_id: str, certificate: dict[str, Any]) -> dict[str, Any]:
    """A request's certificate (as its result shows it) checked against the audit chain: a
    bulk line's against its chunk entry's Merkle root (its proof, one GetItem); a single
    request's against the hash of the entry that records it."""
    ref = certificate.get("audit_entry") or {}
    chunk = certificate.get("chunk")
    if chunk:
        leaf_ = {k: v for k, v in certificate.items() if k not in ("audit_entry", "chunk")}
        return {"included": included(tenant_id, leaf_, chunk), "audit_entry": ref,
                "chunk": chunk}
    try:
        m = AuditModel.get(tenant_id, str(ref.get("id", "")), consistent_read=True)
        ok = m.hash == ref.get("hash") and m.hash == _digest(m.prev_hash or "", _body(m))
    except DoesNotExist:
        ok = False
    return {"included": ok, "audit_entry": ref, "chunk": None}


def _chunk_problem(details: dict[str, Any]) -> tuple[str | None, int]:
    """What is wrong with a chunk entry's certificates (None: nothing), and how many were read."""
    ev = details.get("evidence") or {}
    key = str(ev.get("key", ""))
    if not key or not objects.exists(key):
        return "the certificates of this chunk entry are missing", 0
    certs: list[dict[str, Any]] = objects.get_json(key)
    if len(certs) != int(details.get("count", -1)):
        return "a certificate of this chunk was removed or added", len(certs)
    if merkle.root([leaf(c) for c in certs]) != ev.get("merkle_root"):
        return "a certificate of this chunk was changed", len(certs)
    if [c.get("subject_ref") for c in certs] != list(details.get("subject_refs") or []):
        return "the certificates of this chunk name other subjects", len(certs)
    return None, len(certs)


#: what a verification cursor is signed for (the tenant's link key): a token for anything else
#: is no cursor, and a cursor is no link
VERIFY_CURSOR = "audit-verify-cursor"
#: the signature's length at a cursor's end (an HMAC-SHA256, URL-safe base64 unpadded)
_SIGNATURE_CHARS = 43


def _cursor(tenant_id: str, after: str, prev: str, n: int, certs: int) -> str:
    """The chain's state after a page, signed: a client cannot make up the state a next
    page starts from (a hash and counts that say entries were checked that were not)."""
    token = links.sign(get_tenant(tenant_id),
                       {"t": tenant_id, "a": after, "p": prev, "n": n, "c": certs},
                       VERIFY_CURSOR)
    # a cursor is URL-safe base64 only (the query's pattern): the claims, then the signature
    return token.replace(".", "")


def _uncursor(tenant_id: str, cursor: str) -> tuple[str, str, int, int]:
    refused = Invalid("cursor", "the cursor is not one this endpoint gave this tenant (cut, "
                                "altered or made up): start again without it")
    try:
        cut = len(cursor) - _SIGNATURE_CHARS
        got = links.opened(get_tenant(tenant_id), f"{cursor[:cut]}.{cursor[cut:]}",
                           VERIFY_CURSOR) if cut > 0 else None
        if got is None:
            raise refused
        return str(got["a"]), str(got["p"]), int(got["n"]), int(got["c"])
    except (ValueError, KeyError, TypeError, NotFound):
        raise refused from None


def verify(tenant_id: str, *, limit: int | None = None, cursor: str | None = None,
           certificates_per_call: int = CERTIFICATES_PER_CALL) -> dict[str, Any]:
    """Recompute the chain: `{"valid", "entries", "first_broken", "certificates",
    "next_cursor"}` (and `"problem"` when broken). A changed entry, a removed one (a gap in
    the sequence or a head that points past the last) breaks it; so does a bulk chunk entry
    whose stored certificates no longer give its Merkle root (a certificate changed, removed
    or added) or name other subjects.

    It pages: a call checks at most `limit` entries and reads about `certificates_per_call`
    chunk certificates, then answers `next_cursor` (the chain's state so far: entries and
    certificates are counted from the first call); `valid` is then "valid so far", and the
    head is checked on the last page only."""
    prev, n, certs, expected = GENESIS, 0, 0, 1
    cond: Any = AuditModel.seq.between(_seq(1), _seq(10**_SEQ_WIDTH - 1))
    if cursor:
        after, prev, n, certs = _uncursor(tenant_id, cursor)
        expected = int(after) + 1 if after.isdigit() else 1
        cond = AuditModel.seq.between(_seq(expected), _seq(10**_SEQ_WIDTH - 1))
    first, read = n, 0

    def broken(seq: str, problem: str) -> dict[str, Any]:
        return {"valid": False, "entries": n, "first_broken": seq, "problem": problem,
                "certificates": certs, "next_cursor": None}

    for m in AuditModel.query(tenant_id, cond, consistent_read=True):
        if (limit is not None and n - first >= limit) or read >= certificates_per_call:
            return {"valid": True, "entries": n, "first_broken": None, "certificates": certs,
                    "next_cursor": _cursor(tenant_id, _seq(expected - 1), prev, n, certs)}
        n += 1
        if int(m.seq) != expected:
            return broken(m.seq, "an entry before this one was removed")
        if m.prev_hash != prev or m.hash != _digest(prev, _body(m)):
            return broken(m.seq, "this entry (or the one before it) was changed")
        details = plain(m.details) or {}
        if "evidence" in details:
            problem, got = _chunk_problem(details)
            read, certs = read + got, certs + got
            if problem:
                return broken(m.seq, problem)
        prev, expected = m.hash or "", expected + 1
    try:
        head = AuditModel.get(tenant_id, HEAD, consistent_read=True)
        if int(head.last or 0) != n or head.hash != prev:
            return broken(_seq(n + 1), "the last entries were removed")
    except DoesNotExist:
        if n:
            return broken(_seq(n), "the head of the chain was removed")
    return {"valid": True, "entries": n, "first_broken": None, "certificates": certs,
            "next_cursor": None}
