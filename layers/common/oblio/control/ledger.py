"""The consent ledger (Art. 7(1), 7(3)): append-only events of grants and withdrawals, the
current state per purpose kept in step with them. (The signed links that withdraw without a
login are `oblio.control.links`; the API's side is `oblio.rights.consent`.)

Layout (table `consents`, partition = the tenant's shard of the identity:
`ConsentModel.partition`). An event is filed under every identity it
names, each copy keyed by the identity's HMAC (`<kind>#<hmac>`), never the identity:

    <kind>#<hmac>#e#<at>#<event id>   an event: written once, with a condition, never changed
    <kind>#<hmac>#s#<purpose>         the current state of one purpose: the newest event's copy,
                                      moved in the same transaction as that event

Reading a subject is one Query per identity on its prefix (events oldest first, then the
states): its cost grows with the subject's own events, never with the ledger. The API offers
no update and no delete; only an erasure of the subject removes its records.

The purposes a tenant records consent for are its setting `purposes` (default: marketing,
newsletter, analytics, profiling); channels are those of `CHANNELS`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import DoesNotExist, TransactWriteError
from pynamodb.transactions import TransactWrite
from ulid import ULID

from oblio.control import crypto
from oblio.control.tenants import Tenant, get_tenant
from oblio.core import clock
from oblio.core.bodies import (
    CHANNELS,
    CONSENT_STATUSES,
    ConsentFields,
    Proof,
    parse,
)
from oblio.core.errors import Invalid, TransientError
from oblio.core.observability import count
from oblio.store import outbound
from oblio.store.models import ConsentModel, RequestModel, plain

STATUSES = CONSENT_STATUSES


#: the channel of events oblio records itself (an objection request withdraws consent)
REQUEST_CHANNEL = "request"


LINK_SOURCE = "one-click link"


_ATTEMPTS = 10


def purposes_of(tenant: Tenant) -> list[str]:
    return [str(p) for p in tenant.settings.get("purposes") or []]


# -- keys ---------------------------------------------------------------------------------------


def subject_keys(tenant: Tenant, ids: dict[str, str]) -> list[str]:
    """The ledger keys of a subject: one per identity, `<kind>#<hmac>`."""
    return [f"{kind}#{tenant.keys.hmac(kind, value)}" for kind, value in sorted(ids.items())]


def _event_sk(key: str, order: str) -> str:
    return f"{key}#e#{order}"


def state_sk(key: str, purpose: str) -> str:
    return f"{key}#s#{purpose}"


def record_key(tenant_id: str, sk: str) -> tuple[str, str]:
    """The table key of a ledger record: its shard's partition, its sort key."""
    return ConsentModel.partition(tenant_id, sk), sk


def _identity_keys(identity_refs: dict[str, list[str]]) -> list[str]:
    """The ledger keys `<kind>#<hmac>` of `kind -> [hmac, ...]`, each once, in order."""
    return [f"{kind}#{mac}" for kind, macs in sorted(identity_refs.items())
            for mac in sorted(set(macs))]


def records_of(tenant_id: str, key: str, *, count: bool = False, **kwargs: Any) -> Any:
    """Every record of one identity `<kind>#<hmac>` (its events and states): one Query of the
    identity's shard; with `count`, how many, counted by DynamoDB (Select=COUNT)."""
    read = ConsentModel.count if count else ConsentModel.query
    return read(ConsentModel.partition(tenant_id, key), ConsentModel.sk.startswith(f"{key}#"),
                **kwargs)




def connect() -> Connection:
    """PynamoDB's connection for the ledger (its calls counted like every oblio AWS call:
    `store.counted`)."""
    return ConsentModel._get_connection().connection


# -- writing ----------------------------------------------------------------------------------


def parse_at(value: Any) -> str:
    """An RFC 3339 time, not in the future, as the ledger writes times."""
    if not isinstance(value, str):
        raise Invalid("at", "at must be an RFC 3339 time such as '2026-03-01T10:00:00Z'")
    try:
        when = clock.parse(value.strip())
    except ValueError:
        raise Invalid("at", "at must be an RFC 3339 time such as '2026-03-01T10:00:00Z'") \
            from None
    if when.tzinfo is None:
        raise Invalid("at", "at must say its time zone, e.g. '2026-03-01T10:00:00Z'")
    if when > clock.now() + timedelta(minutes=5):
        raise Invalid("at", "at is in the future: give the time the consent was given or "
                            "withdrawn, or leave it out for now")
    return clock.iso(when)


def _proof(tenant: Tenant, proof: Proof | None) -> dict[str, str] | None:
    """What is kept of `proof`: its ids as given, an IP address only as its HMAC."""
    if proof is None:
        return None
    out: dict[str, str] = {}
    for name, value in proof.model_dump(exclude_none=True).items():
        if name == "ip_address":
            out["ip_ref"] = tenant.keys.hmac("ip", value)  # never the address itself
        else:
            out[name] = value
    return out or None


def check_purpose(tenant: Tenant, purpose: str) -> str:
    """A purpose the tenant records consent for; 422 `unknown_purpose` naming it otherwise."""
    purposes = purposes_of(tenant)
    if purpose not in purposes:
        # the value sent is never repeated: a purpose is where a careless client puts an
        # e-mail address
        raise Invalid("purpose", "purpose is not one this tenant records consent for; it "
                                 f"records consent for "
                                 f"{', '.join(purposes)} (an admin adds purposes with PATCH "
                                 "/v1/tenant settings.purposes)", code="unknown_purpose")
    return purpose


def check_channel(channel: str) -> str:
    if channel not in CHANNELS:
        shown = channel if len(channel) <= 40 else "?"
        raise Invalid("channel", f"unknown channel '{shown}': use one of "
                                 f"{', '.join(CHANNELS)}", code="unknown_channel")
    return channel


def validate(tenant: Tenant, body: ConsentFields | Mapping[str, Any]) -> dict[str, Any]:
    """A consent event's fields (a `POST /v1/consents` body, without the subject) -> what is
    recorded. The shape is the model's; an unknown purpose or channel is 422 naming it."""
    if not isinstance(body, ConsentFields):
        body = parse(ConsentFields, body)
    return {"purpose": check_purpose(tenant, body.purpose),
            "channel": check_channel(body.channel), "status": body.status,
            "source": body.source or "api", "policy_version": body.policy_version,
            "notice_hash": body.notice_hash.lower() if body.notice_hash else None,
            "proof": _proof(tenant, body.proof),
            "at": parse_at(body.at) if body.at is not None else None}


def append(tenant: Tenant, keys: list[str], subject_ref: str | None, fields: dict[str, Any],
           *, recorded_by: str, request_id: str | None = None,
           emit: bool = True) -> dict[str, Any]:
    """Write one event under each ledger key, and move each key's state of the purpose when
    the event is its newest, in one transaction (retried when another writer moved a state in
    between). Returns what was recorded and what it changed."""
    if not keys or len(keys) > 50:
        raise Invalid("subject", "a consent names 1 to 50 identities")
    event_id = str(ULID())
    recorded_at = clock.iso()
    at = fields.get("at") or recorded_at
    order = f"{at}#{event_id}"
    purpose = str(fields["purpose"])
    content = {"tenant_id": tenant.tenant_id, "event_id": event_id, "order": order,
               "subject_ref": subject_ref, "purpose": purpose, "status": fields["status"],
               "channel": fields["channel"], "source": fields.get("source"),
               "policy_version": fields.get("policy_version"),
               "notice_hash": fields.get("notice_hash"), "proof": fields.get("proof"),
               "at": at, "recorded_at": recorded_at, "recorded_by": recorded_by,
               "request_id": request_id}
    digest = crypto.sha256_hex(json.dumps(content, sort_keys=True, separators=(",", ":")))
    conn = connect()
    for _ in range(_ATTEMPTS):
        states = {m.sk: m for m in ConsentModel.batch_get(
            [record_key(tenant.tenant_id, state_sk(k, purpose)) for k in keys],
            consistent_read=True)}
        newest = max(states.values(), key=lambda m: m.order, default=None)
        try:
            with TransactWrite(connection=conn) as tx:
                for k in keys:
                    tx.save(ConsentModel(sk=_event_sk(k, order), hash=digest, **content),
                            condition=ConsentModel.sk.does_not_exist())
                    state = states.get(state_sk(k, purpose))
                    if state is None:
                        tx.save(ConsentModel(sk=state_sk(k, purpose), hash=digest, **content),
                                condition=ConsentModel.sk.does_not_exist())
                    elif state.order < order:
                        tx.save(ConsentModel(sk=state_sk(k, purpose), hash=digest, **content),
                                condition=ConsentModel.order == state.order)
        except TransactWriteError:
            continue  # another writer moved a state: read them again
        break
    else:
        raise TransientError("the consent ledger is busy for this subject; try again")
    previous = newest.status if newest is not None else None
    is_newest = newest is None or newest.order < order
    changed = is_newest and previous != fields["status"]
    if emit:
        outbound.emit("ConsentChanged", tenant.tenant_id, subject_ref=subject_ref,
                    event_id=event_id, purpose=purpose, status=fields["status"],
                    previous_status=previous, state_changed=changed,
                    channel=fields["channel"], request_id=request_id)
    count("ConsentEvents", status=str(fields["status"]))
    return {"event_id": event_id, "subject_ref": subject_ref, "purpose": purpose,
            "status": fields["status"], "previous_status": previous,
            "state_changed": changed, "current_status": fields["status"] if is_newest
            else previous, "at": at, "recorded_at": recorded_at, "hash": digest}


def _event_json(m: ConsentModel) -> dict[str, Any]:
    proof = plain(m.proof) or None
    return {"event_id": m.event_id, "purpose": m.purpose, "status": m.status,
            "channel": m.channel, "source": m.source, "policy_version": m.policy_version,
            "notice_hash": m.notice_hash, "proof": proof, "at": m.at,
            "recorded_at": m.recorded_at, "recorded_by": m.recorded_by,
            "request_id": m.request_id, "hash": m.hash}


def subject_ledger(tenant: Tenant, ids: dict[str, str]) -> dict[str, Any]:
    """A subject's consents: the state of each of the tenant's purposes (`none` where nothing
    was recorded) and every event, oldest first. One Query per identity named."""
    connect()
    history: dict[str, ConsentModel] = {}
    states: dict[str, ConsentModel] = {}
    for key in subject_keys(tenant, ids):
        for m in records_of(tenant.tenant_id, key, consistent_read=True):
            if m.sk.startswith(f"{key}#e#"):
                history[m.event_id] = m
            elif m.purpose not in states or states[m.purpose].order < m.order:
                states[m.purpose] = m
    state: dict[str, Any] = {p: {"status": "none"} for p in purposes_of(tenant)}
    for purpose, m in sorted(states.items()):
        state[purpose] = {"status": m.status, "at": m.at, "event_id": m.event_id,
                          "channel": m.channel, "source": m.source,
                          "policy_version": m.policy_version}
    return {"subject_ref": tenant.keys.subject_ref(ids), "found": bool(history or states),
            "state": state,
            "history": [_event_json(m) for m in sorted(history.values(),
                                                        key=lambda m: m.order)]}


def count_records(tenant_id: str, identity_refs: dict[str, list[str]]) -> int:
    """How many ledger records are filed under these identities' HMACs, counted by DynamoDB
    (a consistent Query per identity, Select=COUNT), none read."""
    connect()
    return sum(records_of(tenant_id, key, count=True, consistent_read=True)
               for key in _identity_keys(identity_refs))


def erase_subject(tenant_id: str, identity_refs: dict[str, list[str]]) -> int:
    """Delete every ledger record (events and states) filed under these identities' HMACs
    (`kind -> [hmac, ...]`); returns how many went. Queries the subject's keys only."""
    connect()
    n = 0
    with ConsentModel.batch_write() as batch:
        for key in _identity_keys(identity_refs):
            for m in records_of(tenant_id, key, consistent_read=True,
                                attributes_to_get=["pk", "sk"]):
                batch.delete(m)
                n += 1
    return n


def move_identity(tenant_id: str, kind: str, old_macs: list[str], new_mac: str) -> int:
    """Move every ledger record filed under `kind#<old>` to `kind#<new>` (a rectified
    identity): the events copied as they are (their content and hash unchanged, only the key),
    each state copied unless the new key holds a newer one, then the old records deleted.
    Copies are written before anything is deleted, so a move cut short is finished by running
    it again (it moves what is still under the old keys); returns how many records moved.
    One Query per old identity, batched writes, no Scan."""
    connect()
    new_key = f"{kind}#{new_mac}"
    moved = 0
    for mac in sorted(set(old_macs) - {new_mac}):
        old_key = f"{kind}#{mac}"
        found = list(records_of(tenant_id, old_key, consistent_read=True))
        if not found:
            continue
        states = [m for m in found if m.sk.startswith(f"{old_key}#s#")]
        theirs = {m.sk: m for m in ConsentModel.batch_get(
            [record_key(tenant_id, new_key + m.sk[len(old_key):]) for m in states],
            consistent_read=True)} if states else {}
        with ConsentModel.batch_write() as batch:
            for m in found:
                sk = new_key + m.sk[len(old_key):]
                newer = theirs.get(sk)
                if newer is not None and newer.order >= m.order:
                    continue  # the new identity's own state is newer: it stays
                # filed under the new identity's shard, not the old one's
                copy = ConsentModel(**{**m.attribute_values, "pk": None, "sk": sk})
                batch.save(copy)
        with ConsentModel.batch_write() as batch:
            for m in found:
                batch.delete(m)
        moved += len(found)
    return moved


def on_request_finished(m: RequestModel, action: str,
                        identity_refs: dict[str, dict[str, list[str]]],
                        purposes: list[str],
                        new_refs: dict[str, dict[str, str]] | None = None) -> dict[str, Any]:
    """What a finished request does to the ledger, per tenant it reached: an erasure removes
    the subject's records; an objection records a withdrawal of each of its purposes that the
    tenant records consent for (source "objection request"); a rectification of an identity
    moves the records of the old values to the new one (`new_refs`: tenant -> kind -> the
    new value's HMAC)."""
    if action == "erase":
        return {"deleted": {t: erase_subject(t, kinds) for t, kinds in identity_refs.items()}}
    if action == "rectify":
        return {"moved": {t: sum(move_identity(t, kind, identity_refs.get(t, {}).get(kind, []),
                                               mac) for kind, mac in sorted(kinds.items()))
                          for t, kinds in sorted((new_refs or {}).items())}}
    if action != "object":
        return {}
    withdrawn: dict[str, list[str]] = {}
    for t, kinds in identity_refs.items():
        tenant = get_tenant(t)
        keys = [f"{kind}#{mac}" for kind, macs in sorted(kinds.items())
                for mac in sorted(set(macs))]
        withdrawn[t] = [p for p in purposes if p in purposes_of(tenant)]
        for purpose in withdrawn[t]:
            append(tenant, keys, m.subject_ref,
                   {"purpose": purpose, "status": "withdrawn", "channel": REQUEST_CHANNEL,
                    "source": "objection request"},
                   recorded_by=f"request:{m.request_id}", request_id=m.request_id)
    return {"withdrawn": withdrawn}


# -- signed one-click links -------------------------------------------------------------------


def seed_demo(tenant_id: str, email: str) -> int:
    """A named demo subject's consent history: a newsletter grant at sign-up, a marketing
    grant, and a withdrawal of marketing through a link. Returns the events written."""
    tenant = get_tenant(tenant_id)
    ids = {"email": email}
    keys, ref = subject_keys(tenant, ids), tenant.keys.subject_ref(ids)
    history = [
        ("newsletter", "granted", "web", "signup-form", "2025-03-02T09:14:00Z"),
        ("marketing", "granted", "web", "signup-form", "2025-03-02T09:14:00Z"),
        ("marketing", "withdrawn", "email", LINK_SOURCE, "2026-06-11T18:40:00Z"),
    ]
    for purpose, status, channel, source, at in history:
        append(tenant, keys, ref, {"purpose": purpose, "status": status, "channel": channel,
                                   "source": source, "policy_version": "2025-01",
                                   "at": parse_at(at)}, recorded_by="demo", emit=False)
    return len(history)


def load_state(tenant_id: str, key: str, purpose: str) -> ConsentModel | None:
    """One ledger key's state of a purpose (tests, tools)."""
    try:
        return ConsentModel.get(*record_key(tenant_id, state_sk(key, purpose)),
                                consistent_read=True)
    except DoesNotExist:
        return None
