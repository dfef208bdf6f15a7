"""The one resource catalogue: every table, bucket, function, state machine, bus, rule and
queue that oblio needs. The CDK stack (`infra/cdk`) and the local embedded deployment
(`infra/local`) are both built from this module, so the two cannot drift.

Names here are logical; `physical_name` turns them into the names resources get, prefixed by
the deployment's `resource_prefix` setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, TypeVar

from oblio.core.naming import physical_name

T = TypeVar("T")

KeyType = Literal["S", "N"]


@dataclass(frozen=True)
class Key:
    name: str
    type: KeyType = "S"


@dataclass(frozen=True)
class Index:
    name: str
    partition: Key
    sort: Key | None = None
    projection: Literal["ALL", "KEYS_ONLY"] = "ALL"


@dataclass(frozen=True)
class Table:
    name: str
    partition: Key
    sort: Key | None = None
    indexes: tuple[Index, ...] = ()
    ttl_attribute: str | None = None
    purpose: str = ""
    demo: bool = False  # a tenant's table of the demo domain, created by the local stack only


@dataclass(frozen=True)
class LifecycleRule:
    id: str
    prefix: str
    expire_days: int
    noncurrent_days: int = 1
    tag: tuple[str, str] | None = None  # (key, value) filter, e.g. ("oblio-ttl", "14")


@dataclass(frozen=True)
class Bucket:
    name: str
    versioned: bool = True
    lifecycle: tuple[LifecycleRule, ...] = ()
    eventbridge: bool = False  # send object events to EventBridge (bulk uploads)
    purpose: str = ""
    demo: bool = False
    #: prefixes whose objects hold personal data and must expire
    expiring_prefixes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Function:
    name: str
    handler: str  # "module.function" under functions/
    timeout_seconds: int = 60
    memory_mb: int = 512
    purpose: str = ""


@dataclass(frozen=True)
class StateMachine:
    name: str
    definition: str  # file under statemachines/
    #: placeholder in the ASL -> function name whose ARN fills it
    functions: dict[str, str] = field(default_factory=dict)
    purpose: str = ""
    #: placeholder -> (value in the local stack, value in AWS): e.g. a Distributed Map's child
    #: execution type, EXPRESS in AWS where moto's parser only takes STANDARD
    values: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: the execution type in AWS (the local stack runs every machine as STANDARD, moto's
    #: only): EXPRESS where every execution ends well within Express's 5 minutes
    aws_type: Literal["STANDARD", "EXPRESS"] = "STANDARD"


@dataclass(frozen=True)
class EventRule:
    name: str
    #: the event pattern; "${bucket:NAME}" stands for the physical name of catalogue bucket NAME
    pattern: dict[str, object]
    #: the target in AWS: ("function", name) or ("statemachine", name) or ("queue", name)
    target: tuple[str, str]
    #: locally moto delivers rules only to SQS: the local stack routes to this queue instead,
    #: and its runtime drains the queue into the target
    local_queue: str | None = None
    #: "oblio" (the catalogue's bus) or "default" (where AWS services such as S3 send events)
    bus: str = "oblio"
    #: a schedule expression ("cron(...)" or "rate(...)") instead of a pattern: the rule fires
    #: on time (on the default bus). moto does not fire schedules: the local stack runs them
    #: on a timer (setting `local_schedule_seconds`)
    schedule: str | None = None


@dataclass(frozen=True)
class Queue:
    name: str
    purpose: str = ""
    #: only the local stack needs it (its stand-in for an EventBridge target moto lacks)
    local_only: bool = False


@dataclass(frozen=True)
class Topic:
    """An SNS topic that tenants subscribe to (the one-time codes of self-service requests
    named by a phone: each message carries a `tenant_id` attribute to filter on)."""

    name: str
    purpose: str = ""


@dataclass(frozen=True)
class Secret:
    """A Secrets Manager secret oblio reads (its value is made at deploy, never in code)."""

    name: str
    purpose: str = ""


@dataclass(frozen=True)
class Catalogue:
    tables: tuple[Table, ...]
    buckets: tuple[Bucket, ...]
    functions: tuple[Function, ...]
    state_machines: tuple[StateMachine, ...]
    event_bus: str
    rules: tuple[EventRule, ...]
    queues: tuple[Queue, ...]
    kms_alias: str
    topics: tuple[Topic, ...] = ()
    secrets: tuple[Secret, ...] = ()

    def table(self, name: str) -> Table:
        return _by_name(self.tables, name, "table")

    def bucket(self, name: str) -> Bucket:
        return _by_name(self.buckets, name, "bucket")

    def function(self, name: str) -> Function:
        return _by_name(self.functions, name, "function")

    def state_machine(self, name: str) -> StateMachine:
        return _by_name(self.state_machines, name, "state machine")


def _by_name(items: tuple[T, ...], name: str, kind: str) -> T:
    for item in items:
        if getattr(item, "name") == name:  # noqa: B009
            return item
    raise KeyError(f"the catalogue has no {kind} named {name!r}")


_S = Key
_TENANT = Key("tenant_id")
#: "<tenant>#<shard>": a big tenant's writes spread over partitions (oblio.store.shards)
_SHARD = Key("pk")


def _demo_table(name: str, sort: str, *lookups: str, purpose: str,
                sweep: str | None = None, ttl: str | None = None) -> Table:
    """A demo-domain table: keyed by tenant, each lookup an index keyed by tenant + attribute;
    with `sweep` (a date attribute), the retention sweep index `by_sweep`: partition
    `sweep_bucket` (`<tenant>#<YYYY-MM>` of the date), sort key the date."""
    sweep_index = (Index("by_sweep", _S("sweep_bucket"), _S(sweep)),) if sweep else ()
    return Table(
        name=name,
        partition=_TENANT,
        sort=_S(sort),
        indexes=tuple(Index(f"by_{a}", _TENANT, _S(a)) for a in lookups) + sweep_index,
        ttl_attribute=ttl,
        purpose=purpose,
        demo=True,
    )


BULK_FUNCTIONS = {
    "ValidateFunctionArn": "bulk_validate",
    "ChunkFunctionArn": "bulk_chunk",
    "ReportFunctionArn": "bulk_report",
    "BulkFailFunctionArn": "bulk_fail",
}

TASK_FUNCTIONS = {
    "PlanFunctionArn": "plan",
    "ApplyFunctionArn": "apply",
    "VerifyFunctionArn": "verify",
    "FinishFunctionArn": "finish",
    "FailFunctionArn": "fail",
}

#: erasure and anonymisation (Express): Work plans and, for a small request, applies and
#: verifies; a large one goes to the Standard twin (`<name>_large`, TASK_FUNCTIONS)
WORK_FUNCTIONS = {"WorkFunctionArn": "work", "FinishFunctionArn": "finish",
                  "FailFunctionArn": "fail"}

SWEEP_FUNCTIONS = {
    "FindFunctionArn": "sweep_find",
    "SweepChunkFunctionArn": "sweep_chunk",
    "SweepReportFunctionArn": "sweep_report",
    "SweepFailFunctionArn": "sweep_fail",
}

#: when the nightly retention sweeps start, 02:30 UTC (the CDK app's `schedules` setting
#: overrides it: `-c schedules='{"retention-nightly": "cron(0 3 * * ? *)"}'`; locally the
#: `OBLIO_LOCAL_SCHEDULE_SECONDS` timer stands in for it)
RETENTION_SCHEDULE = "cron(30 2 * * ? *)"

BACKFILL_FUNCTIONS = {
    "SegmentFunctionArn": "backfill_segment",
    "BackfillFinishFunctionArn": "backfill_finish",
    "BackfillFailFunctionArn": "backfill_fail",
}

#: access export (Express): Work plans and, for a small request, collects and packages; a
#: large one goes to the Standard twin (`access_export_large`, EXPORT_FUNCTIONS)
EXPORT_WORK_FUNCTIONS = {"ExportWorkFunctionArn": "export_work",
                         "ExportFinishFunctionArn": "export_finish", "FailFunctionArn": "fail"}

EXPORT_FUNCTIONS = {
    "PlanFunctionArn": "plan",
    "CollectFunctionArn": "export_collect",
    "PackageFunctionArn": "export_package",
    "ExportFinishFunctionArn": "export_finish",
    "FailFunctionArn": "fail",
}

CATALOGUE = Catalogue(
    tables=(
        Table("tenants", _S("tenant_id"), purpose="tenants, parent/child links, settings"),
        Table("api_keys", _S("key_hash"), indexes=(Index("by_tenant", _TENANT, _S("key_id")),),
              purpose="API keys, stored hashed, with scopes"),
        Table("requests", _SHARD, _S("sk"), purpose="data-subject requests and their state"),
        Table("audit", _TENANT, _S("seq"), purpose="append-only hash-chained audit log"),
        Table("suppression", _SHARD, _S("ref"),
              purpose="HMACs of erased and objecting subjects"),
        Table("idempotency", _S("id"), ttl_attribute="expiration",
              purpose="Powertools idempotency records for write APIs"),
        Table("bulk_jobs", _TENANT, _S("job_id"), purpose="bulk erasure jobs and counters"),
        Table("consents", _SHARD, _S("sk"),
              purpose="consent ledger: append-only events and the current state per purpose"),
        Table("selfservice", _TENANT, _S("sk"), ttl_attribute="expires",
              purpose="self-service one-time codes (HMACs) and per-address rate counters"),
        Table("public_slugs", _S("slug"), purpose="public tenant names of self-service pages"),
        Table("retention", _TENANT, _S("sk"),
              purpose="retention policies, sweeps (counters, progress) and their locks"),
        Table("backfills", _TENANT, _S("sk"),
              purpose="shadow backfills of identities stored as typed: runs, and each Scan "
                      "segment's resume point and counters"),
        # the demo domain: a CRM / helpdesk / mailing product (a tenant's own tables)
        _demo_table("demo-contacts", "contact_id", "email", "phone", "external_id",
                    purpose="demo: contact profiles", sweep="last_activity_at"),
        _demo_table("demo-tickets", "ticket_id", "contact_id", purpose="demo: helpdesk tickets",
                    sweep="deleted_at", ttl="purge_at"),
        _demo_table("demo-ticket-messages", "message_id", "ticket_id",
                    purpose="demo: messages on tickets"),
        _demo_table("demo-email-sends", "send_id", "recipient_email", "contact_id",
                    purpose="demo: e-mails sent"),
        _demo_table("demo-email-events", "event_id", "send_id",
                    purpose="demo: opens and clicks", sweep="at"),
        _demo_table("demo-subscriptions", "subscription_id", "email",
                    purpose="demo: newsletter subscriptions"),
        _demo_table("demo-blacklist", "email", purpose="demo: addresses never to e-mail"),
        _demo_table("demo-documents", "document_id", "contact_id",
                    purpose="demo: documents stored in S3"),
        _demo_table("demo-scheduled-recipients", "recipient_id", "email", "contact_id",
                    purpose="demo: recipients of scheduled sends (pending deliveries)"),
    ),
    buckets=(
        Bucket("work", lifecycle=(LifecycleRule("work-expiry", "work/", 1),),
               expiring_prefixes=("work/",),
               purpose="plans and manifests of running requests (may hold item keys)"),
        Bucket("exports", lifecycle=tuple(
            LifecycleRule(f"{p}-{d}d", f"{p}/", d, tag=("oblio-ttl", str(d)))
            for p in ("exports", "reports") for d in (10, 14, 30)) + tuple(
            # an object saved without its tag must still go: the longest TTL, whatever tag
            LifecycleRule(f"{p}-untagged", f"{p}/", 31) for p in ("exports", "reports")),
            expiring_prefixes=("exports/", "reports/"),
            purpose="access / portability archives and bulk erasure reports"),
        Bucket("ingest", eventbridge=True,
               lifecycle=(LifecycleRule("ingest-expiry", "bulk/", 1),),
               expiring_prefixes=("bulk/",), purpose="bulk erasure CSV uploads"),
        Bucket("demo-files", purpose="demo: a tenant's attachments, photos and documents",
               demo=True),
    ),
    functions=(
        Function("api", "api.app.app", timeout_seconds=29, purpose="the HTTP API (Chalice)"),
        Function("plan", "plan.handler.handler", timeout_seconds=300,
                 purpose="walk the data map, freeze the plan"),
        Function("work", "work.handler.handler", timeout_seconds=900,
                 purpose="plan a request; a small one applied and verified in the same "
                         "invocation"),
        Function("apply", "apply.handler.handler", timeout_seconds=900,
                 purpose="apply a request's action to one table"),
        Function("verify", "verify.handler.handler", timeout_seconds=300,
                 purpose="check that nothing of the subject is left"),
        Function("finish", "finish.handler.handler", timeout_seconds=120,
                 purpose="certificate, audit, suppression, events"),
        Function("fail", "fail.handler.handler", timeout_seconds=60,
                 purpose="record a failure on the request"),
        Function("export_work", "export_work.handler.handler", timeout_seconds=900,
                 purpose="plan an access export; a small one collected and packaged in the "
                         "same invocation"),
        Function("export_collect", "export_collect.handler.handler", timeout_seconds=900,
                 purpose="read one table's items of an access export into its part"),
        Function("export_package", "export_package.handler.handler", timeout_seconds=900,
                 purpose="stream an access export's parts and files into one ZIP in S3"),
        Function("export_finish", "export_finish.handler.handler", timeout_seconds=120,
                 purpose="an access export's result, audit entry, event and e-mail"),
        Function("bulk_start", "bulk_start.handler.handler", timeout_seconds=60,
                 purpose="a CSV landed under a tenant's bulk prefix: start its job"),
        Function("bulk_validate", "bulk_validate.handler.handler", timeout_seconds=900,
                 memory_mb=1024, purpose="stream, check and cut a bulk CSV into chunks"),
        Function("bulk_chunk", "bulk_chunk.handler.handler", timeout_seconds=900,
                 purpose="erase one chunk of a bulk job"),
        Function("bulk_report", "bulk_report.handler.handler", timeout_seconds=900,
                 purpose="merge a bulk job's outcomes into its report"),
        Function("bulk_fail", "bulk_fail.handler.handler", timeout_seconds=60,
                 purpose="record a bulk job's failure"),
        Function("sweep_schedule", "sweep_schedule.handler.handler", timeout_seconds=300,
                 purpose="nightly: start a retention sweep per tenant and enabled policy"),
        Function("sweep_find", "sweep_find.handler.handler", timeout_seconds=900,
                 purpose="find a sweep's candidates page by page into chunk manifests"),
        Function("sweep_chunk", "sweep_chunk.handler.handler", timeout_seconds=900,
                 purpose="apply a retention policy's action to one chunk of candidates"),
        Function("sweep_report", "sweep_report.handler.handler", timeout_seconds=300,
                 purpose="a sweep's report in S3, audit entry and event"),
        Function("sweep_fail", "sweep_fail.handler.handler", timeout_seconds=60,
                 purpose="record a sweep's failure (the next run resumes it)"),
        Function("backfill_segment", "backfill_segment.handler.handler", timeout_seconds=900,
                 purpose="scan one segment of a table page by page, write the shadows that "
                         "are missing or wrong, checkpoint after each page"),
        Function("backfill_finish", "backfill_finish.handler.handler", timeout_seconds=120,
                 purpose="a shadow backfill's totals, audit entry and status"),
        Function("backfill_fail", "backfill_fail.handler.handler", timeout_seconds=60,
                 purpose="record a shadow backfill's failure (resume it to go on)"),
        Function("shadow_stream", "shadow_stream.handler.handler", timeout_seconds=60,
                 purpose="DynamoDB Streams of the tenant's tables: keep the shadows of "
                         "identities stored as typed current on every write"),
    ),
    state_machines=(
        StateMachine("erasure", "erasure.asl.json", functions=WORK_FUNCTIONS,
                     aws_type="EXPRESS",
                     purpose="erase one subject across every mapped table (a small request "
                             "in one Work step; a large one handed over to erasure_large)"),
        StateMachine("erasure_large", "erasure_large.asl.json", functions=TASK_FUNCTIONS,
                     purpose="erase one subject with a large share of a table: table by "
                             "table (Map), for as long as it takes"),
        StateMachine("anonymisation", "anonymisation.asl.json", functions=WORK_FUNCTIONS,
                     aws_type="EXPRESS",
                     purpose="anonymise one subject by the map's attribute rules (a small "
                             "request in one Work step; a large one handed over to "
                             "anonymisation_large)"),
        StateMachine("anonymisation_large", "anonymisation_large.asl.json",
                     functions=TASK_FUNCTIONS,
                     purpose="anonymise one subject with a large share of a table: table "
                             "by table (Map), for as long as it takes"),
        StateMachine("subject_update", "subject_update.asl.json", functions=TASK_FUNCTIONS,
                     purpose="rectification, restriction (and lifting it), objection"),
        StateMachine("access_export", "access_export.asl.json",
                     functions=EXPORT_WORK_FUNCTIONS, aws_type="EXPRESS",
                     purpose="access / portability: the subject's data as one expiring ZIP "
                             "(a small request in one Work step; a large one handed over to "
                             "access_export_large)"),
        StateMachine("access_export_large", "access_export_large.asl.json",
                     functions=EXPORT_FUNCTIONS,
                     purpose="access / portability of a subject with a large share of a "
                             "table: collected table by table (Map), for as long as it takes"),
        StateMachine("bulk_erasure", "bulk_erasure.asl.json", functions=BULK_FUNCTIONS,
                     values={"ChildExecutionType": ("STANDARD", "EXPRESS")},
                     purpose="erase the people of a CSV, chunk by chunk (Distributed Map)"),
        StateMachine("retention_sweep", "retention_sweep.asl.json", functions=SWEEP_FUNCTIONS,
                     values={"ChildExecutionType": ("STANDARD", "EXPRESS")},
                     purpose="apply one retention policy: candidates by the sweep index, "
                             "chunks through the engine (Distributed Map), report"),
        StateMachine("shadow_backfill", "shadow_backfill.asl.json",
                     functions=BACKFILL_FUNCTIONS,
                     purpose="write the shadows of identities stored as typed: a parallel "
                             "segmented Scan of each table (Map over segments), resumable"),
    ),
    event_bus="events",
    rules=(
        EventRule("all-oblio-events", {"source": ["oblio"]}, target=("queue", "events"),
                  local_queue="events"),
        EventRule("bulk-uploads", {
            "source": ["aws.s3"], "detail-type": ["Object Created"],
            "detail": {"bucket": {"name": ["${bucket:ingest}"]},
                       "object": {"key": [{"prefix": "bulk/"}]}}},
            target=("function", "bulk_start"), local_queue="bulk-uploads", bus="default"),
        EventRule("retention-nightly", {}, target=("function", "sweep_schedule"),
                  bus="default", schedule=RETENTION_SCHEDULE),
    ),
    queues=(Queue("events", purpose="a copy of every oblio event (local inspection, DLQ-like)"),
            Queue("bulk-uploads", purpose="S3 upload events for bulk_start",
                  local_only=True)),
    kms_alias="oblio",
    topics=(Topic("verification-codes",
                  purpose="one-time codes of self-service requests named by a phone (SMS)"),),
    secrets=(Secret("operator-key",
                    purpose="the operator key: the scope above tenants (create tenants, manage "
                            "their keys); the API compares a caller's key with its hash"),),
)


def check(catalogue: Catalogue, prefix: str) -> None:
    """Reject a catalogue that could not deploy: bad names, unknown functions, buckets whose
    personal-data prefixes have no expiring lifecycle rule."""
    for t in catalogue.tables:
        physical_name(prefix, "table", t.name)
    for sec in catalogue.secrets:
        physical_name(prefix, "secret", sec.name)
    for b in catalogue.buckets:
        physical_name(prefix, "bucket", b.name)
        for p in b.expiring_prefixes:
            if not any(r.prefix.startswith(p) or p.startswith(r.prefix) for r in b.lifecycle):
                raise ValueError(f"bucket {b.name!r}: prefix {p!r} holds personal data and "
                                 "needs a lifecycle rule with an expiry")
    names = {f.name for f in catalogue.functions}
    for f in catalogue.functions:
        physical_name(prefix, "function", f.name)
    for sm in catalogue.state_machines:
        physical_name(prefix, "statemachine", sm.name)
        for placeholder, fn in sm.functions.items():
            if fn not in names:
                raise ValueError(f"state machine {sm.name!r}: {placeholder} names unknown "
                                 f"function {fn!r}")
    for q in catalogue.queues:
        physical_name(prefix, "queue", q.name)
    for topic in catalogue.topics:
        physical_name(prefix, "topic", topic.name)
