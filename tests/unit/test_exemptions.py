"""Exemptions (Art. 17(3)) and legal holds: a table the law requires kept is retained with
its legal basis and period, rewriting only what its explicit erase rules say; an item on
legal hold is not touched; both are counted with their reasons and never called left."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from oblio.core import datamap
from oblio.core.errors import DataMapError
from oblio.core.settings import DEMO_DATAMAP
from oblio.pipeline import apply, find, outcome, rules, verify

DEMO: dict[str, Any] = yaml.safe_load(DEMO_DATAMAP.read_text())
SUBJECT = "s_" + "1" * 40
BASIS = "Art. 17(3)(b) GDPR; commercial code: contracts are kept 10 years"


def v2(edit=None) -> dict[str, Any]:
    data = copy.deepcopy(DEMO)
    data["version"] = 2
    docs = data["tables"]["documents"]
    docs.update(on_erase="retain", on_anonymise="retain",
                retain={"legal_basis": BASIS, "period": "P10Y"})
    docs["attributes"]["title"]["erase"] = "null"   # the title goes, the contract stays
    contacts = data["tables"]["contacts"]
    contacts["legal_hold"] = {"attribute": "legal_hold", "reason_attribute": "hold_reason",
                              "reason": "litigation hold"}
    contacts["attributes"]["hold_reason"] = {"category": "non_personal"}
    if edit:
        edit(data)
    return data


def problems(edit) -> list[str]:
    with pytest.raises(DataMapError) as err:
        datamap.parse(v2(edit))
    return err.value.problems


@pytest.mark.parametrize("edit, expected", [
    (lambda d: d.update(version=1), "exemptions (on_erase: retain, retain, legal_hold) need "
                                    "version: 2"),
    (lambda d: d["tables"]["documents"].pop("retain"), "no 'retain: {legal_basis, period}'"),
    (lambda d: d["tables"]["documents"].update(on_erase="delete", on_anonymise="delete"),
     "'retain' is given but neither on_erase nor on_anonymise is 'retain'"),
    (lambda d: d["tables"]["contacts"]["legal_hold"].update(attribute="frozen"),
     "legal_hold attribute 'frozen' is not an attribute of the table"),
    (lambda d: d["tables"]["documents"]["retain"].update(legal_basis=""),
     "legal_basis"),
])
def test_the_loader_refuses_an_exemption_it_cannot_apply(edit, expected):
    found = problems(edit)
    assert any(expected in p for p in found), found


def test_held_items_are_told_apart_with_their_reasons():
    t = datamap.parse(v2()).tables["contacts"]
    items = [{"contact_id": "a", "legal_hold": True, "hold_reason": "case LIT-17"},
             {"contact_id": "b", "legal_hold": False},
             {"contact_id": "c", "legal_hold": "yes"},
             {"contact_id": "d", "legal_hold": True,
              "hold_reason": "ask mario.rossi@example.com"}]
    acted, held = rules.split_held(t, items)
    assert [i["contact_id"] for i in acted] == ["b"]
    reasons = [r for _, r in held]
    assert reasons[:2] == ["case LIT-17", "litigation hold"]
    assert "mario.rossi@example.com" not in reasons[2]


@pytest.fixture(scope="module")
def files(module_aws) -> str:
    from oblio.store import aws as oblio_aws

    s3 = oblio_aws.client("s3")
    s3.create_bucket(Bucket="demo-files",
                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_versioning(Bucket="demo-files", VersioningConfiguration={"Status": "Enabled"})
    return "demo-files"


def test_a_retained_item_keeps_all_but_its_explicit_erase_rules_and_its_files(
        module_aws, tenant, files, keys):
    from oblio.store import aws as oblio_aws
    from oblio.store import tables as store

    dm = datamap.parse(v2())
    t = dm.tables["documents"]
    key = f"{tenant}/docs/contract.pdf"
    oblio_aws.client("s3").put_object(Bucket=files, Key=key, Body=b"%PDF")
    doc = {"tenant_id": tenant, "document_id": "d1", "contact_id": "c1",
           "title": "Contract of Mario Rossi", "kind": "contract", "s3_key": key}
    store.batch_put("demo-documents", [doc])
    unit = rules.Unit(tenant, "documents")
    manifest = {"keys": [find.key_of(t, doc)], "s3": find.s3_refs(dm, t, [doc])}
    counts = apply.apply_unit(dm, "erase", unit, manifest, keys, SUBJECT, "r1")
    assert counts["retained"] == 1 and counts["deleted"] == counts["files_deleted"] == 0
    (after,) = store.batch_get("demo-documents", manifest["keys"])
    assert "title" not in after and after["s3_key"] == key and after["contact_id"] == "c1"
    assert verify.check_unit(dm, "erase", unit, manifest, "r1")["items_remaining"] == 0
    versions = oblio_aws.client("s3").list_object_versions(Bucket=files, Prefix=key)
    assert len(versions["Versions"]) == 1
    # again: nothing more changes
    assert apply.apply_unit(dm, "erase", unit, manifest, keys, SUBJECT, "r1")["retained"] == 1


def test_a_hold_blocks_the_erasure_of_one_item_even_when_set_after_the_plan(
        module_aws, tenant, keys):
    from oblio.store import tables as store

    dm = datamap.parse(v2())
    t = dm.tables["contacts"]
    held_early = {"tenant_id": tenant, "contact_id": "h1", "legal_hold": True}
    free = {"tenant_id": tenant, "contact_id": "f1", "legal_hold": False}
    late = {"tenant_id": tenant, "contact_id": "h2", "legal_hold": False}
    store.batch_put("demo-contacts", [held_early, free, late])
    acted, held = rules.split_held(t, [held_early, free, late])
    manifest = {"keys": [find.key_of(t, i) for i in acted],
                "held": [{"key": find.key_of(t, i), "reason": r} for i, r in held]}
    store.batch_put("demo-contacts", [{**late, "legal_hold": True}])  # held since the plan
    unit = rules.Unit(tenant, "contacts")
    counts = apply.apply_unit(dm, "erase", unit, manifest, keys, SUBJECT, "r1")
    assert counts["matched"] == 3 and counts["deleted"] == 1 and counts["held"] == 2
    left = {i["contact_id"] for i in store.batch_get("demo-contacts", [
        find.key_of(t, i) for i in (held_early, free, late)])}
    assert left == {"h1", "h2"}
    assert apply.held_reasons(t, manifest, counts["held"]) == {"litigation hold": 2}


def test_exemptions_are_summed_with_their_basis_and_reasons():
    dm = datamap.parse(v2())
    counts = {"demo": {"documents": {"matched": 2, "retained": 2, "held": 0},
                       "contacts": {"matched": 1, "retained": 0, "held": 1}}}
    units = {"demo/contacts": {"held_reasons": {"case LIT-17": 1}}}
    ex = outcome.exemptions(dm, counts, units)
    assert ex["retained"] == 2 and ex["held"] == 1
    assert ex["exemptions"] == [{"tenant_id": "demo", "table": "documents", "retained": 2,
                                 "legal_basis": BASIS, "period": "P10Y"}]
    assert ex["holds"][0]["reasons"] == {"case LIT-17": 1}
    assert "retained because a law requires" in (outcome.exemption_message(ex) or "")


def test_everything_exempt_is_not_called_verified():
    v = outcome.verdict(planned=0, files_planned=0, remaining={}, files_remaining=0, exempt=2)
    assert v == {"passed": None, "outcome": "all_exempt"}
    assert outcome.status_of(v) == "completed"
