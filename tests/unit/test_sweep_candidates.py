"""A sweep's candidates, decided without AWS: which parts (month buckets of the sweep index,
or Scan segments) a find reads, what it asks the table for, and which items it acts on or
counts aside."""

from __future__ import annotations

import pytest

from oblio.jobs.candidates import Finder
from oblio.jobs.retention import FIND_COUNTS

CUTOFF = "2026-03-15T00:00:00.000Z"


def _finder(demo_map, **spec) -> Finder:
    spec = {"table": "contacts", "date_attribute": "last_activity_at", "action": "anonymise",
            "hold_attribute": "legal_hold", "filter": {}, "finder": "index", **spec}
    return Finder(demo_map, "acme", spec, CUTOFF, page=100)


def test_the_index_is_read_month_by_month_over_the_horizon_up_to_the_cutoffs_month(demo_map):
    state = _finder(demo_map).initial_state()

    months = sorted(state)
    assert months[-1] == "2026-03" and months[0] == "2016-03"  # the default 120 months
    assert len(months) == 121 and set(state.values()) == {""}  # each from its start


def test_the_scan_fallback_reads_each_declared_segment(demo_map):
    finder = _finder(demo_map, table="email_sends", date_attribute="sent_at",
                     hold_attribute=None, finder="scan", action="delete")

    assert finder.initial_state() == {"000": "", "001": "", "002": "", "003": ""}


def test_a_find_reads_only_what_it_decides_on(demo_map):
    finder = _finder(demo_map, filter={"country": "IT"})

    assert {"tenant_id", "contact_id", "last_activity_at", "legal_hold", "country",
            demo_map.anonymised_marker} <= finder.projection
    assert "first_name" not in finder.projection and "email" not in finder.projection


def test_items_on_hold_filtered_out_or_done_already_are_counted_not_acted_on(demo_map):
    finder = _finder(demo_map, filter={"country": "IT"})
    counts = dict.fromkeys(FIND_COUNTS, 0)
    items = [
        {"contact_id": "a", "country": "IT"},
        {"contact_id": "b", "country": "IT", "legal_hold": True},
        {"contact_id": "c", "country": "FR"},
        {"contact_id": "d", "country": "IT", demo_map.anonymised_marker: True},
        {"contact_id": "e", "country": "IT", "legal_hold": False},
    ]

    keep = finder.classify(items, counts)

    assert [i["contact_id"] for i in keep] == ["a", "e"]
    assert counts == {"candidates": 5, "on_hold": 1, "filtered_out": 1, "already_done": 1,
                      "expired": 0}


@pytest.mark.parametrize("action", ["delete", "export_then_delete"])
def test_an_anonymised_item_is_still_a_candidate_for_deletion(demo_map, action):
    finder = _finder(demo_map, action=action)
    counts = dict.fromkeys(FIND_COUNTS, 0)

    keep = finder.classify([{"contact_id": "d", demo_map.anonymised_marker: True}], counts)

    assert len(keep) == 1 and counts["already_done"] == 0


def test_an_item_past_its_ttl_is_acted_on_and_counted_as_expired(demo_map):
    finder = _finder(demo_map, table="tickets", date_attribute="deleted_at", action="delete")
    counts = dict.fromkeys(FIND_COUNTS, 0)

    keep = finder.classify([{"ticket_id": "t1", "purge_at": 1},
                            {"ticket_id": "t2", "purge_at": finder.now_epoch + 3600}], counts)

    assert len(keep) == 2 and counts["expired"] == 1
