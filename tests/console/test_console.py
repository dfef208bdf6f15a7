"""The DPO's console end to end in headless Chromium: the README's tour, the confirmations
that guard irreversible actions, a bulk upload, a read-only key, and the pages at a phone's
width. Each test checks what the DPO would see and what the API then holds."""

from __future__ import annotations

import re
from typing import Any

import requests as http

from tests.client import Api
from tests.console.conftest import PHONE, Console

MARIO = "mario.rossi@example.com"


def requests_of(api: Api, type_: str, subject_ref: str) -> list[dict[str, Any]]:
    items = api.get("/v1/requests", type=type_, limit=500).json()["items"]
    return [r for r in items if r["subject_ref"] == subject_ref]


def subject_ref(api: Api, email: str) -> str:
    return str(api.post("/v1/subjects/search", {"subject": {"email": email}}).json()[
        "subject_ref"])


def run_and_follow(page: Any) -> None:
    page.get_by_test_id("run").click()
    status = page.get_by_test_id("request-status")
    status.get_by_text("completed").wait_for(timeout=60_000)


def test_the_readme_tour_through_the_console(console: Console, admin_key: str, api: Api):
    page = console.page
    console.sign_in(admin_key)
    assert console.unlabelled() == []
    # 1. where does Mario appear?
    console.search(MARIO)
    summary = page.get_by_test_id("search-summary")
    assert re.match(r"Found in 9 of 9 tables", summary.inner_text()), summary.inner_text()
    assert page.get_by_role("heading", name="Pending deliveries").is_visible()
    # each table by the map's name, which the actions take (not its physical table)
    appear = page.locator("table.appear")
    assert appear.get_by_role("rowheader", name="scheduled recipients", exact=True).count() \
        == 1 and appear.get_by_text("demo-contacts").count() == 0
    console.shot("search")
    # 2. what would an erasure do? The dry run, per table, changes nothing
    page.get_by_role("button", name=re.compile("^Erase")).click()
    assert console.unlabelled() == []
    page.get_by_role("button", name="Preview (dry run)").click()
    preview = page.get_by_test_id("preview-summary")
    assert "would delete" in preview.inner_text()
    plan = page.locator("table.plan")
    assert plan.get_by_text("anonymised, shell kept").count() >= 1  # tickets keep a shell
    assert api.post("/v1/subjects/search", {"subject": {"email": MARIO}}).json()["found"]
    console.shot("erase-preview")
    # 3. erase him: the box spells out the consequence
    confirm = page.get_by_test_id("confirm")
    assert "cannot be undone" in page.locator(".check.confirm").inner_text()
    confirm.check()
    run_and_follow(page)
    assert page.get_by_role("heading", name=re.compile("Verification")).get_by_text(
        "passed").is_visible()
    assert page.get_by_role("heading", name="Certificate").is_visible()
    console.shot("erase-done")
    request_page = page.get_by_role("link", name="Open the request").get_attribute("href")
    # 4. search again: nothing, and suppressed
    page.get_by_role("button", name="Search again").click()
    page.get_by_text("Nothing of this person was found in any mapped table.").wait_for()
    assert page.locator(".badges").get_by_text("suppressed").is_visible()
    # the request as the Requests page shows it: timeline, certificate, AWS calls
    console.open(request_page)
    page.get_by_role("heading", name="Timeline").wait_for()
    page.get_by_text("AWS calls").first.click()
    assert page.get_by_role("rowheader", name="dynamodb.Scan").is_visible()
    assert page.get_by_text("Estimated AWS cost $").is_visible()  # what every call cost
    console.shot("request")
    # 5. the evidence: the audit chain verifies
    console.go("Audit")
    page.get_by_test_id("audit-verdict").get_by_text("valid").wait_for()
    assert "is intact" in page.get_by_test_id("audit-verdict").inner_text()
    page.get_by_role("cell", name="erasure completed").first.wait_for()
    console.shot("audit")
    # Jeanne is untouched
    assert api.post("/v1/subjects/search", {
        "subject": {"email": "jeanne.dupont@example.com"}}).json()["found"]
    # the quality bar: Mario never in a URL (the address bar, history, access logs), every
    # answer of the API no-store, the key in this tab's session storage only, no cookie,
    # and the page fits 1280 px
    assert console.urls and not [u for u in console.urls
                                 if "mario" in u.lower() or "rossi" in u.lower()]
    searched = [h for u, h in console.answers if u.endswith("/v1/subjects/search")]
    assert searched and all(h.get("cache-control") == "no-store" for _, h in console.answers)
    assert page.evaluate("Object.keys(localStorage).length") == 0
    assert page.evaluate("Object.keys(sessionStorage).length") >= 1
    assert page.context.cookies() == []
    assert console.overflow() <= 0


def test_an_anonymisation_is_refused_until_its_confirmation_is_ticked(
        console: Console, admin_key: str, api: Api, subject: dict[str, str]):
    page = console.page
    console.sign_in(admin_key)
    console.search(subject["email"])
    page.get_by_role("button", name=re.compile("^Anonymise")).click()
    page.get_by_label("All tables").uncheck()
    page.get_by_role("group", name="Only these tables").get_by_label("tickets").check()
    page.get_by_role("button", name="Preview (dry run)").click()
    assert re.search(r"would rewrite [23] items and delete 0 items in 1 table\b",
                     page.get_by_test_id("preview-summary").inner_text())  # the tickets only
    assert "other tables are left as they are" in page.locator(".check.confirm").inner_text()
    page.locator("table.plan").get_by_text(re.compile(r"\d+ kept")).first.click()  # the rules
    console.shot("anonymise-preview")
    # without the tick: refused in the page, and nothing filed
    page.get_by_test_id("run").click()
    alert = page.get_by_role("alert")
    assert "tick" in alert.inner_text() and "cannot be undone" in alert.inner_text()
    assert page.get_by_test_id("confirm").evaluate("el => el === document.activeElement")
    ref = subject_ref(api, subject["email"])
    assert requests_of(api, "anonymisation", ref) == []
    # ticked: it runs, on the tickets only
    page.get_by_test_id("confirm").check()
    run_and_follow(page)
    done = requests_of(api, "anonymisation", ref)
    assert [r["status"] for r in done] == ["completed"]
    after = api.post("/v1/subjects/search", {"subject": subject}).json()
    assert after["tables"]["contacts"]["count"] == 1  # only the tickets were anonymised


def test_the_export_before_anonymisation_rule_is_explained_and_an_export_downloads(
        console: Console, admin_key: str, api: Api, subject: dict[str, str]):
    page = console.page
    assert api.patch("/v1/tenant", {"settings": {
        "require_export_before_anonymisation": True}}).status_code == 200
    try:
        console.sign_in(admin_key)
        console.search(subject["email"])
        page.get_by_role("button", name=re.compile("^Anonymise")).click()
        page.get_by_role("button", name="Preview (dry run)").click()
        note = page.get_by_test_id("export-required")
        assert "access export" in note.inner_text()
        assert page.get_by_test_id("run").count() == 0  # no way to run it from here
        note.get_by_role("button", name="Start an access export").click()
        page.get_by_role("heading", name=re.compile("^Access export")).wait_for()
        page.get_by_label(re.compile("E-mail me")).fill("dpo@tenant.example")
        page.get_by_role("button", name="Preview (dry run)").click()
        assert "The export would hold" in page.get_by_test_id("preview-summary").inner_text()
        run_and_follow(page)
        assert page.get_by_text("Expires", exact=True).is_visible()
        console.shot("access-export")
        with page.expect_download() as got:
            page.get_by_role("button", name="Download the archive").click()
        assert got.value.suggested_filename.endswith(".zip")
        # the export satisfies the rule: now the anonymisation may run
        page.get_by_role("button", name="Search again").click()
        page.get_by_role("heading", name="Where this person appears").wait_for()
        page.get_by_role("button", name=re.compile("^Anonymise")).click()
        page.get_by_role("button", name="Preview (dry run)").click()
        page.get_by_text("you may anonymise").wait_for()
        assert page.get_by_test_id("run").is_visible()
    finally:
        api.patch("/v1/tenant", {"settings": {"require_export_before_anonymisation": False}})


def test_a_bulk_upload_is_watched_to_its_report(console: Console, admin_key: str, api: Api):
    page = console.page
    people = [f"contact{n:07d}@demo.example.org" for n in (101, 102, 103)]
    csv = "email;note\n" + "".join(f"{p};churned\n" for p in people) + \
        "not-an-email;x\nnobody@nowhere.example;gone\n"
    console.sign_in(admin_key)
    console.go("Bulk erasure")
    assert console.unlabelled() == []
    page.get_by_label("CSV file").set_input_files(
        {"name": "forget.csv", "mimeType": "text/csv", "buffer": csv.encode()})
    page.get_by_role("button", name="Upload and erase").click()
    assert "tick the confirmation" in page.get_by_role("alert").inner_text()
    page.get_by_test_id("bulk-confirm").check()
    page.get_by_role("button", name="Upload and erase").click()
    page.get_by_test_id("bulk-done").wait_for(timeout=90_000)
    facts = page.locator("#job-title ~ div dl").inner_text()
    assert re.search(r"Erased\s+3", facts), facts
    assert re.search(r"Invalid\s+1", facts), facts
    assert re.search(r"Not found\s+1", facts), facts
    console.shot("bulk")
    report = http.get(page.get_by_test_id("report").get_attribute("href"), timeout=30)
    assert report.status_code == 200
    assert "invalid" in report.text and "erased" in report.text
    assert not any(p in report.text for p in people)  # HMACs, never the addresses
    for p in people:
        assert not api.post("/v1/subjects/search", {"subject": {"email": p}}).json()["found"]


def test_the_audit_page_calls_a_long_chain_intact_only_after_its_last_page(
        console: Console, admin_key: str, api: Api, subject: dict[str, str]):
    """A verification call checks a part of a long chain (some 20,000 bulk certificates)
    and answers `valid` so far and a cursor to go on from. Here every call the page makes
    is told to check one entry (`limit=1`, added on its way to the API), so the page must
    follow the API's own cursors to the chain's head before it calls the chain intact."""
    page = console.page
    for type_ in ("access", "restriction"):
        r = api.post("/v1/requests", {"type": type_, "subject": {"email": subject["email"]}})
        assert r.status_code in (200, 202), r.text
    before = api.get("/v1/audit/verify").json()["entries"]
    calls: list[str] = []

    def one_entry_a_call(route: Any) -> None:
        url = route.request.url
        calls.append(url)
        route.continue_(url=f"{url}{'&' if '?' in url else '?'}limit=1")

    page.route("**/v1/audit/verify*", one_entry_a_call)
    console.sign_in(admin_key)
    console.go("Audit")
    verdict = page.get_by_test_id("audit-verdict")
    verdict.get_by_text("valid").wait_for(timeout=60_000)
    shown = re.search(r"The chain of (\d+) entries is intact", verdict.inner_text())
    assert shown and int(shown.group(1)) >= before >= 2
    assert len(calls) == int(shown.group(1))  # one entry a call, to the last
    assert all("cursor=" in u for u in calls[1:]) and "cursor=" not in calls[0]


def test_a_read_only_key_sees_no_erase_button_and_gets_the_apis_403(
        console: Console, api: Api, subject: dict[str, str]):
    page = console.page
    created = api.post("/v1/keys", {"scopes": ["dsr:read"], "name": "read-only"})
    assert created.status_code == 201, created.text
    console.sign_in(created.json()["api_key"])
    console.search(subject["email"])
    assert page.get_by_test_id("search-summary").inner_text().startswith("Found in")
    assert page.locator("[data-action=erasure]").count() == 0
    assert page.get_by_role("button", name=re.compile("^Erase")).count() == 0
    assert "can only read" in page.get_by_test_id("read-only").inner_text()
    assert page.get_by_role("link", name="Settings and keys").count() == 0
    console.shot("read-only")
    # trying anyway, through the console's own client: the API says no, and why
    tried = page.evaluate("""async (subject) => {
        const { api } = await import(new URL('api.js', document.baseURI));
        try { await api.post('requests', {type: 'erasure', subject, confirm: true});
              return {status: 0}; }
        catch (e) { return {status: e.status, code: e.code, message: e.message}; } }""",
                          subject)
    direct = api.__class__(api.base, created.json()["api_key"]).post(
        "/v1/requests", {"type": "erasure", "subject": subject, "confirm": True})
    assert tried["status"] == 403 == direct.status_code
    assert tried["message"] == direct.json()["error"]["message"]
    # and a page it may not read shows the API's message as it is
    page.goto(f"{console.base}/console/#/retention")
    page.get_by_role("alert").wait_for()
    shown = page.get_by_role("alert").inner_text()
    assert "403 forbidden" in shown and "lacks the 'admin' scope" in shown
    assert api.post("/v1/subjects/search", {"subject": subject}).json()["found"]


def test_requests_page_filters_and_a_request_is_extended_then_cancelled(
        console: Console, admin_key: str, api: Api, anon: Api, subject: dict[str, str]):
    page = console.page
    filed = api.post("/v1/requests", {"type": "restriction", "subject": subject})
    assert filed.status_code == 202, filed.text
    done = api.wait(filed.json()["request_id"])
    # a self-service request stays open until the person gives the code sent to them
    public = anon.post("/v1/public/requests", {"tenant": "demo", "type": "access",
                                                "subject": subject})
    assert public.status_code == 202, public.text
    rid = public.json()["request_id"]
    console.sign_in(admin_key)
    console.go("Requests")
    page.get_by_label("Type").select_option("restriction")
    page.get_by_role("button", name="Show").click()
    page.get_by_role("link", name=done["id"]).wait_for()
    assert page.get_by_role("link", name=rid).count() == 0  # filtered out
    console.shot("requests")
    console.open(f"#/requests/{rid}")
    page.get_by_role("heading", name="Timeline").wait_for()
    assert page.locator(".badges").get_by_text("awaiting verification").is_visible()
    page.get_by_label("Extend by").select_option("2")
    page.get_by_label("Reason (required)").fill("the archive needs a legal review")
    page.get_by_role("button", name="Extend the due date").click()
    page.get_by_text("by 2 month(s): the archive needs a legal review").wait_for()
    assert api.get(f"/v1/requests/{rid}").json()["extension"]["months"] == 2
    page.get_by_role("button", name="Cancel the request").click()
    page.get_by_role("button", name="Yes, cancel it").click()
    page.get_by_text("The request is cancelled: nothing more to do.").wait_for()
    assert api.get(f"/v1/requests/{rid}").json()["status"] == "cancelled"


def test_retention_dry_run_then_run_with_confirmation(console: Console, admin_key: str):
    page = console.page
    console.sign_in(admin_key)
    console.go("Retention")
    page.locator("[data-policy=old-email-events]").click()
    page.get_by_text("Nothing changed. A run would delete").wait_for()
    page.get_by_role("button", name="Run now").click()
    assert "tick the confirmation" in page.get_by_role("alert").inner_text()
    page.get_by_test_id("sweep-confirm").check()
    page.get_by_role("button", name="Run now").click()
    page.locator("h3:has-text('Sweep') ~ div").get_by_text("completed").first.wait_for(
        timeout=90_000)
    page.get_by_role("heading", name="Sweeps").wait_for()
    page.locator("section:has(#sw-title)").get_by_text("old-email-events").first.wait_for()
    console.shot("retention")


def test_settings_create_a_key_shown_once_and_revoke_it(console: Console, admin_key: str,
                                                          api: Api):
    page = console.page
    console.sign_in(admin_key)
    console.go("Settings and keys")
    assert console.unlabelled() == []
    page.get_by_label("Name", exact=True).fill("helpdesk read-only")
    page.get_by_role("group", name="Scopes").get_by_label("dsr:read", exact=True).check()
    page.get_by_role("button", name="Create the key").click()
    key = page.get_by_test_id("new-key").input_value()
    assert key.startswith("obl_")
    assert api.__class__(api.base, key).get("/v1/whoami").json()["scopes"] == ["dsr:read"]
    console.shot("settings")
    row = page.get_by_role("row").filter(has_text="helpdesk read-only")
    row.get_by_role("button", name="Revoke helpdesk read-only…").click()
    page.get_by_role("button", name="Revoke helpdesk read-only", exact=True).click()
    row.get_by_text("revoked").wait_for()


def test_the_console_reads_at_a_phones_width(browser: Any, base: str, admin_key: str):
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    c = Console(context.new_page(), base)
    try:
        c.sign_in(admin_key)
        assert c.overflow() <= 0
        c.search("jeanne.dupont@example.com")
        assert c.page.get_by_test_id("search-summary").inner_text().startswith("Found in")
        assert c.overflow() <= 0  # wide tables scroll inside their own box
        c.shot("phone")
        c.go("Requests")
        assert c.overflow() <= 0
    finally:
        context.close()
    assert c.problems == []


def test_the_console_is_usable_from_the_keyboard(console: Console, admin_key: str,
                                                 subject: dict[str, str]):
    page = console.page
    console.sign_in(admin_key)  # the key typed and Enter
    focused = "() => document.activeElement && (document.activeElement.innerText || " \
              "document.activeElement.getAttribute('aria-label') || '').trim()"
    # after a sign-in the focus is on the page's heading, ready for the form below it
    assert page.evaluate(focused) == "Find a person"
    # the page's first stop, the skip link, shows when focused and leads to the content
    skip = page.get_by_role("link", name="Skip to content")
    assert page.evaluate("() => document.querySelector('a[href], button, input, select')"
                         ".innerText") == "Skip to content"
    skip.focus()
    assert skip.is_visible() and skip.bounding_box()["height"] > 1
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    skip.focus()
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "Find a person"  # then the sections, in reading order
    page.keyboard.press("Tab")
    assert page.evaluate(focused) == "Requests"
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Requests", level=1).wait_for()
    console.go("Find a person")
    page.get_by_label("Value", exact=True).focus()
    page.keyboard.type(subject["email"])
    page.keyboard.press("Enter")
    page.get_by_role("heading", name="Where this person appears").wait_for()
    skip.focus()  # skipping to the content keeps the page as it is
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    assert page.get_by_role("heading", name="Where this person appears").is_visible()
    # every action on the person is a real button, reached and pressed by the keyboard
    erase = page.get_by_role("button", name=re.compile("^Erase"))
    erase.focus()
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Preview (dry run)").wait_for()
    assert console.unlabelled() == []
