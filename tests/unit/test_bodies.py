"""The API's bodies and query strings: what the models refuse, and how the error says it.
Pure: no AWS."""

from __future__ import annotations

import pytest

from oblio.core import bodies
from oblio.core.bodies import REQUEST, parse
from oblio.core.errors import BadRequest, Invalid

MARIO = {"email": "mario.rossi@example.com"}


def refused(schema, data) -> Invalid:
    with pytest.raises(Invalid) as err:
        parse(schema, data)
    return err.value


@pytest.mark.parametrize("type_", ["anonymisation", "erasure"])
def test_a_misspelt_field_is_named_with_the_closest_known_name(type_):
    err = refused(REQUEST, {"type": type_, "subject": MARIO, "confirm": True,
                            "tabels": ["tickets"]})
    assert (err.field, err.code) == ("tabels", "invalid_field")
    assert err.details["did_you_mean"] == "tables"
    assert "unknown field 'tabels'" in err.message and "did you mean 'tables'" in err.message


def test_a_field_of_another_type_says_which_type_takes_it():
    err = refused(REQUEST, {"type": "erasure", "subject": MARIO, "confirm": True,
                            "changes": {"email": "new@example.com"}})
    assert err.field == "changes" and "'rectification'" in err.message


def test_the_documented_example_body_with_nulls_is_taken():
    """API.md's example erasure names tables, changes and purposes as null."""
    body = parse(REQUEST, {"type": "erasure", "subject": MARIO, "confirm": True,
                           "dry_run": False, "include_children": False, "tables": None,
                           "changes": None, "purposes": None, "reason": "asked by e-mail"})
    assert isinstance(body, bodies.ErasureRequest) and body.confirm is True
    assert body.subject.identities() == MARIO


@pytest.mark.parametrize("data, field", [
    ({"type": "erasure", "subject": MARIO, "confirm": 1}, "confirm"),  # no number for true
    ({"type": "erasure", "subject": MARIO, "dry_run": "true"}, "dry_run"),
    ({"type": "anonymisation", "subject": MARIO, "tables": "tickets"}, "tables"),
    ({"type": "rectification", "subject": MARIO, "changes": {"age": 4.5}}, "changes.age"),
    ({"type": "access", "subject": {"external_id": True}}, "subject.external_id"),
    ({"type": "access", "subject": "mario"}, "subject"),
    ({"type": "objection", "subject": MARIO, "purposes": "marketing"}, "purposes"),
])
def test_types_are_strict(data, field):
    assert refused(REQUEST, data).field == field


def test_a_type_outside_the_union_keeps_its_code():
    err = refused(REQUEST, {"type": "forget-me", "subject": MARIO})
    assert (err.field, err.code) == ("type", "invalid_type")
    assert "forget-me" not in err.message
    assert refused(REQUEST, {"subject": MARIO}).code == "invalid_type"


@pytest.mark.parametrize("schema, data", [
    (REQUEST, {"type": "access", "subject": {"email": "secret.person@example.com", "fax": 1}}),
    (bodies.ExtendBody, {"months": 7, "reason": "secret.person@example.com"}),
    (bodies.ConsentBody, {"subject": MARIO, "purpose": "newsletter", "channel": "web",
                          "status": "secret.person@example.com"}),
    (bodies.TenantPatch, {"settings": {"default_phone_region": "secret.person"}}),
    (bodies.RequestsQuery, {"status": "secret.person@example.com"}),
    (bodies.PolicyBody, {"table": "contacts", "older_than": "P1Y",
                         "action": "secret.person@example.com"}),
])
def test_no_message_repeats_a_value(schema, data):
    err = refused(schema, data)
    assert "secret.person" not in err.message and "secret.person" not in str(err.details)


def test_a_body_that_is_not_an_object_is_400_with_an_example():
    with pytest.raises(BadRequest) as err:
        parse(REQUEST, ["erasure"])
    assert "\"type\": \"erasure\"" in err.value.message
    assert parse(bodies.RunBody, None).dry_run is False  # no body: the defaults


def test_every_problem_is_listed_unknown_fields_first():
    err = refused(bodies.ExtendBody, {"months": 5, "reasn": "x"})
    assert err.field == "reasn" and err.details["did_you_mean"] == "reason"
    assert [p["field"] for p in err.details["problems"]] == ["reasn", "months", "reason"]


def test_messages_and_codes_that_clients_know_are_kept():
    assert refused(bodies.ExtendBody, {"months": 3, "reason": "x"}).message == \
        "months must be 1 or 2 (Art. 12(3) allows two more months)"
    assert refused(bodies.ExtendBody, {"months": True, "reason": "x"}).field == "months"
    err = refused(bodies.TenantPatch, {"settings": {"export_ttl_days": 7}})
    assert err.field == "settings.export_ttl_days" and "10, 14 or 30" in err.message
    err = refused(bodies.PolicyBody, {"table": "contacts", "older_than": "P1Y",
                                      "action": "shred"})
    assert (err.field, err.code) == ("action", "invalid_action")
    assert refused(bodies.PolicyBody, {"table": "contacts", "older_than": 18,
                                       "action": "delete"}).code == "invalid_duration"


def test_settings_are_checked_and_the_bare_form_is_taken():
    patch = parse(bodies.TenantPatch, {"export_ttl_days": 30, "default_phone_region": "fr",
                                       "public_slug": "Acme-Shop"})
    assert patch.settings.changes() == {"export_ttl_days": 30, "default_phone_region": "FR",
                                        "public_slug": "acme-shop"}
    assert refused(bodies.TenantPatch, {"settings": {"purposes": ["a", "a"]}}).message == \
        "settings.purposes names a purpose twice"
    assert refused(bodies.TenantPatch, {"settings": {"purposes": ["Bad Name"]}}).field == \
        "settings.purposes"
    # a setting that has a value is not reset to null
    assert refused(bodies.TenantPatch,
                   {"settings": {"require_export_before_anonymisation": None}}).field == \
        "settings.require_export_before_anonymisation"


def test_the_settings_model_holds_every_tenant_setting_and_its_default():
    from oblio.control import tenants

    assert bodies.TenantSettings().model_dump() == tenants.DEFAULT_SETTINGS
    assert set(tenants.DEFAULT_SETTINGS) == set(bodies.TenantSettings.model_fields)


def test_query_strings_read_numbers_and_true_false_from_text():
    q = parse(bodies.RequestsQuery, {"limit": "20", "overdue": "TRUE", "type": "erasure"})
    assert (q.limit, q.overdue, q.type, q.cursor) == (20, True, "erasure", None)
    assert refused(bodies.RequestsQuery, {"overdue": "yes"}).field == "overdue"
    assert refused(bodies.PageQuery, {"limit": "0"}).message == \
        "limit must be a whole number between 1 and 500"
    err = refused(bodies.SubjectQuery, {"emial": "x"})
    assert err.field == "emial" and err.details["did_you_mean"] == "email"
    assert parse(bodies.SubjectQuery, {"email": "x", "include_children": "true"}
                 ).identities() == {"email": "x"}


def test_a_link_keeps_working_with_parameters_appended_to_it():
    assert parse(bodies.TokenQuery, {"token": "t.s", "utm_source": "mail"}).token == "t.s"


def test_a_public_request_is_a_union_too():
    err = refused(bodies.PUBLIC_REQUEST, {"tenant": "demo", "type": "erasure",
                                          "subject": MARIO, "purposes": ["marketing"]})
    assert err.field == "purposes" and "'objection'" in err.message
    assert refused(bodies.PUBLIC_REQUEST, {"tenant": "demo", "type": "anonymisation",
                                           "subject": MARIO}).code == "invalid_type"
    assert refused(bodies.VerifyBody, {"tenant": "demo", "code": "12"}).message == \
        "code is the 6 digits of the message you received"


# -- issue 16, item 6: an unknown field's name is repeated only if it is a name of the API ------


@pytest.mark.parametrize("body, field, shown", [
    ({"type": "access", "subject": {"email": "a@example.com"}, "mario.rossi@example.com": 1},
     "body", False),
    ({"type": "access", "subject": {"Mario Rossi": "x"}}, "subject", False),
    ({"type": "anonymisation", "subject": {"email": "a@example.com"}, "tabels": []},
     "tabels", True),                                   # a misspelling of a field
    ({"type": "access", "subject": {"email": "a@example.com"}, "tenant_id": "x"},
     "tenant_id", True),                                # a name the API refuses
    ({"type": "access", "subject": {"email": "a@example.com"}, "changes": {}},
     "changes", True),                                  # a field of another type
])
def test_an_unknown_field_is_named_only_when_it_is_a_name_of_the_api(body, field, shown):
    from oblio.core.errors import Invalid

    with pytest.raises(Invalid) as err:
        bodies.parse(bodies.REQUEST, body)
    assert err.value.field == field
    unknown = next(k for k in [*body, *body["subject"]] if k not in (
        "type", "subject", "email"))
    assert (unknown in err.value.message) is shown
    assert (unknown in str(err.value.details)) is shown
