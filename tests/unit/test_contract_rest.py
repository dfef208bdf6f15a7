"""The rest of issue 16 that the domain decides: how a national phone number was read is said
by every answer that looked the subject up (search, dry run, request creation, consents); an
unencoded + in a query string is refused saying to write it as %2B; a key's scopes name each
scope once; a dry run replayed for an Idempotency-Key is not audited again; a bulk job's
upload URL can be presigned again while the job waits for its CSV, never after."""

from __future__ import annotations

from typing import Any

import pytest

from oblio.control import audit
from oblio.control.tenants import Principal
from oblio.core.bodies import REQUEST, BulkBody, KeyBody, SubjectQuery, parse
from oblio.core.errors import Conflict, Invalid
from oblio.jobs import bulk
from oblio.rights import consent, intake, search
from tests.unit import world

pytestmark = pytest.mark.usefixtures("provisioned")

NATIONAL = "333 123 4567"


@pytest.fixture(scope="module")
def it(provisioned, demo_map) -> Any:
    t = world.new_tenant("phones-it")
    world.seed(demo_map, t.tenant_id, "mario@example.com", "+393331234567", "CRM-1")
    return t


def who(tenant_id: str) -> Principal:
    return Principal(tenant_id, "key_unit", frozenset({"admin"}), False)


def _says_italy(answer: dict[str, Any]) -> None:
    reading = answer["phone_reading"]
    assert reading["read_as_national_number_of"] == "IT" and reading["country_code"] == 39
    assert "%2B" in reading["hint"] and "333" not in repr(reading)


def test_a_search_by_a_national_number_says_the_region_it_was_read_in(it):
    found = search.search(who(it.tenant_id), parse(SubjectQuery, {"phone": NATIONAL}))
    assert found["found"] is True
    _says_italy(found)
    by_plus = search.search(who(it.tenant_id), parse(SubjectQuery, {"phone": "+393331234567"}))
    assert "phone_reading" not in by_plus


def test_a_dry_run_and_a_new_request_by_a_national_number_say_it_too(it):
    body = {"type": "erasure", "subject": {"phone": NATIONAL}, "dry_run": True}
    _says_italy(intake.create(who(it.tenant_id), parse(REQUEST, body)).body)
    filed = intake.create(who(it.tenant_id), parse(REQUEST, {
        "type": "access", "subject": {"phone": NATIONAL}}))
    assert filed.created
    _says_italy(filed.body)


def test_consents_read_and_recorded_by_a_national_number_say_it(it):
    from oblio.core.bodies import ConsentBody, IdentityQuery

    recorded = consent.record(who(it.tenant_id), parse(ConsentBody, {
        "subject": {"phone": NATIONAL}, "purpose": "marketing", "channel": "web",
        "status": "granted"}))
    _says_italy(recorded)
    _says_italy(consent.read(who(it.tenant_id), parse(IdentityQuery, {"phone": NATIONAL})))


@pytest.mark.parametrize("sent", [" 33612345678", " 39 333 123 4567", "  393331234567"])
def test_a_plus_that_a_url_turned_into_a_space_is_refused_with_the_fix(sent):
    with pytest.raises(Invalid) as err:
        parse(SubjectQuery, {"phone": sent})
    assert err.value.field == "phone"
    assert "%2B" in err.value.message and sent.strip()[:5] not in err.value.message


def test_a_national_number_not_valid_in_the_tenants_region_is_refused_at_every_door(it):
    fr_mobile_in_it = "0612"  # no number of Italy
    for call in (
        lambda: search.search(who(it.tenant_id), parse(SubjectQuery,
                                                       {"phone": fr_mobile_in_it})),
        lambda: intake.create(who(it.tenant_id), parse(REQUEST, {
            "type": "access", "subject": {"phone": fr_mobile_in_it}})),
        lambda: intake.create(who(it.tenant_id), parse(REQUEST, {
            "type": "rectification", "subject": {"email": "mario@example.com"},
            "changes": {"phone": fr_mobile_in_it}})),
    ):
        with pytest.raises(Invalid) as err:
            call()
        assert "national number of IT" in err.value.message
        assert "%2B" in err.value.message and "0612" not in err.value.message


def test_a_key_naming_a_scope_twice_is_refused_by_position():
    with pytest.raises(Invalid) as err:
        parse(KeyBody, {"scopes": ["dsr:read", "dsr:write", "dsr:read"]})
    assert err.value.field == "scopes"
    assert "item 2" in err.value.message and "once" in err.value.message
    assert parse(KeyBody, {"scopes": ["dsr:read", "dsr:write"]}).scopes == ["dsr:read",
                                                                            "dsr:write"]


def test_a_dry_run_not_audited_again_leaves_no_second_entry(it):
    body = parse(REQUEST, {"type": "erasure", "subject": {"email": "mario@example.com"},
                           "dry_run": True})

    def dry_runs() -> int:
        rows, _ = audit.entries(it.tenant_id, newest_first=False)
        return sum(1 for e in map(audit.to_json, rows) if e["action"] == "erasure_dry_run")

    before = dry_runs()
    first = intake.create(who(it.tenant_id), body).body
    again = intake.create(who(it.tenant_id), body, audited=False).body
    assert first["tables"] == again["tables"]
    assert dry_runs() == before + 1


def test_a_bulk_jobs_upload_url_is_presigned_again_only_while_it_waits_for_its_csv(it):
    from oblio.store import aws

    made = bulk.create_job(who(it.tenant_id), parse(BulkBody, {}))
    again = bulk.upload_url(it.tenant_id, made["job_id"])
    assert made["upload_key"] in again
    aws.client("s3").put_object(Bucket=made["upload_bucket"], Key=made["upload_key"],
                                Body=b"email\nnobody@example.com\n")
    bulk.start_from_upload(made["upload_bucket"], made["upload_key"])
    with pytest.raises(Conflict) as err:
        bulk.upload_url(it.tenant_id, made["job_id"])
    assert err.value.code == "upload_received"
