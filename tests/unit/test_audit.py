"""The audit log is append-only and hash-chained: an entry edited or removed in the table is
detected, and the check names where the chain breaks."""

from __future__ import annotations

import itertools

import pytest

from oblio.control import audit


def _ddb():
    from oblio.store import aws

    return aws.client("dynamodb")


def _table() -> str:
    from oblio.store.models import AuditModel

    return AuditModel.Meta.table_name


def _seq(n: int) -> str:
    return str(n).zfill(12)


def _chain(tenant: str, n: int = 5) -> list[audit.Entry]:
    return [audit.append(tenant, "erasure.completed", actor="key_1", request_id=f"r{i}",
                         subject_ref=f"s_{i}", details={"n": i, "tables": {"contacts": i}})
            for i in range(1, n + 1)]


def _delete(tenant: str, seq: str) -> None:
    _ddb().delete_item(TableName=_table(), Key={"tenant_id": {"S": tenant}, "seq": {"S": seq}})


@pytest.fixture
def t1(module_aws, tenant) -> str:
    """A tenant with a chain of 5 entries, beside another tenant's chain of 2."""
    _chain(tenant)
    _chain(f"{tenant}-other", 2)
    return tenant


@pytest.fixture
def t2(t1) -> str:
    return f"{t1}-other"


def test_append_builds_a_chain_that_verifies(module_aws, tenant):
    chain = _chain(tenant)
    _chain(f"{tenant}-other", 2)
    assert [e.id for e in chain] == [_seq(i) for i in range(1, 6)]
    assert len({e.hash for e in chain}) == 5
    assert audit.verify(tenant) == {"valid": True, "entries": 5, "first_broken": None,
        "certificates": 0, "next_cursor": None}
    assert audit.verify(f"{tenant}-other") == {"valid": True, "entries": 2,
                                               "first_broken": None,
        "certificates": 0, "next_cursor": None}


def test_each_entry_carries_the_previous_entrys_hash(t1):
    page, _ = audit.entries(t1, newest_first=False)
    rows = [audit.to_json(m) for m in page]
    assert rows[0]["prev_hash"] == audit.GENESIS
    for before, after in itertools.pairwise(rows):
        assert after["prev_hash"] == before["hash"]
    assert rows[2]["details"] == {"n": 3, "tables": {"contacts": 3}}
    assert rows[2]["subject_ref"] == "s_3" and rows[2]["request_id"] == "r3"


def test_an_empty_log_verifies(module_aws, tenant):
    assert audit.verify(tenant) == {"valid": True, "entries": 0, "first_broken": None,
        "certificates": 0, "next_cursor": None}


def test_editing_an_entrys_details_breaks_the_chain_at_that_entry(t1, t2):
    _ddb().update_item(TableName=_table(),
                       Key={"tenant_id": {"S": t1}, "seq": {"S": _seq(3)}},
                       UpdateExpression="SET details.#n = :v",
                       ExpressionAttributeNames={"#n": "n"},
                       ExpressionAttributeValues={":v": {"N": "99"}})
    result = audit.verify(t1)
    assert result["valid"] is False and result["first_broken"] == _seq(3)
    assert audit.verify(t2)["valid"] is True
    # putting the original value back makes the chain whole again: the hash covers content
    _ddb().update_item(TableName=_table(),
                       Key={"tenant_id": {"S": t1}, "seq": {"S": _seq(3)}},
                       UpdateExpression="SET details.#n = :v",
                       ExpressionAttributeNames={"#n": "n"},
                       ExpressionAttributeValues={":v": {"N": "3"}})
    assert audit.verify(t1)["valid"] is True


def test_editing_an_entry_and_its_hash_breaks_the_chain_at_the_next_entry(t1):
    from oblio.store.models import AuditModel

    m = AuditModel.get(t1, _seq(2))
    m.action = "nothing.happened"
    m.hash = audit._digest(m.prev_hash, audit._body(m))
    m.save()
    assert audit.verify(t1)["first_broken"] == _seq(3)


def test_deleting_the_last_entry_is_detected(t1):
    _delete(t1, _seq(5))
    assert audit.verify(t1) == {"valid": False, "entries": 4, "first_broken": _seq(5),
                                "problem": "the last entries were removed",
                                "certificates": 0, "next_cursor": None}


def test_deleting_a_middle_entry_is_detected(t1):
    _delete(t1, _seq(3))
    result = audit.verify(t1)
    assert result["valid"] is False and result["first_broken"] == _seq(4)


def test_deleting_the_head_is_detected(t1):
    _delete(t1, audit.HEAD)
    assert audit.verify(t1)["valid"] is False


def test_appending_after_a_verified_chain_continues_it(t1):
    entry = audit.append(t1, "export.completed", actor="key_2")
    assert entry.id == _seq(6)
    assert audit.verify(t1) == {"valid": True, "entries": 6, "first_broken": None,
        "certificates": 0, "next_cursor": None}


def test_entries_are_paged_newest_first(t1):
    page, cursor = audit.entries(t1, limit=2)
    assert [m.seq for m in page] == [_seq(5), _seq(4)] and cursor == _seq(4)
    page, cursor = audit.entries(t1, limit=2, start=cursor)
    assert [m.seq for m in page] == [_seq(3), _seq(2)] and cursor == _seq(2)
    page, cursor = audit.entries(t1, limit=2, start=cursor)
    assert [m.seq for m in page] == [_seq(1)] and cursor is None


def test_entries_oldest_first_and_never_the_head(t1):
    page, cursor = audit.entries(t1, newest_first=False)
    assert [m.seq for m in page] == [_seq(i) for i in range(1, 6)] and cursor is None
    page, cursor = audit.entries(t1, newest_first=False, limit=3)
    assert [m.seq for m in page] == [_seq(1), _seq(2), _seq(3)]
    page, _ = audit.entries(t1, newest_first=False, limit=3, start=cursor)
    assert [m.seq for m in page] == [_seq(4), _seq(5)]


def test_to_json_has_no_internal_fields(t1):
    page, _ = audit.entries(t1, limit=1)
    row = audit.to_json(page[0])
    assert set(row) == {"id", "at", "action", "actor", "request_id", "subject_ref", "details",
                        "prev_hash", "hash"}
    assert row["id"] == _seq(5) and row["action"] == "erasure.completed"


@pytest.mark.parametrize("cursor", ["HEAD", "ZZZ", "~"])
def test_a_cursor_from_a_client_never_pages_onto_the_chains_head(t1, cursor):
    page, _ = audit.entries(t1, limit=2, start=cursor)
    assert [m.seq for m in page] == [_seq(5), _seq(4)]


def test_a_keyed_append_appends_once_however_often_it_is_repeated(module_aws, tenant):
    first = audit.append(tenant, "bulk_chunk_erased", actor="bulk:j", once="bulk:j:c0")
    again = audit.append(tenant, "bulk_chunk_erased", actor="bulk:j", once="bulk:j:c0")
    other = audit.append(tenant, "bulk_chunk_erased", actor="bulk:j", once="bulk:j:c1")
    assert again == first and other.id == _seq(2)
    page, _ = audit.entries(tenant, newest_first=False)
    assert [m.seq for m in page] == [_seq(1), _seq(2)]  # the markers are no entries
    assert audit.verify(tenant)["entries"] == 2 and audit.verify(tenant)["valid"] is True


def test_a_cursor_that_was_not_given_is_refused(module_aws, tenant):
    from oblio.core.errors import Invalid

    with pytest.raises(Invalid):
        audit.verify(tenant, cursor="not-a-cursor")


def _forged(tenant_id: str, after: str, prev: str, n: int, certs: int = 0) -> str:
    """A cursor as the endpoint wrote one before cursors were signed: the state a client can
    read off `GET /v1/audit` (the last entry's id and hash, how many there are)."""
    import base64
    import json

    raw = json.dumps({"t": tenant_id, "a": after, "p": prev, "n": n, "c": certs}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.usefixtures("provisioned")
def test_a_cursor_made_up_from_the_chains_visible_state_is_refused_not_answered_valid(t):
    """Before cursors were signed, this cursor (the last entry's id and hash and the count,
    all of them in the entries' listing) answered `valid: true, entries: 5` having checked
    none of the five, and it would have after any of them was changed."""
    from oblio.core.errors import Invalid

    chain = _chain(t.tenant_id)
    _ddb().update_item(TableName=_table(),
                       Key={"tenant_id": {"S": t.tenant_id}, "seq": {"S": _seq(2)}},
                       UpdateExpression="SET actor = :a", ExpressionAttributeValues={
                           ":a": {"S": "someone-else"}})
    assert audit.verify(t.tenant_id)["first_broken"] == _seq(2)
    with pytest.raises(Invalid) as refused:
        audit.verify(t.tenant_id, cursor=_forged(t.tenant_id, _seq(5), chain[-1].hash, 5))
    assert refused.value.field == "cursor"
    assert chain[-1].hash not in str(refused.value)  # the error names the field only


@pytest.mark.usefixtures("provisioned")
def test_a_cursor_pages_only_for_the_tenant_it_was_given_to_and_only_as_it_was_given(t):
    from oblio.core.errors import Invalid
    from tests.unit import world

    _chain(t.tenant_id)
    first = audit.verify(t.tenant_id, limit=2)
    assert (first["valid"], first["entries"]) == (True, 2)
    cursor = first["next_cursor"]
    rest = audit.verify(t.tenant_id, limit=10, cursor=cursor)
    assert rest == {"valid": True, "entries": 5, "first_broken": None, "certificates": 0,
                    "next_cursor": None}
    other = world.new_tenant(f"{t.tenant_id}-other")
    _chain(other.tenant_id, 2)
    payload, signature = cursor[:-43], cursor[-43:]
    assert "." not in cursor  # the API's pattern for a cursor: URL-safe base64 only
    for bad in (f"{payload[:-2]}{'AB' if payload[-2:] != 'AB' else 'CD'}{signature}",
                f"{payload}{signature[::-1]}", payload, signature, f"{cursor}x", "x"):
        with pytest.raises(Invalid):
            audit.verify(t.tenant_id, cursor=bad)
    with pytest.raises(Invalid):  # another tenant's chain, with this tenant's cursor
        audit.verify(other.tenant_id, cursor=cursor)


# -- a guarded append -------------------------------------------------------------------------

def test_an_append_is_made_only_while_its_guard_holds(module_aws, tenant):
    """The end of a job's run is audited only while the job is on that run: the guard is a
    condition on the job's record in the entry's own transaction, so a task that outlived
    its run (the job was resumed meanwhile) appends nothing, and the chain is unbroken."""
    from oblio.jobs import chunks
    from oblio.store.models import RetentionSweepModel

    sweep = RetentionSweepModel(tenant_id=tenant, sk="run#s1", sweep_id="s1", attempt=1)
    sweep.save()
    first = audit.append(tenant, "retention_sweep_completed", actor="oblio",
                         guard=chunks.on_run(sweep, 1), once="sweep:s1:1:end")
    assert first.id == _seq(1)
    sweep.update(actions=[RetentionSweepModel.attempt.set(2)])  # resumed

    with pytest.raises(audit.Refused):
        audit.append(tenant, "retention_sweep_completed", actor="oblio",
                     guard=chunks.on_run(sweep, 1))
    # a keyed append made while the guard held is still answered, not appended again
    assert audit.append(tenant, "retention_sweep_completed", actor="oblio",
                        guard=chunks.on_run(sweep, 1), once="sweep:s1:1:end") == first
    second = audit.append(tenant, "retention_sweep_completed", actor="oblio",
                          guard=chunks.on_run(sweep, 2))
    assert second.id == _seq(2)
    assert audit.verify(tenant)["valid"] is True and audit.verify(tenant)["entries"] == 2


def test_a_guard_on_a_record_that_is_not_there_refuses(module_aws, tenant):
    from oblio.jobs import chunks
    from oblio.store.models import BackfillModel

    gone = BackfillModel(tenant_id=tenant, sk="run#b1", backfill_id="b1", attempt=2)
    for n in (2, 1):  # run 1 too, whose condition also holds of a record without a run
        with pytest.raises(audit.Refused):
            audit.append(tenant, "shadow_backfill_completed", actor="oblio",
                         guard=chunks.on_run(gone, n))
    assert audit.entries(tenant)[0] == []
