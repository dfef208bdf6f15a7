"""Identities stored as people typed them (issue 17 part 3, the read side): a find by an
as-typed identity queries the index on its shadow `_oblio_<attribute>` with the canonical
value; actions remove the shadow with the value it copies; verification counts a shadow left
behind; the export leaves shadows out and says so; `oblio local up` keys the index by the
shadow and `datamap check --data` reports shadow coverage. The map and fixtures are those of
the integration test (tests/integration/typed), whose shadows are written as the writers of
branch typed-write leave them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from oblio.core import datamap, layout
from oblio.core.errors import DataMapError

ROOT = Path(__file__).resolve().parents[2]
TYPED = ROOT / "tests" / "integration" / "typed"
RAW: dict[str, Any] = yaml.safe_load((TYPED / "map.yaml").read_text())
REF = "s_" + "b" * 40


@pytest.fixture(scope="module")
def dm():
    return datamap.load(TYPED / "map.yaml")


# -- finding through the shadow ----------------------------------------------------------------

def test_a_version_1_find_by_an_as_typed_identity_queries_the_index_on_its_shadow(dm):
    t = dm.tables["people"]
    f = t.find[0]
    assert layout.target(dm, t, f).names == ("tenant_id", "_oblio_email")
    c = layout.condition(dm, t, f, "acme", "anna.berg@example.com")
    assert (c.index, c.partition, c.sort) == (
        "by_email", ("tenant_id", "acme"), ("_oblio_email", "=", "anna.berg@example.com"))


def test_a_canonical_identity_is_still_queried_as_it_is():
    dm = datamap.load(ROOT / "examples" / "my-product" / "map.yaml")
    t = dm.tables["contacts"]
    assert layout.target(dm, t, t.find[0]).names == ("tenant_id", "email")


def _v2(index_key: dict[str, Any]) -> dict[str, Any]:
    raw = copy.deepcopy(RAW)
    raw["version"] = 2
    raw["tables"]["people"]["indexes"] = {"by_email": index_key}
    return raw


def test_a_version_2_index_keyed_by_the_shadow_is_queried_with_the_canonical_value():
    dm = datamap.parse(_v2({"partition": "tenant_id", "sort": "_oblio_email"}))
    t = dm.tables["people"]
    c = layout.condition(dm, t, t.find[0], "acme", "anna.berg@example.com")
    assert c.sort == ("_oblio_email", "=", "anna.berg@example.com")


@pytest.mark.parametrize("key", [
    {"partition": "tenant_id", "sort": "email"},
    {"partition": {"attribute": "gpk", "template": "T#{tenant}#E#{email}"}},
])
def test_a_version_2_index_keyed_by_the_as_typed_attribute_is_refused_with_the_fix(key):
    with pytest.raises(DataMapError) as err:
        datamap.parse(_v2(key))
    found = [p for p in err.value.problems if "find #1" in p and "'people'" in p]
    assert found, err.value.problems
    assert "'email' is stored as typed" in found[0]
    assert "_oblio_email" in found[0] and "key an index" in found[0]


def test_the_local_stack_creates_the_index_keyed_by_the_shadow(dm):
    from infra.local import yours

    specs = {s.name: s for s in yours.table_specs(dm)}
    assert specs["typed-people"].indexes == {"by_email": ("tenant_id", "_oblio_email"),
                                             "by_phone": ("tenant_id", "_oblio_phone")}
    assert specs["typed-orders"].indexes["by_buyer_email"] == ("tenant_id",
                                                               "_oblio_buyer_email")


@pytest.fixture
def typed_world(aws, dm) -> dict[str, Any]:
    from infra.local import yours
    from oblio.core.settings import get_settings
    from oblio.store import aws as oblio_aws

    ddb, s3 = oblio_aws.client("dynamodb"), oblio_aws.client("s3")
    yours.create_missing(dm, ddb, s3, get_settings().region)
    yours.load_fixtures(yours.read_fixtures(dm, TYPED / "fixtures"), ddb, s3)
    return {"dm": dm, "ddb": ddb, "s3": s3}


def _ids(fp, table: str) -> list[str]:
    key = "person_id" if table == "people" else "order_id"
    return sorted(i[key] for i in fp.items.get(table, []))


def test_the_walk_finds_the_typed_person_from_her_canonical_email(typed_world):
    from oblio.pipeline import find

    fp = find.walk(typed_world["dm"], "acme", {"email": "anna.berg@example.com"})
    assert _ids(fp, "people") == ["p-1"]
    assert _ids(fp, "orders") == ["o-1", "o-2"]  # o-2 only through its typed buyer e-mail
    # the items carry their shadows, for the actions and verification to see
    assert fp.items["people"][0]["_oblio_email"] == "anna.berg@example.com"


def test_the_walk_finds_the_typed_national_phone_from_the_international_one(typed_world):
    from oblio.pipeline import find

    fp = find.walk(typed_world["dm"], "acme", {"phone": "+33612345678"})
    assert _ids(fp, "people") == ["p-1"]
    assert _ids(fp, "orders") == ["o-1"]


def test_the_identities_found_on_typed_items_are_their_canonical_forms(typed_world, keys):
    from oblio.pipeline import find

    dm = typed_world["dm"]
    fp = find.walk(dm, "acme", {"email": "anna.berg@example.com"})
    refs = find.identity_refs(dm, keys, fp, {"email": "anna.berg@example.com"}, None)
    assert refs["phone"] == [keys.hmac("phone", "+33612345678")]  # read in the attribute's FR
    assert refs["email"] == [keys.hmac("email", "anna.berg@example.com")]


def test_a_typed_value_that_does_not_parse_does_not_stop_the_walk(dm, keys):
    from oblio.pipeline import find

    fp = find.Footprint("acme", items={"people": [
        {"person_id": "p-4", "email": "not an address", "phone": "call me"}]})
    assert find.identity_refs(dm, keys, fp, {"external_id": "x"}, None) == {
        "external_id": [keys.hmac("external_id", "x")]}


# -- actions remove the shadow with the value it copies -----------------------------------------

ANNA = {"tenant_id": "acme", "person_id": "p-1", "name": "Anna Berg",
        "email": "  Anna.Berg@Example.COM ", "_oblio_email": "anna.berg@example.com",
        "phone": "06 12 34 56 78", "_oblio_phone": "+33612345678"}


def test_anonymisation_removes_the_shadows_of_the_identities_it_rewrites(dm, keys):
    from oblio.pipeline import rules

    sets, removes = rules.rewrite(dm, dm.tables["people"], ANNA, "anonymise", keys, REF)
    assert sets["phone"] == rules.MASK and sets["name"].startswith("P_")
    assert {"email", "_oblio_email", "_oblio_phone"} <= set(removes)


def test_an_hmac_rule_leaves_no_shadow_of_the_value_it_replaced(dm, keys):
    from oblio.pipeline import rules

    order = {"tenant_id": "acme", "order_id": "o-1", "buyer_email": "Anna.Berg@example.com",
             "_oblio_buyer_email": "anna.berg@example.com", "total": 120}
    sets, removes = rules.rewrite(dm, dm.tables["orders"], order, "erase", keys, REF)
    assert sets["buyer_email"].startswith("h_")
    assert "_oblio_buyer_email" in removes


def test_a_kept_identity_keeps_its_shadow(keys):
    from oblio.pipeline import rules

    raw = copy.deepcopy(RAW)
    raw["tables"]["people"]["attributes"]["email"]["anonymise"] = "keep"
    dm = datamap.parse(raw)
    _, removes = rules.rewrite(dm, dm.tables["people"], ANNA, "anonymise", keys, REF)
    assert "_oblio_email" not in removes and "_oblio_phone" in removes


def test_a_retained_item_loses_the_shadow_of_what_its_erase_rules_remove():
    from oblio.pipeline import rules

    raw = copy.deepcopy(RAW)
    raw["version"] = 2
    people = raw["tables"]["people"]
    people.update(on_erase="retain", retain={"legal_basis": "tax law", "period": "P10Y"})
    people["attributes"]["email"]["erase"] = "null"
    dm = datamap.parse(raw)
    places = {loc: rule for _, rule, loc, _ in rules.retained_places(dm, dm.tables["people"],
                                                                     ANNA)}
    assert places == {"email": "null", "_oblio_email": "null"}  # the phone is kept, and so


def test_a_role_rewrite_removes_the_shadow_of_the_identity_the_role_names(keys):
    from oblio.pipeline import rules

    raw = copy.deepcopy(RAW)
    raw["version"] = 2
    orders = raw["tables"]["orders"]
    orders["find"][1]["role"] = "buyer"
    orders["roles"] = {"buyer": {"attributes": {"buyer_email": {"anonymise": "null"}}}}
    dm = datamap.parse(raw)
    order = {"tenant_id": "acme", "order_id": "o-2", "buyer_email": " anna.berg@EXAMPLE.com",
             "_oblio_buyer_email": "anna.berg@example.com"}
    t = dm.tables["orders"]
    _, removes = rules.role_rewrite(t, "buyer", order, "anonymise", keys, REF)
    assert set(removes) == {"buyer_email", "_oblio_buyer_email"}
    # verification: a shadow still there is left behind
    assert "_oblio_buyer_email" in rules.role_remains(t, "buyer", order, "anonymise")
    done = {k: v for k, v in order.items() if k not in removes}
    assert rules.role_remains(t, "buyer", done, "anonymise") == []


def test_the_values_anonymisation_must_not_leave_include_the_shadows(dm):
    from oblio.pipeline import rules

    values = rules.identifying_values(dm, "people", [ANNA])
    assert "+33612345678" in values and "anna.berg@example.com" in values


def test_verification_counts_an_item_whose_shadow_survived_as_left_behind(dm, keys):
    from oblio.pipeline import rules

    t = dm.tables["people"]
    sets, removes = rules.rewrite(dm, t, ANNA, "anonymise", keys, REF)
    done = {**{k: v for k, v in ANNA.items() if k not in removes}, **sets}
    assert rules.to_remove(dm, t, done, "anonymise") == []
    stale = {**done, "_oblio_email": "anna.berg@example.com"}
    assert rules.to_remove(dm, t, stale, "anonymise") == ["_oblio_email"]
    identifying = rules.value_refs(keys, rules.identifying_values(dm, "people", [ANNA]))
    assert rules.value_refs(keys, [stale["_oblio_email"]]) & identifying


def test_a_rectification_rewrites_the_shadow_with_the_new_canonical_value(dm):
    from oblio.pipeline import rules

    got = rules.changes_for(dm.tables["people"], {"email": "anna.lind@example.com"})
    assert got == {"email": "anna.lind@example.com",
                   "_oblio_email": "anna.lind@example.com"}


# -- the export ------------------------------------------------------------------------------

def test_the_export_leaves_shadows_out_of_her_items_and_names_them(dm):
    from oblio.access.collect import TablePart
    from oblio.access.package import derived_by_oblio

    out, _ = TablePart(dm, "people", "").export(ANNA)
    assert not [a for a in out if a.startswith("_oblio_")]
    assert out["email"] == ANNA["email"] and out["phone"] == ANNA["phone"]
    derived = derived_by_oblio(dm, "people")
    assert set(derived) == {"_oblio_email", "_oblio_phone"}
    assert "'email'" in derived["_oblio_email"]


# -- datamap check --data: shadow coverage -------------------------------------------------------

def test_check_data_reports_shadow_coverage_and_typed_values_in_canonical_attributes(
        typed_world):
    from infra import mapping

    ddb = typed_world["ddb"]
    ddb.put_item(TableName="typed-people", Item={  # written before the backfill reached it
        "tenant_id": {"S": "acme"}, "person_id": {"S": "p-9"},
        "email": {"S": " Eva.Lund@Example.COM"}})
    rep = mapping.check_data(typed_world["dm"], ddb, typed_world["s3"], limit=50)
    assert rep.coverage["typed-people.email"] == (6, 5)  # Dora's has no shadow, rightly
    assert rep.coverage["typed-people.phone"] == (4, 4)
    assert rep.coverage["typed-orders.buyer_email"] == (5, 5)
    text = "\n".join(rep.warnings)
    assert "attribute 'email' is stored as typed, but 1 of the 6 sampled items holding it " \
           "lack a right shadow '_oblio_email'" in text
    assert "_oblio_" not in text.replace("'_oblio_email'", "")  # shadows are not "unknown"
    assert "eva" not in text.lower()
    # the same table mapped as canonical: the typed values are named, with the fix
    raw = copy.deepcopy(RAW)
    for a in ("email", "phone"):
        raw["tables"]["people"]["attributes"][a]["stored"] = "canonical"
    rep = mapping.check_data(datamap.parse(raw), ddb, typed_world["s3"], limit=50)
    text = "\n".join(rep.warnings)
    assert "attribute 'email' holds email values not stored canonically in 5 of" in text
    assert "declare it 'stored: as_typed'" in text


def test_draft_marks_an_identity_indexed_by_its_shadow_as_typed(typed_world):
    from infra import mapping

    draft = yaml.safe_load(mapping.draft(typed_world["ddb"], ["typed-people"], [],
                                         limit=50))
    people = draft["tables"]["typed_people"]
    assert {"identity": "email", "index": "by_email", "attribute": "email"} in people["find"]
    assert people["attributes"]["email"]["stored"] == "as_typed"
    assert not [a for a in people["attributes"] if a.startswith("_oblio_")]


def test_the_live_check_knows_the_index_is_keyed_by_the_shadow(typed_world):
    from oblio.core import mapcheck

    assert mapcheck.live_problems(typed_world["dm"], typed_world["ddb"]) == []
    raw = copy.deepcopy(RAW)
    raw["tables"]["people"]["attributes"]["email"]["stored"] = "canonical"
    got = mapcheck.live_problems(datamap.parse(raw), typed_world["ddb"])
    assert any("index 'by_email' is keyed (tenant_id, _oblio_email), not (tenant_id, email)"
               in p for p in got), got


# -- sweeps over whole subjects ------------------------------------------------------------------

def test_a_sweep_names_the_subject_of_a_typed_item_by_its_canonical_identities(dm):
    from oblio.pipeline import find

    t = dm.tables["people"]
    assert find.item_identities(t, ANNA, "DE") == {"email": "anna.berg@example.com",
                                                   "phone": "+33612345678"}
    dora = {"person_id": "p-4", "email": "not an address", "phone": "call me"}
    assert find.item_identities(t, dora, "FR") == {}  # nothing that parses names nobody
    canonical = datamap.load(ROOT / "examples" / "my-product" / "map.yaml")
    assert find.item_identities(canonical.tables["contacts"], {"email": "a@b.example"},
                                None) == {"email": "a@b.example"}


@pytest.mark.parametrize("edit, taken", [
    (lambda people: people["attributes"].update(
        {"_oblio_email": {"category": "technical", "anonymise": "keep"}}),
     "a mapped attribute"),
    (lambda people: people["attributes"].update(
        {"anonymised": {"category": "identity", "identity": "external_id",
                        "stored": "as_typed", "anonymise": "null"}}),
     "oblio's anonymised marker"),
])
def test_a_shadow_that_would_take_another_attributes_name_is_refused(edit, taken):
    raw = copy.deepcopy(RAW)
    edit(raw["tables"]["people"])
    with pytest.raises(DataMapError) as err:
        datamap.parse(raw)
    assert any(f"would be {taken}; rename the attribute" in p for p in err.value.problems), \
        err.value.problems


def test_a_single_table_index_may_hold_the_tenant_in_its_sort_template_beside_the_shadow():
    """Single-table design: the index is partitioned by the shadow and sorted by the item's
    key template, whose constant start with the tenant keeps every read in the tenant."""
    raw = _v2({"partition": "_oblio_email",
               "sort": {"attribute": "pk", "template": "TENANT#{tenant}#P#{person_id}"}})
    raw["tables"]["people"]["attributes"]["pk"] = {"category": "technical",
                                                   "anonymise": "keep"}
    dm = datamap.parse(raw)
    t = dm.tables["people"]
    c = layout.condition(dm, t, t.find[0], "acme", "anna.berg@example.com")
    assert c.partition == ("_oblio_email", "anna.berg@example.com")
    assert c.sort == ("pk", "begins_with", "TENANT#acme#P#")
