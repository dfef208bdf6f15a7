"""Honest outcomes, as pure decisions: what a verification may say of what it checked, and
how a request ends. Nothing is called "passed" or "verified" that was not checked, and a
request that found nothing says so instead of calling anything erased."""

from __future__ import annotations

from typing import Any

#: the verification checked everything the action should have done, and it is done
PASSED = "passed"
#: something is not as the action should have left it
FAILED = "failed"
#: the plan found nothing of the subject and a fresh search still finds nothing: there was
#: nothing to act on, so nothing was checked and nothing is called verified
NOTHING_TO_VERIFY = "nothing_to_verify"

NOT_FOUND_STATEMENT = ("No item of the subject was found in any mapped table: nothing was "
                       "erased or changed. The subject's data may live where the data map "
                       "does not reach; a request that finds nothing proves only that.")


def verdict(*, planned: int, files_planned: int, remaining: dict[str, int],
            files_remaining: int) -> dict[str, Any]:
    """`passed` is true only when something was checked and all of it is as it should be;
    false when anything is left; None (`nothing_to_verify`) when there was nothing to check."""
    if remaining or files_remaining:
        return {"passed": False, "outcome": FAILED}
    if planned == 0 and files_planned == 0:
        return {"passed": None, "outcome": NOTHING_TO_VERIFY}
    return {"passed": True, "outcome": PASSED}


def status_of(verification: dict[str, Any]) -> str:
    """How a subject's request ends after its verification: completed when it passed, or
    when there was nothing to verify (the result then says `found: false`); otherwise with
    errors (including a verification that did not run)."""
    if verification.get("passed") is True:
        return "completed"
    if verification.get("passed") is None and verification.get("outcome") == NOTHING_TO_VERIFY:
        return "completed"
    return "completed_with_errors"


def found(matched: int, consent_records_deleted: int = 0) -> bool:
    """The subject was found: items in a mapped table, or records in the consent ledger."""
    return matched > 0 or consent_records_deleted > 0
