"""Honest outcomes: a verification says "passed" only of what it checked; a request that
found nothing ends completed with nothing claimed; anything left ends with errors."""

from __future__ import annotations

from oblio.pipeline import outcome


def test_nothing_planned_and_nothing_found_again_is_nothing_to_verify_not_passed():
    v = outcome.verdict(planned=0, files_planned=0, remaining={}, files_remaining=0)
    assert v == {"passed": None, "outcome": "nothing_to_verify"}
    assert outcome.status_of(v) == "completed"


def test_checked_and_nothing_left_passes():
    v = outcome.verdict(planned=3, files_planned=1, remaining={}, files_remaining=0)
    assert v == {"passed": True, "outcome": "passed"}
    assert outcome.status_of(v) == "completed"


def test_anything_left_fails_even_when_nothing_was_planned():
    # the fresh search found items that the plan did not: the map missed them at first
    v = outcome.verdict(planned=0, files_planned=0, remaining={"demo/contacts": 1},
                        files_remaining=0)
    assert v["passed"] is False and outcome.status_of(v) == "completed_with_errors"
    v = outcome.verdict(planned=2, files_planned=2, remaining={}, files_remaining=1)
    assert v["outcome"] == "failed"


def test_a_verification_that_did_not_run_is_not_completed():
    assert outcome.status_of({"passed": False, "reason": "not run"}) == "completed_with_errors"
    assert outcome.status_of({}) == "completed_with_errors"
    assert outcome.status_of({"passed": None}) == "completed_with_errors"


def test_found_counts_items_and_consent_records():
    assert outcome.found(0) is False
    assert outcome.found(1) is True
    assert outcome.found(0, consent_records_deleted=2) is True
