"""Subjects' identities: parsed and normalised the one way every lookup and HMAC relies on.

E-mails are compared case-insensitively after trimming; phones in E.164 after parsing (a
national number needs the tenant's default region); external ids are trimmed strings.
"""

from __future__ import annotations

from typing import Any, Literal

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from oblio.core.errors import Invalid

IdentityKind = Literal["email", "phone", "external_id"]
IDENTITY_KINDS: tuple[IdentityKind, ...] = ("email", "phone", "external_id")


def normalise_email(value: str, field: str = "subject.email") -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(field, f"{field} must be a non-empty string such as 'name@example.com'")
    try:
        parsed = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        # the library's message may quote the input: say what is wrong without echoing it
        raise Invalid(field, f"{field} is not a valid e-mail address; give it as "
                             "'name@example.com'", code="invalid_email") from exc
    return parsed.normalized.lower()


def national(value: str) -> bool:
    """Whether a phone number is written without its country (read in a region)."""
    text = value.strip()
    return not text.startswith(("+", "00"))


def phone_reading(value: Any, region: str | None) -> dict[str, Any] | None:
    """How a phone number was read, for the answer to say it (never the number): a national
    number is read in `region`, which may not be the country the caller meant."""
    if not isinstance(value, str) or not national(value) or not region:
        return None
    return {"read_as_national_number_of": region,
            "country_code": phonenumbers.country_code_for_region(region),
            "hint": "give the number in international form (+<country code> ...) if it is "
                    "another country's; in a URL write the + as %2B"}


def normalise_phone(value: str, region: str | None, field: str = "subject.phone") -> str:
    """E.164. A national number is read in `region` (the tenant's default, or the region an
    attribute declares); one that is not a valid number there is refused, saying which region
    it was read in, since it may be another country's (or an international number whose `+`
    a URL turned into a space)."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid(field, f"{field} must be a non-empty string such as '+39 333 123 4567'")
    text = value.strip()
    if text.startswith("00"):
        text = "+" + text[2:]
    in_region = national(text)
    try:
        number = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        hint = ("give it in international form ('+39 ...') or set the tenant's default phone "
                "region" if region is None else "give it in international form ('+39 ...')")
        raise Invalid(field, f"{field} could not be parsed as a phone number: {hint}",
                      code="invalid_phone") from exc
    if not phonenumbers.is_valid_number(number):
        if in_region and region:
            raise Invalid(field, f"{field} is not a valid phone number when read as a national "
                                 f"number of {region} (the region it was read in): if it is "
                                 "another country's, give it in international form ('+33 6 "
                                 "...'), and in a URL write the + as %2B", code="invalid_phone")
        raise Invalid(field, f"{field} is not a valid phone number for its country; check the "
                             "digits and the country code", code="invalid_phone")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_external_id(value: Any, field: str = "subject.external_id") -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip() or len(value) > 256:
        raise Invalid(field, f"{field} must be a non-empty string of at most 256 characters")
    return value.strip()


def normalise(kind: str, value: Any, region: str | None, field: str | None = None) -> str:
    field = field or f"subject.{kind}"
    if kind == "email":
        return normalise_email(value, field)
    if kind == "phone":
        return normalise_phone(value, region, field)
    if kind == "external_id":
        return normalise_external_id(value, field)
    raise Invalid(field, f"unknown identity {kind!r}: use one of {', '.join(IDENTITY_KINDS)}")


def parse_subject(raw: Any, region: str | None, allowed: tuple[str, ...] = IDENTITY_KINDS,
                  ) -> dict[str, str]:
    """`{"email": ..., "phone": ..., "external_id": ...}` -> normalised identities.

    Raises Invalid naming the field when the subject is missing, empty or does not parse."""
    if not isinstance(raw, dict) or not raw:
        raise Invalid("subject", "subject is required: name the person by at least one of "
                                 f"{', '.join(allowed)}, e.g. {{\"email\": \"name@example.com\"}}")
    out: dict[str, str] = {}
    for kind, value in raw.items():
        if kind not in allowed:
            raise Invalid(f"subject.{kind}", f"subject.{kind} is not an identity this tenant's "
                                              f"data map knows: use {', '.join(allowed)}")
        if value is None:
            continue
        out[kind] = normalise(kind, value, region)
    if not out:
        raise Invalid("subject", "subject names no identity: give at least one of "
                                 f"{', '.join(allowed)}")
    return out
