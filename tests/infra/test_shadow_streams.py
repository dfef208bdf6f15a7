"""The shadow stream consumer in the synthesized stack: one event source mapping per stream
ARN of the deployment's `shadow_stream_arns` (the tenant's tables are not this stack's: their
owner enables the streams), partial batch failures reported, failures dead-lettered."""

from __future__ import annotations

from typing import Any

from tests.infra.conftest import CONTEXT


def _mappings(resources: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["Properties"] for r in resources.values()
            if r["Type"] == "AWS::Lambda::EventSourceMapping"]


def test_each_configured_stream_feeds_the_consumer_with_partial_batch_failures(resources):
    [m] = _mappings(resources)
    assert m["EventSourceArn"] == CONTEXT["shadow_stream_arns"]
    assert m["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert m["BisectBatchOnFunctionError"] is True and m["MaximumRetryAttempts"] == 5
    assert m["StartingPosition"] == "TRIM_HORIZON"
    assert "OnFailure" in m["DestinationConfig"]
    fn = m["FunctionName"]["Ref"]
    assert "shadow" in str(resources[fn]["Properties"]["FunctionName"]).lower()


def test_the_consumer_reads_only_the_configured_streams(resources):
    statements = [s for r in resources.values() if r["Type"] == "AWS::IAM::Policy"
                  for s in r["Properties"]["PolicyDocument"]["Statement"]
                  if s.get("Sid") == "ReadShadowStreams"]
    assert len(statements) == 1
    assert statements[0]["Resource"] == CONTEXT["shadow_stream_arns"]
    assert "dynamodb:GetRecords" in statements[0]["Action"]


def test_the_backfill_workflow_and_its_table_are_deployed(resources):
    machines = [r for r in resources.values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    assert any("shadow_backfill" in str(r["Properties"].get("StateMachineName")) for r in machines)
    tables = [r["Properties"].get("TableName") for r in resources.values()
              if r["Type"] == "AWS::DynamoDB::Table"]
    assert any("backfills" in str(t) for t in tables)
