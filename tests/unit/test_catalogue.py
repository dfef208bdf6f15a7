"""The resource catalogue refuses what could not deploy, naming the entry; the shipped one
passes."""

from __future__ import annotations

import dataclasses

import pytest

from infra import catalogue
from infra.catalogue import CATALOGUE


def test_the_shipped_catalogue_passes():
    catalogue.check(CATALOGUE, "oblio")


def test_every_state_machine_names_known_functions_and_an_existing_definition():
    from infra.local.provision import STATEMACHINES

    functions = {f.name for f in CATALOGUE.functions}
    for sm in CATALOGUE.state_machines:
        assert set(sm.functions.values()) <= functions, sm.name
        assert (STATEMACHINES / sm.definition).is_file(), sm.definition


def test_a_bad_table_name_is_refused_naming_the_table():
    bad = dataclasses.replace(CATALOGUE, tables=(
        *CATALOGUE.tables, catalogue.Table("bad name!", catalogue.Key("id"))))
    with pytest.raises(ValueError, match=r"catalogue table 'bad name!' becomes "
                                         r"'oblio-bad name!', which AWS rejects"):
        catalogue.check(bad, "oblio")


def test_a_bucket_name_aws_would_reject_is_refused_naming_the_bucket():
    bad = dataclasses.replace(CATALOGUE, buckets=(catalogue.Bucket("Exports_2"),))
    with pytest.raises(ValueError, match="bucket 'Exports_2'"):
        catalogue.check(bad, "oblio")


def test_a_prefix_that_makes_names_too_long_is_refused():
    with pytest.raises(ValueError, match="bucket"):
        catalogue.check(CATALOGUE, "x" * 60)


def test_a_state_machine_naming_an_unknown_function_is_refused_naming_both():
    sm = dataclasses.replace(CATALOGUE.state_machine("erasure"),
                             functions={"PlanFunctionArn": "plan",
                                        "ApplyFunctionArn": "nope"})
    bad = dataclasses.replace(CATALOGUE, state_machines=(sm,))
    with pytest.raises(ValueError, match="state machine 'erasure': ApplyFunctionArn names "
                                         "unknown function 'nope'"):
        catalogue.check(bad, "oblio")


def test_an_expiring_prefix_without_a_lifecycle_rule_is_refused_naming_the_bucket():
    bucket = dataclasses.replace(CATALOGUE.bucket("exports"), lifecycle=tuple(
        r for r in CATALOGUE.bucket("exports").lifecycle if r.prefix != "reports/"))
    bad = dataclasses.replace(CATALOGUE, buckets=(bucket,))
    with pytest.raises(ValueError, match="bucket 'exports': prefix 'reports/' holds personal "
                                         "data and needs a lifecycle rule"):
        catalogue.check(bad, "oblio")


def test_lookups_by_name_say_what_is_missing():
    assert CATALOGUE.table("audit").sort == catalogue.Key("seq")
    with pytest.raises(KeyError, match="the catalogue has no bucket named 'nowhere'"):
        CATALOGUE.bucket("nowhere")


def test_physical_names_carry_the_prefix():
    assert catalogue.physical_name("oblio", "table", "audit") == "oblio-audit"
    assert catalogue.physical_name("acme", "bucket", "exports") == "acme-exports"
