"""The one price table: public AWS on-demand prices, one region, one date. Everything that
puts a dollar figure on a call (a request's `io.cost_usd`, the benchmarks) reads it here.

Region us-east-1 (N. Virginia): the region the public pages quote first, and the one the
figures below were found for. oblio's default region, eu-west-1, is priced a few percent
higher for some services (DynamoDB, Lambda); a deployment elsewhere should replace the
figures and `REGION` / `AS_OF` together.

Each price names the page it comes from (`source`, the AWS pricing page) and `checked`: the
stored copy of a page where the figure was read (offline, on `AS_OF`), or None when no
stored page gave it and the figure is the one AWS published as far as we know (unchecked).
Free tiers are left out: a request's cost is its marginal cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

REGION = "us-east-1"
AS_OF = "2026-12-04"
#: the processor the functions run on (Graviton): the CDK stack deploys every function and
#: the layer for it, and Lambda's duration is priced for it (a fifth below x86_64)
LAMBDA_ARCHITECTURE = "arm64"


@dataclass(frozen=True)
class Price:
    usd: float
    """dollars per one `unit`"""
    unit: str
    source: str
    """the AWS pricing page"""
    checked: str | None
    """where the figure was read on `AS_OF` (a stored page), None: unchecked"""


_DDB = "https://aws.amazon.com/dynamodb/pricing/on-demand/"
_S3 = "https://aws.amazon.com/s3/pricing/"
_SFN = "https://aws.amazon.com/step-functions/pricing/"
_LAMBDA = "https://aws.amazon.com/lambda/pricing/"
_EVENTS = "https://aws.amazon.com/eventbridge/pricing/"
_KMS = "https://aws.amazon.com/kms/pricing/"
_SES = "https://aws.amazon.com/ses/pricing/"
_SNS = "https://aws.amazon.com/sns/pricing/"
_SM = "https://aws.amazon.com/secrets-manager/pricing/"
_APIGW = "https://aws.amazon.com/api-gateway/pricing/"

PRICES: dict[str, Price] = {
    # DynamoDB on demand, after the November 2024 reduction (standard table class)
    "dynamodb.write_unit": Price(0.625e-6, "write request unit", _DDB,
                                 "https://airbyte.com/data-engineering-resources/"
                                 "dynamodb-pricing ($0.625 per million WRU, US East)"),
    "dynamodb.read_unit": Price(0.125e-6, "read request unit", _DDB,
                                "https://airbyte.com/data-engineering-resources/"
                                "dynamodb-pricing ($0.125 per million RRU, US East)"),
    # S3 Standard requests: PUT, COPY, POST, LIST; GET, SELECT and the others; DELETE free
    "s3.put_class": Price(0.005e-3, "PUT, COPY, POST or LIST request", _S3, None),
    "s3.get_class": Price(0.0004e-3, "GET, HEAD or other request", _S3, None),
    # Step Functions
    "stepfunctions.standard_transition": Price(
        25e-6, "state transition (Standard)", _SFN,
        "https://www.wring.co/blog/aws-step-functions-pricing-guide ($25.00 per million)"),
    "stepfunctions.express_request": Price(
        1e-6, "Express execution started", _SFN,
        "https://www.wring.co/blog/aws-step-functions-pricing-guide ($1.00 per million)"),
    "stepfunctions.express_gb_second": Price(
        0.00001667, "Express GB-second (64 MB chunks, 100 ms)", _SFN,
        "https://www.wring.co/blog/aws-step-functions-pricing-guide ($0.00001667/GB-s)"),
    # Lambda, arm64 (LAMBDA_ARCHITECTURE), first tier
    "lambda.request": Price(
        0.2e-6, "invocation", _LAMBDA,
        "https://docs.aws.amazon.com/whitepapers/latest/how-aws-pricing-works/lambda.html "
        "($0.20 per 1 million requests)"),
    "lambda.gb_second": Price(
        0.0000133334, "GB-second of billed duration (arm64)", _LAMBDA,
        "https://cloudchipr.com/blog/aws-lambda-pricing ($0.0000133334 per GB-second, ARM, "
        "first 7.5 billion GB-s; x86 $0.0000166667)"),
    # EventBridge custom events, one per 64 KB chunk of an entry
    "events.entry": Price(
        1e-6, "custom event entry (64 KB chunk)", _EVENTS,
        "https://blog.awsfundamentals.com/aws-eventbridge-pricing-guide ($1.00 per 1 "
        "million custom events)"),
    # KMS symmetric key requests (Encrypt, Decrypt, GenerateDataKey, ...)
    "kms.request": Price(
        0.03e-4, "symmetric request", _KMS,
        "https://www.wring.co/blog/aws-kms-pricing-guide ($0.03 per 10,000 requests)"),
    # SES outbound e-mail (no attachments, from outside EC2)
    "ses.email": Price(
        0.1e-3, "outbound e-mail", _SES,
        "https://www.acecloudinterviews.com/tutorials/aws/ses/ ($0.10 per thousand e-mails)"),
    "sns.publish": Price(0.5e-6, "publish (64 KB chunk)", _SNS, None),
    "secretsmanager.call": Price(0.05e-4, "API call", _SM, None),
    # API Gateway REST API (Chalice deploys a REST API), first 333 million a month
    "apigateway.request": Price(3.5e-6, "REST API request", _APIGW, None),
}

#: S3 operations billed in the PUT class (the others in the GET class, but the free ones)
S3_PUT_CLASS = frozenset({
    "PutObject", "CopyObject", "PostObject", "DeleteObjects", "ListObjects", "ListObjectsV2",
    "ListObjectVersions", "ListBuckets", "ListMultipartUploads", "CreateMultipartUpload",
    "UploadPart", "UploadPartCopy", "CompleteMultipartUpload", "PutObjectTagging",
    "PutObjectRetention", "PutObjectLegalHold", "RestoreObject", "PutBucketLifecycleConfiguration",
})
#: S3 requests AWS does not charge for
S3_FREE = frozenset({"DeleteObject", "AbortMultipartUpload"})


def usd(name: str, quantity: float) -> float:
    """What `quantity` units of price `name` cost, in dollars."""
    return PRICES[name].usd * quantity


def s3_class(operation: str) -> str | None:
    """The price an S3 operation is billed at (`s3.put_class`, `s3.get_class`), None: free."""
    if operation in S3_FREE:
        return None
    return "s3.put_class" if operation in S3_PUT_CLASS else "s3.get_class"


def table() -> list[dict[str, object]]:
    """The table as rows (for the README and the benchmarks): name, dollars per unit, unit,
    source, checked."""
    return [{"name": k, "usd": p.usd, "unit": p.unit, "source": p.source,
             "checked": p.checked or "unchecked"} for k, p in PRICES.items()]


#: services whose every request is billed at one price (calls counted by operation)
_PER_CALL = {"kms": "kms.request", "sns": "sns.publish", "secretsmanager": "secretsmanager.call"}
#: the e-mail sending operations of SES (v1 and v2)
_SES_SENDS = frozenset({"SendEmail", "SendRawEmail", "SendTemplatedEmail",
                        "SendBulkTemplatedEmail", "SendBulkEmail"})


def cost(calls: dict[str, dict[str, int]], units: dict[str, dict[str, float]],
         lambda_: dict[str, float], sfn: dict[str, int], events_entries: int | None = None,
         api_requests: int = 0) -> dict[str, object]:
    """What the counted work costs, in dollars: `calls` by owner ("tenant", "oblio") and
    `service.Operation`, DynamoDB `units` by owner and kind (read, write), Lambda
    (invocations, gb_seconds), Step Functions (standard transitions, express executions
    and their milliseconds), EventBridge entries (default: one per PutEvents), API Gateway
    requests. The tenant's share is the reads and writes of its own tables and buckets;
    oblio's is everything else."""
    by_service: dict[str, float] = {}

    def add(service: str, dollars: float) -> None:
        by_service[service] = by_service.get(service, 0.0) + dollars

    share = {"tenant": 0.0, "oblio": 0.0}
    for owner, ops in calls.items():
        before = sum(by_service.values())
        u = units.get(owner, {})
        add("dynamodb", usd("dynamodb.read_unit", u.get("read", 0))
            + usd("dynamodb.write_unit", u.get("write", 0)))
        for op, n in ops.items():
            service, _, name = op.partition(".")
            if service == "s3" and (price := s3_class(name)):
                add("s3", usd(price, n))
            elif service in _PER_CALL:
                add(service, usd(_PER_CALL[service], n))
            elif service in ("ses", "sesv2") and name in _SES_SENDS:
                add("ses", usd("ses.email", n))
            elif service == "events" and name == "PutEvents" and events_entries is None:
                add("events", usd("events.entry", n))
        share[owner if owner in share else "oblio"] += sum(by_service.values()) - before
    extra = 0.0
    if events_entries:
        extra += usd("events.entry", events_entries)
        add("events", usd("events.entry", events_entries))
    lam = usd("lambda.request", lambda_.get("invocations", 0)) + \
        usd("lambda.gb_second", lambda_.get("gb_seconds", 0))
    add("lambda", lam)
    # Express: per execution, and per 100 ms of its duration at 64 MB
    express_gb_s = math.ceil(sfn.get("express_ms", 0) / 100) * 0.1 * 64 / 1024
    steps = usd("stepfunctions.standard_transition", sfn.get("transitions", 0)) + \
        usd("stepfunctions.express_request", sfn.get("express_executions", 0)) + \
        usd("stepfunctions.express_gb_second", express_gb_s)
    add("stepfunctions", steps)
    gateway = usd("apigateway.request", api_requests)
    if api_requests:
        add("apigateway", gateway)
    share["oblio"] += extra + lam + steps + gateway
    total = sum(by_service.values())
    return {"total": total, "tenant": share["tenant"], "oblio": share["oblio"],
            "by_service": {k: v for k, v in sorted(by_service.items()) if v},
            "prices": f"oblio.core.prices, {REGION}, as of {AS_OF}"}
