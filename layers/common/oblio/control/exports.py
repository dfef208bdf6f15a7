"""The subject's access-export archives, as an erasure sees them: an archive holds everything
about the person and stays for the tenant's export TTL (14 days by default), so an erasure
deletes every archive of the subject that S3 still holds, and its verification checks that
none is left.

An access request is the subject's when one of the identity HMACs it was filed with is one
of the erasure's (the identities named and those found on her items): an export asked by
e-mail is found by an erasure asked by phone once the phone was found next to the e-mail.

The archives are found through the archive index (`ArchiveIndexModel`, in the requests
table): when an access request writes its archive, it first adds itself, with the archive's
expiry, to the index item of each identity HMAC it was filed with and of its subject
reference. An erasure reads the index items of her own HMACs (one BatchGetItem; a bulk chunk
one for all its lines): what it costs grows with the subject's archives, never with the
tenant's requests (reading the tenant's recent requests instead, as oblio did, made every
erasure after a bulk job of a million lines read a million request records).

An archive is looked for until `LOOKED_FOR` after its expiry: S3's lifecycle rule deletes it
a day or two after it expires, and an erasure meanwhile deletes it too (`stored` asks S3).

A tenant whose requests predate the index has none of its earlier archives in it: its
first look-up (`ensure_index`) adds the access requests of the last `WINDOW` from their
records, then marks the tenant's index built (sk = arc#built); every look-up reads that
mark in the same BatchGetItem as the index items.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import timedelta
from typing import Any

from ulid import ULID

from oblio.control import records
from oblio.core import clock
from oblio.core.errors import NotFound, TransientError
from oblio.core.settings import get_settings
from oblio.store import objects, shards
from oblio.store.models import ARCHIVE_INDEX_BUILT, ArchiveIndexModel, RequestModel, plain

#: the unit of an erasure's plan that stands for the subject's archives (not a table)
UNIT = "_archives"
#: the statuses of an access request whose archive was written
WRITTEN = ("completed", "completed_with_errors")
#: how far back an access request can have been filed and its archive not have expired yet:
#: the longest export TTL (30 days) and a margin for the time an export takes and retries
WINDOW = timedelta(days=45)
#: how long after its expiry an archive is still looked for (and its index entry kept)
LOOKED_FOR = timedelta(days=15)


def archive_key(tenant_id: str, request_id: str) -> str:
    """Where an access request's archive is, in the exports bucket."""
    return f"exports/{tenant_id}/{request_id}.zip"


def _identity_sk(kind: str, mac: str) -> str:
    return f"arc#id#{kind}#{mac}"


def _subject_sk(subject_ref: str) -> str:
    return f"arc#sub#{subject_ref}"


def index_archive(tenant_id: str, request_id: str, identity_refs: dict[str, Any],
                  subject_ref: str | None, expires_at: str, owner: str | None = None) -> None:
    """Add an access request's archive to the index items of its identity HMACs and its
    subject reference, before the archive is written: once its upload completes, any erasure
    of the subject planned after that finds it. (One planned while the upload runs finds the
    entry but no object in S3 yet: the export deletes its archive itself when it finds the
    erasure's suppression entries once its upload is done, and the erasure reads the index
    again after writing them, `late_archives`.) Two UpdateItems an item: the
    map made if missing, then the entry set and the entries long expired removed; a rerun
    sets the same entry again.

    `owner`: the tenant whose request wrote the archive, when it is not `tenant_id` (an
    export with `include_children` holds what a child tenant has of her: it is indexed in
    that child's index too, under the child's HMACs, so that an erasure in the child finds
    it; the entry names the owner, `_entry`)."""
    entry = _entry_key(tenant_id, owner or tenant_id, request_id)
    sks = [_identity_sk(k, str(v)) for k, v in sorted(identity_refs.items())]
    sks += [_subject_sk(subject_ref)] if subject_ref else []
    cutoff = clock.iso(clock.now() - LOOKED_FOR)
    for sk in sks:
        item = ArchiveIndexModel(tenant_id=tenant_id, sk=sk)
        item.update(actions=[ArchiveIndexModel.archives.set(ArchiveIndexModel.archives | {})])
        stale = [key for key, exp in (plain(item.archives) or {}).items()
                 if key != entry and str(exp) < cutoff]
        item.update(actions=[ArchiveIndexModel.archives[entry].set(expires_at),
                             *(ArchiveIndexModel.archives[key].remove() for key in stale)])


def _entry_key(tenant_id: str, owner: str, request_id: str) -> str:
    """An index entry's key: the request id of an archive of the index's own tenant, or
    `<owner tenant>/<request id>` of another's."""
    return request_id if owner == tenant_id else f"{owner}/{request_id}"


def _entry(tenant_id: str, key: str) -> dict[str, str]:
    """`{"tenant_id", "request_id"}` of the archive an index entry of `tenant_id` names."""
    owner, _, request_id = key.rpartition("/")
    return {"tenant_id": owner or tenant_id, "request_id": request_id}


def _expiry(m: RequestModel) -> str | None:
    """When a recorded access request's archive expires; None: it wrote none."""
    made = records.units_of(m).get("_package") or {}
    result = records.result_of(m)
    return (made.get("expires_at") if made.get("status") == "done" else None) or (
        (result.get("export") or {}).get("expires_at") or result.get("expires_at"))


def ensure_index(tenant_id: str) -> int:
    """Add the access requests of the last WINDOW to the index from their records, then mark
    the tenant's index built; returns how many archives it added. Run once a tenant, by its
    first look-up (a Query of each shard over the window's request ids); running it twice
    adds the same entries again."""
    since = ULID.from_datetime(clock.now() - WINDOW)
    added = 0
    for m in shards.query_tenant(
            RequestModel, tenant_id, RequestModel.sk.between(f"{records.REQUEST_PREFIX}{since}",
                                                             f"{records.REQUEST_PREFIX}~"),
            filter_condition=RequestModel.type == "access",
            attributes_to_get=["request_id", "identity_refs", "subject_ref", "result", "units"]):
        expires = _expiry(m)
        if expires:
            index_archive(tenant_id, m.request_id, plain(m.identity_refs) or {},
                          m.subject_ref, expires)
            added += 1
    ArchiveIndexModel(tenant_id=tenant_id, sk=ARCHIVE_INDEX_BUILT, built_at=clock.iso()).save()
    return added


def _entries(tenant_id: str, sks: Iterable[str]) -> dict[str, dict[str, str]]:
    """The index items of these sort keys (sk -> request id -> expiry), in one BatchGetItem
    (of 100 keys each) with the tenant's mark; the index is built first when unmarked.
    Strongly consistent: an entry or a mark written a moment ago is read."""
    keys = sorted({*sks, ARCHIVE_INDEX_BUILT})
    for _ in range(2):
        got = {m.sk: plain(m.archives) or {} for m in ArchiveIndexModel.batch_get(
            [(shards.key(tenant_id, sk), sk) for sk in keys], consistent_read=True)}
        if ARCHIVE_INDEX_BUILT in got:
            return got
        ensure_index(tenant_id)
    raise RuntimeError("the archive index was built but its mark cannot be read")


def archives_of_many(tenant_id: str, subjects: Sequence[dict[str, list[str]]],
                     ) -> list[list[dict[str, str]]]:
    """Per subject (kind -> her identity HMACs), `{"tenant_id", "request_id"}` of each
    archive indexed for one of her HMACs and looked for still (the tenant's own, newest
    first, then other tenants' exports that hold what this one has of her: `_entry_key`);
    one read for all of them. References only, no personal data."""
    wanted = [{_identity_sk(k, v) for k, vs in kinds.items() for v in vs} for kinds in subjects]
    if not any(wanted):
        return [[] for _ in subjects]
    got = _entries(tenant_id, set().union(*wanted))
    cutoff = clock.iso(clock.now() - LOOKED_FOR)
    out = []
    for sks in wanted:
        keys = {key for sk in sks for key, exp in got.get(sk, {}).items() if str(exp) >= cutoff}
        out.append(sorted((_entry(tenant_id, key) for key in keys),
                          key=lambda a: (a["tenant_id"] == tenant_id, a["request_id"]),
                          reverse=True))
    return out


def archives_of(tenant_id: str, kinds: dict[str, list[str]]) -> list[dict[str, str]]:
    """`archives_of_many` for one subject."""
    return archives_of_many(tenant_id, [kinds])[0]


def subject_archives(identity_refs: dict[str, dict[str, list[str]]]) -> list[dict[str, str]]:
    """`{"tenant_id", "request_id"}` of each archive of the subject (tenant -> kind -> HMACs)
    that S3 still holds, newest first per tenant: one index read a tenant, one listing of
    versions per archive found."""
    found = [a for tenant_id, kinds in sorted(identity_refs.items()) if kinds
             for a in archives_of(tenant_id, kinds)]
    # a parent's export with include_children is indexed in each child too: counted once
    return stored(_union([], found))


def latest_valid_export(tenant_id: str, subject_ref: str) -> RequestModel | None:
    """The newest finished access request of the subject whose archive has not expired and
    is in S3 still (an erasure in a child tenant deletes a family export's archive): the
    subject's index item, then the records it names, newest first, until one is finished."""
    now = clock.iso()
    entries = _entries(tenant_id, [_subject_sk(subject_ref)]).get(_subject_sk(subject_ref), {})
    for rid, exp in sorted(entries.items(), reverse=True):
        if str(exp) <= now or "/" in rid:  # another tenant's archive (`_entry_key`)
            continue
        try:
            m = records.load(tenant_id, rid, consistent=False)
        except NotFound:
            continue
        if m.status not in WRITTEN or m.subject_ref != subject_ref:
            continue
        expires = records.result_of(m).get("expires_at")
        if expires and expires > now and stored([{"tenant_id": tenant_id, "request_id": rid}]):
            return m
    return None


def late_archives(tenant_id: str, subjects: Sequence[dict[str, list[str]]],
                  noted: Sequence[list[dict[str, str]]] | None = None,
                  note: Callable[[list[list[dict[str, str]]]], None] | None = None,
                  ) -> list[dict[str, int]]:
    """After an erasure has written its subjects' suppression entries: the archives the index
    now names for each subject (kind -> her identity HMACs) that S3 still holds, every
    version deleted (one the plan had and deleted is back when a retried package step wrote
    it again). Those are exports that were still writing their
    archive when the erasure was planned: each checks the suppression list once its archive
    is written (`suppression.erased_since`) and deletes it itself when the entries are there;
    one that checked before they were written has its archive in S3 by now, and it goes
    here. One index read for all the subjects, one HEAD an archive indexed. Per subject:
    `found` (in S3 still), `deleted`, `left` (read back after the deletion: 0, since one
    left raises TransientError, and the erasure's step is retried rather than ended over it).

    A step that dies after the deletion finds nothing in S3 when it runs again: so what it
    finds is noted before it deletes (`note(per subject)`, only when there is something new),
    and a rerun counts what an earlier run noted (`noted`) with what it finds itself."""
    if not subjects:
        return []
    late = [stored(found) for found in archives_of_many(tenant_id, subjects)]
    if noted:
        late = [_union(before, now) for before, now in zip(noted, late, strict=True)]
    if note is not None and any(late) and late != [list(n) for n in (noted or [])]:
        note(late)
    everything = [a for found in late for a in found]
    delete_archives(everything)
    if archives_left(everything):
        raise TransientError("an access-export archive written while the erasure ran is "
                             "still in S3 after its deletion; the step is retried")
    return [{"found": len(found), "deleted": len(found), "left": 0} for found in late]


def _union(before: list[dict[str, str]], now: list[dict[str, str]]) -> list[dict[str, str]]:
    return list({(a["tenant_id"], a["request_id"]): a for a in [*before, *now]}.values())


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
