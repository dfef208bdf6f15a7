"""Phone numbers as people give them: a national number is read in a region, the answer can
say which, and one that is not valid there is refused saying which region it was read in."""

from __future__ import annotations

import pytest

from oblio.core import identity
from oblio.core.errors import Invalid


def test_a_national_number_not_valid_in_the_region_is_refused_naming_the_region():
    with pytest.raises(Invalid) as err:
        identity.normalise_phone("06 12 34 56", "FR")
    assert "read as a national number of FR" in err.value.message
    assert "%2B" in err.value.message and "06 12" not in err.value.message


def test_how_a_national_number_was_read_is_said_without_the_number():
    # a French mobile is also a valid Italian number: the answer must say it was read as IT
    assert identity.normalise_phone("06 12 34 56 78", "IT") == "+390612345678"
    reading = identity.phone_reading("06 12 34 56 78", "IT")
    assert reading["read_as_national_number_of"] == "IT" and reading["country_code"] == 39
    assert "06" not in str(reading)
    assert identity.phone_reading("+33 6 12 34 56 78", "IT") is None


def test_the_international_forms_are_read_whatever_the_region():
    for raw in ("+33 6 12 34 56 78", "0033 6 12 34 56 78", "+33612345678"):
        assert identity.normalise_phone(raw, "IT") == "+33612345678"
    assert identity.normalise_phone("06 12 34 56 78", "FR") == "+33612345678"
    assert identity.national("06 12 34 56 78") and not identity.national("+33 6")
