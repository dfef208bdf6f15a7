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


def _table(**attr):
    from oblio.core.mapmodel import TableMap
    return TableMap.model_validate({
        "table": "people", "key": {"partition": "tenant_id", "sort": "person_id"},
        "attributes": {"email": {"category": "identity", "identity": "email", **attr},
                       "phone": {"category": "contact", "identity": "phone",
                                 "stored": "as_typed", "region": "FR"}}})


def test_changes_write_only_what_differs():
    from oblio.core import shadows
    t = _table(stored="as_typed")
    item = {"email": " Anna.Berg@Example.COM ", "phone": "06 12 34 56 78"}
    assert shadows.changes(t, item, "DE") == {"_oblio_email": "anna.berg@example.com",
                                              "_oblio_phone": "+33612345678"}
    item.update(shadows.changes(t, item, "DE"))
    assert shadows.changes(t, item, "DE") == {}
    item["email"] = "typo-no-at-sign"
    assert shadows.changes(t, item, "DE") == {"_oblio_email": None}


def test_canonical_attributes_have_no_shadow():
    from oblio.core import shadows
    t = _table()
    assert shadows.names(t) == {"phone": "_oblio_phone"}


def test_loader_refuses_as_typed_where_no_shadow_can_sit():
    import pytest

    from oblio.core.datamap import parse as load_dict
    from oblio.core.errors import DataMapError
    raw = {"version": 2, "name": "t", "tables": {"people": {
        "table": "people", "key": {"partition": "tenant_id", "sort": "person_id"},
        "find": [{"identity": "external_id", "attribute": "person_id"}],
        "attributes": {
            "person_id": {"category": "identity", "identity": "external_id",
                          "stored": "as_typed"},
            "note": {"category": "content", "anonymise": "null", "stored": "as_typed"},
            "phone": {"category": "contact", "identity": "phone", "anonymise": "null",
                      "region": "XX"}}}}}
    with pytest.raises(DataMapError) as exc:
        load_dict(raw)
    text = str(exc.value)
    assert "attribute 'person_id': a key attribute cannot be 'stored: as_typed'" in text
    assert "attribute 'note': 'stored: as_typed' applies to identity attributes" in text
    assert "attribute 'phone': region 'XX' is not a region code" in text
