"""Roles: a find says in which role the subject appears in the items it reaches; what is
about her goes, where she only wrote about others only the fields that name her are
rewritten; markers are per subject and role, so a second person's pass over a shared item
is never skipped."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from oblio.core import datamap
from oblio.core.errors import DataMapError
from oblio.core.settings import DEMO_DATAMAP
from oblio.pipeline import apply, find, plan, rules, verify

DEMO: dict[str, Any] = yaml.safe_load(DEMO_DATAMAP.read_text())
A_REF, B_REF = "s_" + "a" * 40, "s_" + "b" * 40

REVIEWS = {
    "key": {"partition": "tenant_id", "sort": "review_id"},
    "find": [{"from": "contacts.contact_id", "index": "by_subject_id",
              "attribute": "subject_id"},
             {"from": "contacts.contact_id", "index": "by_author_id",
              "attribute": "author_id", "role": "author"}],
    "on_erase": "delete", "on_anonymise": "anonymise",
    "roles": {"author": {"on_erase": "anonymise", "on_anonymise": "anonymise",
                         "attributes": {"author_id": {"anonymise": "null"},
                                        "author_name": {"anonymise": "pseudonym:Colleague {n}"}
                                        }}},
    "attributes": {
        "review_id": {"category": "technical", "anonymise": "keep"},
        "subject_id": {"category": "technical", "anonymise": "keep"},
        "author_id": {"category": "technical", "anonymise": "keep"},
        "author_name": {"category": "identity", "anonymise": "keep", "other_person": True},
        "comments": {"category": "content", "anonymise": "null"},
        "rating": {"category": "non_personal"},
    },
}


def v2(table: str = "reviews", edit=None) -> dict[str, Any]:
    data = copy.deepcopy(DEMO)
    data["version"] = 2
    data.pop("register")
    data["tables"] = {"contacts": data["tables"]["contacts"],
                      "reviews": {"table": table, **copy.deepcopy(REVIEWS)}}
    if edit:
        edit(data)
    return data


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d.update(version=1), "roles need version: 2"),
    (lambda d: d["tables"]["reviews"]["find"][1].update(role="approver"),
     "a find names the role 'approver', which 'roles' does not declare"),
    (lambda d: d["tables"]["reviews"]["find"][1].pop("role"),
     "role 'author' is declared but no find names it"),
    (lambda d: d["tables"]["reviews"]["roles"]["author"]["attributes"].update(
        signature={"anonymise": "null"}),
     "role 'author', attribute 'signature': not an attribute of the table"),
    (lambda d: d["tables"]["reviews"]["roles"]["author"]["attributes"].update(
        review_id={"anonymise": "null"}), "part of the table's key"),
])
def test_the_loader_refuses_a_role_it_cannot_apply(edit, expected):
    with pytest.raises(DataMapError) as err:
        datamap.parse(v2(edit=edit))
    assert any(expected in p for p in err.value.problems), err.value.problems


@pytest.fixture
def shared(module_aws, tenant) -> dict[str, Any]:
    """A (c_a) wrote review r1 about B (c_b); B also wrote r2 about A."""
    from oblio.store import aws as oblio_aws
    from oblio.store import tables as store

    name = f"{tenant}-reviews"
    oblio_aws.client("dynamodb").create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "tenant_id", "KeyType": "HASH"},
                   {"AttributeName": "review_id", "KeyType": "RANGE"}],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a in
                              ("tenant_id", "review_id", "subject_id", "author_id")],
        GlobalSecondaryIndexes=[
            {"IndexName": f"by_{a}", "Projection": {"ProjectionType": "ALL"},
             "KeySchema": [{"AttributeName": "tenant_id", "KeyType": "HASH"},
                           {"AttributeName": a, "KeyType": "RANGE"}]}
            for a in ("subject_id", "author_id")])
    store.batch_put("demo-contacts", [
        {"tenant_id": tenant, "contact_id": "c_a", "email": f"anna@{tenant}.example",
         "first_name": "Anna"},
        {"tenant_id": tenant, "contact_id": "c_b", "email": f"bruno@{tenant}.example",
         "first_name": "Bruno"}])
    store.batch_put(name, [
        {"tenant_id": tenant, "review_id": "r1", "subject_id": "c_b", "author_id": "c_a",
         "author_name": "Anna", "comments": "Bruno misses deadlines", "rating": 2},
        {"tenant_id": tenant, "review_id": "r2", "subject_id": "c_a", "author_id": "c_b",
         "author_name": "Bruno", "comments": "Anna leads well", "rating": 5}])
    return {"tenant": tenant, "dm": datamap.parse(v2(name)), "table": name}


def _run(dm: datamap.DataMap, tenant: str, email: str, action: str, ref: str, keys: Any,
         request: str) -> dict[str, int]:
    fp = find.walk(dm, tenant, {"email": email})
    manifest = plan.unit_manifest(dm, "reviews", action, {}, fp, tenant)
    assert manifest is not None
    unit = rules.Unit(tenant, "reviews")
    counts = apply.apply_unit(dm, action, unit, manifest, keys, ref, request)
    assert verify.remaining_keys(dm, action, unit, manifest, request,
                                 subject_ref=ref) == []
    return counts


def _review(name: str, tenant: str, review_id: str) -> dict[str, Any]:
    from oblio.store import tables as store

    (item,) = store.batch_get(name, [{"tenant_id": tenant, "review_id": review_id}])
    return item


def test_the_walk_tells_items_about_her_from_items_she_wrote(shared):
    fp = find.walk(shared["dm"], shared["tenant"], {"email": f"anna@{shared['tenant']}.example"})
    assert [i["review_id"] for i in fp.items["reviews"]] == ["r2"]          # about her
    assert [i["review_id"] for i in fp.roles["reviews"]["author"]] == ["r1"]  # she wrote
    assert fp.total == 3 and fp.in_roles("reviews") == 1


def test_her_erasure_deletes_what_is_about_her_and_only_names_her_where_she_wrote(
        shared, keys):
    dm, tenant, name = shared["dm"], shared["tenant"], shared["table"]
    counts = _run(dm, tenant, f"anna@{tenant}.example", "erase", A_REF, keys, "req-a")
    assert counts["matched"] == 2 and counts["deleted"] == 1 and counts["anonymised"] == 1
    from oblio.store import tables as store

    assert store.batch_get(name, [{"tenant_id": tenant, "review_id": "r2"}]) == []
    r1 = _review(name, tenant, "r1")
    assert "author_id" not in r1 and r1["author_name"].startswith("Colleague ")
    assert r1["comments"] == "Bruno misses deadlines" and r1["subject_id"] == "c_b"
    assert r1[dm.marker(A_REF, "author")] == "req-a"


def test_a_second_persons_pass_over_a_shared_item_is_not_skipped(shared, keys):
    dm, tenant, name = shared["dm"], shared["tenant"], shared["table"]
    _run(dm, tenant, f"anna@{tenant}.example", "erase", A_REF, keys, "req-a")
    # Bruno's anonymisation reaches r1 (about him), which Anna's erasure already marked
    counts = _run(dm, tenant, f"bruno@{tenant}.example", "anonymise", B_REF, keys, "req-b")
    assert counts["anonymised"] >= 1 and counts["kept"] == 0
    r1 = _review(name, tenant, "r1")
    assert "comments" not in r1
    assert r1[dm.marker(A_REF, "author")] == "req-a"   # her marker stays
    assert r1[dm.marker(B_REF)] == "req-b"
    # a repeat of his pass changes nothing and says so
    again = _run(dm, tenant, f"bruno@{tenant}.example", "anonymise", B_REF, keys, "req-c")
    assert again["anonymised"] == 0 and again["kept"] >= 1


def test_the_export_of_an_item_in_a_role_shows_only_what_names_her():
    from oblio.access.collect import REDACTED, TablePart

    dm = datamap.parse(v2())
    part = TablePart(dm, "reviews", "")
    item = {"tenant_id": "t", "review_id": "r1", "subject_id": "c_b", "author_id": "c_a",
            "author_name": "Anna", "comments": "Bruno misses deadlines", "rating": 2}
    out, files = part.export(item, "author")
    assert out["author_id"] == "c_a" and out["review_id"] == "r1"
    assert out["comments"] == REDACTED and out["subject_id"] == REDACTED
    assert out["author_name"] == REDACTED  # other_person: even in her role, it is redacted
    assert files == []
