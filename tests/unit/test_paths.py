"""Attribute paths: a rule on `home.street` rewrites only that path, `annexes[].s3_key`
reaches every element, S3 pointers are keys or `{bucket, key}` maps at any path, and the
loader refuses paths it cannot use."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from oblio.core import datamap, paths
from oblio.core.errors import DataMapError
from oblio.core.settings import DEMO_DATAMAP
from oblio.pipeline import apply, find, rules, verify

DEMO: dict[str, Any] = yaml.safe_load(DEMO_DATAMAP.read_text())
SUBJECT = "s_" + "1" * 40

NESTED = {
    "home.street": {"category": "contact", "anonymise": "null"},
    "home.city": {"category": "contact", "anonymise": "keep"},
    "home.geo": {"category": "contact", "anonymise": "null", "export": False},
    "annexes[].title": {"category": "content", "anonymise": "keep"},
    "annexes[].s3_key": {"category": "content", "s3": "files", "anonymise": "null"},
    "portrait": {"category": "identity", "s3": "files", "anonymise": "null"},
    "emergency.name": {"category": "contact", "anonymise": "mask", "other_person": True},
    "aliases[]": {"category": "identity", "anonymise": "null"},
    "crm.contact_id": {"category": "technical", "anonymise": "keep"},
    "crm.email": {"category": "identity", "identity": "email", "anonymise": "null"},
}


def nested_map(edit=None) -> datamap.DataMap:
    data = copy.deepcopy(DEMO)
    data["tables"]["contacts"]["attributes"].update(copy.deepcopy(NESTED))
    if edit:
        edit(data)
    return datamap.parse(data)


def contact(tenant: str = "demo", **extra: Any) -> dict[str, Any]:
    return {"tenant_id": tenant, "contact_id": "c1", "email": "mario.rossi@example.com",
            "first_name": "Mario",
            "home": {"street": "Via Roma 1", "city": "Milano", "zip": "20121",
                     "geo": {"lat": "45.4"}},
            "annexes": [{"title": "ID card", "s3_key": f"{tenant}/annex/1.pdf"},
                        {"title": "Contract", "s3_key": f"{tenant}/annex/2.pdf"}],
            "portrait": {"bucket": "demo-files", "key": f"{tenant}/portrait.png"},
            "emergency": {"name": "Luigi Verdi", "phone": "+390212345678"},
            "aliases": ["Super Mario", "MR"],
            "crm": {"contact_id": "c1", "email": "mario.rossi@example.com"}, **extra}


# --- parsing -------------------------------------------------------------------------------


@pytest.mark.parametrize("text, pattern", [
    ("email", ("email",)),
    ("home.street", ("home", "street")),
    ("annexes[].s3_key", ("annexes", paths.ALL, "s3_key")),
    ("aliases[]", ("aliases", paths.ALL)),
    ("grid[][]", ("grid", paths.ALL, paths.ALL)),
])
def test_a_path_parses_and_writes_back(text, pattern):
    assert paths.parse(text) == pattern and paths.text(pattern) == text


@pytest.mark.parametrize("text", ["", "a..b", "a.", "[]", "a[0]", "a[].", "a[x]"])
def test_a_malformed_path_is_refused_saying_how_to_write_one(text):
    with pytest.raises(paths.PathError, match=r"e\.g\. 'address\.street'"):
        paths.parse(text)


def test_values_reach_every_element_and_skip_what_has_another_shape():
    item = contact()
    assert [v for _, v in paths.values(item, "annexes[].s3_key")] == [
        "demo/annex/1.pdf", "demo/annex/2.pdf"]
    assert [loc for loc, _ in paths.values(item, "annexes[].s3_key")] == [
        ("annexes", 0, "s3_key"), ("annexes", 1, "s3_key")]
    assert paths.values(item, "home.street") == [(("home", "street"), "Via Roma 1")]
    assert paths.values(item, "home.street.name") == []  # a string has no members
    assert paths.values(item, "missing.x") == []
    assert paths.values(item, "email") == [("email", "mario.rossi@example.com")]


# --- rules on paths ------------------------------------------------------------------------


def test_a_rule_on_a_path_rewrites_only_that_path(keys):
    dm = nested_map()
    sets, removes = rules.rewrite(dm, dm.tables["contacts"], contact(), "anonymise", keys,
                                  SUBJECT)
    assert ("home", "street") in removes and ("home", "geo") in removes
    # home.city is kept; home.zip, which the map does not name, goes as unknown data does
    assert ("home", "city") not in removes and ("home", "zip") in removes
    assert "home" not in removes and "home" not in sets
    assert ("annexes", 0, "s3_key") in removes and ("annexes", 1, "s3_key") in removes
    assert not any(isinstance(r, tuple) and r[-1] == "title" for r in removes)
    assert sets[("emergency", "name")] == rules.MASK
    assert ("emergency", "phone") in removes  # unmapped inside a mapped parent's children
    assert ("aliases", 0) in removes and ("aliases", 1) in removes
    assert "portrait" in removes and "email" in removes
    assert ("crm", "email") in removes and ("crm", "contact_id") not in removes


def test_nested_identity_values_feed_suppression_and_the_leak_check(keys):
    dm = nested_map()
    values = rules.identifying_values(dm, "contacts", [contact(email="x@y.z")])
    assert "mario.rossi@example.com" in values and "Super Mario" in values
    fp = find.Footprint("demo", {"contacts": [contact(email="x@y.z")]})
    refs = find.identity_refs(dm, keys, fp, {"email": "x@y.z"}, "IT")
    assert keys.hmac("email", "mario.rossi@example.com") in refs["email"]


def test_pointers_are_keys_or_bucket_key_maps_at_any_path():
    dm = nested_map()
    t = dm.tables["contacts"]
    item = contact()
    assert sorted(find.s3_refs(dm, t, [item])) == [
        ("demo-files", "demo/annex/1.pdf"), ("demo-files", "demo/annex/2.pdf"),
        ("demo-files", "demo/portrait.png")]
    assert find.outside_refs(dm, t, [item]) == 0
    elsewhere = contact(portrait={"bucket": "someone-elses", "key": "x.png"})
    assert ("someone-elses", "x.png") not in find.s3_refs(dm, t, [elsewhere])
    assert find.outside_refs(dm, t, [elsewhere]) == 1
    # a map without a bucket is in the attribute's declared bucket
    bare = contact(portrait={"key": "demo/p2.png"})
    assert ("demo-files", "demo/p2.png") in find.s3_refs(dm, t, [bare])


# --- applying and verifying, on the in-process DynamoDB and S3 ------------------------------


@pytest.fixture(scope="module")
def files(module_aws) -> str:
    from oblio.store import aws as oblio_aws

    s3 = oblio_aws.client("s3")
    s3.create_bucket(Bucket="demo-files",
                     CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    s3.put_bucket_versioning(Bucket="demo-files", VersioningConfiguration={"Status": "Enabled"})
    return "demo-files"


def test_anonymising_rewrites_nested_places_and_deletes_nested_files(module_aws, tenant,
                                                                     files, keys):
    from oblio.store import aws as oblio_aws
    from oblio.store import tables as store

    dm = nested_map()
    s3 = oblio_aws.client("s3")
    item = contact(tenant)
    for key in (f"{tenant}/annex/1.pdf", f"{tenant}/annex/2.pdf", f"{tenant}/portrait.png"):
        s3.put_object(Bucket=files, Key=key, Body=b"v1")
        s3.put_object(Bucket=files, Key=key, Body=b"v2")
    s3.put_object(Bucket=files, Key=f"{tenant}/annex/3.pdf", Body=b"someone else's")
    store.batch_put("demo-contacts", [item])
    t = dm.tables["contacts"]
    unit = rules.Unit(tenant, "contacts")
    manifest = {"keys": [find.key_of(t, item)], "s3": find.s3_refs(dm, t, [item])}
    counts = apply.apply_unit(dm, "anonymise", unit, manifest, keys, SUBJECT, "r1")
    assert counts["anonymised"] == 1 and counts["files_deleted"] == 3
    (after,) = store.batch_get("demo-contacts", manifest["keys"])
    assert after["home"] == {"city": "Milano"}
    assert after["annexes"] == [{"title": "ID card"}, {"title": "Contract"}]
    assert after["emergency"] == {"name": rules.MASK}
    assert after["aliases"] == [] and after["crm"] == {"contact_id": "c1"}
    assert "portrait" not in after and "email" not in after
    left = s3.list_object_versions(Bucket=files, Prefix=f"{tenant}/").get("Versions", [])
    assert [v["Key"] for v in left] == [f"{tenant}/annex/3.pdf"]
    identifying = rules.value_refs(keys, rules.identifying_values(dm, "contacts", [item]))
    assert verify.check_unit(dm, "anonymise", unit, manifest, "r1", keys=keys,
                             identifying=identifying) == {
        "checked": 1, "items_remaining": 0, "files_remaining": 0}


def test_verification_finds_a_nested_value_the_rules_remove(module_aws, tenant, keys):
    from oblio.store import tables as store

    dm = nested_map()
    item = contact(tenant, **{dm.anonymised_marker: "r1"})
    item.pop("email")
    store.batch_put("demo-contacts", [item])  # marked, but home.street is still there
    unit = rules.Unit(tenant, "contacts")
    manifest = {"keys": [find.key_of(dm.tables["contacts"], item)]}
    assert verify.remaining_keys(dm, "anonymise", unit, manifest, "r1") == manifest["keys"]


def test_a_rectification_sets_a_nested_identity_where_the_item_has_it(module_aws, tenant,
                                                                      keys):
    from oblio.store import tables as store

    dm = nested_map()
    item = contact(tenant)
    store.batch_put("demo-contacts", [item])
    unit = rules.Unit(tenant, "contacts")
    manifest = {"keys": [find.key_of(dm.tables["contacts"], item)]}
    params = {"changes": {"email": "new@example.org"}}
    assert apply.apply_unit(dm, "rectify", unit, manifest, keys, SUBJECT, "r1",
                            params)["updated"] == 1
    (after,) = store.batch_get("demo-contacts", manifest["keys"])
    assert after["email"] == after["crm"]["email"] == "new@example.org"
    assert after["home"] == item["home"]
    assert verify.remaining_keys(dm, "rectify", unit, manifest, "r1", params) == []


def test_a_reference_through_a_nested_path_is_walked(module_aws, tenant):
    from oblio.store import tables as store

    def edit(d):
        d["tables"]["tickets"]["find"] = [{"from": "contacts.crm.contact_id",
                                           "index": "by_contact_id",
                                           "attribute": "contact_id"}]

    dm = nested_map(edit)
    store.batch_put("demo-contacts", [contact(tenant, contact_id="c9")])  # crm.contact_id c1
    store.batch_put("demo-tickets", [{"tenant_id": tenant, "ticket_id": "t1",
                                      "contact_id": "c1"}])
    fp = find.walk(dm, tenant, {"email": "mario.rossi@example.com"})
    assert [i["ticket_id"] for i in fp.items["tickets"]] == ["t1"]


# --- the export -----------------------------------------------------------------------------


def test_the_export_drops_redacts_and_links_files_at_nested_paths():
    from oblio.access.collect import REDACTED, TablePart

    dm = nested_map()
    part = TablePart(dm, "contacts", "")
    out, files = part.export(contact())
    assert out["home"] == {"street": "Via Roma 1", "city": "Milano", "zip": "20121"}
    assert out["emergency"] == {"name": REDACTED, "phone": "+390212345678"}
    assert [f["key"] for f in files] == ["demo/annex/1.pdf", "demo/annex/2.pdf",
                                         "demo/portrait.png"]
    assert out["annexes"][0]["s3_key"] == files[0]["path"]
    assert out["portrait"] == files[2]["path"]
    assert part.dropped == {"home.geo"} and part.redacted == {"emergency.name"}


# --- the loader -----------------------------------------------------------------------------


def problems(edit) -> list[str]:
    with pytest.raises(DataMapError) as err:
        nested_map(edit)
    return err.value.problems


def test_the_loader_refuses_a_path_it_cannot_parse():
    (p,) = problems(lambda d: d["tables"]["contacts"]["attributes"].update(
        {"home..street": {"category": "contact", "anonymise": "null"}}))
    assert p.startswith("table 'contacts', attribute 'home..street':") and "e.g." in p


def test_the_loader_refuses_an_attribute_used_as_a_map_and_a_list():
    (p,) = problems(lambda d: d["tables"]["contacts"]["attributes"].update(
        {"home[].x": {"category": "contact", "anonymise": "null"}}))
    assert "attribute path 'home' is used both as a list" in p


def test_the_loader_refuses_a_find_on_a_nested_attribute():
    (p,) = problems(lambda d: d["tables"]["contacts"]["find"].append(
        {"identity": "email", "index": "by_email", "attribute": "crm.email"}))
    assert "'crm.email' is a path inside a map or list" in p and "top-level" in p


def test_the_loader_refuses_a_reference_to_a_path_the_source_does_not_map():
    (p,) = problems(lambda d: d["tables"]["tickets"].update(find=[
        {"from": "contacts.crm.id", "index": "by_contact_id", "attribute": "contact_id"}]))
    assert "table 'contacts' has no attribute 'crm.id'" in p


def test_the_loader_refuses_a_path_into_a_key_attribute():
    (p,) = problems(lambda d: d["tables"]["contacts"]["attributes"].update(
        {"contact_id.x": {"category": "technical", "anonymise": "keep"}}))
    assert "reaches into the key attribute 'contact_id'" in p
