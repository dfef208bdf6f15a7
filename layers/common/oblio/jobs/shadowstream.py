"""The stream consumer's domain: keep the shadows of identities stored as typed current on
every write a tenant's application makes (the backfill, `oblio.jobs.backfill`, writes them
once for the items already there).

One DynamoDB Streams record at a time (the handler, `functions/shadow_stream`, runs them
through Powertools' batch processor, which reports the records that raised as partial batch
failures, to be retried on their own): an INSERT or MODIFY's new image is decided by
`oblio.core.shadowscan.decide` for each mapped table and tenant it belongs to, and written
only when its shadows are missing or wrong, conditioned on the raw values of that image (a
newer write wins; its own record comes next). oblio's own shadow write produces one more
MODIFY record whose image has the right shadows: decided again, it needs nothing, so the
consumer never loops. A REMOVE needs nothing (the shadow went with the item).
"""

from __future__ import annotations

from typing import Any

from oblio.control.tenants import get_tenant
from oblio.core import datamap, shadowscan
from oblio.core.errors import NotFound
from oblio.store import tables as store


class BadRecord(ValueError):
    """A stream record oblio cannot read (no table, no new image): reported as a failure of
    that record; the message names what is missing, never a value."""


def table_of(source_arn: str | None) -> str:
    """The table name in a stream's ARN (`arn:aws:dynamodb:<region>:<account>:table/<name>/
    stream/<label>`)."""
    parts = (source_arn or "").split("/")
    if len(parts) < 2 or not parts[0].endswith(":table") or not parts[1]:
        raise BadRecord("the record's eventSourceARN names no table: give the consumer "
                        "records of a DynamoDB stream")
    return parts[1]


def _region(tenant_id: str) -> str | None:
    return get_tenant(tenant_id).phone_region


def on_record(record: dict[str, Any], dm: Any = None) -> str:
    """Decide and write one stream record (its raw Lambda form); returns what was done:
    `written`, `right` (nothing to write), `changed` (a newer write moved the item: its own
    record follows), `not_mapped` (not an item of a tenant's table with as-typed
    identities), or `removed` (a REMOVE). Raises BadRecord for a record it cannot read."""
    name = record.get("eventName")
    if name == "REMOVE":
        return "removed"
    if name not in ("INSERT", "MODIFY"):
        raise BadRecord("the record's eventName is not INSERT, MODIFY or REMOVE")
    table = table_of(record.get("eventSourceARN"))
    image = (record.get("dynamodb") or {}).get("NewImage")
    if not isinstance(image, dict):
        raise BadRecord(f"a {name} record of table {table} carries no NewImage: enable the "
                        "table's stream with the view type NEW_IMAGE (or NEW_AND_OLD_IMAGES)")
    try:
        item = store.from_ddb(image)
    except (TypeError, ValueError, AttributeError, KeyError):
        raise BadRecord(f"a {name} record of table {table} has a NewImage that is not "
                        "DynamoDB JSON") from None
    dm = dm or datamap.current()
    outcome = "not_mapped"
    by_tenant: dict[str, list[str]] = {}
    for logical, tenant in shadowscan.owners(dm, table, item):
        by_tenant.setdefault(tenant, []).append(logical)
    for tenant, names in by_tenant.items():
        try:
            region = _region(tenant)
        except NotFound:
            continue  # an item of no tenant oblio knows: not ours to shadow
        seen = shadowscan.decide(dm, names, item, tenant, region)
        if not seen.mine:
            continue
        if seen.write is None:
            outcome = "right" if outcome == "not_mapped" else outcome
            continue
        w = seen.write
        ok = store.set_if_unchanged(table, w.key, w.set, w.remove, w.expect)
        outcome = "written" if ok else "changed"
    return outcome
