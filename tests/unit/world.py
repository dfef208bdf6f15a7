"""What the unit tests of the pipeline steps, bulk jobs and search set up in the in-process
AWS of `conftest.py` (which has made the tables and the KMS key): the catalogue's buckets,
its state machines (so that starting a workflow is answered; moto's in-process mock records
an execution and runs nothing), oblio's bus routed to a queue the tests read, a tenant with
demo subjects, and a request record as intake files it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ulid import ULID

EVENTS_QUEUE = "unit-events"


@contextmanager
def provisioned() -> Iterator[None]:
    """Buckets, state machines and the bus of the catalogue, in the current mock; moto's
    transactions without a copy of every table (as the local stack runs them)."""
    from infra.catalogue import CATALOGUE
    from infra.local import moto_transactions, provision
    from oblio.core.settings import get_settings
    from oblio.store import aws

    s = get_settings()
    key = aws.client("kms").describe_key(KeyId=s.kms_alias)["KeyMetadata"]["Arn"]
    for b in CATALOGUE.buckets:
        provision._create_bucket(s, b, key)
    role = aws.client("iam").create_role(
        RoleName="unit-role", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    sfn = aws.client("stepfunctions")
    for sm in CATALOGUE.state_machines:
        sfn.create_state_machine(name=s.state_machine_arn(sm.name).rsplit(":", 1)[1],
                                 definition=provision.definition(s, sm.name), roleArn=role)
    aws.client("ses").verify_email_identity(EmailAddress=s.ses_sender)
    events, sqs = aws.client("events"), aws.client("sqs")
    events.create_event_bus(Name=s.event_bus)
    url = sqs.create_queue(QueueName=EVENTS_QUEUE)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"]
    events.put_rule(Name="unit-all", EventBusName=s.event_bus,
                    EventPattern=json.dumps({"source": ["oblio"]}))
    events.put_targets(Rule="unit-all", EventBusName=s.event_bus,
                       Targets=[{"Id": "q", "Arn": arn}])
    moto_transactions.install()
    try:
        yield
    finally:
        moto_transactions.uninstall()


def events() -> list[dict[str, Any]]:
    """Every event put on oblio's bus since the last call (read off its queue)."""
    from oblio.store import aws

    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName=EVENTS_QUEUE)["QueueUrl"]
    out: list[dict[str, Any]] = []
    while True:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
        if not msgs:
            return out
        out += [json.loads(m["Body"]) for m in msgs]
        sqs.delete_message_batch(QueueUrl=url, Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(msgs)])


def new_tenant(tenant_id: str, **settings: Any) -> Any:
    from oblio.control import tenants

    return tenants.create_tenant(tenant_id, f"Tenant {tenant_id}",
                                 settings={"default_phone_region": "IT", **settings})


def principal(tenant_id: str, *scopes: str) -> Any:
    from oblio.control.tenants import Principal

    return Principal(tenant_id, "key_unit", frozenset(scopes or ("admin",)), False)


def seed(dm: Any, tenant_id: str, email: str, phone: str | None = None,
         external_id: str | None = None) -> dict[str, Any]:
    """A demo subject with the full set of items (profile, tickets and messages, sends and
    events, subscription, blacklist entry, document, scheduled send, three files)."""
    from infra.local import demo

    return demo.seed_subject(dm, tenant_id, email, phone, external_id)


def new_request(tenant: Any, type_: str, identities: dict[str, str], *,
                action: str, tables: list[str] | None = None,
                purposes: list[str] | None = None,
                changes: dict[str, Any] | None = None,
                include_children: bool = False) -> str:
    """A queued request record, as intake writes it before it starts the workflow (the
    identities normalised already)."""
    from oblio.control import records
    from oblio.core import clock
    from oblio.store.models import RequestModel

    request_id = str(ULID())
    now = clock.now()
    m = RequestModel(
        tenant_id=tenant.tenant_id, sk=records.request_sk(request_id), request_id=request_id,
        type=type_, status="queued", subject_ref=tenant.keys.subject_ref(identities),
        identities_enc=tenant.keys.encrypt(identities),
        changes_enc=tenant.keys.encrypt(changes) if changes else None,
        identity_refs={k: tenant.keys.hmac(k, v) for k, v in identities.items()},
        created_at=clock.iso(now), due_at=clock.iso(clock.add_months(now, 1)),
        requested_by="key_unit", reason=None,
        options={"dry_run": False, "include_children": include_children, "tables": tables,
                 "purposes": purposes, "action": action},
        timeline=[records.event(event="received", by="key_unit")], units={}, io={},
        attempt=1)
    assert records.insert(m, type_) is None
    return request_id


def run(request_id: str, tenant_id: str, action: str) -> dict[str, Any]:
    """The subject state machine's steps in order, as Step Functions runs them: plan, apply
    each unit, verify, finish. Returns the request's view."""
    from oblio.control import records
    from oblio.pipeline import apply, evidence, plan, verify

    units = plan.plan(request_id, tenant_id, action)["units"]
    for unit in units:
        apply.apply(request_id, tenant_id, action, unit)
    verify.verify(request_id, tenant_id, action)
    evidence.finish(request_id, tenant_id, action)
    return records.to_json(records.load(tenant_id, request_id))


def items(table: str, tenant_id: str) -> list[dict[str, Any]]:
    """Every item of the tenant in a physical table (the test's own Query, raw)."""
    from oblio.store import aws
    from oblio.store.tables import from_ddb

    out: list[dict[str, Any]] = []
    pages = aws.client("dynamodb").get_paginator("query").paginate(
        TableName=table, KeyConditionExpression="tenant_id = :t",
        ExpressionAttributeValues={":t": {"S": tenant_id}})
    for page in pages:
        out += [from_ddb(i) for i in page["Items"]]
    return out


def versions(bucket: str, prefix: str) -> list[str]:
    """The keys of every version and delete marker under `prefix`."""
    from oblio.store import aws

    resp = aws.client("s3").list_object_versions(Bucket=bucket, Prefix=prefix)
    return [v["Key"] for v in resp.get("Versions", []) + resp.get("DeleteMarkers", [])]


def keys_under(bucket: str, prefix: str) -> list[str]:
    from oblio.store import aws

    resp = aws.client("s3").list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [o["Key"] for o in resp.get("Contents", [])]
