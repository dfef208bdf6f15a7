"""The deployment's settings, read from CDK context values (`-c name=value` on the command line,
or `context` in a cdk.json). Every value has a default, so `make synth` needs none.

Values given on the command line arrive as strings: lists may be written as JSON
(`-c tenant_table_arns='["arn:...:table/crm-*"]'`) or comma-separated, booleans as
true/false, numbers as digits.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

ROOT = Path(__file__).resolve().parents[2]

T = TypeVar("T")

#: the retention periods CloudWatch Logs accepts
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096,
                      1827, 2192, 2557, 2922, 3288, 3653)


@dataclass(frozen=True)
class DeployConfig:
    """What a deployment may change without touching code. See README.md, "Deploy to AWS"."""

    #: the resource prefix: physical names are `<prefix>-<name>` (the runtime computes the same
    #: names from OBLIO_RESOURCE_PREFIX). Bucket names are global: in AWS make it unique to you,
    #: e.g. `oblio-<account id>`.
    prefix: str = "oblio"
    #: ARNs of the tenant tables the task functions may read and write (the tables the data
    #: map names). Empty: the tables of the data map given with `datamap`, else every table
    #: of the account in the stack's region.
    tenant_table_arns: tuple[str, ...] = ()
    #: ARNs of the tenant buckets holding attachments and documents. Empty: the buckets of the
    #: data map given with `datamap`, else any bucket owned by the account.
    tenant_bucket_arns: tuple[str, ...] = ()
    #: `dynamodb:LeadingKeys` patterns the task functions are limited to on tenant tables
    #: (e.g. `["acme", "acme-*"]` for a deployment that serves one tenant and its children)
    tenant_leading_keys: tuple[str, ...] = ()
    #: customer managed KMS keys that encrypt tenant tables or buckets
    tenant_kms_key_arns: tuple[str, ...] = ()
    #: DynamoDB Stream ARNs of the tenant tables with identities stored as typed (the map's
    #: `stored: as_typed`): the shadow_stream function consumes each (view type NEW_IMAGE or
    #: NEW_AND_OLD_IMAGES, enabled on the tables by their owner: they are not this stack's)
    shadow_stream_arns: tuple[str, ...] = ()
    #: the data map file to ship in the layer (OBLIO_DATAMAP); default: the package's demo map
    datamap: Path | None = None
    #: the SES sender of export and one-time-code e-mails, and what SES verifies for it
    ses_sender: str | None = None
    ses_identity: str = "email"  # "email" (the address) or "domain" (its domain, DKIM)
    #: where alarms are e-mailed (an SNS subscription); alarms go to the alarm topic anyway
    alarm_email: str | None = None
    #: links oblio hands out (consent withdrawal, self-service pages); default: the API's host
    public_base_url: str | None = None
    log_retention_days: int = 90
    access_log_days: int = 365
    #: API Gateway stage throttling (requests per second, burst)
    api_throttle_rate: int = 50
    api_throttle_burst: int = 100
    #: create the account's API Gateway CloudWatch role (needed once per account and region
    #: for access logs); false when another stack already set it
    api_cloudwatch_role: bool = True
    #: "pip": the layer carries the third-party dependencies (pip, from PyPI, cached under
    #: build/); "none": only the oblio package (offline synth; such a layer does not run)
    layer_deps: str = "pip"
    #: the stage of chalice.json whose settings the API takes
    chalice_stage: str = "dev"
    #: schedule expressions by catalogue rule name, overriding the catalogue's
    #: (`-c schedules='{"retention-nightly": "cron(0 3 * * ? *)"}'`)
    schedules: dict[str, str] = field(default_factory=dict)
    #: tables refuse deletion (and are retained, like buckets and the key, when the stack goes)
    deletion_protection: bool = True
    #: at most this many chunks of a bulk job erased at once (OBLIO_BULK_CONCURRENCY; a job
    #: runs one per chunk up to this and its tenant's `bulk_max_concurrency`); keep it under
    #: the account's Lambda concurrency (1,000 by default) less what the API needs
    bulk_concurrency: int = 100
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_context(cls, get: Callable[[str], Any]) -> DeployConfig:
        """Read every value through `get(name)` (a CDK node's try_get_context)."""
        d = cls()

        def text(name: str, default: str | None) -> str | None:
            value = get(name)
            return default if value is None or value == "" else str(value)

        def number(name: str, default: int) -> int:
            value = get(name)
            if value is None or value == "":
                return default
            try:
                return int(value)
            except (TypeError, ValueError):
                raise ValueError(f"context value {name!r} must be a whole number, "
                                 f"not {value!r}") from None

        def flag(name: str, default: bool) -> bool:
            value = get(name)
            if value is None or value == "":
                return default
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("true", "1", "yes"):
                return True
            if str(value).lower() in ("false", "0", "no"):
                return False
            raise ValueError(f"context value {name!r} must be true or false, not {value!r}")

        def strings(name: str) -> tuple[str, ...]:
            value = get(name)
            if value is None or value == "":
                return ()
            if isinstance(value, str):
                value = json.loads(value) if value.lstrip().startswith("[") else [
                    v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"context value {name!r} must be a list of strings")
            return tuple(value)

        def mapping(name: str) -> dict[str, str]:
            value = get(name)
            if value is None or value == "":
                return {}
            if isinstance(value, str):
                try:
                    value = json.loads(value)
                except ValueError:
                    value = None
            if not isinstance(value, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
                raise ValueError(f"context value {name!r} must be a JSON object of strings")
            return dict(value)

        datamap = text("datamap", None)
        cfg = cls(
            prefix=text("prefix", d.prefix) or d.prefix,
            tenant_table_arns=strings("tenant_table_arns"),
            tenant_bucket_arns=strings("tenant_bucket_arns"),
            tenant_leading_keys=strings("tenant_leading_keys"),
            tenant_kms_key_arns=strings("tenant_kms_key_arns"),
            shadow_stream_arns=strings("shadow_stream_arns"),
            datamap=(ROOT / datamap).resolve() if datamap else None,
            ses_sender=text("ses_sender", None),
            ses_identity=text("ses_identity", d.ses_identity) or d.ses_identity,
            alarm_email=text("alarm_email", None),
            public_base_url=text("public_base_url", None),
            log_retention_days=number("log_retention_days", d.log_retention_days),
            access_log_days=number("access_log_days", d.access_log_days),
            api_throttle_rate=number("api_throttle_rate", d.api_throttle_rate),
            api_throttle_burst=number("api_throttle_burst", d.api_throttle_burst),
            api_cloudwatch_role=flag("api_cloudwatch_role", d.api_cloudwatch_role),
            layer_deps=text("layer_deps", d.layer_deps) or d.layer_deps,
            chalice_stage=text("chalice_stage", d.chalice_stage) or d.chalice_stage,
            deletion_protection=flag("deletion_protection", d.deletion_protection),
            bulk_concurrency=number("bulk_concurrency", d.bulk_concurrency),
            schedules=mapping("schedules"),
        )
        cfg.validate()
        return cfg

    def validate(self) -> None:
        """Refuse values that would only fail at deploy time, naming the value."""
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            raise ValueError(f"context value 'log_retention_days' must be one of "
                             f"{', '.join(map(str, LOG_RETENTION_DAYS))}, "
                             f"not {self.log_retention_days}")
        if self.access_log_days < 1:
            raise ValueError("context value 'access_log_days' must be at least 1")
        if not 1 <= self.bulk_concurrency <= 10_000:
            raise ValueError("context value 'bulk_concurrency' must be from 1 to 10000 (the "
                             f"Distributed Map's limit), not {self.bulk_concurrency}")
        if self.layer_deps not in ("pip", "none"):
            raise ValueError("context value 'layer_deps' must be 'pip' or 'none'")
        if self.ses_identity not in ("email", "domain"):
            raise ValueError("context value 'ses_identity' must be 'email' or 'domain'")
        if self.ses_sender is not None and "@" not in self.ses_sender:
            raise ValueError(f"context value 'ses_sender' must be an e-mail address, "
                             f"not {self.ses_sender!r}")
        if self.datamap is not None and not self.datamap.is_file():
            raise ValueError(f"context value 'datamap': no file at {self.datamap}")
        for arn in self.shadow_stream_arns:
            if not (arn.startswith("arn:") and ":table/" in arn and "/stream/" in arn):
                raise ValueError(f"context value 'shadow_stream_arns': {arn!r} is not a "
                                 "DynamoDB Stream ARN (arn:aws:dynamodb:<region>:<account>:"
                                 "table/<name>/stream/<label>)")
        for name in ("tenant_table_arns", "tenant_bucket_arns", "tenant_kms_key_arns"):
            for arn in getattr(self, name):
                if not arn.startswith("arn:"):
                    raise ValueError(f"context value {name!r}: {arn!r} is not an ARN")
