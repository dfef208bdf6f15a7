"""The consent ledger and self-service requests in-process: the ledger's layout and its
state kept in step, signed links, reads that do not grow with the ledger, erasure, the rate
limit and the one-time code's attempts."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from oblio.control import ledger, links, tenants
from oblio.core import clock
from oblio.core.errors import Conflict, Invalid, OblioError
from oblio.rights import consent, selfservice
from oblio.store import aws, shards

pytestmark = pytest.mark.usefixtures("module_aws", "cheap_transactions")


@pytest.fixture(scope="module", autouse=False)
def cheap_transactions():
    """moto copies whole tables for each transaction; the local shim copies what it names."""
    from infra.local import moto_transactions

    moto_transactions.install()
    yield
    moto_transactions.uninstall()


@pytest.fixture
def t(tenant: str) -> tenants.Tenant:
    return tenants.create_tenant(tenant, f"Tenant {tenant}",
                                 settings={"default_phone_region": "IT"})


def _record(t: tenants.Tenant, ids: dict[str, str], purpose: str = "newsletter",
            status: str = "granted", **extra: Any) -> dict[str, Any]:
    fields = ledger.validate(t, {"purpose": purpose, "channel": "web", "status": status,
                                  **extra})
    return ledger.append(t, ledger.subject_keys(t, ids), t.keys.subject_ref(ids), fields,
                          recorded_by="key_test", emit=False)


ANNA = {"email": "anna@example.com"}


def test_grants_and_withdrawals_keep_the_state_in_step_with_the_newest_event(t):
    a = _record(t, ANNA)
    b = _record(t, ANNA, source="preference-centre")
    c = _record(t, ANNA, status="withdrawn")
    assert (a["state_changed"], b["state_changed"], c["state_changed"]) == (True, False, True)
    assert c["previous_status"] == "granted"
    got = ledger.subject_ledger(t, ANNA)
    assert [e["event_id"] for e in got["history"]] == [a["event_id"], b["event_id"],
                                                       c["event_id"]]
    assert got["state"]["newsletter"]["status"] == "withdrawn"
    assert got["state"]["newsletter"]["event_id"] == c["event_id"]
    assert set(got["state"]) == {"marketing", "newsletter", "analytics", "profiling"}


def test_an_older_event_imported_later_does_not_move_the_state(t):
    _record(t, ANNA, purpose="analytics")
    old = _record(t, ANNA, purpose="analytics", status="withdrawn",
                  at="2024-01-01T00:00:00+00:00")
    assert old["state_changed"] is False and old["current_status"] == "granted"
    got = ledger.subject_ledger(t, ANNA)
    assert got["state"]["analytics"]["status"] == "granted"
    assert [e["status"] for e in got["history"]] == ["withdrawn", "granted"]


def test_an_event_naming_two_identities_is_found_by_either(t):
    both = {"email": "bruno@example.com", "phone": "+393331112233"}
    _record(t, both, purpose="marketing")
    by_phone = ledger.subject_ledger(t, {"phone": "+393331112233"})
    assert by_phone["state"]["marketing"]["status"] == "granted"
    assert len(ledger.subject_ledger(t, both)["history"]) == 1  # the copies are one event


def test_an_identitys_records_share_a_shard_and_identities_spread_over_the_shards(t):
    from oblio.store.models import ConsentModel

    people = [f"person{n}@example.com" for n in range(40)]
    for email in people:
        _record(t, {"email": email})
    _record(t, {"email": people[0]}, status="withdrawn")
    rows = list(shards.query_tenant(ConsentModel, t.tenant_id))
    by_identity: dict[str, set[str]] = {}
    for m in rows:
        by_identity.setdefault("#".join(m.sk.split("#")[:2]), set()).add(m.pk)
    assert len(by_identity) == 40 and all(len(pks) == 1 for pks in by_identity.values())
    assert len({pk for pks in by_identity.values() for pk in pks}) > 8  # not one partition
    # one identity's records, events and states, are one Query of its shard
    key = ledger.subject_keys(t, {"email": people[0]})[0]
    assert len(list(ledger.records_of(t.tenant_id, key))) == 2 + 1  # 2 events, 1 state
    assert ledger.subject_ledger(t, {"email": people[0]})["state"]["newsletter"][
        "status"] == "withdrawn"
    with pytest.raises(shards.BareTenantKey):
        list(ConsentModel.query(t.tenant_id))  # the tenant alone finds nothing: refused


def test_the_ledger_keeps_hmacs_never_identities_or_addresses(t):
    from oblio.store.models import ConsentModel

    _record(t, ANNA, proof={"submission_id": "f-1", "ip_address": "203.0.113.9"})
    raw = str([m.attribute_values for m in shards.query_tenant(ConsentModel, t.tenant_id)])
    assert "anna@example.com" not in raw and "203.0.113.9" not in raw
    assert t.keys.hmac("ip", "203.0.113.9") in raw


@pytest.mark.parametrize("body, field, code", [
    ({"purpose": "astrology"}, "purpose", "unknown_purpose"),
    ({"channel": "fax"}, "channel", "unknown_channel"),
    ({"status": "perhaps"}, "status", "invalid_field"),
    ({"notice_hash": "abc"}, "notice_hash", "invalid_field"),
    ({"proof": {"ip_address": "not an ip"}}, "proof.ip_address", "invalid_field"),
    ({"proof": {"name": "Anna"}}, "proof.name", "invalid_field"),  # a name of the API
    ({"at": "yesterday"}, "at", "invalid_field"),
])
def test_bad_consent_fields_are_422_naming_the_field(t, body, field, code):
    with pytest.raises(Invalid) as err:
        ledger.validate(t, {"purpose": "newsletter", "channel": "web", "status": "granted",
                             **body})
    assert err.value.field == field and err.value.code == code


def test_the_purposes_setting_is_validated_and_used(t):
    with pytest.raises(Invalid) as err:
        tenants.update_settings(t.tenant_id, {"settings": {"purposes": ["Bad Name"]}})
    assert err.value.field == "settings.purposes"
    with pytest.raises(Invalid):
        tenants.update_settings(t.tenant_id, {"settings": {"purposes": ["a", "a"]}})
    t2 = tenants.update_settings(t.tenant_id, {"settings": {"purposes": ["surveys"]}})
    assert ledger.validate(t2, {"purpose": "surveys", "channel": "web",
                                 "status": "granted"})["purpose"] == "surveys"


def test_reading_one_subject_costs_the_same_however_large_the_ledger(t):
    def calls() -> int:
        with aws.counting() as io:
            ledger.subject_ledger(t, ANNA)
        return sum(v for k, v in io.calls.items() if k.startswith("dynamodb."))

    _record(t, ANNA)
    alone = calls()
    for i in range(150):
        _record(t, {"email": f"other{i}@example.com"}, purpose="marketing")
    assert calls() == alone == 1


def test_a_cancelled_transaction_writes_nothing(t):
    from pynamodb.exceptions import TransactWriteError
    from pynamodb.transactions import TransactWrite

    from oblio.store.models import ConsentModel

    _record(t, ANNA)
    state = next(m for m in shards.query_tenant(ConsentModel, t.tenant_id) if "#s#" in m.sk)
    fresh = ConsentModel(tenant_id=t.tenant_id, sk="email#x#e#new", event_id="e", order="o",
                         purpose="p", status="granted", channel="web", at="a")
    changed = ConsentModel(**{**state.attribute_values, "status": "withdrawn"})
    with pytest.raises(TransactWriteError), \
            TransactWrite(connection=ledger.connect()) as tx:
        tx.save(fresh, condition=ConsentModel.sk.does_not_exist())
        tx.save(changed)
        tx.save(ConsentModel(tenant_id=t.tenant_id, sk="email#y#s#p", event_id="e",
                             order="o", purpose="p", status="x", channel="c", at="a"),
                condition=ConsentModel.sk.exists())  # it does not: all is cancelled
    assert not list(ledger.records_of(t.tenant_id, "email#x"))
    assert ledger.subject_ledger(t, ANNA)["state"]["newsletter"]["status"] == "granted"


def test_erasing_a_subject_removes_its_records_only(t):
    _record(t, ANNA)
    _record(t, ANNA, purpose="marketing", status="withdrawn")
    _record(t, {"email": "carla@example.com"})
    refs = {"email": [t.keys.hmac("email", "anna@example.com")]}
    assert ledger.erase_subject(t.tenant_id, refs) == 4  # two events, two states
    assert ledger.subject_ledger(t, ANNA)["history"] == []
    assert ledger.erase_subject(t.tenant_id, refs) == 0
    assert len(ledger.subject_ledger(t, {"email": "carla@example.com"})["history"]) == 1


def _token(t: tenants.Tenant, days: int = 30) -> str:
    from oblio.control.tenants import Principal

    p = Principal(t.tenant_id, "key_test", frozenset({"consent:write"}), False)
    return consent.link(p, {"subject": ANNA, "purpose": "newsletter",
                            "expires_in_days": days}, "https://x")["token"]


def test_a_signed_link_withdraws_once_and_a_forged_one_changes_nothing(t, tenant):
    from oblio.core.settings import get_settings

    aws.client("events").create_event_bus(Name=get_settings().event_bus)
    _record(t, ANNA)
    token = _token(t)
    payload, sig = token.split(".")
    other = tenants.create_tenant(f"{tenant}-b", "B")
    forged_for_other = links.sign(other, {"t": t.tenant_id, "x": 2**40})
    for bad in (f"{payload}.{sig[:-1]}A" if sig[-1] != "A" else f"{payload}.{sig[:-1]}B",
                forged_for_other, "", None, "a.b.c", "%%%.%%%",
                f"{payload}.{sig[:-1]}\u00e9", f"{payload}\u00e9.{sig}"):  # not ASCII: no 500
        with pytest.raises(links.InvalidLink):
            consent.unsubscribe(bad)
    assert ledger.subject_ledger(t, ANNA)["state"]["newsletter"]["status"] == "granted"
    assert consent.unsubscribe(token) == consent.Withdrawn(t.name, "newsletter")
    # a second click records nothing more
    assert consent.unsubscribe(token).purpose == "newsletter"
    history = ledger.subject_ledger(t, ANNA)["history"]
    assert [e["status"] for e in history] == ["granted", "withdrawn"]


def test_a_link_made_before_her_erasure_records_nothing_one_made_after_it_does(t):
    import contextlib

    from oblio.control import suppression
    from oblio.core.settings import get_settings

    events = aws.client("events")
    with contextlib.suppress(events.exceptions.ResourceAlreadyExistsException):
        events.create_event_bus(Name=get_settings().event_bus)
    before = _token(t)
    clock.advance(timedelta(seconds=5))
    try:
        suppression.add(t.tenant_id, {"email": [t.keys.hmac("email", "anna@example.com")]},
                        reason="erasure", request_id="r-erasure")
        clock.advance(timedelta(seconds=5))
        after = _token(t)  # she came back, and was sent a newsletter again
        _record(t, ANNA)
        assert consent.unsubscribe(before).purpose == "newsletter"
        assert [e["status"] for e in ledger.subject_ledger(t, ANNA)["history"]] == ["granted"]
        consent.unsubscribe(after)
        assert [e["status"] for e in ledger.subject_ledger(t, ANNA)["history"]] == [
            "granted", "withdrawn"]
    finally:
        clock.advance(timedelta(seconds=-10))


def test_a_token_signed_for_one_use_is_refused_for_another(t):
    claims = {"t": t.tenant_id, "x": 2**40, "r": "01REQ", "p": "newsletter", "k": []}
    for_export = links.sign(t, claims, use="export-link")
    with pytest.raises(links.InvalidLink):
        links.verify(for_export)  # a consent link's use, by default
    with pytest.raises(links.InvalidLink):
        links.verify(links.sign(t, claims), use="export-link")
    assert links.verify(for_export, use="export-link")[1] == claims


@pytest.mark.parametrize("claims", [
    {"p": "newsletter", "c": "email", "n": "ab"},                       # no subject keys
    {"k": ["email#x"], "c": "email", "n": "ab"},                        # no purpose
    {"k": ["email#x"], "p": "newsletter", "n": "ab"},                   # no channel
    {"k": ["email#x"], "p": "newsletter", "c": "email"},                # no link id
    {"k": "email#x", "p": "newsletter", "c": "email", "n": "ab"},       # keys not a list
    {"k": ["nohash"], "p": "newsletter", "c": "email", "n": "ab"},      # a key of no kind
    {"k": [], "p": "newsletter", "c": "email", "n": "ab"},              # no key at all
    {"k": ["email#x"], "p": 5, "c": "email", "n": "ab"},                # a purpose not text
])
def test_a_signed_link_whose_payload_lacks_a_claim_is_invalid_not_an_error(t, claims):
    token = links.sign(t, {"v": 1, "t": t.tenant_id, "x": 2**40, **claims})
    with pytest.raises(links.InvalidLink):
        consent.unsubscribe(token)
    with pytest.raises(links.InvalidLink):
        selfservice.public_download("01M8Y1D9R7P27Y66MV7B6K406B",
                                    links.sign(t, {"v": 1, "t": t.tenant_id, "x": 2**40},
                                               use="export-link"))


def test_an_expired_link_changes_nothing(t):
    _record(t, ANNA)
    token = _token(t, days=1)
    clock.advance(timedelta(days=2))
    try:
        with pytest.raises(links.ExpiredLink):
            consent.unsubscribe(token)
    finally:
        clock.advance(timedelta(days=-2))
    assert len(ledger.subject_ledger(t, ANNA)["history"]) == 1


# -- self-service -------------------------------------------------------------------------------

def test_public_slugs_are_unique_and_freed_when_changed(t, tenant):
    tenants.update_settings(t.tenant_id, {"settings": {"public_slug": f"{tenant}-page"}})
    assert selfservice.resolve(f"{tenant}-page").tenant_id == t.tenant_id
    other = tenants.create_tenant(f"{tenant}-x", "X")
    with pytest.raises(Conflict):
        tenants.update_settings(other.tenant_id, {"settings": {"public_slug": f"{tenant}-page"}})
    tenants.update_settings(t.tenant_id, {"settings": {"public_slug": f"{tenant}-new"}})
    tenants.update_settings(other.tenant_id, {"settings": {"public_slug": f"{tenant}-page"}})
    assert selfservice.resolve(f"{tenant}-page").tenant_id == other.tenant_id
    with pytest.raises(Invalid):
        tenants.update_settings(t.tenant_id, {"settings": {"public_slug": "-bad-"}})


def test_the_rate_limit_counts_per_address_in_one_window(t):
    t = tenants.update_settings(t.tenant_id, {"settings": {"public_requests_per_hour": 2}})
    selfservice.limit(t, "198.51.100.1")
    selfservice.limit(t, "198.51.100.1")
    with pytest.raises(selfservice.RateLimited) as err:
        selfservice.limit(t, "198.51.100.1")
    assert err.value.details["retry_after_seconds"] > 0
    selfservice.limit(t, "198.51.100.2")  # another address has its own count


@pytest.fixture
def page(t, tenant) -> tenants.Tenant:
    from oblio.core.settings import get_settings

    aws.client("ses").verify_email_identity(EmailAddress=get_settings().ses_sender)
    return tenants.update_settings(t.tenant_id, {"settings": {
        "public_slug": f"{tenant}-p", "selfservice_requires_approval": True,
        "selfservice_due_pauses_until_verified": True}})


def _sent_code(address: str) -> str:
    import re

    from moto.ses.models import ses_backends

    from oblio.core.settings import get_settings

    s = get_settings()
    body = [m for m in ses_backends[s.account_id][s.region].sent_messages
            if address in m.destinations["ToAddresses"]][-1].body
    found = re.search(r"\b(\d{6})\b", body)
    assert found
    return found.group(1)


def test_wrong_codes_are_counted_and_the_last_one_cancels(page):
    from oblio.control import records

    answer = selfservice.create({"tenant": page.settings["public_slug"], "type": "erasure",
                                 "subject": {"email": "dora@example.com"}}, "192.0.2.1")
    rid = answer["request_id"]
    code = _sent_code("dora@example.com")
    wrong = f"{(int(code) + 1) % 10**6:06d}"
    lefts = []
    for _ in range(3):
        with pytest.raises(OblioError) as err:
            selfservice.verify(rid, {"tenant": page.settings["public_slug"], "code": wrong})
        lefts.append(err.value.details["attempts_left"])
    assert lefts == [2, 1, 0]
    m = records.load(page.tenant_id, rid)
    assert m.status == "cancelled" and m.identities_enc is None
    with pytest.raises(Conflict):
        selfservice.verify(rid, {"tenant": page.settings["public_slug"], "code": code})


def test_attempts_are_counted_by_the_store_not_by_what_a_reader_saw(page, monkeypatch):
    """Parallel guesses each read the code's record before any of them counts: the count is
    a conditional update, so the attempt past the limit is refused even with the right code
    by a reader that saw no attempt at all."""
    from oblio.control import records
    from oblio.store.models import SelfServiceModel

    slug = page.settings["public_slug"]
    answer = selfservice.create({"tenant": slug, "type": "erasure",
                                 "subject": {"email": "gus@example.com"}}, "192.0.2.4")
    rid = answer["request_id"]
    stale = SelfServiceModel.get(page.tenant_id, f"otp#{rid}", consistent_read=True)
    assert stale.attempts == 0
    for _ in range(3):  # three other guesses land first
        SelfServiceModel(tenant_id=page.tenant_id, sk=f"otp#{rid}").update(
            actions=[SelfServiceModel.attempts.add(1)])
    monkeypatch.setattr(SelfServiceModel, "get", classmethod(lambda cls, *a, **k: stale))
    with pytest.raises(Conflict) as err:
        selfservice.verify(rid, {"tenant": slug, "code": _sent_code("gus@example.com")})
    assert err.value.code == "too_many_attempts"
    m = records.load(page.tenant_id, rid)
    assert m.status == "cancelled"
    assert records.to_json(m)["result"]["cancelled"]["reason"] == "too_many_attempts"


def test_a_verified_request_waits_for_approval_and_its_due_date_pauses(page):
    from oblio.control import records

    answer = selfservice.create({"tenant": page.settings["public_slug"], "type": "access",
                                 "subject": {"email": "emil@example.com"}}, "192.0.2.2")
    rid = answer["request_id"]
    due = clock.parse(answer["due_at"])
    clock.advance(timedelta(minutes=10))  # the code lives 15
    try:
        done = selfservice.verify(rid, {"tenant": page.settings["public_slug"],
                                        "code": _sent_code("emil@example.com")})
    finally:
        clock.advance(timedelta(minutes=-10))
    assert done["status"] == "awaiting_approval"
    m = records.load(page.tenant_id, rid)
    assert clock.parse(m.due_at or "") - due >= timedelta(minutes=10)
    assert [e["event"] for e in records.to_json(m)["timeline"]][-1] == "verified"


def test_a_code_past_its_time_cancels_the_request(page):
    from oblio.core.errors import Gone

    answer = selfservice.create({"tenant": page.settings["public_slug"], "type": "access",
                                 "subject": {"email": "fred@example.com"}}, "192.0.2.3")
    clock.advance(timedelta(hours=1))
    try:
        with pytest.raises(Gone):
            selfservice.verify(answer["request_id"], {"tenant": page.settings["public_slug"],
                                                      "code": _sent_code("fred@example.com")})
    finally:
        clock.advance(timedelta(hours=-1))
