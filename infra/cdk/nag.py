"""cdk-nag (AwsSolutions pack) and every finding the stack acknowledges, each with its reason.

Suppressions are named here once and applied to the constructs they concern (never to the
whole stack), narrowed with `applies_to` wherever the rule reports a specific action or
resource. The README's list of suppressions is checked against this registry by the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import IConstruct


@dataclass(frozen=True)
class Suppression:
    rule: str
    reason: str
    #: the finding's details this covers (IAM5 / IAM4): literal strings or /regex/ patterns
    applies_to: tuple[str, ...] = ()


SUPPRESSIONS: dict[str, Suppression] = {
    "xray": Suppression(
        "AwsSolutions-IAM5",
        "X-Ray tracing: xray:PutTraceSegments and xray:PutTelemetryRecords support no "
        "resource-level permissions, so AWS requires Resource '*'",
        ("Resource::*",)),
    "sfn-logs": Suppression(
        "AwsSolutions-IAM5",
        "Step Functions logging and tracing: the CloudWatch Logs vended-delivery actions "
        "(logs:CreateLogDelivery, logs:GetLogDelivery, ...) and the X-Ray actions support no "
        "resource-level permissions, so AWS requires Resource '*'",
        ("Resource::*",)),
    "object-prefixes": Suppression(
        "AwsSolutions-IAM5",
        "S3 object permissions are scoped to one oblio bucket and its key prefix (e.g. "
        "work/*): object keys are per tenant and per request, created at run time",
        ("/^Resource::<[A-Za-z0-9]+\\.Arn>\\/[a-z0-9-]+\\/\\*$/g",)),
    "executions": Suppression(
        "AwsSolutions-IAM5",
        "Stopping, describing and redriving executions: execution ARNs carry a run-time id "
        "after the state machine's name, so the resource is that state machine's executions "
        "(execution:<name>:* and, for Distributed Map children, execution:<name>/*)",
        ("/^Resource::arn:<AWS::Partition>:states:<AWS::Region>:<AWS::AccountId>:execution:"
         "[A-Za-z0-9_-]+[:/]\\*$/g",)),
    "tenant-tables": Suppression(
        "AwsSolutions-IAM5",
        "Tenant tables: the data map names the tenants' own DynamoDB tables, which this stack "
        "does not create; the grant is on the context value tenant_table_arns (default: the "
        "account's tables in the stack's region, or the tables of the data map given with "
        "-c datamap) and their indexes, optionally limited with dynamodb:LeadingKeys "
        "(tenant_leading_keys). Narrow it to your tables when you deploy.",
        ("/^Resource::arn:.*:dynamodb:.*$/g", "/^Resource::.*\\/index\\/\\*$/g")),
    "tenant-buckets": Suppression(
        "AwsSolutions-IAM5",
        "Tenant buckets: attachments and documents live in the tenants' own buckets, which "
        "this stack does not create; the grant is on the context value tenant_bucket_arns "
        "(default: any bucket owned by this account, enforced with s3:ResourceAccount, or the "
        "buckets of the data map given with -c datamap) and their objects",
        ("/^Resource::arn:(aws|<AWS::Partition>):s3:::.*$/g",)),
    "operator-key-rotation": Suppression(
        "AwsSolutions-SMG4",
        "The operator key is a bearer credential the operator holds, not a database password: "
        "it is rotated by putting a new value in the secret (the API reads it again within "
        "five minutes); there is no service whose password a rotation function would change"),
    "python-runtime": Suppression(
        "AwsSolutions-L1",
        "The functions run Python 3.11, the version the test suite runs on and the layer's "
        "binary wheels are built for; moving to a newer runtime is a tested change of "
        "pyproject, the layer build and this stack together"),
    "apigw-logs-role": Suppression(
        "AwsSolutions-IAM4",
        "API Gateway's account-level CloudWatch role uses the AWS managed policy "
        "AmazonAPIGatewayPushToCloudWatchLogs, the policy AWS documents for it; it is needed "
        "once per account and region for access logs (context api_cloudwatch_role=false to "
        "leave an existing one)",
        ("Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
         "AmazonAPIGatewayPushToCloudWatchLogs",)),
}


def suppress(construct: IConstruct, *names: str) -> None:
    """Acknowledge the named findings on `construct` and its children."""
    entries = []
    for name in names:
        s = SUPPRESSIONS[name]
        applies_to = [RegexAppliesTo(regex=a) if a.startswith("/") else a
                      for a in s.applies_to] or None
        entries.append(NagPackSuppression(id=s.rule, reason=s.reason, applies_to=applies_to))
    NagSuppressions.add_resource_suppressions(construct, entries, apply_to_children=True)
