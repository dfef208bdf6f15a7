"""The archive index (control/exports.py): an access request indexes its archive under each
identity HMAC it was filed with and its subject reference before it writes it; an erasure,
a bulk chunk and the export-before-anonymisation rule find the subject's archives by her own
keys, in one BatchGetItem, without reading the tenant's requests."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from ulid import ULID

from oblio.control import exports, records
from oblio.core import clock
from oblio.store import aws, shards
from oblio.store.models import ARCHIVE_INDEX_BUILT, ArchiveIndexModel, RequestModel, plain
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")

MARIO = {"email": "mario@example.com"}


@pytest.fixture
def mario(demo_map, t) -> dict[str, Any]:
    return world.seed(demo_map, t.tenant_id, "mario@example.com", "+393331234567", "CRM-1")


def _item(tenant_id: str, sk: str) -> dict[str, str]:
    return plain(ArchiveIndexModel.get(shards.key(tenant_id, sk), sk).archives) or {}


def _export(t: Any, identities: dict[str, str]) -> str:
    """An access request of the subject, collected and packaged as the workflow does."""
    from oblio.access import work as export_work

    rid = world.new_request(t, "access", identities, action="export")
    assert export_work.work(rid, t.tenant_id)["inline"] is True
    return rid


def _exports_bucket() -> str:
    from oblio.core.settings import get_settings

    return get_settings().bucket("exports")


def _counted(fn: Any) -> tuple[Any, dict[str, int]]:
    from tests.bench.typed import count_pynamodb

    count_pynamodb(aws)
    with aws.counting() as io:
        out = fn()
    return out, {k: int(v) for k, v in io.calls.items()}


def test_packaging_indexes_the_archive_under_each_identity_and_the_subject(t, mario):
    rid = _export(t, {"email": "mario@example.com", "phone": "+393331234567"})
    m = records.load(t.tenant_id, rid)
    expires = records.units_of(m)["_package"]["expires_at"]
    for kind, mac in plain(m.identity_refs).items():
        assert _item(t.tenant_id, f"arc#id#{kind}#{mac}") == {rid: expires}
    assert _item(t.tenant_id, f"arc#sub#{m.subject_ref}") == {rid: expires}
    # HMACs and request ids only: no identity in clear anywhere in the index
    from oblio.core.settings import get_settings

    raw = str(aws.client("dynamodb").scan(TableName=get_settings().table("requests"))["Items"])
    assert "arc#id#email#" in raw
    assert "mario@example.com" not in raw and "393331234567" not in raw


def test_an_erasure_by_phone_finds_an_export_asked_by_email(t, mario):
    rid_export = _export(t, MARIO)
    rid = world.new_request(t, "erasure", {"phone": "+393331234567"}, action="erase")
    done = world.run(rid, t.tenant_id, "erase")
    assert done["result"]["certificate"]["archives_deleted"] == 1
    assert world.versions(_exports_bucket(), f"exports/{t.tenant_id}/{rid_export}") == []


def test_the_look_up_reads_the_index_not_the_tenants_requests(t, mario):
    rid = _export(t, MARIO)
    # a big tenant: many finished requests of other subjects in the last weeks
    records.put_many([RequestModel(
        tenant_id=t.tenant_id, sk=records.request_sk(r), request_id=r, type="erasure",
        status="completed", subject_ref=f"s_{n}", identity_refs={"email": f"{n:064x}"},
        created_at=clock.iso(), units={}, io={}, attempt=1)
        for n, r in enumerate(str(ULID()) for _ in range(60))])
    macs = {"email": [plain(records.load(t.tenant_id, rid).identity_refs)["email"]]}
    found, calls = _counted(lambda: exports.archives_of(t.tenant_id, macs))
    assert found == [{"tenant_id": t.tenant_id, "request_id": rid}]
    assert calls == {"dynamodb.BatchGetItem": 1}


def test_a_chunk_reads_the_index_once_for_all_its_lines(t, mario):
    rid = _export(t, MARIO)
    mac = plain(records.load(t.tenant_id, rid).identity_refs)["email"]
    lines = [{"email": [mac]}, {}, {"email": ["0" * 64], "phone": ["1" * 64]}, {"email": [mac]}]
    found, calls = _counted(lambda: exports.archives_of_many(t.tenant_id, lines))
    mine = [{"tenant_id": t.tenant_id, "request_id": rid}]
    assert found == [mine, [], [], mine]
    assert calls == {"dynamodb.BatchGetItem": 1}


def test_entries_long_expired_are_pruned_when_the_item_is_written_again(t):
    old = clock.iso(clock.now() - exports.LOOKED_FOR - timedelta(days=1))
    recent = clock.iso(clock.now() - timedelta(days=1))
    refs = {"email": "a" * 64}
    exports.index_archive(t.tenant_id, "01OLD", refs, None, old)
    exports.index_archive(t.tenant_id, "01RECENT", refs, None, recent)
    assert exports.archives_of(t.tenant_id, {"email": ["a" * 64]}) == [
        {"tenant_id": t.tenant_id, "request_id": "01RECENT"}]
    exports.index_archive(t.tenant_id, "01NEW", refs, None, clock.iso())
    assert set(_item(t.tenant_id, "arc#id#email#" + "a" * 64)) == {"01RECENT", "01NEW"}


def test_the_valid_export_is_the_newest_finished_unexpired_one(t, mario):
    from oblio.access import deliver

    ref = t.keys.subject_ref(MARIO)
    assert exports.latest_valid_export(t.tenant_id, ref) is None
    first = _export(t, MARIO)
    # packaged but not finished: not an export the rule accepts yet
    assert exports.latest_valid_export(t.tenant_id, ref) is None
    deliver.finish(first, t.tenant_id)
    assert exports.latest_valid_export(t.tenant_id, ref).request_id == first
    second = _export(t, MARIO)
    deliver.finish(second, t.tenant_id)
    assert exports.latest_valid_export(t.tenant_id, ref).request_id == second
    # the second's archive expired: the first is still valid
    m = records.load(t.tenant_id, second)
    past = clock.iso(clock.now() - timedelta(minutes=1))
    m.update(actions=[RequestModel.result["expires_at"].set(past)])
    exports.index_archive(t.tenant_id, second, plain(m.identity_refs), ref, past)
    assert exports.latest_valid_export(t.tenant_id, ref).request_id == first


def test_a_tenant_without_the_mark_is_indexed_from_its_records_once(t, mario):
    ArchiveIndexModel(shards.key(t.tenant_id, ARCHIVE_INDEX_BUILT), ARCHIVE_INDEX_BUILT).delete()
    rid = world.new_request(t, "access", MARIO, action="export")
    expires = clock.iso(clock.now() + timedelta(days=3))
    records.load(t.tenant_id, rid).update(actions=[
        RequestModel.status.set("completed"), RequestModel.result.set({"expires_at": expires})])
    macs = {"email": [t.keys.hmac("email", "mario@example.com")]}
    found, calls = _counted(lambda: exports.archives_of(t.tenant_id, macs))
    assert found == [{"tenant_id": t.tenant_id, "request_id": rid}]
    assert calls["dynamodb.Query"] == shards.SHARDS  # the window, once
    _, again = _counted(lambda: exports.archives_of(t.tenant_id, macs))
    assert again == {"dynamodb.BatchGetItem": 1}


def test_the_look_up_is_strongly_consistent(t):
    # an entry added a moment ago (an export just packaged) must be read by the erasure
    # planned right after it, and the mark a migration just wrote by the look-up after it
    sent: list[dict[str, Any]] = []
    events = ArchiveIndexModel._get_connection().connection.client.meta.events

    def capture(params: dict[str, Any], **_: Any) -> None:
        sent.append(params)

    events.register("before-call.dynamodb.BatchGetItem", capture)
    try:
        exports.archives_of(t.tenant_id, {"email": ["c" * 64]})
    finally:
        events.unregister("before-call.dynamodb.BatchGetItem", capture)
    (params,) = sent
    body = params["body"]
    body = json.loads(body) if isinstance(body, bytes | str) else body
    assert body["RequestItems"] and all(spec["ConsistentRead"] is True
                                        for spec in body["RequestItems"].values())
