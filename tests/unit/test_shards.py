"""oblio's requests and suppression tables key a tenant's items over 16 shards
(`pk = <tenant>#<shard>`), so a bulk job's writes spread over partitions; reads of one item
name its shard, reads of the whole tenant merge the shards in order, and a read by the bare
tenant id is refused rather than silently finding nothing."""

from __future__ import annotations

import base64
import json
from collections import Counter

import pytest

from oblio.control import records, suppression
from oblio.core.errors import Invalid
from oblio.rights import intake
from oblio.store import aws, shards
from oblio.store.models import RequestModel, SuppressionModel

pytestmark = pytest.mark.usefixtures("module_aws")


def rid(n: int) -> str:
    return f"01J{n:023d}"  # ULID-like: sorts by n


def write_requests(tenant: str, n: int) -> list[str]:
    ids = [rid(i) for i in range(n)]
    with RequestModel.batch_write() as batch:
        for i, request_id in enumerate(ids):
            batch.save(RequestModel(tenant_id=tenant, sk=records.request_sk(request_id),
                                    request_id=request_id, status="completed",
                                    type="erasure" if i % 3 else "access",
                                    created_at="2026-01-01T00:00:00Z", attempt=1))
    return ids


def test_a_million_subjects_writes_spread_evenly_over_the_16_shards():
    per_shard = Counter(shards.key("acme", records.request_sk(rid(i))) for i in range(16_000))
    assert sorted(per_shard) == shards.tenant_keys("acme")
    assert all(900 <= n <= 1100 for n in per_shard.values()), per_shard  # 1,000 each +-10%


def test_the_shard_is_a_stable_function_of_the_sort_key():
    assert shards.key("acme", "req#01J0") == shards.key("acme", "req#01J0")
    assert shards.key("acme", "req#01J0") == f"acme#{shards.shard('req#01J0'):02d}"
    assert {shards.key("a", "x").split("#")[1], shards.key("b", "x").split("#")[1]} == {
        f"{shards.shard('x'):02d}"}  # the tenant does not move an item's shard


def test_a_record_is_stored_under_its_shard_with_its_tenant_beside_it(tenant):
    write_requests(tenant, 1)
    sk = records.request_sk(rid(0))
    raw = aws.client("dynamodb").get_item(TableName=RequestModel.Meta.table_name,
                                          Key={"pk": {"S": shards.key(tenant, sk)},
                                               "sk": {"S": sk}})["Item"]
    assert raw["tenant_id"] == {"S": tenant} and raw["pk"]["S"] != tenant
    assert records.load(tenant, rid(0)).request_id == rid(0)


@pytest.mark.parametrize("read", [
    lambda t: RequestModel.get(t, "req#x"),
    lambda t: list(RequestModel.query(t)),
    lambda t: RequestModel.count(t),
    lambda t: list(SuppressionModel.batch_get([(t, "email#ab")])),
    lambda t: list(SuppressionModel.query(f"{t}#16")),  # no such shard
])
def test_a_read_by_the_bare_tenant_id_is_refused(tenant, read):
    with pytest.raises(shards.BareTenantKey, match="not a sharded partition key"):
        read(tenant)


def test_a_tenants_requests_are_listed_newest_first_over_every_shard_page_by_page(tenant):
    ids = write_requests(tenant, 40)
    assert len({shards.key(tenant, records.request_sk(i)) for i in ids}) > 8
    seen, cursor, pages = [], None, 0
    while True:
        page = intake.list_requests(tenant, limit=7, cursor=cursor)
        seen += [r["id"] for r in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)  # each once, in order, across the shards
    assert pages == 6  # 5 full pages and 5 left: no promise of an empty page


def test_a_filtered_list_merges_the_shards_and_stops_at_the_last_match(tenant):
    ids = write_requests(tenant, 30)
    access = [i for n, i in enumerate(ids) if n % 3 == 0]
    first = intake.list_requests(tenant, type_="access", limit=6)
    rest = intake.list_requests(tenant, type_="access", limit=6, cursor=first["next_cursor"])
    assert [r["id"] for r in first["items"] + rest["items"]] == sorted(access, reverse=True)
    assert rest["next_cursor"] is None


@pytest.mark.parametrize("cursor", [
    base64.urlsafe_b64encode(json.dumps({"sk": 5}).encode()).decode(),
    base64.urlsafe_b64encode(json.dumps({"sk": "open#erasure#x"}).encode()).decode(),
    "not-base64!",
])
def test_a_cursor_this_api_did_not_give_out_is_refused(tenant, cursor):
    with pytest.raises(Invalid, match="cursor is not one this API gave out"):
        intake.list_requests(tenant, cursor=cursor)


def test_open_markers_and_overdue_counts_work_across_shards(tenant):
    with RequestModel.batch_write() as batch:
        for i in range(20):
            batch.save(RequestModel(tenant_id=tenant, sk=records.request_sk(rid(i)),
                                    request_id=rid(i), status="running", attempt=1,
                                    due_at="2000-01-01T00:00:00Z" if i % 2 else
                                    "2999-01-01T00:00:00Z"))
    assert records.overdue_count(tenant) == 10
    first, again = (RequestModel(tenant_id=tenant, sk=records.request_sk(rid(n)),
                                 request_id=rid(n), subject_ref="ref-a", type="erasure",
                                 attempt=1) for n in (50, 51))
    assert records.insert(first, "erasure") is None
    assert records.insert(again, "erasure") == rid(50)  # the open marker is found in its shard
    records.release_open(first)
    assert records.insert(again, "erasure") is None


def test_suppression_entries_spread_over_shards_and_are_looked_up_by_their_shard(tenant):
    macs = [f"{n:064x}" for n in range(40)]
    assert suppression.add(tenant, {"email": macs}, "erasure", "R1") == 40
    table = SuppressionModel.Meta.table_name
    pks = {i["pk"]["S"] for i in aws.client("dynamodb").scan(TableName=table)["Items"]
           if i["tenant_id"]["S"] == tenant}
    assert len(pks) > 8 and tenant not in pks
    found = suppression.lookup(tenant, {"email": macs[7], "phone": "nothing"})
    assert [(f["ref"], f["reason"]) for f in found] == [("email", "erasure")]
