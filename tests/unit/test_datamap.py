"""The data map: the shipped demo map loads; a map that cannot be used is rejected at load,
every problem at once, each naming the table and attribute; the map is checked against the
live tables."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import jsonschema
import pytest
import yaml

from oblio.core import datamap
from oblio.core.errors import DataMapError
from oblio.core.settings import DEMO_DATAMAP

DEMO: dict[str, Any] = yaml.safe_load(DEMO_DATAMAP.read_text())


def demo_with(edit: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    data = copy.deepcopy(DEMO)
    edit(data)
    return data


def problems_of(edit: Callable[[dict[str, Any]], Any]) -> list[str]:
    with pytest.raises(DataMapError) as err:
        datamap.parse(demo_with(edit))
    assert err.value.problems, "a rejection lists its problems"
    return err.value.problems


def one_problem(edit: Callable[[dict[str, Any]], Any]) -> str:
    problems = problems_of(edit)
    assert len(problems) == 1, problems
    return problems[0]


# --- the shipped map ---------------------------------------------------------------------


def test_demo_map_loads_with_every_table(demo_map):
    assert set(demo_map.tables) == set(DEMO["tables"])
    assert demo_map.tables["contacts"].table == "demo-contacts"
    assert demo_map.buckets == {"files": "demo-files"}


def test_demo_map_walks_every_table_after_its_sources(demo_map):
    order = demo_map.order
    assert sorted(order) == sorted(demo_map.tables) and len(order) == len(set(order))
    for name, t in demo_map.tables.items():
        for f in t.find:
            if f.source:
                assert order.index(f.source[0]) < order.index(name), (f.source[0], name)
    # the chain contacts -> tickets -> messages, and sends -> events
    assert order.index("contacts") < order.index("tickets") < order.index("ticket_messages")
    assert order.index("email_sends") < order.index("email_events")


def test_demo_map_digest_is_stable_and_the_json_form_round_trips(demo_map):
    again = datamap.from_json(demo_map.to_json())
    assert again.digest == demo_map.digest == datamap.load(DEMO_DATAMAP).digest
    changed = datamap.parse(demo_with(lambda d: d.update(name="other")))
    assert changed.digest != demo_map.digest


def test_referenced_attributes_are_the_ones_other_tables_find_by(demo_map):
    assert demo_map.referenced_attributes("contacts") == {"contact_id"}
    assert demo_map.referenced_attributes("tickets") == {"ticket_id"}
    assert demo_map.referenced_attributes("blacklist") == set()


# --- rejections, each naming the table and attribute ------------------------------------


def test_datamap_rejects_table_unreachable_from_any_identity():
    problem = one_problem(lambda d: d["tables"]["documents"].update(find=[]))
    assert problem.startswith("table 'documents':")
    assert "cannot be reached from any identity" in problem


def test_datamap_rejects_from_naming_an_unmapped_table():
    problem = one_problem(
        lambda d: d["tables"]["tickets"]["find"][0].update({"from": "customers.contact_id"}))
    assert "table 'tickets', find #1" in problem
    assert "names an unmapped table 'customers'" in problem


def test_datamap_rejects_from_naming_a_missing_attribute():
    problem = one_problem(
        lambda d: d["tables"]["tickets"]["find"][0].update({"from": "contacts.customer_no"}))
    assert "table 'tickets', find #1" in problem
    assert "table 'contacts' has no attribute 'customer_no'" in problem


def test_datamap_rejects_find_by_an_attribute_the_table_does_not_have():
    problem = one_problem(
        lambda d: d["tables"]["tickets"]["find"][0].update(attribute="owner_id"))
    assert "table 'tickets', find #1: attribute 'owner_id' is not an attribute" in problem


@pytest.mark.parametrize("find", [
    {"attribute": "contact_id", "index": "by_contact_id"},
    {"identity": "email", "from": "contacts.contact_id", "attribute": "contact_id",
     "index": "by_contact_id"},
])
def test_datamap_rejects_find_without_exactly_one_of_identity_or_from(find):
    problem = one_problem(lambda d: d["tables"]["tickets"].update(find=[find]))
    assert "table 'tickets', find #1: give exactly one of 'identity' or 'from'" in problem


def test_datamap_rejects_find_by_identity_the_map_does_not_declare():
    problems = problems_of(lambda d: d.update(identities=["email", "external_id"]))
    assert any("table 'contacts', find #2: identity 'phone' is not in the map's identities"
               in p for p in problems)
    assert any("table 'contacts', attribute 'phone': identity 'phone' is not in the map's "
               "identities" in p for p in problems)


def test_datamap_rejects_personal_attribute_without_anonymise_rule():
    problem = one_problem(
        lambda d: d["tables"]["tickets"]["attributes"]["subject"].pop("anonymise"))
    assert problem.startswith("table 'tickets', attribute 'subject':")
    assert "category 'content' is personal data but has no 'anonymise' rule" in problem


def test_datamap_accepts_non_personal_attribute_without_rule():
    dm = datamap.parse(demo_with(lambda d: d["tables"]["tickets"]["attributes"].update(
        priority={"category": "non_personal"})))
    assert dm.tables["tickets"].rule("priority") == "keep"


def test_datamap_rejects_key_attribute_with_rewriting_rule_on_table_that_anonymises():
    def edit(d):
        d["tables"]["blacklist"]["on_anonymise"] = "anonymise"
        d["tables"]["blacklist"]["attributes"]["email"]["anonymise"] = "null"

    problem = one_problem(edit)
    assert problem.startswith("table 'blacklist', attribute 'email':")
    assert "part of the table's key" in problem and "'null'" in problem


def test_datamap_rejects_key_attribute_whose_erase_rule_rewrites_it_in_a_kept_shell():
    # tickets keep their shell on erasure: an erase rule on the ticket id could never be
    # applied, and the engine would keep the value while the map says it goes
    problem = one_problem(
        lambda d: d["tables"]["tickets"]["attributes"]["ticket_id"].update(erase="null"))
    assert problem.startswith("table 'tickets', attribute 'ticket_id':")
    assert "part of the table's key" in problem


def test_datamap_accepts_key_attribute_rule_on_table_that_only_deletes():
    dm = datamap.parse(demo_with(
        lambda d: d["tables"]["blacklist"]["attributes"]["email"].update(anonymise="null")))
    assert dm.tables["blacklist"].on_erase == dm.tables["blacklist"].on_anonymise == "delete"


def test_datamap_rejects_s3_attribute_naming_an_undeclared_bucket():
    problem = one_problem(
        lambda d: d["tables"]["contacts"]["attributes"]["photo_key"].update(s3="photos"))
    assert problem.startswith("table 'contacts', attribute 'photo_key':")
    assert "s3 bucket 'photos' is not declared under 'buckets'" in problem


def test_datamap_rejects_a_cycle_of_references():
    problem = one_problem(lambda d: d["tables"]["contacts"]["find"].append(
        {"from": "tickets.ticket_id", "index": "by_ticket_id", "attribute": "contact_id"}))
    assert "contacts -> tickets -> contacts" in problem
    assert "cycle" in problem


def test_datamap_rejects_partition_key_that_is_not_the_tenant_attribute():
    problems = problems_of(lambda d: d["tables"]["blacklist"].update(
        key={"partition": "email"}))
    assert any(p.startswith("table 'blacklist':") and "partition key 'email' must be the "
               "tenant attribute 'tenant_id'" in p for p in problems)


def test_datamap_rejects_find_on_non_sort_key_attribute_without_index():
    problem = one_problem(lambda d: d["tables"]["contacts"]["find"][0].pop("index"))
    assert "table 'contacts', find #1: attribute 'email' is not the table's sort key" in problem
    assert "needs an 'index'" in problem


def test_datamap_accepts_find_on_the_sort_key_without_index(demo_map):
    (find,) = demo_map.tables["blacklist"].find
    assert find.index is None and find.attribute == demo_map.tables["blacklist"].key.sort


def test_datamap_rejects_restriction_flag_that_is_not_an_attribute():
    problem = one_problem(lambda d: d["tables"]["contacts"].update(restriction_flag="frozen"))
    assert "table 'contacts': restriction_flag 'frozen' is not an attribute" in problem


def test_datamap_rejects_purposes_on_a_table_without_pending_deliveries():
    problem = one_problem(lambda d: d["tables"]["tickets"].update(purposes=["marketing"]))
    assert problem.startswith("table 'tickets':") and "pending_deliveries" in problem


@pytest.mark.parametrize("field", ["anonymise", "erase"])
@pytest.mark.parametrize("strategy", [
    "scramble", "Keep", "", "delete", "pseudonym", "pseudonym:F_", "pseudonym:F_{m}",
    "pseudonym:{name}_{n}", "pseudonym:F_{n}{",
])
def test_datamap_rejects_unknown_strategies(field, strategy):
    problem = one_problem(lambda d: d["tables"]["contacts"]["attributes"]["city"].update(
        {field: strategy}))
    assert problem.startswith(f"tables.contacts.attributes.city.{field}:")
    assert "keep, null, mask, generalise, hmac" in problem


@pytest.mark.parametrize("strategy", ["keep", "null", "mask", "generalise", "hmac",
                                      "pseudonym:F_{n}", "pseudonym:{n}"])
def test_datamap_accepts_each_known_strategy(strategy):
    dm = datamap.parse(demo_with(lambda d: d["tables"]["contacts"]["attributes"]["city"].update(
        anonymise=strategy)))
    assert dm.tables["contacts"].rule("city") == strategy


def test_datamap_rejects_unknown_category():
    problem = one_problem(lambda d: d["tables"]["contacts"]["attributes"]["city"].update(
        category="secret"))
    assert problem.startswith("tables.contacts.attributes.city.category:")


@pytest.mark.parametrize("edit, where", [
    (lambda d: d.update(colour="red"), "colour"),
    (lambda d: d["tables"]["contacts"].update(colour="red"), "tables.contacts.colour"),
    (lambda d: d["tables"]["contacts"]["attributes"]["city"].update(colour="red"),
     "tables.contacts.attributes.city.colour"),
    (lambda d: d["tables"]["contacts"]["find"][1].update(colour="red"),
     "tables.contacts.find.1.colour"),
    (lambda d: d["tables"]["contacts"]["key"].update(colour="red"),
     "tables.contacts.key.colour"),
])
def test_datamap_rejects_unknown_yaml_keys(edit, where):
    problem = one_problem(edit)
    assert problem.startswith(f"{where}:") and "Extra inputs are not permitted" in problem


def test_datamap_rejects_unknown_identity_kind_in_find():
    problem = one_problem(
        lambda d: d["tables"]["contacts"]["find"][0].update(identity="fax"))
    assert problem.startswith("tables.contacts.find.0.identity:")


def test_datamap_reports_every_problem_at_once():
    def edit(d):
        d["tables"]["documents"]["find"] = []
        d["tables"]["contacts"]["attributes"]["photo_key"]["s3"] = "nowhere"
        d["tables"]["tickets"]["find"][0]["from"] = "contacts.missing"
        d["tables"]["tickets"]["attributes"]["subject"].pop("anonymise")

    with pytest.raises(DataMapError) as err:
        datamap.parse(demo_with(edit))
    problems = err.value.problems
    assert isinstance(problems, list) and len(problems) == 4
    assert any("table 'documents'" in p for p in problems)
    assert any("s3 bucket 'nowhere'" in p for p in problems)
    assert any("no attribute 'missing'" in p for p in problems)
    assert any("attribute 'subject'" in p for p in problems)
    # the error's message and details carry all of them
    assert all(p in err.value.message for p in problems)
    assert err.value.details == {"problems": problems}
    assert err.value.code == "invalid_datamap"


def test_datamap_reports_a_cycle_together_with_other_problems():
    def edit(d):
        d["tables"]["contacts"]["find"].append(
            {"from": "tickets.ticket_id", "index": "by_ticket_id", "attribute": "contact_id"})
        d["tables"]["contacts"]["attributes"]["photo_key"]["s3"] = "nowhere"

    problems = problems_of(edit)
    assert len(problems) == 2
    assert any("s3 bucket 'nowhere'" in p for p in problems)
    assert any("contacts -> tickets -> contacts" in p for p in problems)


def test_datamap_reports_schema_errors_at_once():
    def edit(d):
        d["tables"]["contacts"]["colour"] = "red"
        d["tables"]["tickets"]["attributes"]["status"]["category"] = "secret"

    assert len(problems_of(edit)) == 2


# --- files ---------------------------------------------------------------------------------


def test_datamap_file_with_invalid_yaml_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "map.yaml"
    path.write_text("tables: [contacts\n  key: {")
    with pytest.raises(DataMapError) as err:
        datamap.load(path)
    (problem,) = err.value.problems
    assert problem.startswith(str(path)) and "not valid YAML" in problem


def test_missing_datamap_file_is_rejected_naming_the_file(tmp_path):
    path = tmp_path / "absent.yaml"
    with pytest.raises(DataMapError) as err:
        datamap.load(path)
    assert err.value.problems == [f"{path}: no such file"]


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just text\n"])
def test_datamap_file_that_is_not_a_mapping_is_rejected_naming_the_file(tmp_path, text):
    path = tmp_path / "map.yaml"
    path.write_text(text)
    with pytest.raises(DataMapError) as err:
        datamap.load(path)
    (problem,) = err.value.problems
    assert problem.startswith(f"{path}:")


def test_datamap_file_written_by_a_user_loads(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump(demo_with(lambda d: d.update(name="mine"))))
    assert datamap.load(str(path)).name == "mine"


# --- the JSON Schema -------------------------------------------------------------------------


def test_schema_is_a_json_schema_that_the_demo_map_satisfies():
    s = datamap.schema()
    assert s["type"] == "object"
    assert {"tables", "buckets", "register", "identities"} <= set(s["properties"])
    assert "tables" in s["required"]
    jsonschema.Draft202012Validator.check_schema(s)
    jsonschema.validate(DEMO, s)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(demo_with(lambda d: d.update(colour="red")), s)


# --- the map against the live tables ----------------------------------------------------------


def _ddb():
    from oblio.store import aws

    return aws.client("dynamodb")


def _create(name: str, sort: str, indexes: dict[str, tuple[str, str]] | None = None,
            projection: str = "ALL") -> None:
    attrs = {"tenant_id", sort, *(a for k in (indexes or {}).values() for a in k)}
    params: dict[str, Any] = {
        "TableName": name, "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [{"AttributeName": "tenant_id", "KeyType": "HASH"},
                      {"AttributeName": sort, "KeyType": "RANGE"}],
        "AttributeDefinitions": [{"AttributeName": a, "AttributeType": "S"} for a in attrs],
    }
    if indexes:
        params["GlobalSecondaryIndexes"] = [
            {"IndexName": n, "Projection": {"ProjectionType": projection},
             "KeySchema": [{"AttributeName": h, "KeyType": "HASH"},
                           {"AttributeName": r, "KeyType": "RANGE"}]}
            for n, (h, r) in indexes.items()]
    _ddb().create_table(**params)


def check_problems(edit: Callable[[dict[str, Any]], Any]) -> list[str]:
    def edit_without_sweeps(d: dict[str, Any]) -> None:
        # the tables these tests create have no retention sweep index (test_retention checks
        # that one)
        edit(d)
        for t in d["tables"].values():
            if t["table"].startswith("tenant-"):
                t.pop("sweep", None)

    with pytest.raises(DataMapError) as err:
        datamap.check_tables(datamap.parse(demo_with(edit_without_sweeps)), _ddb())
    return err.value.problems


@pytest.fixture
def live(module_aws, tenant) -> str:
    """A prefix for the tables this test creates in the module's AWS."""
    return tenant


def test_check_tables_accepts_the_demo_tables(module_aws, demo_map):
    datamap.check_tables(demo_map, _ddb())


def test_check_tables_reports_a_missing_table(live):
    (problem,) = check_problems(lambda d: d["tables"]["documents"].update(table=f"{live}-no"))
    assert problem == f"table 'documents' ({live}-no): the table does not exist"


def test_check_tables_reports_a_key_schema_mismatch(live):
    _create(f"{live}-blacklist", "address")
    (problem,) = check_problems(
        lambda d: d["tables"]["blacklist"].update(table=f"{live}-blacklist"))
    assert problem.startswith(f"table 'blacklist' ({live}-blacklist):")
    assert "(tenant_id, email)" in problem and "(tenant_id, address)" in problem


def test_check_tables_reports_a_missing_index(live):
    _create(f"{live}-tickets", "ticket_id")
    (problem,) = check_problems(
        lambda d: d["tables"]["tickets"].update(table=f"{live}-tickets"))
    assert problem.startswith(f"table 'tickets' ({live}-tickets):")
    assert "index 'by_contact_id'" in problem and "'contact_id'" in problem
    assert "does not exist" in problem


def test_check_tables_reports_an_index_keyed_or_projected_wrongly(live):
    _create(f"{live}-tickets", "ticket_id", {"by_contact_id": ("tenant_id", "owner")},
            projection="KEYS_ONLY")
    problems = check_problems(
        lambda d: d["tables"]["tickets"].update(table=f"{live}-tickets"))
    assert len(problems) == 2
    assert any("index 'by_contact_id' is keyed (tenant_id, owner), not (tenant_id, "
               "contact_id)" in p for p in problems)
    assert any("index 'by_contact_id' must project ALL" in p for p in problems)


def test_check_tables_reports_every_mismatch_at_once(live):
    _create(f"{live}-tickets", "ticket_id")

    def edit(d):
        d["tables"]["tickets"]["table"] = f"{live}-tickets"
        d["tables"]["documents"]["table"] = f"{live}-no"

    problems = check_problems(edit)
    assert [p.split(":")[0] for p in problems] == [f"table 'tickets' ({live}-tickets)",
                                                   f"table 'documents' ({live}-no)"]


def test_a_map_naming_tables_or_buckets_like_oblios_own_is_refused_live(demo_map):
    """oblio routes tables and buckets by its resource prefix: a map's table under it would
    be taken for oblio's own."""
    data = copy.deepcopy(DEMO)
    data["tables"]["contacts"]["table"] = "oblio-contacts"
    data["buckets"] = {**data.get("buckets", {}), "photos": "oblio-photos"}
    problems = datamap.own_name_problems(datamap.parse(data))
    assert any(p.startswith("table 'contacts' (oblio-contacts): its name starts with oblio's "
                            "resource prefix 'oblio-'") for p in problems), problems
    assert any(p.startswith("bucket 'photos' (oblio-photos)") for p in problems), problems
    assert datamap.own_name_problems(demo_map) == []
