"""The demo domain's data: a CRM / helpdesk / mailing product, generated from a fixed seed.

It always contains the named subjects of DESIGN.md (Mario Rossi in `demo` and again in
`demo-child`, Jeanne Dupont in `demo`), each with a profile, tickets with messages and an S3
attachment, e-mail sends with opens and clicks, a newsletter subscription, a blacklist entry,
a document in S3 and a place in a scheduled send; thousands of generated contacts surround
them, with last-activity dates spread over four years.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from oblio.core.datamap import DataMap
from oblio.store import aws
from oblio.store import tables as store

EPOCH = datetime(2026, 11, 1, tzinfo=UTC)  # fixed, so that the data is the same every time
FIRST = ["Anna", "Luca", "Sofia", "Marco", "Giulia", "Paul", "Marie", "Hans", "Eva", "Jan",
         "Lena", "Pierre", "Chiara", "Tomas", "Ines", "Noah", "Emma", "Liam", "Olga", "Ivan"]
LAST = ["Bianchi", "Martin", "Müller", "Novak", "García", "Smith", "Dubois", "Rossi", "Costa",
        "Nowak", "Jansen", "Silva", "Weber", "Moreau", "Ricci", "Kowalski", "Berg", "Lund"]
CITIES = [("Milano", "IT"), ("Paris", "FR"), ("Berlin", "DE"), ("Madrid", "ES"),
          ("Lisboa", "PT"), ("Wien", "AT"), ("Praha", "CZ"), ("Dublin", "IE")]
CHANNELS = ["email", "phone", "chat", "web"]
REASONS = ["billing", "delivery", "bug", "account", "refund"]
#: a soft-deleted ticket's purge date (its TTL attribute) is this many days after deletion
TRASH_DAYS = 30


@dataclass(frozen=True)
class NamedSubject:
    tenant_id: str
    email: str
    phone: str
    external_id: str
    first_name: str
    last_name: str
    city: str
    country: str


NAMED = (
    NamedSubject("demo", "mario.rossi@example.com", "+393331234567", "CRM-0001", "Mario",
                 "Rossi", "Roma", "IT"),
    NamedSubject("demo", "jeanne.dupont@example.com", "+33612345678", "CRM-0002", "Jeanne",
                 "Dupont", "Lyon", "FR"),
    NamedSubject("demo-child", "mario.rossi@example.com", "+393331234567", "CHILD-0001",
                 "Mario", "Rossi", "Roma", "IT"),
)


def _iso(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


class _Builder:
    def __init__(self, dm: DataMap, tenant_id: str, seed: int, ns: str = "") -> None:
        self.dm, self.tenant_id, self.ns = dm, tenant_id, ns
        self.rng = random.Random(seed)
        # retention's additions (legal holds, the tickets' trash) draw from their own stream,
        # so that every other value stays what it was
        self.aux = random.Random(seed * 31 + 7)
        self.items: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.files: list[tuple[str, bytes]] = []
        self.n = 0

    def _id(self, prefix: str) -> str:
        self.n += 1
        return f"{prefix}_{self.tenant_id}_{self.ns}{self.n:08d}"

    def write(self, writer: Any = None) -> dict[str, int]:
        """Write what was built; returns the item count per table (and files)."""
        counts: dict[str, int] = {}
        for table, items in self.items.items():
            (writer or store.batch_put)(self.dm.tables[table].table, items)
            counts[table] = len(items)
        s3 = aws.client("s3")
        types = {"png": "image/png", "pdf": "application/pdf", "txt": "text/plain"}
        for key, body in self.files:
            kind = types[key.rsplit(".", 1)[-1]]
            s3.put_object(Bucket=self.dm.buckets["files"], Key=key, Body=body, ContentType=kind)
            # a second version, so that erasure must remove every version
            s3.put_object(Bucket=self.dm.buckets["files"], Key=key, Body=body + b" (v2)",
                          ContentType=kind)
        counts["files"] = len(self.files)
        return counts

    def add(self, table: str, **item: Any) -> dict[str, Any]:
        item = {"tenant_id": self.tenant_id, **{k: v for k, v in item.items() if v is not None}}
        self.items[table].append(item)
        return item

    def file(self, kind: str, owner: str, body: bytes) -> str:
        # named as a tenant's own files are (photo.png, contract.pdf): an export keeps a
        # file's name, so a ".bin" here reached the person as a file no program opens
        ext = "png" if body.startswith(b"\x89PNG") else "pdf" if body.startswith(b"%PDF") \
            else "txt"
        key = f"{self.tenant_id}/{kind}/{owner}/{self._id('f')}.{ext}"
        self.files.append((key, body))
        return key

    def contact(self, *, email: str, phone: str | None, external_id: str | None, first: str,
                last: str, city: str, country: str, activity: datetime, named: bool) -> None:
        rng = self.rng
        cid = self._id("c")
        photo = self.file("photos", cid, b"\x89PNG demo photo of " + cid.encode()) \
            if named or rng.random() < 0.01 else None
        self.add("contacts", contact_id=cid, email=email, phone=phone, external_id=external_id,
                 first_name=first, last_name=last,
                 birth_date=f"{rng.randint(1950, 2004)}-{rng.randint(1, 12):02d}-"
                            f"{rng.randint(1, 28):02d}",
                 address=f"Via {rng.choice(LAST)} {rng.randint(1, 200)}", city=city,
                 country=country, company=rng.choice([None, "Acme", "Globex", "Initech"]),
                 notes="prefers e-mail" if named else None, photo_key=photo,
                 created_at=_iso(activity - timedelta(days=rng.randint(30, 900))),
                 last_activity_at=_iso(activity), activity_month=_iso(activity)[:7],
                 sweep_bucket=f"{self.tenant_id}#{_iso(activity)[:7]}",
                 restricted=False, legal_hold=not named and self.aux.random() < 0.05)
        n_tickets = rng.randint(2, 3) if named else rng.choices([0, 1, 2], [5, 4, 1])[0]
        for t in range(n_tickets):
            tid = self._id("t")
            opened = activity - timedelta(days=rng.randint(1, 400))
            closed = rng.random() < 0.8
            trash: dict[str, Any] = {}
            if not named and self.aux.random() < 0.15:  # soft-deleted: in the trash
                deleted = EPOCH - timedelta(days=self.aux.randint(0, 90),
                                            minutes=self.aux.randint(0, 1439))
                trash = {"deleted_at": _iso(deleted),
                         "sweep_bucket": f"{self.tenant_id}#{_iso(deleted)[:7]}",
                         "legal_hold": self.aux.random() < 0.1}
                if not trash["legal_hold"]:  # a hold suspends the TTL
                    trash["purge_at"] = int((deleted + timedelta(days=TRASH_DAYS)).timestamp())
            self.add("tickets", ticket_id=tid, contact_id=cid,
                     subject=f"Question about order {rng.randint(1000, 9999)}",
                     description=f"{first} writes about a {rng.choice(REASONS)} problem",
                     status="closed" if closed else "open", channel=rng.choice(CHANNELS),
                     reason=rng.choice(REASONS), created_at=_iso(opened),
                     closed_at=_iso(opened + timedelta(hours=rng.randint(1, 96)))
                     if closed else None,
                     sla_first_response_min=rng.randint(5, 600),
                     sla_resolution_min=rng.randint(60, 6000), assignee="agent.bianchi",
                     **trash)
            for m in range(rng.randint(2, 3) if named else rng.randint(1, 2)):
                attach = self.file("attachments", tid, b"%PDF demo attachment of " +
                                   tid.encode()) if (named and t == 0 and m == 0) or \
                    rng.random() < 0.01 else None
                self.add("ticket_messages", message_id=self._id("m"), ticket_id=tid,
                         author_type="customer" if m % 2 == 0 else "agent",
                         body=f"Hello, this is {first} {last}. My phone is {phone}."
                         if m == 0 else "Thanks, we are looking into it.",
                         mentioned_name="Luigi Verdi" if named and m == 1 else None,
                         attachment_key=attach,
                         sent_at=_iso(opened + timedelta(minutes=30 * m)))
        n_sends = 3 if named else rng.choices([0, 1, 2, 3], [3, 3, 2, 1])[0]
        for s in range(n_sends):
            sid = self._id("s")
            sent = activity - timedelta(days=rng.randint(0, 300))
            self.add("email_sends", send_id=sid, recipient_email=email, contact_id=cid,
                     campaign_id=f"camp-{rng.randint(1, 40):03d}",
                     subject_line="Our autumn news", status="delivered", sent_at=_iso(sent))
            kinds = ["open", "click"] if named and s == 0 else \
                rng.choices([[], ["open"], ["open", "click"]], [4, 4, 2])[0]
            for kind in kinds:
                at = _iso(sent + timedelta(minutes=rng.randint(1, 600)))
                self.add("email_events", event_id=self._id("e"), send_id=sid, type=kind,
                         at=at, sweep_bucket=f"{self.tenant_id}#{at[:7]}",
                         url="https://shop.example/autumn" if kind == "click" else None,
                         ip_address=f"203.0.113.{rng.randint(1, 254)}",
                         user_agent="Mozilla/5.0 (demo)")
        if named or rng.random() < 0.5:
            self.add("subscriptions", subscription_id=self._id("sub"), email=email,
                     list_id="newsletter", status="active",
                     subscribed_at=_iso(activity - timedelta(days=rng.randint(10, 700))),
                     source="signup-form")
        if named or rng.random() < 0.03:
            self.add("blacklist", email=email, reason="sms-opt-out" if named else "bounced",
                     added_at=_iso(activity))
        if named or rng.random() < 0.1:
            did = self._id("d")
            self.add("documents", document_id=did, contact_id=cid, title="Signed contract",
                     kind="contract", s3_key=self.file("documents", did,
                                                       b"%PDF demo contract " + did.encode()),
                     uploaded_at=_iso(activity - timedelta(days=rng.randint(0, 100))))
        if named or rng.random() < 0.05:
            self.add("scheduled_recipients", recipient_id=self._id("r"),
                     schedule_id="sched-black-friday", email=email, contact_id=cid,
                     send_at=_iso(EPOCH + timedelta(days=27)), status="pending")


def seed(dm: DataMap, tenants: list[str], contacts: int, progress: Any = None,
         writer: Any = None) -> dict[str, int]:
    """Write the demo data of each tenant; returns the item count per mapped table."""
    totals: dict[str, int] = defaultdict(int)
    for index, tenant_id in enumerate(tenants):
        b = _Builder(dm, tenant_id, seed=20261123 + index)
        for subject in NAMED:
            if subject.tenant_id == tenant_id:
                b.contact(email=subject.email, phone=subject.phone,
                          external_id=subject.external_id, first=subject.first_name,
                          last=subject.last_name, city=subject.city, country=subject.country,
                          activity=EPOCH - timedelta(days=20), named=True)
        generated = contacts if index == 0 else max(contacts // 10, 10)
        for i in range(generated):
            city, country = b.rng.choice(CITIES)
            b.contact(email=f"contact{i:07d}@{tenant_id}.example.org",
                      phone=f"+3934{b.rng.randint(10000000, 99999999)}"
                      if b.rng.random() < 0.6 else None,
                      external_id=f"GEN-{i:07d}", first=b.rng.choice(FIRST),
                      last=b.rng.choice(LAST), city=city, country=country,
                      activity=EPOCH - timedelta(days=b.rng.randint(0, 4 * 365)), named=False)
        for table, n in b.write(writer).items():
            totals[table] += n
            if progress:
                progress(tenant_id, table, n)
        for subject in NAMED:  # their consent history, in oblio's ledger
            if subject.tenant_id == tenant_id:
                from oblio.control import ledger

                totals["consent_events"] += ledger.seed_demo(tenant_id, subject.email)
    return dict(totals)


def seed_crowd(dm: DataMap, tenant_id: str, emails: list[str], writer: Any = None,
               ) -> dict[str, int]:
    """Generated contacts (with their tickets, sends, ...) for the given e-mails, active in
    the last months, beside the demo data and without changing it (tests and benchmarks that
    need many people of their own); returns the item count per table."""
    b = _Builder(dm, tenant_id, seed=len(emails), ns="crowd")
    for email in emails:
        city, country = b.rng.choice(CITIES)
        b.contact(email=email, phone=None, external_id=None, first=b.rng.choice(FIRST),
                  last=b.rng.choice(LAST), city=city, country=country,
                  activity=EPOCH - timedelta(days=b.rng.randint(0, 300)), named=False)
    # nothing in the trash and nothing on hold: the crowd leaves retention's counts alone
    for ticket in b.items["tickets"]:
        for attr in ("deleted_at", "sweep_bucket", "purge_at", "legal_hold"):
            ticket.pop(attr, None)
    for contact in b.items["contacts"]:
        contact["legal_hold"] = False
    return b.write(writer)


def seed_subject(dm: DataMap, tenant_id: str, email: str, phone: str | None = None,
                 external_id: str | None = None, first: str = "Test", last: str = "Subject",
                 ) -> dict[str, Any]:
    """One more named subject with the full set of items (for tests and benchmarks); returns
    the item counts and the S3 keys of its files."""
    import hashlib

    ns = hashlib.sha256(email.encode()).hexdigest()[:6] + "_"
    b = _Builder(dm, tenant_id, seed=int(ns[:6], 16), ns=ns)
    b.contact(email=email, phone=phone, external_id=external_id, first=first, last=last,
              city="Torino", country="IT", activity=EPOCH - timedelta(days=5), named=True)
    counts = b.write()
    return {"counts": counts, "files": [k for k, _ in b.files]}
