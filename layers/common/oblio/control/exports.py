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

from oblio.control import records
from oblio.core import clock
from oblio.core.settings import get_settings
from oblio.store import objects
from oblio.store.models import RequestModel, plain

#: the unit of an erasure's plan that stands for the subject's archives (not a table)
UNIT = "_archives"
#: the statuses of an access request whose archive was written
WRITTEN = ("completed", "completed_with_errors")


def archive_key(tenant_id: str, request_id: str) -> str:
    """Where an access request's archive is, in the exports bucket."""
    return f"exports/{tenant_id}/{request_id}.zip"


def subject_archives(identity_refs: dict[str, dict[str, list[str]]]) -> list[dict[str, str]]:
    """`{"tenant_id", "request_id"}` of each finished, unexpired access request of the subject
    (tenant -> kind -> HMACs), newest first per tenant. One Query of the tenant's requests
    (access requests only), no Scan; references only, no personal data."""
    now = clock.iso()
    out: list[dict[str, str]] = []
    for tenant_id, kinds in sorted(identity_refs.items()):
        macs = {(k, v) for k, vs in kinds.items() for v in vs}
        if not macs:
            continue
        for m in RequestModel.query(
                tenant_id, RequestModel.sk.startswith(records.REQUEST_PREFIX),
                scan_index_forward=False,
                filter_condition=(RequestModel.type == "access")
                & RequestModel.status.is_in(*WRITTEN)):
            refs = plain(m.identity_refs) or {}
            if not any((k, v) in macs for k, v in refs.items()):
                continue
            expires = (records.result_of(m).get("export") or {}).get("expires_at") \
                or records.result_of(m).get("expires_at")
            if expires and expires <= now:
                continue  # expired: the app refuses it and the lifecycle rule removes it
            out.append({"tenant_id": tenant_id, "request_id": m.request_id})
    return out


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
