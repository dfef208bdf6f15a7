"""The walk's pure decisions, without AWS: an item's key, the S3 objects items point to, an
item past its TTL, the footprint's counts, and the HMACs of the identities a subject is
named by and found with (for the suppression list), from a TenantKeys of a fixed key."""

from __future__ import annotations

from decimal import Decimal

import pytest

from oblio.control.crypto import TenantKeys
from oblio.pipeline import find

NOW = 1_800_000_000.0


# -- an item's key -----------------------------------------------------------------------------

def test_key_of_keeps_the_key_attributes_only(demo_map):
    item = {"tenant_id": "demo", "contact_id": "c1", "email": "m@example.com", "city": "Roma"}
    assert find.key_of(demo_map.tables["contacts"], item) == {"tenant_id": "demo",
                                                              "contact_id": "c1"}


def test_key_of_a_table_keyed_by_an_identity_holds_that_identity(demo_map):
    entry = {"tenant_id": "demo", "email": "m@example.com", "reason": "bounced"}
    assert find.key_of(demo_map.tables["blacklist"], entry) == {"tenant_id": "demo",
                                                                "email": "m@example.com"}


def test_key_of_an_item_without_its_key_is_an_error(demo_map):
    with pytest.raises(KeyError):
        find.key_of(demo_map.tables["contacts"], {"tenant_id": "demo"})


# -- the S3 objects items point to -------------------------------------------------------------

def test_s3_refs_name_the_mapped_bucket_and_each_pointer(demo_map):
    items = [{"contact_id": "c1", "photo_key": "demo/photos/c1/a.bin"},
             {"contact_id": "c2", "photo_key": "demo/photos/c2/b.bin"}]
    assert find.s3_refs(demo_map, demo_map.tables["contacts"], items) == [
        ("demo-files", "demo/photos/c1/a.bin"), ("demo-files", "demo/photos/c2/b.bin")]


@pytest.mark.parametrize("pointer", [None, "", 42, {"bucket": "b", "key": "k"}])
def test_s3_refs_skip_items_without_a_usable_pointer(demo_map, pointer):
    item = {"message_id": "m1", "attachment_key": pointer}
    assert find.s3_refs(demo_map, demo_map.tables["ticket_messages"], [item]) == []
    assert find.s3_refs(demo_map, demo_map.tables["ticket_messages"], [{"message_id": "m2"}]) == []


def test_s3_refs_of_a_table_without_pointers_are_none(demo_map):
    assert find.s3_refs(demo_map, demo_map.tables["tickets"],
                        [{"ticket_id": "t1", "subject": "demo/photos/x.bin"}]) == []


def test_s3_refs_read_items_as_they_come(demo_map):
    items = ({"document_id": f"d{i}", "s3_key": f"demo/documents/d{i}/f.bin"} for i in range(3))
    assert [k for _, k in find.s3_refs(demo_map, demo_map.tables["documents"], items)] == [
        f"demo/documents/d{i}/f.bin" for i in range(3)]


# -- an item past its TTL ----------------------------------------------------------------------

@pytest.mark.parametrize("purge_at, gone", [
    (NOW - 1, True), (NOW, True), (int(NOW) - 86400, True), (Decimal(int(NOW) - 5), True),
    (NOW + 1, False), (Decimal(int(NOW) + 86400), False),
    # not a DynamoDB TTL (a number of epoch seconds): never expired
    (True, False), ("1700000000", False), (None, False),
])
def test_an_item_is_expired_once_its_ttl_has_passed(demo_map, purge_at, gone):
    ticket = {"ticket_id": "t1", "purge_at": purge_at}
    assert find.expired(demo_map.tables["tickets"], ticket, NOW) is gone


def test_an_item_without_the_ttl_attribute_never_expires(demo_map):
    assert find.expired(demo_map.tables["tickets"], {"ticket_id": "t1"}, NOW) is False


def test_a_table_without_a_ttl_attribute_never_expires(demo_map):
    contact = {"contact_id": "c1", "purge_at": 1}
    assert find.expired(demo_map.tables["contacts"], contact, NOW) is False


# -- the footprint -----------------------------------------------------------------------------

def test_a_footprint_counts_items_per_table_and_in_all():
    fp = find.Footprint("demo", {"contacts": [{"contact_id": "c1"}],
                                 "tickets": [{"ticket_id": "t1"}, {"ticket_id": "t2"}]})
    assert (fp.count("contacts"), fp.count("tickets"), fp.count("documents")) == (1, 2, 0)
    assert fp.total == 3
    assert find.Footprint("demo").total == 0


# -- the identities' HMACs ---------------------------------------------------------------------

def hmacs(refs: dict[str, list[str]]) -> dict[str, list[str]]:
    """The kinds that got an HMAC (a kind whose stored values were all refused may be listed
    with none)."""
    return {kind: v for kind, v in refs.items() if v}


@pytest.fixture
def k() -> TenantKeys:
    return TenantKeys.from_data_key("demo", b"f" * 32)


def test_identity_refs_are_the_hmacs_of_the_identities_named(demo_map, k):
    refs = find.identity_refs(demo_map, k, find.Footprint("demo"),
                              {"email": "m@example.com"}, "IT")
    assert refs == {"email": [k.hmac("email", "m@example.com")]}


def test_identity_refs_add_the_identities_found_on_the_subjects_items(demo_map, k):
    """A subject named by e-mail is suppressed by the phone and id on its profile too."""
    fp = find.Footprint("demo", {"contacts": [{
        "contact_id": "c1", "email": "m@example.com", "phone": "+39 333 123 4567",
        "external_id": " CRM-1 "}]})
    refs = find.identity_refs(demo_map, k, fp, {"email": "m@example.com"}, None)
    assert refs == {"email": [k.hmac("email", "m@example.com")],
                    "external_id": [k.hmac("external_id", "CRM-1")],
                    "phone": [k.hmac("phone", "+393331234567")]}


def test_identity_refs_normalise_stored_values_the_way_lookups_do(demo_map, k):
    """Stored as people typed them: mixed case, a national phone read in the tenant's
    region. The same person found twice is one HMAC per identity."""
    fp = find.Footprint("demo", {
        "contacts": [{"contact_id": "c1", "email": " M@Example.COM", "phone": "333 123 4567"}],
        "email_sends": [{"send_id": "s1", "recipient_email": "m@example.com"}]})
    refs = find.identity_refs(demo_map, k, fp, {"email": "m@example.com"}, "IT")
    assert refs == {"email": [k.hmac("email", "m@example.com")],
                    "phone": [k.hmac("phone", "+393331234567")]}


def test_identity_refs_collect_every_distinct_value_sorted(demo_map, k):
    fp = find.Footprint("demo", {
        "email_sends": [{"send_id": "s1", "recipient_email": "old@example.com"},
                        {"send_id": "s2", "recipient_email": "new@example.com"}]})
    refs = find.identity_refs(demo_map, k, fp, {"email": "new@example.com"}, None)
    assert refs["email"] == sorted([k.hmac("email", "old@example.com"),
                                    k.hmac("email", "new@example.com")])


def test_identity_refs_skip_a_stored_value_that_is_not_an_identity(demo_map, k):
    fp = find.Footprint("demo", {"contacts": [{
        "contact_id": "c1", "email": "not an address", "phone": "12", "external_id": None}]})
    refs = find.identity_refs(demo_map, k, fp, {"external_id": "CRM-1"}, "IT")
    assert hmacs(refs) == {"external_id": [k.hmac("external_id", "CRM-1")]}


def test_a_national_phone_without_a_region_is_skipped_not_guessed(demo_map, k):
    fp = find.Footprint("demo", {"contacts": [{"contact_id": "c1", "phone": "333 123 4567"}]})
    refs = find.identity_refs(demo_map, k, fp, {"email": "m@example.com"}, None)
    assert hmacs(refs) == {"email": [k.hmac("email", "m@example.com")]}


def test_identity_refs_hold_no_identity_in_clear_and_differ_between_tenants(demo_map, k):
    fp = find.Footprint("demo")
    named = {"email": "m@example.com", "phone": "+393331234567"}
    refs = find.identity_refs(demo_map, k, fp, named, None)
    assert "m@example.com" not in str(refs) and "3331234567" not in str(refs)
    other = TenantKeys.from_data_key("other", b"o" * 32)
    assert find.identity_refs(demo_map, other, fp, named, None) != refs
