"""Retention policy rules as pure decisions, without AWS: an age as an ISO 8601 duration, the
cutoff it makes from a given moment, what a policy body becomes once validated against the
demo data map (its defaults and the finder it gets), and how found candidates are sorted into
acted on, on hold, filtered out and already done."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from oblio.core.errors import BadRequest, Invalid
from oblio.jobs import retention

NOW = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


# -- durations ---------------------------------------------------------------------------------

@pytest.mark.parametrize("text, months, rest", [
    ("P1Y", 12, timedelta()), ("P1M", 1, timedelta()), ("P1W", 0, timedelta(weeks=1)),
    ("P1D", 0, timedelta(days=1)), ("PT12H", 0, timedelta(hours=12)),
    ("PT90M", 0, timedelta(minutes=90)), ("PT30S", 0, timedelta(seconds=30)),
    ("P1Y2M3W4DT5H6M7S", 14, timedelta(weeks=3, days=4, hours=5, minutes=6, seconds=7)),
    ("P0Y1D", 0, timedelta(days=1)),
])
def test_a_duration_is_whole_months_and_the_rest(text, months, rest):
    assert retention.parse_duration(text) == (months, rest)


@pytest.mark.parametrize("text", ["P0Y", "P0M0D", "PT0S", "P1DT", "PT", "P1H", "P-1D",
                                  " P1D", "P1D ", "P1M1Y", "P1Y2Y", "1Y", "P1,5D",
                                  b"P1D", ["P1D"]])
def test_a_duration_that_is_zero_out_of_order_or_not_text_is_refused(text):
    with pytest.raises(ValueError):
        retention.parse_duration(text)


# -- cutoffs -----------------------------------------------------------------------------------

@pytest.mark.parametrize("older_than, cutoff", [
    ("P18M", datetime(2025, 5, 20, 9, 30, tzinfo=UTC)),
    ("P2Y", datetime(2024, 11, 20, 9, 30, tzinfo=UTC)),
    ("P30D", datetime(2026, 10, 21, 9, 30, tzinfo=UTC)),
    ("P2W", datetime(2026, 11, 6, 9, 30, tzinfo=UTC)),
    ("P1Y6M", datetime(2025, 5, 20, 9, 30, tzinfo=UTC)),
    ("PT12H", datetime(2026, 11, 19, 21, 30, tzinfo=UTC)),
])
def test_the_cutoff_is_the_duration_back_from_now(older_than, cutoff):
    assert retention.cutoff_of(older_than, now=NOW) == cutoff


def test_months_back_from_a_months_end_land_on_the_shorter_months_end():
    end_of_march = datetime(2026, 3, 31, tzinfo=UTC)
    assert retention.cutoff_of("P1M", now=end_of_march) == datetime(2026, 2, 28, tzinfo=UTC)
    assert retention.cutoff_of("P1M1D", now=end_of_march) == datetime(2026, 2, 27, tzinfo=UTC)


def test_a_fixed_date_is_the_cutoff_whatever_the_time_now():
    for now in (NOW, NOW + timedelta(days=400)):
        assert retention.cutoff_of("2025-01-01", now=now) == datetime(2025, 1, 1, tzinfo=UTC)


def test_the_cutoff_compares_as_text_with_the_stored_dates():
    """Dates are stored as RFC 3339 strings: the sweep compares them as text."""
    from oblio.core import clock

    cutoff = clock.iso(retention.cutoff_of("P18M", now=NOW))
    assert "2025-05-19T23:59:59Z" < cutoff < "2025-05-20T09:30:01Z"


# -- what a policy becomes once validated ------------------------------------------------------

def test_a_policy_gets_the_tables_sweep_date_and_its_legal_hold_by_default(demo_map):
    spec = retention.validate(demo_map, {"table": "contacts", "older_than": "P18M",
                                         "action": "anonymise"})
    assert spec == {"table": "contacts", "date_attribute": "last_activity_at",
                    "older_than": "P18M", "action": "anonymise", "filter": {},
                    "hold_attribute": "legal_hold", "enabled": True, "description": "",
                    "scope": "items", "finder": "index"}


def test_a_table_without_a_hold_attribute_has_no_hold(demo_map):
    spec = retention.validate(demo_map, {"table": "email_events", "older_than": "P24M",
                                         "action": "delete"})
    assert spec["hold_attribute"] is None and spec["date_attribute"] == "at"


def test_the_hold_may_be_switched_off(demo_map):
    spec = retention.validate(demo_map, {"table": "contacts", "older_than": "P18M",
                                         "action": "delete", "hold_attribute": None})
    assert spec["hold_attribute"] is None


def test_a_table_without_a_sweep_index_uses_its_declared_scan(demo_map):
    spec = retention.validate(demo_map, {"table": "email_sends", "older_than": "P2Y",
                                         "action": "delete"})
    assert (spec["finder"], spec["date_attribute"]) == ("scan", "sent_at")


def test_a_date_other_than_the_indexed_one_needs_the_scan_fallback(demo_map):
    # contacts are indexed by last activity, and declare no Scan: created_at is refused
    with pytest.raises(Invalid) as err:
        retention.validate(demo_map, {"table": "contacts", "date_attribute": "created_at",
                                      "older_than": "P5Y", "action": "delete"})
    assert (err.value.field, err.value.code) == ("date_attribute", "not_sweepable")


def test_every_action_is_allowed_on_a_table_with_anonymise_rules(demo_map):
    for action in retention.ACTIONS:
        spec = retention.validate(demo_map, {"table": "tickets", "older_than": "P30D",
                                             "action": action})
        assert spec["action"] == action


def test_a_filter_on_mapped_attributes_is_kept(demo_map):
    spec = retention.validate(demo_map, {"table": "email_events", "older_than": "P1Y",
                                         "action": "delete", "filter": {"type": "open"}})
    assert spec["filter"] == {"type": "open"}


def test_a_policy_that_is_not_an_object_is_refused_with_an_example(demo_map):
    with pytest.raises(BadRequest) as err:
        retention.validate(demo_map, [])
    assert "JSON object" in err.value.message and "older_than" in err.value.message


@pytest.mark.parametrize("body, field, code", [
    # an unknown name that is no misspelling is not repeated: the body is named
    ({"table": "contacts", "older_than": "P1Y", "action": "delete", "colour": "red"},
     "body", "invalid_field"),
    ({"table": "email_events", "older_than": "P1Y", "action": "delete",
      "filter": ["type", "open"]}, "filter", "invalid_field"),
    ({"table": "email_events", "older_than": "P1Y", "action": "delete",
      "filter": {"type": ["open"]}}, "filter.type", "invalid_field"),
    ({"table": "contacts", "older_than": "P1Y", "action": "delete",
      "description": "x" * 501}, "description", "invalid_field"),
    ({"table": "contacts", "older_than": "P1Y", "action": "delete", "scope": "everything"},
     "scope", "invalid_field"),
])
def test_a_malformed_policy_is_refused_naming_the_field(demo_map, body, field, code):
    with pytest.raises(Invalid) as err:
        retention.validate(demo_map, body)
    assert (err.value.field, err.value.code) == (field, code)
    assert isinstance(err.value, Invalid)


def test_a_policy_over_whole_subjects_starts_from_a_table_found_by_identity(demo_map):
    ok = retention.validate(demo_map, {"table": "contacts", "older_than": "P3Y",
                                       "action": "delete", "scope": "subjects"})
    assert ok["scope"] == "subjects"
    with pytest.raises(Invalid) as err:
        retention.validate(demo_map, {"table": "tickets", "older_than": "P3Y",
                                      "action": "delete", "scope": "subjects"})
    assert (err.value.field, err.value.code) == ("scope", "not_a_subject_table")


def test_a_policy_over_whole_subjects_does_not_export(demo_map):
    with pytest.raises(Invalid) as err:
        retention.validate(demo_map, {"table": "contacts", "older_than": "P3Y",
                                      "action": "export_then_delete", "scope": "subjects"})
    assert (err.value.field, err.value.code) == ("action", "action_not_allowed")


def test_an_error_message_never_repeats_a_filter_value(demo_map):
    with pytest.raises(Invalid) as err:
        retention.validate(demo_map, {"table": "contacts", "older_than": "P1Y",
                                      "action": "delete",
                                      "filter": {"email": {"is": "mario.rossi@example.com"}}})
    assert "mario" not in err.value.message and "email" in err.value.message


# -- sorting the candidates found --------------------------------------------------------------

def finder(dm, **spec):
    body = {"table": "contacts", "older_than": "P18M", "action": "anonymise", **spec}
    return retention.Finder(dm, "demo", retention.validate(dm, body), "2025-05-20T00:00:00Z",
                            page=100)


def classify(f, items):
    counts = dict.fromkeys(retention.FIND_COUNTS, 0)
    kept = f.classify(items, counts)
    return [i["contact_id"] for i in kept], {k: v for k, v in counts.items() if v}


def test_candidates_on_hold_are_counted_and_left_alone(demo_map):
    kept, counts = classify(finder(demo_map), [
        {"contact_id": "c1", "legal_hold": False}, {"contact_id": "c2", "legal_hold": True},
        {"contact_id": "c3"}])
    assert kept == ["c1", "c3"] and counts == {"candidates": 3, "on_hold": 1}


def test_a_hold_is_only_a_true_hold(demo_map):
    kept, _ = classify(finder(demo_map), [{"contact_id": "c1", "legal_hold": "yes"},
                                          {"contact_id": "c2", "legal_hold": 1}])
    assert kept == ["c1", "c2"]


def test_candidates_that_do_not_match_the_filter_are_counted_as_filtered_out(demo_map):
    kept, counts = classify(finder(demo_map, filter={"country": "IT"}), [
        {"contact_id": "c1", "country": "IT"}, {"contact_id": "c2", "country": "FR"},
        {"contact_id": "c3"}])
    assert kept == ["c1"] and counts == {"candidates": 3, "filtered_out": 2}


def test_an_anonymisation_skips_what_is_anonymised_already_and_a_delete_does_not(demo_map):
    marker = demo_map.anonymised_marker
    items = [{"contact_id": "c1", marker: "r1"}, {"contact_id": "c2"}]
    kept, counts = classify(finder(demo_map), items)
    assert kept == ["c2"] and counts == {"candidates": 2, "already_done": 1}
    kept, counts = classify(finder(demo_map, action="delete"), items)
    assert kept == ["c1", "c2"] and counts == {"candidates": 2}


def test_a_hold_wins_over_a_filter_and_a_filter_over_the_marker(demo_map):
    marker = demo_map.anonymised_marker
    _, counts = classify(finder(demo_map, filter={"country": "IT"}), [
        {"contact_id": "c1", "legal_hold": True, "country": "FR", marker: "r"},
        {"contact_id": "c2", "country": "FR", marker: "r"}])
    assert counts == {"candidates": 2, "on_hold": 1, "filtered_out": 1}


def test_the_index_finder_reads_the_month_buckets_up_to_the_cutoffs_month(demo_map):
    state = finder(demo_map).initial_state()
    months = sorted(state)
    assert months[-1] == "2025-05" and set(state.values()) == {""}
    sweep = demo_map.tables["contacts"].sweep
    assert len(months) == sweep.horizon_months + 1
    assert months == sorted(set(months))  # one part a month, none twice


def test_the_scan_finder_reads_each_declared_segment(demo_map):
    body = {"table": "email_sends", "older_than": "P2Y", "action": "delete"}
    f = retention.Finder(demo_map, "demo", retention.validate(demo_map, body),
                         "2024-11-20T00:00:00Z", page=100)
    assert f.initial_state() == {"000": "", "001": "", "002": "", "003": ""}
