"""Settings, read once from the environment into a typed model."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from oblio.core.naming import physical_name

DEMO_DATAMAP = Path(__file__).parents[1] / "datamaps" / "demo.yaml"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="OBLIO_", extra="ignore")

    resource_prefix: str = "oblio"
    region: str = Field(default="eu-west-1", validation_alias="AWS_DEFAULT_REGION")
    account_id: str = "123456789012"
    datamap: Path = DEMO_DATAMAP
    #: how many tables a request's Map state works on at once
    max_concurrency: int = 8
    #: a request whose every table holds at most `inline_unit_items` of the subject's items,
    #: and at most `inline_request_items` in all, is planned, applied and verified in one
    #: invocation (the Work step); a larger one hands over to the Map over its tables
    inline_unit_items: int = 500
    inline_request_items: int = 2000
    #: Work's deadline, from its start: a plan still walking then, or a small export still
    #: streaming its archive, stops and the request is handed over too, however small
    #: (`core.deadline`): its Express execution is capped at 5 minutes, retries included,
    #: and ends with no failure step when it runs out (the request would stay `running`)
    inline_budget_seconds: float = Field(default=60.0, ge=0)
    #: a presigned URL lives this long
    presign_seconds: int = 300
    #: requests are due one month after receipt (Art. 12(3)); the extension limit is two months
    due_months: int = 1
    #: bulk erasure: the largest CSV accepted, in bytes and in rows, at most how many chunks
    #: are erased at once, whatever the tenant (a job runs one worker per chunk up to this and
    #: the tenant's `bulk_max_concurrency`: `jobs.sizing`; keep it under the account's Lambda
    #: concurrency, 1,000 by default, less what the API needs), and the subjects of one chunk.
    #: A chunk runs in one Express child execution, capped at 5 minutes: on AWS a chunk worker
    #: erases about 5.6 subjects/s (issue 18's measure), so 250 subjects take about 45 s, and a
    #: chunk still ends in time if subjects get 6x slower (1.2 s each: throttling retries)
    bulk_max_bytes: int = 200 * 1024 * 1024
    bulk_max_rows: int = 1_000_000
    #: chunk workers of a job at once, at most (and at most its tenant's bulk_max_concurrency):
    #: 100 erase about 3,800 subjects a second on AWS (tests/bench/capacity.py), more than a
    #: tenant's tables spread over 64 partitions take (about 2,350); workers beyond what the
    #: tables take wait on throttled writes, billed, and hold the account's Lambda concurrency
    bulk_concurrency: int = Field(default=100, ge=1, le=10_000)
    bulk_chunk_size: int = Field(default=250, ge=1, le=1000)
    #: within a chunk, the lines whose lookups (planning: the find queries, the files under
    #: each prefix; certifying: the fresh search) are made at once: a subject's round trips
    #: overlap instead of following one another (the chunk worker's time, and so its Lambda
    #: and Express cost, shrink with it); bounded below the clients' connection pools
    bulk_lookup_concurrency: int = Field(default=8, ge=1, le=16)
    #: the workflows deployed as Express on AWS (the catalogue's `aws_type`; the local stack
    #: runs every workflow as Standard): their executions are priced per execution and
    #: duration, the others per state transition. A bulk job's chunk children are Express.
    express_workflows: tuple[str, ...] = ("erasure", "anonymisation", "access_export")
    #: access exports: the SES identity that tells requesters their archive is ready, and the
    #: size of the multipart upload parts an archive is streamed in (S3's minimum is 5 MiB)
    ses_sender: str = "privacy@oblio.local"
    export_part_mb: int = 8
    #: self-service requests: a one-time code lives this many minutes and allows this many
    #: attempts (the same SES sender e-mails it); consent links and pages are served under
    #: this base URL (default: the host the API was called on)
    selfservice_code_minutes: int = 15
    selfservice_code_attempts: int = 3
    public_base_url: str | None = None
    #: retention sweeps: candidates per chunk manifest (a chunk holds this many to twice as
    #: many), chunks applied at once, and the local stack's stand-in for the nightly schedule
    #: (moto fires no schedules): run it every this many seconds, 0 = never (tests)
    retention_chunk_size: int = 500
    retention_concurrency: int = 4
    local_schedule_seconds: int = 24 * 3600
    #: shadow backfills: parallel Scan segments per physical table, items per Scan page
    #: (read per call: the page bounds memory and the write burst), and the seconds one
    #: segment invocation works before it hands over to the next (below the Lambda timeout)
    backfill_segments: int = 4
    backfill_page_size: int = 200
    backfill_seconds: float = 600.0
    #: the Secrets Manager secret holding the operator key (the scope above tenants: create
    #: tenants, manage any tenant's keys); default `<prefix>-operator-key`
    operator_secret: str | None = None
    #: the local stack attached to a user's own local AWS (`oblio local up --aws-endpoint`):
    #: the data map's tables and buckets are read and written there, oblio's own resources
    #: stay in oblio's local AWS. Never set on AWS.
    data_endpoint_url: str | None = None

    def own_resource(self, name: str) -> bool:
        """Whether a table or bucket is one of oblio's own (its name carries the resource
        prefix; a data map naming a table or bucket under it is refused at load)."""
        return name.startswith(f"{self.resource_prefix}-")

    def table(self, name: str) -> str:
        return physical_name(self.resource_prefix, "table", name)

    def bucket(self, name: str) -> str:
        return physical_name(self.resource_prefix, "bucket", name)

    def function(self, name: str) -> str:
        return physical_name(self.resource_prefix, "function", name)

    def state_machine_arn(self, name: str) -> str:
        sm = physical_name(self.resource_prefix, "statemachine", name)
        return f"arn:aws:states:{self.region}:{self.account_id}:stateMachine:{sm}"

    def topic_arn(self, name: str) -> str:
        topic = physical_name(self.resource_prefix, "topic", name)
        return f"arn:aws:sns:{self.region}:{self.account_id}:{topic}"

    def function_arn(self, name: str) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.function(name)}"

    @property
    def event_bus(self) -> str:
        return physical_name(self.resource_prefix, "bus", "events")

    @property
    def operator_secret_name(self) -> str:
        return self.operator_secret or physical_name(self.resource_prefix, "secret",
                                                     "operator-key")

    @property
    def kms_alias(self) -> str:
        return f"alias/{self.resource_prefix}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
