"""Honest outcomes, as pure decisions: what a verification may say of what it checked, and
how a request ends. Nothing is called "passed" or "verified" that was not checked, and a
request that found nothing says so instead of calling anything erased."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from oblio.core.datamap import DataMap

#: the verification checked everything the action should have done, and it is done
PASSED = "passed"
#: something is not as the action should have left it
FAILED = "failed"
#: the plan found nothing of the subject and a fresh search still finds nothing: there was
#: nothing to act on, so nothing was checked and nothing is called verified
NOTHING_TO_VERIFY = "nothing_to_verify"
#: everything found stays by design (retained by law, on legal hold): nothing was changed,
#: so nothing is called verified either
ALL_EXEMPT = "all_exempt"

NOT_FOUND_STATEMENT = ("No item of the subject was found in any mapped table: nothing was "
                       "erased or changed. The subject's data may live where the data map "
                       "does not reach; a request that finds nothing proves only that.")


def verdict(*, planned: int, files_planned: int, remaining: dict[str, int],
            files_remaining: int, exempt: int = 0) -> dict[str, Any]:
    """`passed` is true only when something was checked and all of it is as it should be;
    false when anything is left; None when there was nothing to check (`nothing_to_verify`)
    or all that was found stays by design (`all_exempt`)."""
    if remaining or files_remaining:
        return {"passed": False, "outcome": FAILED}
    if planned == 0 and files_planned == 0:
        return {"passed": None, "outcome": ALL_EXEMPT if exempt else NOTHING_TO_VERIFY}
    return {"passed": True, "outcome": PASSED}


def status_of(verification: dict[str, Any]) -> str:
    """How a subject's request ends after its verification: completed when it passed, or
    when there was nothing to verify (the result then says `found: false`); otherwise with
    errors (including a verification that did not run)."""
    if verification.get("passed") is True:
        return "completed"
    if verification.get("passed") is None and \
            verification.get("outcome") in (NOTHING_TO_VERIFY, ALL_EXEMPT):
        return "completed"
    return "completed_with_errors"


def found(matched: int, consent_records_deleted: int = 0) -> bool:
    """The subject was found: items in a mapped table, or records in the consent ledger."""
    return matched > 0 or consent_records_deleted > 0


def exemptions(dm: DataMap, counts: dict[str, dict[str, dict[str, int]]],
               units: dict[str, Any]) -> dict[str, Any]:
    """What an erasure or anonymisation left by design, for the top of its result and its
    certificate: items retained by law (per table, with the legal basis and period) and
    items on legal hold (per table, with the reasons, and the files left with the items found
    on hold when the action ran)."""
    out: dict[str, Any] = {"retained": 0, "held": 0}
    retained: list[dict[str, Any]] = []
    holds: list[dict[str, Any]] = []
    for tenant, tables in counts.items():
        for name, c in tables.items():
            t = dm.tables[name]
            if c.get("retained"):
                out["retained"] += c["retained"]
                retained.append({"tenant_id": tenant, "table": name, "retained": c["retained"],
                                 "legal_basis": t.retain.legal_basis if t.retain else None,
                                 "period": t.retain.period if t.retain else None})
            if c.get("held"):
                out["held"] += c["held"]
                unit = units.get(f"{tenant}/{name}") or {}
                reasons = unit.get("held_reasons") or {}
                hold: dict[str, Any] = {
                    "tenant_id": tenant, "table": name, "held": c["held"],
                    "reasons": {str(k): int(v) for k, v in reasons.items()}}
                # the files of items found on hold when the erasure ran, left with them
                for k in ("files_held", "prefixes_held"):
                    if unit.get(k):
                        hold[k] = int(unit[k])
                holds.append(hold)
    if retained:
        out["exemptions"] = retained
    if holds:
        out["holds"] = holds
    return out


def exemption_message(ex: dict[str, Any]) -> str | None:
    parts = []
    if ex["retained"]:
        parts.append(f"{ex['retained']} item(s) retained because a law requires them kept "
                     "(see exemptions)")
    if ex["held"]:
        parts.append(f"{ex['held']} item(s) on legal hold, not touched (see holds)")
    return "; ".join(parts) or None
