"""PynamoDB models of oblio's own tables (the control plane). Table names come from the
resource catalogue through the settings, read once at import."""

from __future__ import annotations

from typing import Any

from pynamodb.attributes import (
    BinaryAttribute,
    BooleanAttribute,
    ListAttribute,
    MapAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UnicodeSetAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex

from oblio.core.settings import get_settings
from oblio.store.counted import CountedModel
from oblio.store.shards import ShardedModel

_s = get_settings()


def plain(value: Any) -> Any:
    """A stored value as plain Python: a map attribute as a dict, a list with its maps as
    dicts; None stays None."""
    if value is None:
        return None
    if hasattr(value, "as_dict"):
        return value.as_dict()
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


class _Meta:
    region = _s.region
    billing_mode = "PAY_PER_REQUEST"
    # botocore's standard retry mode (exponential backoff with jitter) for throttles and 5xx:
    # enough attempts that a burst of throttling is absorbed here; what outlasts them is a
    # TransientError at the task boundary, retried by the state machine
    max_retry_attempts = 10


class TenantModel(CountedModel):
    class Meta(_Meta):
        table_name = _s.table("tenants")

    tenant_id = UnicodeAttribute(hash_key=True)
    name = UnicodeAttribute()
    parent_id = UnicodeAttribute(null=True)
    children = UnicodeSetAttribute(null=True)
    settings = MapAttribute[str, Any](default=dict)
    key_blob = BinaryAttribute(legacy_encoding=False)
    created_at = UnicodeAttribute()


class KeysByTenant(GlobalSecondaryIndex["ApiKeyModel"]):
    class Meta:
        index_name = "by_tenant"
        projection = AllProjection()

    tenant_id = UnicodeAttribute(hash_key=True)
    key_id = UnicodeAttribute(range_key=True)


class ApiKeyModel(CountedModel):
    class Meta(_Meta):
        table_name = _s.table("api_keys")

    key_hash = UnicodeAttribute(hash_key=True)
    key_id = UnicodeAttribute()
    tenant_id = UnicodeAttribute()
    name = UnicodeAttribute(default="")
    scopes = UnicodeSetAttribute()
    children = BooleanAttribute(default=False)
    created_at = UnicodeAttribute()
    revoked = BooleanAttribute(default=False)
    revoked_at = UnicodeAttribute(null=True)
    by_tenant = KeysByTenant()


class RequestModel(ShardedModel):
    """A request (sk = req#<request id>), or the marker of an open request
    (sk = open#<type>#<subject ref>), under the tenant's shard of its sort key
    (pk = <tenant>#<shard>: `store.shards`)."""

    class Meta(_Meta):
        table_name = _s.table("requests")

    sk = UnicodeAttribute(range_key=True)
    request_id = UnicodeAttribute()
    type = UnicodeAttribute(null=True)
    status = UnicodeAttribute(null=True)
    subject_ref = UnicodeAttribute(null=True)
    #: AES-GCM ciphertext of the identities while the request is open; removed when finished
    identities_enc = UnicodeAttribute(null=True)
    #: AES-GCM ciphertext of a rectification's new values; removed when finished
    changes_enc = UnicodeAttribute(null=True)
    #: kind -> HMAC of each identity named (kept after the request ends)
    identity_refs = MapAttribute[str, Any](null=True)
    created_at = UnicodeAttribute(null=True)
    due_at = UnicodeAttribute(null=True)
    completed_at = UnicodeAttribute(null=True)
    requested_by = UnicodeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    options = MapAttribute[str, Any](null=True)
    timeline = ListAttribute[Any](null=True)
    plan = MapAttribute[str, Any](null=True)
    units = MapAttribute[str, Any](null=True)
    io = MapAttribute[str, Any](null=True)
    result = MapAttribute[str, Any](null=True)
    error = MapAttribute[str, Any](null=True)
    attempt = NumberAttribute(default=0)
    execution_arn = UnicodeAttribute(null=True)
    extended = MapAttribute[str, Any](null=True)


class ArchiveIndexModel(ShardedModel):
    """The archive index, in the requests table beside the requests: for one identity HMAC
    (sk = arc#id#<kind>#<hmac>) or one subject reference (sk = arc#sub#<ref>) the access
    requests whose archive was written for it (`archives`: request id -> expiry), so that
    an erasure finds a subject's archives by her own keys, never by reading the tenant's
    requests; sk = arc#built marks a tenant whose index holds every archive (`control.exports`).
    """

    class Meta(_Meta):
        table_name = _s.table("requests")

    sk = UnicodeAttribute(range_key=True)
    archives = MapAttribute[str, Any](null=True)
    built_at = UnicodeAttribute(null=True)


#: the archive index item that says the tenant's index holds every archive (a new tenant's
#: from its creation; an older one's once `control.exports.ensure_index` has run)
ARCHIVE_INDEX_BUILT = "arc#built"


class AuditModel(CountedModel):
    """One audit entry (seq = zero-padded number) or the chain's head (seq = HEAD)."""

    class Meta(_Meta):
        table_name = _s.table("audit")

    tenant_id = UnicodeAttribute(hash_key=True)
    seq = UnicodeAttribute(range_key=True)
    at = UnicodeAttribute(null=True)
    action = UnicodeAttribute(null=True)
    actor = UnicodeAttribute(null=True)
    request_id = UnicodeAttribute(null=True)
    subject_ref = UnicodeAttribute(null=True)
    details = MapAttribute[str, Any](null=True)
    prev_hash = UnicodeAttribute(null=True)
    hash = UnicodeAttribute(null=True)
    last = NumberAttribute(null=True)  # on HEAD: the last seq number


class BulkJobModel(CountedModel):
    """A bulk erasure job: its counters move as chunks finish (ADD, so chunks in parallel
    never lose a count)."""

    class Meta(_Meta):
        table_name = _s.table("bulk_jobs")

    tenant_id = UnicodeAttribute(hash_key=True)
    job_id = UnicodeAttribute(range_key=True)
    status = UnicodeAttribute()
    upload_key = UnicodeAttribute(null=True)
    uploaded_at = UnicodeAttribute(null=True)  # set when the file came through the API
    dry_run = BooleanAttribute(default=False)
    created_at = UnicodeAttribute()
    completed_at = UnicodeAttribute(null=True)
    requested_by = UnicodeAttribute(null=True)
    rows_total = NumberAttribute(null=True)
    rows_done = NumberAttribute(null=True)
    erased = NumberAttribute(null=True)
    not_found = NumberAttribute(null=True)
    invalid = NumberAttribute(null=True)
    duplicates = NumberAttribute(null=True)
    failed = NumberAttribute(null=True)
    would_erase = NumberAttribute(null=True)
    #: items kept by law (an exemption) and items on legal hold, over every erased line
    retained = NumberAttribute(null=True)
    held = NumberAttribute(null=True)
    blank_lines = NumberAttribute(null=True)
    ignored_columns = UnicodeSetAttribute(null=True)
    chunks = NumberAttribute(null=True)
    index_key = UnicodeAttribute(null=True)
    reject_keys = ListAttribute[str](null=True)
    chunks_done = UnicodeSetAttribute(null=True)
    report_parts = UnicodeSetAttribute(null=True)
    report_key = UnicodeAttribute(null=True)
    error = UnicodeAttribute(null=True)
    message = UnicodeAttribute(null=True)
    io = MapAttribute[str, Any](null=True)
    #: every AWS call its invocations made, by owner, and what they used (`control.metering`)
    meter = MapAttribute[str, Any](default=dict)
    #: the job's run: 1, then one more for each retry. A chunk, report or failure task of an
    #: earlier run writes nothing to the job (every such write is conditional on it)
    attempt = NumberAttribute(null=True)
    #: the chunks of the index a report found not done: `failed` (started: a plan was saved)
    #: or `missing` (never ran), by chunk name; what a retry reruns
    chunks_failed = UnicodeSetAttribute(null=True)
    chunks_missing = UnicodeSetAttribute(null=True)
    #: the attempt whose end is recorded in the audit trail (`audit_entry`) and announced by
    #: its event, and the status each said: a rerun of the report or failure step writes
    #: neither again for the same end, but a run whose report ended it and then failed (its
    #: status never written) records its failure too (none: written before statuses were kept)
    audit_entry = UnicodeAttribute(null=True)
    audited_attempt = NumberAttribute(null=True)
    audited_status = UnicodeAttribute(null=True)
    announced_attempt = NumberAttribute(null=True)
    announced_status = UnicodeAttribute(null=True)


class SuppressionModel(ShardedModel):
    """A suppressed identity (ref = <kind>#<hmac>) under the tenant's shard of its ref
    (pk = <tenant>#<shard>: `store.shards`)."""

    class Meta(_Meta):
        table_name = _s.table("suppression")

    ref = UnicodeAttribute(range_key=True)
    reason = UnicodeAttribute()
    request_id = UnicodeAttribute(null=True)
    at = UnicodeAttribute()


class ConsentModel(ShardedModel):
    """The consent ledger, per identity `<kind>#<hmac>`: an event (sk = <ident>#e#<at>#<id>,
    written once, never changed) or the current state of one purpose (sk = <ident>#s#<purpose>,
    moved in the same transaction as the event that changes it). Under the tenant's shard of
    the identity (pk = <tenant>#<shard>: `store.shards`), so that one identity's records are
    one Query and a tenant's identities spread over the shards."""

    class Meta(_Meta):
        table_name = _s.table("consents")

    sk = UnicodeAttribute(range_key=True)

    @classmethod
    def shard_basis(cls, sort_key: str) -> str:
        """The identity `<kind>#<hmac>` a record (or a key prefix) is filed under."""
        return "#".join(sort_key.split("#", 2)[:2])
    event_id = UnicodeAttribute()
    #: "<at>#<event id>": the order of events; a state holds the newest event's
    order = UnicodeAttribute()
    subject_ref = UnicodeAttribute(null=True)
    purpose = UnicodeAttribute()
    status = UnicodeAttribute()
    channel = UnicodeAttribute()
    source = UnicodeAttribute(null=True)
    policy_version = UnicodeAttribute(null=True)
    notice_hash = UnicodeAttribute(null=True)
    proof = MapAttribute[str, Any](null=True)
    at = UnicodeAttribute()
    recorded_at = UnicodeAttribute(null=True)
    recorded_by = UnicodeAttribute(null=True)
    request_id = UnicodeAttribute(null=True)
    hash = UnicodeAttribute(null=True)


class SelfServiceModel(CountedModel):
    """A self-service request's one-time code (sk = otp#<request id>: its HMAC, expiry and
    attempts) or a rate counter (sk = rate#<address hmac>#<window>); both expire (TTL)."""

    class Meta(_Meta):
        table_name = _s.table("selfservice")

    tenant_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    request_id = UnicodeAttribute(null=True)
    code_mac = UnicodeAttribute(null=True)
    channel = UnicodeAttribute(null=True)
    expires_at = UnicodeAttribute(null=True)
    attempts = NumberAttribute(default=0)
    verified_at = UnicodeAttribute(null=True)
    hits = NumberAttribute(null=True)
    expires = NumberAttribute(null=True)  # epoch seconds (DynamoDB TTL)


class PublicSlugModel(CountedModel):
    """A tenant's public name (the self-service pages' `tenant`), unique across tenants."""

    class Meta(_Meta):
        table_name = _s.table("public_slugs")

    slug = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()
    at = UnicodeAttribute()



class RetentionPolicyModel(CountedModel):
    """A tenant's retention policy (sk = policy#<id>). `resume_sweep` names a sweep that
    failed: the next run of the policy picks it up instead of starting again."""

    class Meta(_Meta):
        table_name = _s.table("retention")

    tenant_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    policy_id = UnicodeAttribute()
    spec = MapAttribute[str, Any]()
    updated_at = UnicodeAttribute()
    updated_by = UnicodeAttribute(null=True)
    last_sweep_id = UnicodeAttribute(null=True)
    resume_sweep = UnicodeAttribute(null=True)


class RetentionSweepModel(CountedModel):
    """One run of a policy (sk = sweep#<id>), or the lock of a policy (sk = lock#<policy id>,
    `sweep_id` the holder, `expires` when a dead holder's lock may be taken over). Counters move
    with ADD as chunks finish; `chunks_done` makes a chunk run once."""

    class Meta(_Meta):
        table_name = _s.table("retention")

    tenant_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    sweep_id = UnicodeAttribute()
    policy_id = UnicodeAttribute(null=True)
    policy = MapAttribute[str, Any](null=True)
    status = UnicodeAttribute(null=True)
    trigger = UnicodeAttribute(null=True)
    cutoff = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(null=True)
    completed_at = UnicodeAttribute(null=True)
    attempt = NumberAttribute(default=0)
    #: the find step's progress: per part (month bucket or scan segment) its resume point
    find_state = MapAttribute[str, Any](null=True)
    find_done = BooleanAttribute(default=False)
    chunks = NumberAttribute(null=True)
    index_key = UnicodeAttribute(null=True)
    chunks_done = UnicodeSetAttribute(null=True)
    counts = MapAttribute[str, Any](null=True)
    io = MapAttribute[str, Any](null=True)
    #: every AWS call its invocations made, by owner, and what they used (`control.metering`)
    meter = MapAttribute[str, Any](default=dict)
    report_key = UnicodeAttribute(null=True)
    audit_entry = UnicodeAttribute(null=True)
    #: the run whose end `audit_entry` is (none: a run of an earlier release)
    audited_attempt = NumberAttribute(null=True)
    error = UnicodeAttribute(null=True)
    expires = NumberAttribute(null=True)


class BackfillModel(CountedModel):
    """A shadow backfill (sk = run#<id>: what it covers, its status), or one segment of its
    parallel Scan of one physical table (sk = seg#<id>#<table>#<segment>): its resume point
    (the Scan's LastEvaluatedKey, encrypted with the tenant's key: it is an item's key) and
    its counters, moved together after each page, so that a retried or resumed segment goes
    on where it stopped."""

    class Meta(_Meta):
        table_name = _s.table("backfills")

    tenant_id = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    backfill_id = UnicodeAttribute()
    status = UnicodeAttribute(null=True)
    #: the run: the logical tables covered, physical table -> its segments
    tables = ListAttribute[str](null=True)
    physical = MapAttribute[str, Any](null=True)
    segments_total = NumberAttribute(null=True)
    requested_by = UnicodeAttribute(null=True)
    created_at = UnicodeAttribute(null=True)
    completed_at = UnicodeAttribute(null=True)
    attempt = NumberAttribute(default=0)
    error = UnicodeAttribute(null=True)
    totals = MapAttribute[str, Any](null=True)
    audit_entry = UnicodeAttribute(null=True)
    #: a segment: which, where it stands, what it counted and the calls it made
    table = UnicodeAttribute(null=True)
    segment = NumberAttribute(null=True)
    segments = NumberAttribute(null=True)
    start_key = UnicodeAttribute(null=True)
    pages = NumberAttribute(default=0)
    done = BooleanAttribute(default=False)
    counts = MapAttribute[str, Any](null=True)
    io = MapAttribute[str, Any](null=True)
    #: the run: every AWS call of its invocations, by owner, and what they used
    #: (`control.metering`; a run recorded before the meter has none)
    meter = MapAttribute[str, Any](null=True)

