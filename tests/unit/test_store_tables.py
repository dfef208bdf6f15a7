"""The adapter for the tenants' tables: batched writes of 25, paginated queries, and
conditional updates that make a repeated pass a no-op. Each test works under its own tenant
in the module's AWS."""

from __future__ import annotations

from decimal import Decimal

import pytest

from oblio.store import aws as oblio_aws
from oblio.store import tables as store

CONTACTS = "demo-contacts"


class Contacts:
    """Items and keys of demo contacts under one tenant."""

    def __init__(self, tenant: str) -> None:
        self.tenant = tenant

    def item(self, i: int, **extra):
        return {"tenant_id": self.tenant, "contact_id": f"c{i:03d}", "email": f"{i}@x.y",
                **extra}

    def key(self, i: int):
        return {"tenant_id": self.tenant, "contact_id": f"c{i:03d}"}


@pytest.fixture
def c(module_aws, tenant) -> Contacts:
    return Contacts(tenant)


def test_batch_delete_of_60_keys_takes_3_calls(c):
    store.batch_put(CONTACTS, [c.item(i) for i in range(61)])
    with oblio_aws.counting() as io:
        sent = store.batch_delete(CONTACTS, [c.key(i) for i in range(60)])
    assert sent == 60
    assert io.calls["dynamodb.BatchWriteItem"] == 3
    assert io.as_dict()["dynamodb.Scan"] == 0
    assert store.batch_get(CONTACTS, [c.key(i) for i in range(61)]) == [c.item(60)]


def test_batch_get_reads_100_keys_a_call_and_skips_missing_ones(c):
    store.batch_put(CONTACTS, [c.item(i) for i in range(150)])
    with oblio_aws.counting() as io:
        found = store.batch_get(CONTACTS, [c.key(i) for i in range(210)])
    assert io.calls["dynamodb.BatchGetItem"] == 3
    assert sorted(i["contact_id"] for i in found) == [f"c{i:03d}" for i in range(150)]


def test_query_eq_reads_every_page(c):
    # DynamoDB answers a query 1 MB at a time: 30 items of 100 KB take four pages
    blob = "x" * 100_000
    store.batch_put(CONTACTS, [c.item(i, email="same@x.y", notes=blob) for i in range(30)])
    store.batch_put(CONTACTS, [c.item(100, email="other@x.y")])
    with oblio_aws.counting() as io:
        found = list(store.query_eq(CONTACTS, ("tenant_id", c.tenant), ("email", "same@x.y"),
                                    index="by_email"))
    assert sorted(i["contact_id"] for i in found) == [f"c{i:03d}" for i in range(30)]
    assert io.calls["dynamodb.Query"] == 4  # 9 + 9 + 9 + 3 items


def test_query_eq_projects_only_the_attributes_asked_for(c):
    store.batch_put(CONTACTS, [c.item(1, city="Milano", notes="n")])
    (item,) = store.query_eq(CONTACTS, ("tenant_id", c.tenant), ("email", "1@x.y"),
                             index="by_email", projection=["contact_id", "city"])
    assert item == {"contact_id": "c001", "city": "Milano"}


def test_query_eq_on_the_base_table_reads_one_tenant_only(c):
    other = Contacts(f"{c.tenant}-other")
    store.batch_put(CONTACTS, [c.item(1), other.item(1, city="Roma")])
    assert list(store.query_eq(CONTACTS, ("tenant_id", c.tenant),
                               ("contact_id", "c001"))) == [c.item(1)]
    assert list(store.query_eq(CONTACTS, ("tenant_id", f"{c.tenant}-nobody"),
                               ("contact_id", "c001"))) == []


def test_update_with_marker_is_a_no_op_the_second_time(c):
    store.batch_put(CONTACTS, [c.item(1, city="Milano")])
    assert store.update(CONTACTS, c.key(1), {"first_name": "F_1", "_m": "r1"}, ["email"],
                        only_if_absent="_m") is True
    assert store.update(CONTACTS, c.key(1), {"first_name": "F_2", "_m": "r2"}, ["city"],
                        only_if_absent="_m") is False
    (item,) = store.batch_get(CONTACTS, [c.key(1)])
    assert item == {**c.key(1), "city": "Milano", "first_name": "F_1", "_m": "r1"}


def test_update_never_creates_an_item_that_is_gone(c):
    assert store.update(CONTACTS, c.key(9), {"restricted": True}, []) is False
    assert store.batch_get(CONTACTS, [c.key(9)]) == []


def test_add_to_map_adds_counts_without_losing_any(c):
    store.batch_put(CONTACTS, [c.item(1, io={})])
    for _ in range(3):
        store.add_to_map(CONTACTS, c.key(1), "io", {"dynamodb.Query": 2},
                         {"last": ("io", "x")})
    (item,) = store.batch_get(CONTACTS, [c.key(1)])
    assert item["io"] == {"dynamodb.Query": 6, "last": "x"}


@pytest.mark.parametrize("value, back", [
    ("text", "text"), (3, Decimal(3)), (True, True), (None, None),
    (["a", 1], ["a", Decimal(1)]), ({"k": {"n": Decimal("2.5")}}, {"k": {"n": Decimal("2.5")}}),
])
def test_values_round_trip_through_dynamodb_types(value, back):
    assert store.from_ddb(store.to_ddb({"v": value}))["v"] == back
