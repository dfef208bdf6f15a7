"""What bad input gets: a catalogue that could not deploy stops the synth before anything is
built, with a message that names the entry at fault (and `make synth` exits 2 saying so)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from infra import catalogue as cat
from infra.catalogue import CATALOGUE
from infra.cdk import synth
from infra.cdk.synth import SynthError, synthesize


def refused(bad: cat.Catalogue, context: dict[str, Any] | None = None) -> str:
    with pytest.raises(SynthError) as info:
        synthesize(context, catalogue=bad, outdir="/nonexistent/never-written")
    return str(info.value)


def test_a_table_name_aws_rejects_is_named():
    bad = dataclasses.replace(CATALOGUE, tables=(
        *CATALOGUE.tables, cat.Table("audit log!", cat.Key("id"))))
    message = refused(bad)
    assert "table 'audit log!'" in message and "AWS rejects" in message


def test_a_bucket_name_aws_rejects_is_named():
    bad = dataclasses.replace(CATALOGUE, buckets=(
        *CATALOGUE.buckets, cat.Bucket("Raw_Uploads")))
    assert "bucket 'Raw_Uploads'" in refused(bad)


def test_a_state_machine_name_aws_rejects_is_named():
    sm = dataclasses.replace(CATALOGUE.state_machine("erasure"), name="erasure v2")
    bad = dataclasses.replace(CATALOGUE, state_machines=(*CATALOGUE.state_machines, sm))
    assert "statemachine 'erasure v2'" in refused(bad)


def test_a_rule_name_too_long_for_aws_is_named():
    rule = dataclasses.replace(CATALOGUE.rules[0], name="r" * 70)
    bad = dataclasses.replace(CATALOGUE, rules=(*CATALOGUE.rules, rule))
    assert f"event rule {'r' * 70!r}" in refused(bad)


def test_a_prefix_that_makes_a_name_too_long_is_named():
    assert "becomes 'xxxxxxxx" in refused(CATALOGUE, {"prefix": "x" * 60})


def test_a_state_machine_naming_an_unknown_function_is_named():
    sm = CATALOGUE.state_machine("erasure")
    sm = dataclasses.replace(sm, functions={**sm.functions, "ApplyFunctionArn": "aply"})
    bad = dataclasses.replace(CATALOGUE, state_machines=(sm,))
    message = refused(bad)
    assert "state machine 'erasure'" in message and "'aply'" in message


def test_a_placeholder_no_catalogue_entry_fills_is_named():
    sm = CATALOGUE.state_machine("erasure")
    sm = dataclasses.replace(sm, functions={k: v for k, v in sm.functions.items()
                                            if k != "WorkFunctionArn"})
    bad = dataclasses.replace(CATALOGUE, state_machines=(sm,))
    message = refused(bad)
    assert "state machine 'erasure'" in message and "${WorkFunctionArn}" in message


def test_a_placeholder_the_definition_does_not_use_is_named():
    sm = CATALOGUE.state_machine("erasure")
    sm = dataclasses.replace(sm, functions={**sm.functions, "ChunkFunctionArn": "bulk_chunk"})
    bad = dataclasses.replace(CATALOGUE, state_machines=(sm,))
    assert "${ChunkFunctionArn}" in refused(bad)


def test_a_missing_definition_file_is_named():
    sm = dataclasses.replace(CATALOGUE.state_machine("erasure"), definition="erasur.asl.json")
    bad = dataclasses.replace(CATALOGUE, state_machines=(sm,))
    assert "statemachines/erasur.asl.json does not exist" in refused(bad)


def _exports_with(*rules: cat.LifecycleRule) -> cat.Catalogue:
    exports = dataclasses.replace(CATALOGUE.bucket("exports"), lifecycle=rules)
    return dataclasses.replace(CATALOGUE, buckets=tuple(
        exports if b.name == "exports" else b for b in CATALOGUE.buckets))


def test_an_export_lifecycle_rule_without_expiry_is_named():
    keep = [r for r in CATALOGUE.bucket("exports").lifecycle if r.prefix != "exports/"]
    for no_expiry in (0, None):
        bad = _exports_with(*keep, cat.LifecycleRule("exports-forever", "exports/",
                                                     no_expiry))  # type: ignore[arg-type]
        message = refused(bad)
        assert "bucket 'exports'" in message and "'exports-forever'" in message
        assert "no expiry" in message


def test_an_export_prefix_with_no_lifecycle_rule_is_named():
    keep = [r for r in CATALOGUE.bucket("exports").lifecycle if r.prefix != "exports/"]
    message = refused(_exports_with(*keep))
    assert "bucket 'exports': prefix 'exports/' holds personal data" in message


def test_a_rule_targeting_an_unknown_function_is_named():
    rule = dataclasses.replace(CATALOGUE.rules[0], name="to-nowhere",
                               target=("function", "nowhere"))
    bad = dataclasses.replace(CATALOGUE, rules=(*CATALOGUE.rules, rule))
    assert "event rule 'to-nowhere': target function 'nowhere'" in refused(bad)


def test_a_schedule_that_is_not_an_expression_is_named():
    rule = cat.EventRule("nightly-x", {}, target=("function", "fail"), bus="default",
                         schedule="every night")
    bad = dataclasses.replace(CATALOGUE, rules=(*CATALOGUE.rules, rule))
    assert "schedule 'nightly-x': 'every night' is not" in refused(bad)


def test_a_function_without_an_access_entry_is_named():
    fn = cat.Function("plan_v2", "plan.handler.handler")
    bad = dataclasses.replace(CATALOGUE, functions=(*CATALOGUE.functions, fn))
    assert "function 'plan_v2' has no entry in infra/cdk/access.py" in refused(bad)


def test_a_handler_file_that_does_not_exist_is_named():
    fn = cat.Function("plan", "plan_x.handler.handler")
    bad = dataclasses.replace(CATALOGUE, functions=tuple(
        fn if f.name == "plan" else f for f in CATALOGUE.functions))
    assert "function 'plan': handler 'plan_x.handler.handler' needs" in refused(bad)


def test_a_bad_context_value_is_named():
    assert "'log_retention_days'" in refused(CATALOGUE, {"log_retention_days": "10"})


@pytest.mark.parametrize("value", ["0", "10001", "many"])
def test_a_bulk_concurrency_the_distributed_map_cannot_take_is_named(value):
    assert "'bulk_concurrency'" in refused(CATALOGUE, {"bulk_concurrency": value})


def test_make_synth_exits_2_naming_the_entry(monkeypatch: pytest.MonkeyPatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = dataclasses.replace(CATALOGUE, tables=(
        *CATALOGUE.tables, cat.Table("audit log!", cat.Key("id"))))
    monkeypatch.setattr(synth, "CATALOGUE", bad)
    assert synth.main(["--outdir", "/nonexistent/never-written"]) == 2
    assert "synth refused: catalogue table 'audit log!'" in capsys.readouterr().err


def test_a_silo_table_or_bucket_of_the_data_map_is_granted_for_every_tenant_not_literally():
    from infra.cdk.stack import iam_name

    assert iam_name("{tenant}-employees") == "*-employees"
    assert iam_name("hr-main") == "hr-main"
