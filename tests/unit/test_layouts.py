"""Real layouts: key templates and entity types in one table (single-table design), silo
tables named by the tenant, and the loader's refusals. The HR example (examples/hr) is loaded
into the in-process AWS and a subject is walked, erased and verified through the pipeline."""

from __future__ import annotations

import copy
import importlib.util
from pathlib import Path
from typing import Any

import pytest
import yaml

from oblio.core import datamap, layout
from oblio.core.errors import DataMapError

ROOT = Path(__file__).resolve().parents[2]
HR_MAP = ROOT / "examples" / "hr" / "map.yaml"
HR: dict[str, Any] = yaml.safe_load(HR_MAP.read_text())
ADA_REF = "s_" + "a" * 40


def _generator() -> Any:
    spec = importlib.util.spec_from_file_location("hr_generate",
                                                  ROOT / "examples" / "hr" / "generate.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def hr(edit=None) -> dict[str, Any]:
    data = copy.deepcopy(HR)
    if edit:
        edit(data)
    return data


def problems(edit) -> list[str]:
    with pytest.raises(DataMapError) as err:
        datamap.parse(hr(edit))
    return err.value.problems


def test_the_hr_example_loads_and_the_demo_map_still_does(demo_map):
    dm = datamap.load(HR_MAP)
    assert dm.version == 2 and dm.order == ["employees", "payslips", "reviews"]
    assert demo_map.version == 1


def test_a_find_on_templates_carries_the_tenant_and_a_sort_prefix():
    dm = datamap.parse(hr())
    emp, slips, reviews = (dm.tables[n] for n in ("employees", "payslips", "reviews"))
    c = layout.condition(dm, emp, emp.find[0], "acme", "ada@example.com")
    assert (c.table, c.index, c.partition, c.sort) == (
        "hr-main", "by_email", ("gsi1pk", "TENANT#acme#EMAIL#ada@example.com"), None)
    c = layout.condition(dm, slips, slips.find[0], "acme", "E0001")
    assert c.partition == ("pk", "TENANT#acme#EMP#E0001")
    assert c.sort == ("sk", "begins_with", "PAYSLIP#")
    c = layout.condition(dm, reviews, reviews.find[1], "acme", "E0001")
    assert (c.index, c.partition) == ("by_author", ("gsi2pk", "TENANT#acme#AUTHOR#E0001"))


def test_an_item_is_selected_by_its_entity_and_its_tenant_only():
    dm = datamap.parse(hr())
    slips = dm.tables["payslips"]
    slip = {"pk": "TENANT#acme#EMP#E0001", "sk": "PAYSLIP#2024-01"}
    assert layout.selects(dm, slips, slip, "acme")
    assert not layout.selects(dm, slips, slip, "globex")          # another tenant's key
    assert not layout.selects(dm, slips, {**slip, "sk": "REVIEW#1"}, "acme")  # another type
    # the employee id is read back from the key when the item does not carry it
    assert slips.field({"pk": "TENANT#acme#EMP#E0042"}, "employee_id", "acme") == "E0042"


@pytest.mark.parametrize("edit, table, expected", [
    (lambda d: d["tables"]["payslips"]["key"]["sort"].update(template="PAYSLIP#{period}"),
     "payslips", "template 'PAYSLIP#{period}' of 'sk' names '{period}', which is not an "
                 "attribute of the table; declare it"),
    (lambda d: d["tables"]["employees"]["indexes"]["by_email"]["partition"].update(
        template="EMAIL#{email}"),
     "employees", "does not carry the tenant, so a read could reach another tenant's items; "
                  "put {tenant} in the partition template"),
    (lambda d: d["tables"]["reviews"]["key"]["sort"].update(template="{review_id}"),
     "reviews", "no sort-key prefix or type value selects its items; give its sort template "
                "a constant start"),
    (lambda d: d["tables"]["payslips"]["key"]["sort"].update(template="PROFILE#{month}"),
     "payslips", "nothing tells their items apart"),
    (lambda d: d["tables"]["employees"]["indexes"]["by_email"]["partition"].update(
        template="TENANT#{tenant}#EMPLOYEES"),
     "employees", "does not use 'email', so its Query would read every item of the tenant"),
    (lambda d: d["tables"]["payslips"]["find"][0].update(**{"from": "employees.manager"}),
     "payslips", "has no attribute 'manager'"),
    (lambda d: d.update(version=1), "employees", "need version: 2"),
    (lambda d: d["tables"]["employees"].update(table="{tenant}-{region}-hr"),
     "employees", "may name only {tenant}"),
])
def test_the_loader_refuses_a_layout_it_cannot_apply(edit, table, expected):
    found = problems(edit)
    assert any(expected in p and f"'{table}'" in p for p in found), found


# -- the HR example end to end, in-process -----------------------------------------------------

@pytest.fixture(scope="module")
def hr_world(module_aws) -> dict[str, Any]:
    from infra.local import yours
    from oblio.core.settings import get_settings
    from oblio.store import aws as oblio_aws

    gen = _generator()
    dm = datamap.load(HR_MAP)
    ddb, s3 = oblio_aws.client("dynamodb"), oblio_aws.client("s3")
    yours.create_missing(dm, ddb, s3, get_settings().region)
    datamap.check_tables(dm, ddb)
    items = {t: list(gen.rows(t, 20)) for t in gen.TENANTS}
    keys = [(t, k) for t, rows in items.items() for k in gen.files(t, rows)]
    fixtures = yours.Fixtures({"hr-main": [i for rows in items.values() for i in rows]}, [])
    yours.load_fixtures(fixtures, ddb, s3)
    for _, key in keys:
        for n in range(2):  # two versions of every file
            s3.put_object(Bucket="hr-files", Key=key, Body=b"v%d" % n)
    return {"dm": dm, "keys": keys, "ddb": ddb, "s3": s3}


def _raw(world: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    from oblio.store.tables import from_ddb

    out = {}
    for page in world["ddb"].get_paginator("scan").paginate(TableName="hr-main"):
        for raw in page["Items"]:
            item = from_ddb(raw)
            out[(item["pk"], item["sk"])] = item
    return out


def _versions(world: dict[str, Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for page in world["s3"].get_paginator("list_object_versions").paginate(Bucket="hr-files"):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            out[v["Key"]] = out.get(v["Key"], 0) + 1
    return out


def test_the_walk_reaches_every_entity_of_the_subject_with_one_query_per_value(hr_world):
    from oblio.pipeline import find
    from oblio.store import aws as oblio_aws

    with oblio_aws.counting() as io:
        fp = find.walk(hr_world["dm"], "acme", {"email": "ada.lovelace@example.com"})
    assert [i["sk"] for i in fp.items["employees"]] == ["PROFILE"]
    assert [i["sk"] for i in fp.items["payslips"]] == [
        "PAYSLIP#2024-01", "PAYSLIP#2024-02", "PAYSLIP#2024-03"]
    assert [i["sk"] for i in fp.items["reviews"]] == ["REVIEW#2024-R1"]        # about her
    assert [i["sk"] for i in fp.roles["reviews"]["author"]] == ["REVIEW#2024-R2"]  # she wrote
    assert all(i["pk"].startswith("TENANT#acme#") for v in fp.items.values() for i in v)
    # email (1) + external_id not given (0) + payslips (1) + reviews about (1) + by her (1)
    assert fp.queries == 4 and io.calls["dynamodb.Query"] == 4
    assert io.calls.get("dynamodb.Scan", 0) == 0


def test_an_erasure_of_the_hr_subject_leaves_no_residue_and_no_collateral(hr_world, keys):
    from oblio.pipeline import apply, find, plan, rules, verify

    dm = hr_world["dm"]
    before, versions_before = _raw(hr_world), _versions(hr_world)
    fp = find.walk(dm, "acme", {"email": "ada.lovelace@example.com"})
    counts: dict[str, dict[str, Any]] = {}
    for name in dm.order:
        manifest = plan.unit_manifest(dm, name, "erase", {}, fp, "acme")
        if manifest is None:
            continue
        unit = rules.Unit("acme", name)
        counts[name] = apply.apply_unit(dm, "erase", unit, manifest, keys, ADA_REF, "req-1")
        checked = verify.check_unit(dm, "erase", unit, manifest, "req-1", subject_ref=ADA_REF)
        assert checked["items_remaining"] == 0 and checked["files_remaining"] == 0, checked
    assert counts["payslips"]["retained"] == 3 and counts["employees"]["deleted"] == 1
    after, versions_after = _raw(hr_world), _versions(hr_world)
    ada = "TENANT#acme#EMP#E0001"
    # residue: her profile gone; her payslips kept by law without her name, PDFs kept
    assert (ada, "PROFILE") not in after
    slips = [i for (pk, sk), i in after.items() if pk == ada and sk.startswith("PAYSLIP#")]
    assert len(slips) == 3 and all("employee_name" not in s for s in slips)
    assert all(i["pdf_key"] in versions_after for i in slips)
    assert (ada, "REVIEW#2024-R1") not in after                # the review about her
    wrote = after[("TENANT#acme#EMP#E0002", "REVIEW#2024-R2")]  # the one she wrote
    assert "author_id" not in wrote and "gsi2pk" not in wrote
    assert wrote["author_name"].startswith("Reviewer ")
    assert wrote["comments"] == "Grace ships compilers on time"  # Grace's review stays hers
    text = repr([i for k, i in after.items() if k[0] != "TENANT#globex#EMP#E0001"])
    assert "ada.lovelace" not in text and "Ada Lovelace" not in text and "London" not in text
    gone = [k for k in versions_before if k not in versions_after]
    assert sorted(gone) == sorted([
        "acme/employees/E0001/id-card.pdf", "acme/employees/E0001/contract.pdf",
        "acme/photos/E0001.jpg", "acme/annexes/E0001-nda.pdf", "acme/annexes/E0001-car.pdf"])
    # collateral: every other item and object version is as it was
    changed = {k for k in before if before[k] != after.get(k)}
    assert changed == {(ada, "PROFILE"), (ada, "REVIEW#2024-R1"),
                       ("TENANT#acme#EMP#E0002", "REVIEW#2024-R2"),
                       *((ada, f"PAYSLIP#{m}") for m in ("2024-01", "2024-02", "2024-03"))}
    assert all(versions_after[k] == versions_before[k] for k in versions_after)


# -- silo tenancy --------------------------------------------------------------------------------

def _silo() -> dict[str, Any]:
    return {"version": 2, "name": "silo", "identities": ["email"],
            "buckets": {"files": "{tenant}-silo-files"},
            "tables": {"people": {
                "table": "{tenant}-people",
                "key": {"partition": "person_id"},
                "find": [{"identity": "email", "index": "by_email",
                          "attribute": "email"}],
                "indexes": {"by_email": {"partition": "email"}},
                "attributes": {"person_id": {"category": "technical", "anonymise": "keep"},
                               "email": {"category": "identity", "identity": "email",
                                         "anonymise": "null"},
                               "cv": {"category": "content", "s3": "files",
                                      "anonymise": "null"}}}}}


def test_silo_tables_and_buckets_are_the_tenants_own(module_aws):
    from infra.local import yours
    from oblio.core.settings import get_settings
    from oblio.pipeline import find
    from oblio.store import aws as oblio_aws
    from oblio.store import tables as store

    dm = datamap.parse(_silo())
    assert dm.tables["people"].physical("acme") == "acme-people"
    assert dm.bucket("files", "acme") == "acme-silo-files"
    ddb, s3 = oblio_aws.client("dynamodb"), oblio_aws.client("s3")
    made = yours.create_missing(dm, ddb, s3, get_settings().region, ["acme", "globex"])
    assert {"table acme-people (1 index)", "table globex-people (1 index)",
            "bucket acme-silo-files (versioned)", "bucket globex-silo-files (versioned)"} <= \
        set(made)
    datamap.check_tables(dm, ddb, ["acme", "globex"])
    for t in ("acme", "globex"):
        store.batch_put(f"{t}-people", [{"person_id": "p1", "email": "eve@example.com",
                                         "cv": "cv/p1.pdf"}])
    with oblio_aws.counting() as io:
        fp = find.walk(dm, "acme", {"email": "eve@example.com"})
    assert len(fp.items["people"]) == 1
    assert find.s3_refs(dm, dm.tables["people"], fp.items["people"], "acme") == [
        ("acme-silo-files", "cv/p1.pdf")]
    assert io.calls["dynamodb.Query"] == 1
    # the only table read is acme's: globex's has the same person and is never touched
    assert layout.condition(dm, dm.tables["people"], dm.tables["people"].find[0], "acme",
                            "eve@example.com").table == "acme-people"


def test_a_silo_name_aws_would_reject_is_refused_naming_the_tenant():
    dm = datamap.parse(_silo())
    with pytest.raises(DataMapError) as err:
        dm.bucket("files", "Acme_Corp")
    assert "bucket template '{tenant}-silo-files' makes" in err.value.problems[0]


def test_another_persons_name_on_an_item_about_her_is_not_one_of_her_identifying_values():
    from oblio.pipeline import rules

    dm = datamap.parse(hr())
    about_her = {"pk": "TENANT#acme#EMP#E0002", "sk": "REVIEW#R2", "author_name": "Reviewer 1",
                 "comments": "x"}
    assert rules.identifying_values(dm, "reviews", [about_her]) == []
    profile = {"pk": "TENANT#acme#EMP#E0002", "sk": "PROFILE", "name": "Grace Hopper",
               "emergency_contact": {"name": "Partner", "phone": "+39"}}
    assert rules.identifying_values(dm, "employees", [profile]) == ["Grace Hopper"]


def test_silo_fixtures_are_named_for_a_tenants_table(tmp_path):
    from infra.local import yours

    dm = datamap.parse(_silo())
    (tmp_path / "acme-people.jsonl").write_text('{"person_id": "p1"}\n')
    (tmp_path / "initech-people.jsonl").write_text('{"person_id": "p1"}\n')
    with pytest.raises(yours.FixtureError) as err:
        yours.read_fixtures(dm, tmp_path, ["acme", "globex"])
    assert len(err.value.problems) == 1
    assert "initech-people.jsonl: the data map names no table 'initech-people'" in \
        err.value.problems[0]
    (tmp_path / "initech-people.jsonl").unlink()
    assert yours.read_fixtures(dm, tmp_path, ["acme"]).items == {
        "acme-people": [{"person_id": "p1"}]}


def test_check_data_says_it_did_not_sample_silo_tables_rather_than_failing(module_aws):
    from infra import mapping
    from oblio.store import aws as oblio_aws

    rep = mapping.check_data(datamap.parse(_silo()), oblio_aws.client("dynamodb"),
                             oblio_aws.client("s3"))
    assert rep.sampled == {} and rep.objects == {}
    assert any("table {tenant}-people: one table per tenant" in w and "not sampled" in w
               for w in rep.warnings), rep.warnings
    assert any("bucket {tenant}-silo-files" in w for w in rep.warnings)


def _typed(d: dict[str, Any]) -> None:
    """Payslips and reviews told apart by a type attribute alone (one sort template)."""
    d["tables"]["employees"]["entity"] = {"attribute": "entity", "value": "employee"}
    for name, value in (("payslips", "payslip"), ("reviews", "review")):
        t = d["tables"][name]
        t["key"]["sort"] = {"attribute": "sk", "template": "{item_id}"}
        t["attributes"]["item_id"] = {"category": "technical", "anonymise": "keep"}
        t["entity"] = {"attribute": "entity", "value": value}
    d["tables"]["reviews"]["roles"]["author"]["attributes"].pop("gsi2pk")
    d["tables"]["reviews"]["indexes"]["by_author"]["sort"] = {"attribute": "sk"}


def test_entity_types_may_be_told_apart_by_a_type_attribute():
    dm = datamap.parse(hr(_typed))
    slips, reviews = dm.tables["payslips"], dm.tables["reviews"]
    item = {"pk": "TENANT#acme#EMP#E1", "sk": "2024-01", "entity": "payslip"}
    assert layout.selects(dm, slips, item, "acme")
    assert not layout.selects(dm, reviews, item, "acme")
    assert not layout.selects(dm, slips, {**item, "entity": "review"}, "acme")


def test_a_type_attribute_must_be_declared_and_kept():
    def rewritten(d: dict[str, Any]) -> None:
        _typed(d)
        d["tables"]["payslips"]["attributes"]["entity"] = {"category": "identity",
                                                           "anonymise": "null"}

    found = problems(rewritten)
    assert any("table 'payslips': entity attribute 'entity' must be kept" in p
               for p in found), found
