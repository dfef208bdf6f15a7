"""Create every resource of the catalogue in the local AWS (moto server): the same entries
the CDK stack deploys, plus the demo domain's tables and bucket."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

from infra.catalogue import CATALOGUE, Bucket, Catalogue, EventRule, Table
from oblio.core.settings import Settings
from oblio.store import aws

ROOT = Path(__file__).resolve().parents[2]
STATEMACHINES = ROOT / "statemachines"
LOCAL_ROLE = "oblio-local-role"


def table_name(s: Settings, t: Table) -> str:
    return t.name if t.demo else s.table(t.name)


def bucket_name(s: Settings, b: Bucket) -> str:
    return b.name if b.demo else s.bucket(b.name)


def _create_table(s: Settings, t: Table) -> None:
    ddb = aws.client("dynamodb")
    attrs = {t.partition.name: t.partition.type}
    schema = [{"AttributeName": t.partition.name, "KeyType": "HASH"}]
    if t.sort:
        attrs[t.sort.name] = t.sort.type
        schema.append({"AttributeName": t.sort.name, "KeyType": "RANGE"})
    gsis = []
    for i in t.indexes:
        attrs[i.partition.name] = i.partition.type
        ks = [{"AttributeName": i.partition.name, "KeyType": "HASH"}]
        if i.sort:
            attrs[i.sort.name] = i.sort.type
            ks.append({"AttributeName": i.sort.name, "KeyType": "RANGE"})
        gsis.append({"IndexName": i.name, "KeySchema": ks,
                     "Projection": {"ProjectionType": i.projection}})
    params: dict[str, Any] = {
        "TableName": table_name(s, t), "KeySchema": schema, "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [{"AttributeName": k, "AttributeType": v}
                                 for k, v in attrs.items()],
        "SSESpecification": {"Enabled": True, "SSEType": "KMS"},
    }
    if gsis:
        params["GlobalSecondaryIndexes"] = gsis
    ddb.create_table(**params)
    if t.ttl_attribute:
        ddb.update_time_to_live(TableName=table_name(s, t), TimeToLiveSpecification={
            "Enabled": True, "AttributeName": t.ttl_attribute})


def _create_bucket(s: Settings, b: Bucket, key_arn: str) -> None:
    s3 = aws.client("s3")
    name = bucket_name(s, b)
    if s.region == "us-east-1":
        s3.create_bucket(Bucket=name)
    else:
        s3.create_bucket(Bucket=name,
                         CreateBucketConfiguration={"LocationConstraint": s.region})
    if b.versioned:
        s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    s3.put_bucket_encryption(Bucket=name, ServerSideEncryptionConfiguration={"Rules": [{
        "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                               "KMSMasterKeyID": key_arn},
        "BucketKeyEnabled": True}]})
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration={
        "BlockPublicAcls": True, "IgnorePublicAcls": True, "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True})
    if b.eventbridge:
        s3.put_bucket_notification_configuration(
            Bucket=name, NotificationConfiguration={"EventBridgeConfiguration": {}})
    if b.lifecycle:
        rules = []
        for r in b.lifecycle:
            flt: dict[str, Any] = {"Prefix": r.prefix}
            if r.tag:
                flt = {"And": {"Prefix": r.prefix, "Tags": [{"Key": r.tag[0],
                                                              "Value": r.tag[1]}]}}
            rules.append({"ID": r.id, "Filter": flt, "Status": "Enabled",
                          "Expiration": {"Days": r.expire_days},
                          "NoncurrentVersionExpiration": {"NoncurrentDays": r.noncurrent_days},
                          "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 1}})
        s3.put_bucket_lifecycle_configuration(Bucket=name,
                                              LifecycleConfiguration={"Rules": rules})


def _zip() -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("handler.py", "# dispatched in-process by the local stack\n")
    return buf.getvalue()


def definition(s: Settings, sm_name: str, catalogue: Catalogue = CATALOGUE) -> str:
    """The ASL of a state machine with its ${Placeholders} filled for this deployment."""
    sm = catalogue.state_machine(sm_name)
    text = (STATEMACHINES / sm.definition).read_text()
    for placeholder, fn in sm.functions.items():
        text = text.replace("${" + placeholder + "}", s.function_arn(fn))
    for placeholder, (local, _aws) in sm.values.items():
        text = text.replace("${" + placeholder + "}", local)
    if "${" in text:
        raise ValueError(f"state machine {sm_name!r} has a placeholder the catalogue does "
                         "not fill")
    return text


def operator_key(s: Settings, catalogue: Catalogue = CATALOGUE) -> str:
    """The catalogue's operator-key secret, made with OBLIO_OPERATOR_KEY's value or a fresh
    random key; returns the key (the local stack prints it, as a deployment's operator reads
    it from Secrets Manager)."""
    import os
    import secrets

    from oblio.store import secrets as secrets_store

    key = os.environ.get("OBLIO_OPERATOR_KEY") or f"obl_op_{secrets.token_urlsafe(32)}"
    for sec in catalogue.secrets:
        if sec.name == "operator-key":
            secrets_store.write(s.operator_secret_name, key)
    return key


def provision(s: Settings, catalogue: Catalogue = CATALOGUE) -> None:
    kms = aws.client("kms")
    key = kms.create_key(Description="oblio local key")["KeyMetadata"]
    kms.create_alias(AliasName=s.kms_alias, TargetKeyId=key["KeyId"])
    # the sender of "your export is ready" e-mails (moto keeps what is sent)
    aws.client("ses").verify_email_identity(EmailAddress=s.ses_sender)
    for t in catalogue.tables:
        _create_table(s, t)
    for b in catalogue.buckets:
        _create_bucket(s, b, key["Arn"])
    iam = aws.client("iam")
    role = iam.create_role(RoleName=LOCAL_ROLE, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                                                "Principal": {"Service": [
                                                    "lambda.amazonaws.com",
                                                    "states.amazonaws.com"]}}]}))["Role"]
    lam = aws.client("lambda")
    code = _zip()
    for f in catalogue.functions:
        if f.name == "api":
            continue  # served by the local Chalice server
        lam.create_function(FunctionName=s.function(f.name), Runtime="python3.11",
                            Role=role["Arn"], Handler="handler.handler",
                            Code={"ZipFile": code}, Timeout=f.timeout_seconds,
                            MemorySize=f.memory_mb)
    sfn = aws.client("stepfunctions")
    for sm in catalogue.state_machines:
        sfn.create_state_machine(name=s.state_machine_arn(sm.name).rsplit(":", 1)[1],
                                 definition=definition(s, sm.name), roleArn=role["Arn"])
    events = aws.client("events")
    sqs = aws.client("sqs")
    events.create_event_bus(Name=s.event_bus)
    for topic in catalogue.topics:  # moto keeps what is published (self-service SMS codes)
        aws.client("sns").create_topic(Name=s.topic_arn(topic.name).rsplit(":", 1)[1])
    queues = {}
    for q in catalogue.queues:
        url = sqs.create_queue(QueueName=f"{s.resource_prefix}-{q.name}")["QueueUrl"]
        queues[q.name] = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
            "Attributes"]["QueueArn"]
    for rule in catalogue.rules:
        name = f"{s.resource_prefix}-{rule.name}"
        bus = s.event_bus if rule.bus == "oblio" else "default"
        if rule.schedule:
            # moto keeps the schedule but never fires it: the local stack's timer runs the
            # target (settings.local_schedule_seconds)
            events.put_rule(Name=name, EventBusName="default",
                            ScheduleExpression=rule.schedule)
            continue
        events.put_rule(Name=name, EventBusName=bus,
                        EventPattern=rule_pattern(s, rule, catalogue))
        # moto delivers rules to SQS only: locally every rule lands on its queue
        target = rule.local_queue or (rule.target[1] if rule.target[0] == "queue" else None)
        if target:
            events.put_targets(Rule=name, EventBusName=bus,
                               Targets=[{"Id": "local", "Arn": queues[target]}])


def rule_pattern(s: Settings, rule: EventRule, catalogue: Catalogue = CATALOGUE) -> str:
    """The rule's event pattern with `${bucket:NAME}` filled with physical bucket names."""
    text = json.dumps(rule.pattern)
    for b in catalogue.buckets:
        text = text.replace("${bucket:" + b.name + "}", bucket_name(s, b))
    if "${" in text:
        raise ValueError(f"rule {rule.name!r} names a bucket the catalogue does not have")
    return text
