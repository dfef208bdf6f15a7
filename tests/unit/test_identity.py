"""Subjects' identities: normalised one way for every lookup and HMAC; an identity that does
not parse is a 422 naming the field, and the message never repeats the value."""

from __future__ import annotations

import pytest

from oblio.core import identity
from oblio.core.errors import Invalid


@pytest.mark.parametrize("raw, expected", [
    ("  Mario.Rossi@Example.COM ", "mario.rossi@example.com"),
    ("jeanne.dupont@example.com", "jeanne.dupont@example.com"),
    ("\tUPPER@EXAMPLE.ORG\n", "upper@example.org"),
])
def test_emails_are_trimmed_and_lower_cased(raw, expected):
    assert identity.normalise_email(raw) == expected


@pytest.mark.parametrize("raw", ["mario@@rossi", "mario.rossi", "mario rossi@rossi.test",
                                 "@rossi.test", "mario@", "secret-name@invalid..test"])
def test_invalid_email_is_422_naming_the_field_and_not_the_value(raw):
    with pytest.raises(Invalid) as err:
        identity.normalise_email(raw)
    e = err.value
    assert e.code == "invalid_email"
    assert e.field == "subject.email" and e.details == {"field": "subject.email"}
    assert raw not in e.message
    assert all(part not in e.message for part in raw.split("@") if part)
    assert raw not in str(e.to_body())


@pytest.mark.parametrize("raw", ["", "   ", None, 42])
def test_empty_or_non_string_email_is_refused(raw):
    with pytest.raises(Invalid) as err:
        identity.normalise_email(raw)
    assert err.value.field == "subject.email" and "non-empty string" in err.value.message


def test_email_field_name_follows_the_caller():
    with pytest.raises(Invalid) as err:
        identity.normalise_email("nope", field="changes.email")
    assert err.value.field == "changes.email" and err.value.message.startswith("changes.email")


@pytest.mark.parametrize("raw, region", [
    ("+39 333 123 4567", None),
    ("+393331234567", "FR"),
    ("333 123 4567", "IT"),
    ("0039 333 123 4567", "IT"),
    ("+39 (333) 123-4567", None),
])
def test_phones_parse_to_e164(raw, region):
    assert identity.normalise_phone(raw, region) == "+393331234567"


def test_national_phone_without_default_region_says_how_to_fix_it():
    with pytest.raises(Invalid) as err:
        identity.normalise_phone("333 123 4567", None)
    e = err.value
    assert e.field == "subject.phone" and e.code == "invalid_phone"
    assert "international form" in e.message and "default phone region" in e.message
    assert "333" not in e.message


@pytest.mark.parametrize("raw, region", [("+39 12", "IT"), ("+1 555 0000", None),
                                         ("not a phone", "IT"), ("", "IT"), (None, "IT")])
def test_invalid_phone_is_422_naming_the_field(raw, region):
    with pytest.raises(Invalid) as err:
        identity.normalise_phone(raw, region)
    assert err.value.field == "subject.phone"
    if raw and any(c.isdigit() for c in raw):
        assert raw not in err.value.message


@pytest.mark.parametrize("raw, expected", [(" crm-0042 ", "crm-0042"), (42, "42"),
                                           ("x" * 256, "x" * 256)])
def test_external_ids_are_trimmed_strings(raw, expected):
    assert identity.normalise_external_id(raw) == expected


@pytest.mark.parametrize("raw", ["", "  ", True, None, 4.2, "x" * 257, ["a"]])
def test_invalid_external_id_is_refused_naming_the_field(raw):
    with pytest.raises(Invalid) as err:
        identity.normalise_external_id(raw)
    assert err.value.field == "subject.external_id"


def test_parse_subject_normalises_every_identity_given():
    assert identity.parse_subject(
        {"email": " Mario.Rossi@Example.com", "phone": "333 123 4567", "external_id": 7},
        "IT") == {"email": "mario.rossi@example.com", "phone": "+393331234567",
                  "external_id": "7"}


def test_parse_subject_skips_identities_given_as_null():
    assert identity.parse_subject({"email": "a@example.com", "phone": None}, None) == {
        "email": "a@example.com"}


@pytest.mark.parametrize("raw", [None, {}, [], "mario@example.com", {"email": None}])
def test_parse_subject_refuses_a_missing_or_empty_subject(raw):
    with pytest.raises(Invalid) as err:
        identity.parse_subject(raw, None)
    assert err.value.field == "subject"
    assert "email" in err.value.message  # says which identities it takes


def test_parse_subject_refuses_an_unknown_identity_kind():
    with pytest.raises(Invalid) as err:
        identity.parse_subject({"email": "a@example.com", "fax": "+39 02 1234567"}, None)
    assert err.value.field == "subject.fax"
    assert "email, phone, external_id" in err.value.message
    assert "1234567" not in err.value.message


def test_parse_subject_refuses_identities_the_tenants_map_does_not_know():
    with pytest.raises(Invalid) as err:
        identity.parse_subject({"phone": "+39 333 123 4567"}, None, allowed=("email",))
    assert err.value.field == "subject.phone"


def test_parse_subject_names_the_field_that_does_not_parse():
    with pytest.raises(Invalid) as err:
        identity.parse_subject({"email": "a@example.com", "phone": "12"}, "IT")
    assert err.value.field == "subject.phone"


def test_normalise_refuses_an_unknown_kind():
    with pytest.raises(Invalid) as err:
        identity.normalise("fax", "1", None)
    assert err.value.field == "subject.fax"
