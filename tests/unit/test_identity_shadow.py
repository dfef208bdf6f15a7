from oblio.core.identity import shadow_name, shadow_value


def test_shadow_name_is_prefixed():
    assert shadow_name("email") == "_oblio_email"


def test_email_as_typed_gets_canonical_shadow():
    assert shadow_value("email", "  Anna.Berg@Example.COM ", None) == "anna.berg@example.com"


def test_national_phone_read_in_region():
    assert shadow_value("phone", "06 12 34 56 78", "FR") == "+33612345678"
    assert shadow_value("phone", "+33 6 12 34 56 78", None) == "+33612345678"


def test_unparseable_or_empty_values_get_no_shadow():
    assert shadow_value("email", "not an address", None) is None
    assert shadow_value("phone", "06 12 34 56 78", None) is None
    assert shadow_value("email", "   ", None) is None
    assert shadow_value("email", None, None) is None
