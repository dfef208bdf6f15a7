"""The subject's access-export archives, as an erasure sees them: an archive holds everything
about the person and stays for the tenant's export TTL (14 days by default), so an erasure
deletes the archives of the subject's finished access requests that have not expired yet,
and its verification checks that none is left.

An access request is the subject's when one of the identity HMACs it was filed with is one
of the erasure's (the identities named and those found on her items): an export asked by
e-mail is found by an erasure asked by phone once the phone was found next to the e-mail.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta

from ulid import ULID

from oblio.control import records
from oblio.core import clock
from oblio.core.settings import get_settings
from oblio.store import objects, shards
from oblio.store.models import RequestModel, plain

#: the unit of an erasure's plan that stands for the subject's archives (not a table)
UNIT = "_archives"
#: the statuses of an access request whose archive was written
WRITTEN = ("completed", "completed_with_errors")
#: how far back an access request can have been filed and its archive not have expired yet:
#: the longest export TTL (30 days) and a margin for the time an export takes and retries
WINDOW = timedelta(days=45)

#: a finished access request: its id, the identity HMACs it was filed with, its expiry
Export = tuple[str, frozenset[tuple[str, str]], str | None]


def archive_key(tenant_id: str, request_id: str) -> str:
    """Where an access request's archive is, in the exports bucket."""
    return f"exports/{tenant_id}/{request_id}.zip"


def recent_exports(tenant_id: str) -> list[Export]:
    """The tenant's finished access requests filed within WINDOW, newest first: one Query
    on the request ids' range (ULIDs sort by time), access requests only, no Scan. Its cost
    grows with the tenant's requests of the last weeks, not with its history; a bulk chunk
    reads it once for all its lines."""
    since = ULID.from_datetime(clock.now() - WINDOW)
    out: list[Export] = []
    for m in shards.query_tenant(
            RequestModel, tenant_id, RequestModel.sk.between(f"{records.REQUEST_PREFIX}{since}",
                                               f"{records.REQUEST_PREFIX}~"),
            scan_index_forward=False,
            filter_condition=(RequestModel.type == "access")
            & RequestModel.status.is_in(*WRITTEN),
            attributes_to_get=["request_id", "identity_refs", "result"]):
        refs = frozenset((k, str(v)) for k, v in (plain(m.identity_refs) or {}).items())
        result = records.result_of(m)
        out.append((m.request_id, refs,
                    (result.get("export") or {}).get("expires_at") or result.get("expires_at")))
    return out


def matching(tenant_id: str, exports: list[Export], kinds: dict[str, list[str]],
             ) -> list[dict[str, str]]:
    """`{"tenant_id", "request_id"}` of each export filed with one of these identity HMACs
    (kind -> HMACs) whose archive has not expired; references only, no personal data."""
    now = clock.iso()
    macs = {(k, v) for k, vs in kinds.items() for v in vs}
    return [{"tenant_id": tenant_id, "request_id": rid} for rid, refs, expires in exports
            if refs & macs and not (expires and expires <= now)]


def subject_archives(identity_refs: dict[str, dict[str, list[str]]]) -> list[dict[str, str]]:
    """`{"tenant_id", "request_id"}` of each finished, unexpired access request of the subject
    (tenant -> kind -> HMACs) whose archive S3 still holds, newest first per tenant: one
    `recent_exports` Query a tenant, one listing of versions per archive found."""
    return stored([a for tenant_id, kinds in sorted(identity_refs.items()) if kinds
                   for a in matching(tenant_id, recent_exports(tenant_id), kinds)])


def stored(found: list[dict[str, str]]) -> list[dict[str, str]]:
    """Those of the archives that S3 still holds (any version): an archive an earlier erasure
    deleted is not planned, nor counted, again."""
    return [a for a, ref in zip(found, refs(found), strict=True)
            if objects.versions_left([ref])]


def refs(found: Iterable[dict[str, str]]) -> list[tuple[str, str]]:
    """The (bucket, key) of each archive found."""
    bucket = get_settings().bucket("exports")
    return [(bucket, archive_key(a["tenant_id"], a["request_id"])) for a in found]


def delete_archives(found: list[dict[str, str]]) -> int:
    """Delete every version of each archive; returns how many archives S3 still held."""
    return objects.delete_all_versions(refs(found)) if found else 0


def archives_left(found: list[dict[str, str]]) -> int:
    """How many of the archives still have any version in S3."""
    return objects.versions_left(refs(found)) if found else 0
