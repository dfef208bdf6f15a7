"""Write the HR example's fixtures: `python examples/hr/generate.py [--employees N] [DIR]`.

Two tenants (acme, globex), N employees each (150 by default) in the single table `hr-main`:
a profile (nested address and emergency contact, a `{bucket, key}` photo pointer, a list of
contract annexes), payslips (kept by law) and reviews, with files under
`<tenant>/employees/<id>/`. Named test subjects, the same in every run:

- acme E0001 Ada Lovelace <ada.lovelace@example.com>: every kind of item and file, a review
  about her written by Grace and one she wrote about Grace;
- acme E0002 Grace Hopper <grace.hopper@example.com>: the colleague (collateral check);
- globex E0001 Ada Lovelace <ada.lovelace@example.com>: the same person at another employer
  (isolation check).

Reviews carry a date (`reviewed_at`; every other generated one is from 2019, for retention
sweeps) and its month bucket. The data is generated from a fixed seed (no real person). `rows(tenant, n)` is what the
benchmark loads at 1,000 and 10,000 employees.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TABLE, BUCKET = "hr-main", "hr-files"
TENANTS = ("acme", "globex")
FIRST = ["Luca", "Sofia", "Marco", "Giulia", "Jonas", "Emma", "Lukas", "Mia", "Noah", "Lea",
         "Hugo", "Chloe", "Omar", "Sara", "Ivan", "Nina", "Pablo", "Elena", "Tom", "Anna"]
LAST = ["Rossi", "Bianchi", "Muller", "Schmidt", "Dubois", "Martin", "Novak", "Horvat",
        "Garcia", "Lopez", "Jansen", "Visser", "Nowak", "Kowalski", "Silva", "Costa"]
CITIES = ["Milano", "Torino", "Berlin", "Lyon", "Ljubljana", "Zagreb", "Porto", "Utrecht"]
MONTHS = ["2024-01", "2024-02", "2024-03"]
PDF = b"%PDF-1.4\n% generated test file, no real data\n"


def _pk(tenant: str, emp: str) -> str:
    return f"TENANT#{tenant}#EMP#{emp}"


def employee(tenant: str, emp: str, name: str, email: str, city: str,
             files: bool = False) -> list[dict[str, Any]]:
    """The items of one employee; with `files`, a photo pointer and contract annexes."""
    prof: dict[str, Any] = {
        "pk": _pk(tenant, emp), "sk": "PROFILE", "entity": "employee", "tenant_id": tenant,
        "employee_id": emp, "gsi1pk": f"TENANT#{tenant}#EMAIL#{email}", "email": email,
        "name": name, "job_title": "Engineer", "department": "R&D",
        "address": {"street": f"Via {name.split()[-1]} 1", "city": city, "country": "IT"},
        "emergency_contact": {"name": f"Partner of {name}", "phone": "+390200000000"}}
    if files:
        prof["photo"] = {"bucket": BUCKET, "key": f"{tenant}/photos/{emp}.jpg"}
        prof["annexes"] = [{"title": "NDA", "s3_key": f"{tenant}/annexes/{emp}-nda.pdf"},
                           {"title": "Car policy",
                            "s3_key": f"{tenant}/annexes/{emp}-car.pdf"}]
    out = [prof]
    for i, month in enumerate(MONTHS):
        slip: dict[str, Any] = {
            "pk": _pk(tenant, emp), "sk": f"PAYSLIP#{month}", "entity": "payslip",
            "tenant_id": tenant, "employee_id": emp, "month": month, "employee_name": name,
            "gross": 4000 + i, "net": 2800 + i, "iban": "IT60X0542811101000000123456"}
        if files:
            slip["pdf_key"] = f"{tenant}/payslips/{emp}/{month}.pdf"
        out.append(slip)
    return out


def review(tenant: str, about: str, author: str, author_name: str, rid: str,
           comments: str, reviewed_at: str = "2024-06-14") -> dict[str, Any]:
    """A review; `sweep_bucket` (<tenant>#<YYYY-MM> of its date) keys the sweep index."""
    return {"pk": _pk(tenant, about), "sk": f"REVIEW#{rid}", "entity": "review",
            "tenant_id": tenant, "employee_id": about, "review_id": rid,
            "author_id": author, "author_name": author_name,
            "gsi2pk": f"TENANT#{tenant}#AUTHOR#{author}", "comments": comments, "rating": 4,
            "reviewed_at": reviewed_at, "sweep_bucket": f"{tenant}#{reviewed_at[:7]}"}


def named(tenant: str) -> list[dict[str, Any]]:
    """The named test subjects of a tenant."""
    if tenant == "acme":
        return [*employee(tenant, "E0001", "Ada Lovelace", "ada.lovelace@example.com",
                          "London", files=True),
                *employee(tenant, "E0002", "Grace Hopper", "grace.hopper@example.com",
                          "New York", files=True),
                review(tenant, "E0001", "E0002", "Grace Hopper", "2024-R1",
                       "Ada's analytical engine notes are outstanding"),
                review(tenant, "E0002", "E0001", "Ada Lovelace", "2024-R2",
                       "Grace ships compilers on time")]
    return employee(tenant, "E0001", "Ada Lovelace", "ada.lovelace@example.com", "Paris",
                    files=True)


def rows(tenant: str, n: int, seed: int = 13) -> Iterator[dict[str, Any]]:
    """`n` employees of a tenant (the named subjects first), each with payslips and, for
    one in three, a review by the previous employee."""
    rnd = random.Random(f"{seed}:{tenant}")
    items = named(tenant)
    yield from items
    first = len({i["employee_id"] for i in items}) + 1
    for k in range(first, n + 1):
        emp = f"E{k:04d}" if k < 10000 else f"E{k}"
        name = f"{rnd.choice(FIRST)} {rnd.choice(LAST)}"
        email = f"{name.lower().replace(' ', '.')}.{k}@example.com"
        yield from employee(tenant, emp, name, email, rnd.choice(CITIES))
        if k % 3 == 0:
            # every other review is from 2019 (retention sweeps have work), the rest recent
            yield review(tenant, emp, f"E{k - 1:04d}", "A colleague", f"2024-G{k}",
                         "Solid quarter", "2019-03-15" if k % 6 == 0 else "2025-09-30")


def files(tenant: str, items: list[dict[str, Any]]) -> Iterator[str]:
    """The object keys of a tenant's items: every employee's id card under the prefix, and
    every file a pointer names; the named subjects also have a contract under the prefix."""
    for i in items:
        if i["sk"] == "PROFILE":
            yield f"{tenant}/employees/{i['employee_id']}/id-card.pdf"
            if "photo" in i:
                yield f"{tenant}/employees/{i['employee_id']}/contract.pdf"
                yield i["photo"]["key"]
                yield from (a["s3_key"] for a in i["annexes"])
        elif i.get("pdf_key"):
            yield i["pdf_key"]


def write(directory: Path, n: int) -> tuple[int, int]:
    directory.mkdir(parents=True, exist_ok=True)
    n_items = n_files = 0
    with (directory / f"{TABLE}.jsonl").open("w", encoding="utf-8") as fh:
        for tenant in TENANTS:
            items = list(rows(tenant, n))
            for item in items:
                fh.write(json.dumps(item, sort_keys=True) + "\n")
            n_items += len(items)
            for key in files(tenant, items):
                path = directory / "s3" / BUCKET / key
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(PDF)
                n_files += 1
    return n_items, n_files


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("directory", nargs="?", default=str(HERE / "fixtures"))
    ap.add_argument("--employees", type=int, default=150, help="per tenant (default 150)")
    args = ap.parse_args()
    n_items, n_files = write(Path(args.directory), args.employees)
    print(f"wrote {n_items} items and {n_files} files to {args.directory}")


if __name__ == "__main__":
    main()
