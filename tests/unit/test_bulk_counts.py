"""A bulk line's counts per table, from its plan (pure, no AWS): on the HR example, payslips
kept by law are counted as retained and their PDFs are not called deleted; items she is in
only in a role are counted as that role's rules treat them; files by prefix are counted as
the objects found under the prefix when the line was planned."""

from __future__ import annotations

from pathlib import Path

import pytest

from oblio.core import datamap
from oblio.jobs import bulk

HR = Path(__file__).resolve().parents[2] / "examples" / "hr" / "map.yaml"


@pytest.fixture(scope="module")
def dm():
    return datamap.load(str(HR))


def key(emp: str, sk: str) -> dict[str, str]:
    return {"pk": f"TENANT#acme#EMP#{emp}", "sk": sk}


def test_retained_payslips_are_counted_as_retained_with_their_files_kept(dm):
    plan = {"keys": [key("E1", f"PAYSLIP#2024-0{m}") for m in (1, 2, 3)],
            "s3": [["hr-files", f"acme/payslips/E1/2024-0{m}.pdf"] for m in (1, 2, 3)]}
    c = bulk._line_counts(dm, "payslips", plan)
    assert (c["matched"], c["retained"], c["deleted"], c["files_deleted"]) == (3, 3, 0, 0)


def test_a_profiles_files_count_pointers_templates_and_what_was_under_its_prefix(dm):
    plan = {"keys": [key("E1", "PROFILE")], "s3": [["hr-files", "acme/photos/E1.jpg"]],
            "templated": [], "prefixes": [["hr-files", "acme/employees/E1/"]], "prefixed": 2}
    c = bulk._line_counts(dm, "employees", plan)
    assert (c["matched"], c["deleted"], c["files_deleted"]) == (1, 1, 3)


def test_a_review_she_only_wrote_is_counted_as_anonymised_in_her_role_and_holds_as_held(dm):
    plan = {"keys": [key("E1", "REVIEW#R1")],
            "held": [{"key": key("E1", "REVIEW#R0"), "reason": "litigation"}],
            "roles": {"author": {"keys": [key("E2", "REVIEW#R2")]}}}
    c = bulk._line_counts(dm, "reviews", plan)
    assert (c["matched"], c["deleted"], c["anonymised"], c["held"]) == (3, 1, 1, 1)
