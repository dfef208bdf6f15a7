"""The template is sound: cfn-lint finds no error in it, cdk-nag (AwsSolutions) finds nothing
that is not acknowledged with a reason, every state machine definition (as deployed, after
substitution) is parsed by a real ASL parser, and the catalogue and the template agree."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import pytest

from infra.catalogue import CATALOGUE, physical_name
from infra.cdk import nag
from infra.cdk.config import ROOT
from infra.cdk.routes import routes
from tests.infra.cfn import by_property, of_type
from tests.infra.conftest import PREFIX

PLACEHOLDER = re.compile(r"\$\{([A-Za-z0-9_]+)\}")


# -- cfn-lint ---------------------------------------------------------------------------------


def test_cfn_lint_finds_no_error(synthesized: Any) -> None:
    from infra.cdk.synth import lint

    matches = lint(synthesized.template_path)
    errors = [str(m) for m in matches if m.rule.id.startswith("E")]
    assert errors == []


# -- cdk-nag ----------------------------------------------------------------------------------


def test_cdk_nag_reports_no_unacknowledged_finding(synthesized: Any) -> None:
    errors = [f for f in synthesized.nag_findings if f[0] == "error"]
    assert errors == [], "\n".join(f"{where}: {message}" for _lvl, where, message in errors)


def test_cdk_nag_ran_the_aws_solutions_pack_over_the_stack(synthesized: Any) -> None:
    [report] = Path(synthesized.template_path).parent.glob("AwsSolutions-*NagReport.csv")
    with report.open() as f:
        rows = list(csv.DictReader(f))
    compliance = {r["Compliance"] for r in rows}
    assert "Non-Compliant" not in compliance
    assert {"Compliant", "Suppressed"} <= compliance
    # the checks that matter most for personal data were evaluated, and passed
    passed = {r["Rule ID"] for r in rows if r["Compliance"] == "Compliant"}
    assert {"AwsSolutions-S1", "AwsSolutions-S10", "AwsSolutions-DDB3", "AwsSolutions-SF1",
            "AwsSolutions-SF2", "AwsSolutions-SQS4", "AwsSolutions-SNS3",
            "AwsSolutions-KMS5"} <= passed


def test_every_acknowledged_finding_is_one_of_the_registry_with_its_reason(
        synthesized: Any) -> None:
    reasons = {(s.rule, s.reason) for s in nag.SUPPRESSIONS.values()}
    assert synthesized.nag_suppressed, "no finding acknowledged: is cdk-nag running?"
    for rule, where, reason in synthesized.nag_suppressed:
        assert (rule, reason) in reasons, (rule, where, reason)


def test_every_suppression_says_why_and_is_listed_in_the_readme() -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Deploy to AWS", 1)[1].split("\n## ", 1)[0]
    for key, s in nag.SUPPRESSIONS.items():
        assert len(s.reason) > 60, key
        assert s.rule.startswith("AwsSolutions-"), key
        assert f"`{key}`" in section, f"README's Deploy to AWS section does not list {key}"


def test_iam5_suppressions_name_the_findings_they_cover() -> None:
    # a wildcard acknowledged without `applies_to` would hide every future wildcard too
    for key, s in nag.SUPPRESSIONS.items():
        if s.rule in ("AwsSolutions-IAM4", "AwsSolutions-IAM5"):
            assert s.applies_to, key


# -- state machine definitions ----------------------------------------------------------------


def _deployed_definitions(synthesized: Any) -> dict[str, str]:
    """Each state machine's definition as Step Functions receives it: the asset file with
    DefinitionSubstitutions applied (function ARNs in the shape AWS gives them)."""
    resources = synthesized.template["Resources"]
    names = {k: v["Properties"]["FunctionName"]
             for k, v in of_type(resources, "AWS::Lambda::Function").items()}
    out = {}
    for props in (r["Properties"] for r in
                  of_type(resources, "AWS::StepFunctions::StateMachine").values()):
        key = props["DefinitionS3Location"]["Key"]
        text = (Path(synthesized.template_path).parent / f"asset.{key}").read_text()
        values = {}
        for placeholder, value in props.get("DefinitionSubstitutions", {}).items():
            if isinstance(value, dict):
                logical_id = value["Fn::GetAtt"][0]
                value = f"arn:aws:lambda:eu-west-1:123456789012:function:{names[logical_id]}"
            values[placeholder] = value
        missing = set(PLACEHOLDER.findall(text)) - set(values)
        assert not missing, (props["StateMachineName"], missing)
        out[props["StateMachineName"]] = PLACEHOLDER.sub(lambda m, v=values: v[m[1]], text)
    return out


def test_every_deployed_definition_parses_with_a_real_asl_parser(synthesized: Any) -> None:
    from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

    definitions = _deployed_definitions(synthesized)
    assert set(definitions) == {physical_name(PREFIX, "statemachine", sm.name)
                                for sm in CATALOGUE.state_machines}
    for state_machine, text in definitions.items():
        json.loads(text)
        # moto's grammar knows only STANDARD children in a Distributed Map (AWS also takes
        # EXPRESS, which the stack deploys): that one token is read as moto can parse it
        parsable = re.sub(r'("ExecutionType"\s*:\s*)"EXPRESS"', r'\1"STANDARD"', text)
        try:
            AmazonStateLanguageParser.parse(parsable)
        except Exception as exc:  # noqa: BLE001 - the parser's error types vary; name the file
            pytest.fail(f"{state_machine}: {exc}")


def test_distributed_map_children_are_express_in_the_deployed_definition(
        synthesized: Any) -> None:
    definitions = _deployed_definitions(synthesized)
    for sm in CATALOGUE.state_machines:
        if "ChildExecutionType" in sm.values:
            text = definitions[physical_name(PREFIX, "statemachine", sm.name)]
            assert re.search(r'"ExecutionType"\s*:\s*"EXPRESS"', text), sm.name


def test_every_task_resource_is_a_function_of_the_stack(synthesized: Any) -> None:
    deployed = set(by_property(synthesized.template["Resources"], "AWS::Lambda::Function",
                               "FunctionName"))
    for state_machine, text in _deployed_definitions(synthesized).items():
        for arn in re.findall(r'"arn:aws:lambda:[^"]*:function:([^"]+)"', text):
            assert arn in deployed, (state_machine, arn)


# -- catalogue and template agree -------------------------------------------------------------


def test_every_catalogue_entry_is_in_the_template_and_nothing_else(synthesized: Any) -> None:
    resources = synthesized.template["Resources"]

    def names(kind: str, prop: str) -> set[str]:
        return set(by_property(resources, kind, prop))

    def catalogue(kind: str, entries: Any) -> set[str]:
        return {physical_name(PREFIX, kind, e.name) for e in entries}

    # the demo domain's tables and bucket stand for a tenant's own: the local stack only
    assert names("AWS::DynamoDB::Table", "TableName") == catalogue(
        "table", [t for t in CATALOGUE.tables if not t.demo])
    assert names("AWS::S3::Bucket", "BucketName") == catalogue(
        "bucket", [b for b in CATALOGUE.buckets if not b.demo])
    assert names("AWS::StepFunctions::StateMachine", "StateMachineName") == catalogue(
        "statemachine", CATALOGUE.state_machines)
    assert names("AWS::Lambda::Function", "FunctionName") | names(
        "AWS::Serverless::Function", "FunctionName") == catalogue(
        "function", CATALOGUE.functions)
    assert names("AWS::Events::Rule", "Name") == {f"{PREFIX}-{r.name}"
                                                  for r in routes(CATALOGUE)}
    assert names("AWS::SNS::Topic", "TopicName") == {
        f"{PREFIX}-alarms", *catalogue("topic", CATALOGUE.topics)}
    assert names("AWS::Events::EventBus", "Name") == {
        physical_name(PREFIX, "bus", CATALOGUE.event_bus)}


def test_every_catalogue_schedule_is_a_scheduled_rule(synthesized: Any) -> None:
    rules = by_property(synthesized.template["Resources"], "AWS::Events::Rule", "Name")
    for r in routes(CATALOGUE):
        deployed = rules[f"{PREFIX}-{r.name}"][1]
        assert deployed.get("ScheduleExpression") == r.schedule, r.name
        assert ("EventPattern" in deployed) is bool(r.pattern), r.name


def test_nag_findings_are_read_from_the_assemblys_additional_metadata(tmp_path: Path) -> None:
    # the CDK moves large metadata out of manifest.json: a finding there must still count
    from infra.cdk.synth import nag_findings

    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": {"Oblio": {
        "metadata": {"/Oblio/A": [{"type": "aws:cdk:warning", "data": "AwsSolutions-S1: x"}]},
        "additionalMetadataFile": "Oblio.metadata.json"}}}))
    (tmp_path / "Oblio.metadata.json").write_text(json.dumps({
        "/Oblio/Role/DefaultPolicy/Resource": [
            {"type": "aws:cdk:error", "data": "AwsSolutions-IAM5[Resource::*]: wildcard"},
            {"type": "aws:cdk:logicalId", "data": "RoleDefaultPolicy"}]}))
    assert nag_findings(tmp_path, "Oblio") == [
        ("error", "/Oblio/Role/DefaultPolicy/Resource", "AwsSolutions-IAM5[Resource::*]: wildcard"),
        ("warning", "/Oblio/A", "AwsSolutions-S1: x")]
