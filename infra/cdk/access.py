"""What each function may touch: the input of its least-privilege IAM policy.

The catalogue says which resources exist; this map says which of them each function uses,
read from the domain code each handler calls (the comments say where). The stack turns it
into IAM statements on exact ARNs: table and index ARNs, a bucket's object prefixes (its
catalogue `expiring_prefixes`), one event bus, the state machines a function starts.

A catalogue function without an entry here, or an entry naming something the catalogue
lacks, fails the synth with a message naming it: adding a function is two changes on purpose,
as its permissions are a security decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from infra.catalogue import Catalogue
from infra.cdk.routes import routes

TableUse = Literal["r", "rw"]
#: get: read objects (and HEAD); put: write objects (multipart included); tag: write with tags;
#: list: list keys and versions (a 404 needs it too); delete: delete objects and versions
BucketOp = Literal["get", "put", "tag", "list", "delete"]

DYNAMODB_READ = ("dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query",
                 "dynamodb:ConditionCheckItem")
DYNAMODB_WRITE = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
                  "dynamodb:BatchWriteItem")
S3_OBJECT_ACTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "get": ("s3:GetObject",),
    "put": ("s3:PutObject", "s3:AbortMultipartUpload"),
    "tag": ("s3:PutObjectTagging",),
    "delete": ("s3:DeleteObject", "s3:DeleteObjectVersion"),
})
S3_BUCKET_ACTIONS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "list": ("s3:ListBucket", "s3:ListBucketVersions"),
})


@dataclass(frozen=True)
class Access:
    tables: Mapping[str, TableUse] = field(default_factory=dict)
    buckets: Mapping[str, tuple[BucketOp, ...]] = field(default_factory=dict)
    #: the tenants' own tables and objects (the data map's): "r" reads them (items by key or
    #: index, objects and their versions), "rw" also updates and deletes them
    tenant_data: Literal["", "r", "rw"] = ""
    #: state machines it starts (StartExecution) and stops (StopExecution of their executions)
    starts: tuple[str, ...] = ()
    stops: tuple[str, ...] = ()
    events: bool = False  # PutEvents on oblio's bus
    email: bool = False  # SES SendEmail from the configured sender
    topics: tuple[str, ...] = ()  # SNS Publish
    secrets: tuple[str, ...] = ()  # Secrets Manager GetSecretValue
    #: KMS on the deployment key: decrypt (tenant data keys, SSE-KMS reads) always; encrypt
    #: (GenerateDataKey) to write SSE-KMS objects and publish to encrypted topics
    encrypt: bool = False
    #: oblio tables it may Scan (small tables only: never a per-subject path)
    scans: tuple[str, ...] = ()
    #: Scan the tenants' tables: the retention sweep's declared fallback for a table without
    #: a sweep index. Not granted under `tenant_leading_keys` (a Scan has no leading key)
    tenant_scan: bool = False


_CONTROL = {"requests": "rw", "tenants": "r"}  # every request step reads and moves its request
_REQUEST_API = ("erasure", "anonymisation", "subject_update", "access_export")
#: the Standard twins Work hands a large request over to (the API stops them on a cancel)
_LARGE = ("erasure_large", "anonymisation_large", "access_export_large")
_SWEEP = {"retention": "rw", "tenants": "r"}  # every sweep step reads and moves its sweep

ACCESS: Mapping[str, Access] = MappingProxyType({
    # the HTTP API (functions/api): keys, tenants, requests, consent, self-service, bulk jobs;
    # reads tenant data for search and dry runs only (it never changes subject data); signs
    # download URLs (exports) and upload URLs (ingest): a presigned request runs with the
    # signer's permissions, hence get/put and KMS encrypt there
    # retention policies and sweeps: starts a sweep, and its dry run reads candidates as the
    # sweep would (through the sweep index, or the table's declared Scan fallback)
    # tenants and keys: the operator key's secret; the operator's list of tenants scans the
    # (small) tenants table
    "api": Access(
        tables={"tenants": "rw", "api_keys": "rw", "requests": "rw", "audit": "rw",
                "suppression": "rw", "idempotency": "rw", "bulk_jobs": "rw",
                "consents": "rw", "selfservice": "rw", "public_slugs": "rw",
                "retention": "rw", "backfills": "rw"},
        # work: a bulk job's retry checks its kept chunks and writes the index to resume
        buckets={"exports": ("get", "list"), "ingest": ("put",), "work": ("get", "put")},
        tenant_data="r", tenant_scan=True,
        starts=(*_REQUEST_API, "retention_sweep", "shadow_backfill", "bulk_erasure"),
        stops=(*_REQUEST_API, *_LARGE), events=True, email=True, topics=("verification-codes",),
        secrets=("operator-key",), scans=("tenants",),
        encrypt=True),
    # workflow.plan: walks the map (queries), writes manifests and the frozen map to work/
    "plan": Access(tables=_CONTROL, buckets={"work": ("put",)}, tenant_data="r",
                   encrypt=True),
    # workflow.work: plan, then (a small request) apply and verify in the same invocation
    "work": Access(tables=_CONTROL, buckets={"work": ("put", "get")}, tenant_data="rw",
                   encrypt=True, starts=("erasure_large", "anonymisation_large")),
    # workflow.apply: reads its manifest, deletes / rewrites items, deletes object versions
    "apply": Access(tables=_CONTROL, buckets={"work": ("get",)}, tenant_data="rw"),
    # workflow.verify: reads items and object versions back, walks the map again
    "verify": Access(tables=_CONTROL, buckets={"work": ("get",)}, tenant_data="r"),
    # workflow.finish: audit, suppression, consent ledger, events, cleans the request's work/
    "finish": Access(tables={**_CONTROL, "audit": "rw", "suppression": "rw", "consents": "rw"},
                     buckets={"work": ("get", "list", "delete")}, events=True),
    # workflow.fail: records the failure, audits it, emits RequestFailed
    "fail": Access(tables={"requests": "rw", "audit": "rw"}, events=True),
    # exporter.collect: one table's items into its part files in work/
    # exporter.work: plan, then (a small export) collect and package in the same invocation
    "export_work": Access(tables={**_CONTROL, "consents": "r"},
                          buckets={"work": ("get", "put"), "exports": ("put", "tag")},
                          tenant_data="r", encrypt=True, starts=("access_export_large",)),
    "export_collect": Access(tables=_CONTROL, buckets={"work": ("get", "put")},
                             tenant_data="r", encrypt=True),
    # exporter.package: parts, the subject's files and consent ledger into one ZIP in exports/
    "export_package": Access(tables={**_CONTROL, "consents": "r"},
                             buckets={"work": ("get",), "exports": ("put", "tag")},
                             tenant_data="r", encrypt=True),
    # exporter.finish: result, audit, event, the requester's e-mail, cleans work/
    "export_finish": Access(tables={**_CONTROL, "audit": "rw"},
                            buckets={"work": ("list", "delete")}, events=True, email=True,
                            # a phone-verified self-service export's link goes to the topic
                            topics=("verification-codes",), encrypt=True),
    # bulk.start_from_upload: creates or moves the job (a dropped file's named after its
    # upload: HeadObject, with the listing that makes a missing file a 404), starts it
    "bulk_start": Access(tables={"tenants": "r", "bulk_jobs": "rw"},
                         buckets={"ingest": ("get", "list")}, starts=("bulk_erasure",)),
    # bulk.validate: streams the upload, deletes it (every version), writes chunk manifests
    "bulk_validate": Access(tables={"tenants": "r", "bulk_jobs": "rw"},
                            buckets={"ingest": ("get", "list", "delete"), "work": ("put",)},
                            encrypt=True),
    # bulk.erase_chunk: erases each subject of a chunk through the engine and records each
    # as a finished erasure request (audit, suppression, consent ledger, events)
    "bulk_chunk": Access(tables={"tenants": "r", "bulk_jobs": "rw", "requests": "rw",
                                 "audit": "rw", "suppression": "rw", "consents": "rw"},
                         buckets={"work": ("get", "put")}, tenant_data="rw", events=True,
                         encrypt=True),
    # bulk.report: checks every chunk of the index (its plan saved: get), streams the parts
    # into the tagged report in exports/ (a multipart upload), cleans work/ once all are done
    "bulk_report": Access(tables={"tenants": "r", "bulk_jobs": "rw", "audit": "rw"},
                          buckets={"work": ("get", "list", "delete"),
                                   "exports": ("put", "tag")},
                          events=True, encrypt=True),
    # bulk.fail: records the failure; cleans work/ only when nothing was cut into chunks
    "bulk_fail": Access(tables={"bulk_jobs": "rw", "audit": "rw"},
                        buckets={"work": ("list", "delete")}, events=True),
    # retention.run_scheduled: lists the tenants (oblio's own small table), takes each enabled
    # policy's lock, starts its sweep, audits it
    "sweep_schedule": Access(tables={**_SWEEP, "audit": "rw"}, scans=("tenants",),
                             starts=("retention_sweep",)),
    # retention.find_candidates: candidates through the sweep index (or the declared Scan fallback) into
    # chunk manifests and their index in work/
    "sweep_find": Access(tables=_SWEEP, buckets={"work": ("put",)}, tenant_data="r",
                         tenant_scan=True, encrypt=True),
    # retention.apply_chunk: the engine on one chunk (items and their files); export actions
    # write the items, tagged to expire, to exports/ first
    "sweep_chunk": Access(tables=_SWEEP, buckets={"work": ("get",), "exports": ("put", "tag")},
                          tenant_data="rw", encrypt=True),
    # retention.report: the tagged report in reports/, audit, event, cleans work/
    "sweep_report": Access(tables={**_SWEEP, "audit": "rw"},
                           buckets={"work": ("list", "delete"), "exports": ("put", "tag")},
                           events=True, encrypt=True),
    # retention.fail: records the failure on the sweep and its policy, audits, emits
    "sweep_fail": Access(tables={**_SWEEP, "audit": "rw"}, events=True),
    # backfill.run_segment: a segmented Scan of the tenant's tables (hence no
    # tenant_leading_keys: a Scan has no leading key), conditional UpdateItem of the shadows,
    # the segment's checkpoint; the tenant's key encrypts the resume point
    "backfill_segment": Access(tables={"backfills": "rw", "tenants": "r"}, tenant_data="rw",
                               tenant_scan=True),
    # backfill.finish / fail: totals, status, audit
    "backfill_finish": Access(tables={"backfills": "rw", "tenants": "r", "audit": "rw"}),
    "backfill_fail": Access(tables={"backfills": "rw", "tenants": "r", "audit": "rw"}),
    # shadowstream.on_record: the tenant's region setting, a conditional UpdateItem of the
    # shadows on the tenant's table; the stream itself is read by the event source mapping
    # (its grants come with it)
    "shadow_stream": Access(tables={"tenants": "r"}, tenant_data="rw"),
})


def check(catalogue: Catalogue, access: Mapping[str, Access] = ACCESS) -> None:
    """Every deployed function has an access entry, and every entry names catalogue
    resources; raises ValueError naming the first that does not."""
    tables = {t.name for t in catalogue.tables if not t.demo}
    buckets = {b.name for b in catalogue.buckets if not b.demo}
    machines = {sm.name for sm in catalogue.state_machines}
    topics = {t.name for t in catalogue.topics}
    secrets = {s.name for s in catalogue.secrets}
    for f in catalogue.functions:
        if f.name not in access:
            raise ValueError(f"catalogue function {f.name!r} has no entry in "
                             "infra/cdk/access.py: say what it may touch")
    for name, a in access.items():
        for kind, named, known in (("table", (*a.tables, *a.scans), tables),
                                   ("bucket", tuple(a.buckets), buckets),
                                   ("state machine", (*a.starts, *a.stops), machines),
                                   ("topic", a.topics, topics),
                                   ("secret", a.secrets, secrets)):
            for n in named:
                if n not in known:
                    raise ValueError(f"access of function {name!r} names {kind} {n!r}, "
                                     "which the catalogue does not deploy")
    started = {sm for a in access.values() for sm in a.starts}
    started |= {r.target[1] for r in routes(catalogue) if r.target[0] == "statemachine"}
    for sm in sorted(machines - started):
        raise ValueError(f"state machine {sm!r} is started by no function and no rule or "
                         "schedule: give one `starts` in infra/cdk/access.py")
