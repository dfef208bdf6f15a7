"""A property of the bulk CSV validator, against the in-process AWS: whatever bytes are
uploaded (random bytes, text in other encodings, lines of any length, headers of personal data),
`bulk.validate` never raises, never keeps a cell in clear on the job or its rejects, and always
deletes every version of the upload."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oblio.core.bodies import BulkBody, parse
from oblio.core.settings import get_settings
from oblio.jobs import bulk
from oblio.store import aws, objects
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")
TENANT = "tenant-bulk-fuzz"


@pytest.fixture(scope="module")
def provisioned(module_aws):
    with world.provisioned():
        world.new_tenant(TENANT)
        yield


def secret() -> st.SearchStrategy[str]:
    """A cell of personal data that must never be kept in clear: a recognisable token."""
    return st.integers(0, 10**6).map(lambda n: f"Secretname{n}x")


cell = st.one_of(
    secret(), secret().map(lambda s: f"{s}@example.com"), st.text(max_size=30),
    st.just("+39 333 123 4567"), st.just("0333 1234567"), st.text(min_size=0, max_size=3),
    st.integers(1, 300_000).map(lambda n: "L" * n),  # around the csv module's field limit
)
encoding = st.sampled_from(["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16", "mac_roman"])
header = st.one_of(
    st.just(["email"]), st.just(["email", "phone"]), st.just(["Phone", "note", "dry_run"]),
    st.lists(st.one_of(secret(), st.sampled_from(["email", "phone", "external_id"])),
             min_size=1, max_size=6),
)


@st.composite
def upload_bytes(draw: Any) -> bytes:
    head = draw(header)
    rows = draw(st.lists(st.lists(cell, max_size=5), max_size=12))
    sep = draw(st.sampled_from([",", ";"]))
    end = draw(st.sampled_from(["\n", "\r\n"]))
    text = end.join(sep.join(c) for c in [head, *rows]) + end
    enc = draw(encoding)
    data = text.encode(enc, errors="replace")
    if draw(st.booleans()):  # random bytes spliced in anywhere
        junk = draw(st.binary(min_size=1, max_size=64))
        at = draw(st.integers(0, len(data)))
        data = data[:at] + junk + data[at:]
    return data


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(upload_bytes())
def test_the_validator_never_crashes_never_keeps_a_cell_and_always_deletes_the_upload(data):
    bucket = get_settings().bucket("ingest")
    made = bulk.create_job(world.principal(TENANT), parse(BulkBody, {}))
    aws.client("s3").put_object(Bucket=bucket, Key=made["upload_key"], Body=data)
    bulk.start_from_upload(bucket, made["upload_key"])
    out = bulk.validate(TENANT, made["job_id"], bucket, made["upload_key"])
    assert isinstance(out, dict)
    assert world.versions(bucket, made["upload_key"]) == []
    job = bulk.load(TENANT, made["job_id"])
    assert job.status in {"running", "failed"}
    kept = repr(job.attribute_values)
    for k in job.reject_keys or ():
        kept += repr(objects.get_json(k))
    assert "Secretname" not in kept
    assert "LLLLLLLLLL" not in kept
