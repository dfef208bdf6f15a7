"""The console in a real browser: Debian's Chromium, headless, driven by Playwright, against a
local stack of its own (free ports on 127.0.0.1, stopped when the tests end).

Chromium comes from the system (`apt-get install chromium`; `OBLIO_CHROMIUM` names another
binary): the browsers Playwright downloads by itself are not used. Where no Chromium (or no
Playwright) can be found the suite is skipped, saying what to install, unless
`OBLIO_REQUIRE_CHROMIUM=1` (set by .ci/run): then every test fails with that message. Every page fails its test
on a JavaScript error or a Content-Security-Policy violation. Screenshots of the main pages
go to docs/console/ (`OBLIO_SCREENSHOTS` names another folder), where the README shows them."""

from __future__ import annotations

import os
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from infra.local.stack import LocalStack, configure_environment, free_port
from tests.client import Api

os.environ["OBLIO_LOCAL_SCHEDULE_SECONDS"] = "0"  # no nightly sweep behind the tests' backs

ROOT = Path(__file__).resolve().parents[2]
SHOTS = Path(os.environ.get("OBLIO_SCREENSHOTS") or ROOT / "docs" / "console")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WIDE = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


#: .ci/run sets it: there a missing browser is a failure, not a skip
REQUIRED = os.environ.get("OBLIO_REQUIRE_CHROMIUM", "") not in ("", "0")


def chromium_path() -> str | None:
    named = os.environ.get("OBLIO_CHROMIUM")
    if named:
        return named if os.path.isfile(named) and os.access(named, os.X_OK) else None
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing() -> str | None:
    """What the suite lacks to run here, in words saying how to get it; None: nothing."""
    if chromium_path() is None:
        return ("the console tests need Chromium from the system: apt-get install -y chromium "
                "(as root), or set OBLIO_CHROMIUM to a Chromium binary")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the console tests need Playwright for Python: pip install -e '.[dev]'"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    reason = missing()
    if reason is None or REQUIRED:
        return
    here = Path(__file__).resolve().parent
    for item in items:
        if here in item.path.resolve().parents:
            item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    aws_port, api_port = free_port(), free_port()
    configure_environment(aws_port)
    s = LocalStack(api_port=api_port, aws_port=aws_port, demo_contacts=120, quiet=True,
                   write_state=False)
    s.start()
    yield s
    s.stop()


@pytest.fixture(scope="session")
def base(stack: LocalStack) -> str:
    return str(stack.info["api_url"])


@pytest.fixture(scope="session")
def admin_key(stack: LocalStack) -> str:
    return str(stack.info["tenants"]["demo"]["api_key"])


@pytest.fixture(scope="session")
def api(base: str, admin_key: str) -> Api:
    return Api(base, admin_key)


@pytest.fixture(scope="session")
def anon(base: str) -> Api:
    return Api(base, None)


@pytest.fixture(scope="session")
def dm(stack: LocalStack) -> Any:
    from oblio.core import datamap
    from oblio.core.settings import get_settings

    return datamap.load(get_settings().datamap)


@pytest.fixture
def subject(stack: LocalStack, dm: Any, request: pytest.FixtureRequest) -> dict[str, str]:
    """A fresh person with the full set of items in `demo`, unique to the test."""
    from infra.local import demo

    # the same subject for the same test in every run (str's hash is salted per process)
    n = zlib.crc32(request.node.nodeid.encode()) % 10**8
    email = f"console.{n}@example.net"
    demo.seed_subject(dm, "demo", email, f"+39348{n % 10**7:07d}", external_id=f"CON-{n}")
    return {"email": email}


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    reason = missing()
    if reason is not None:  # only where it is REQUIRED: elsewhere the tests were skipped
        pytest.fail(f"{reason} (OBLIO_REQUIRE_CHROMIUM is set: the browser suite must run)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


class Console:
    """One browser tab on the console, with the checks every page gets."""

    def __init__(self, page: Any, base: str) -> None:
        self.page, self.base = page, base
        self.problems: list[str] = []
        #: every URL the tab asked for, and the headers of each answer of the API
        self.urls: list[str] = []
        self.answers: list[tuple[str, dict[str, str]]] = []
        page.on("request", lambda r: self.urls.append(r.url))
        page.on("response", lambda r: self.answers.append((r.url, r.headers))
                if "/v1/" in r.url else None)
        page.on("pageerror", lambda e: self.problems.append(f"JavaScript error: {e}"))
        page.on("console", self._console)
        page.set_default_timeout(30_000)

    def _console(self, msg: Any) -> None:
        text = msg.text
        if "Content Security Policy" in text or "Content-Security-Policy" in text:
            self.problems.append(f"CSP violation: {text}")
        elif msg.type == "error" and "Failed to load resource" not in text:
            self.problems.append(f"console error: {text}")

    def open(self, hash_: str = "") -> None:
        self.page.goto(f"{self.base}/console/{hash_}")

    def sign_in(self, key: str) -> None:
        self.open()
        field = self.page.get_by_label("API key")
        field.fill(key)
        field.press("Enter")  # the keyboard is enough
        self.page.get_by_role("heading", name="Find a person", level=1).wait_for()

    def go(self, section: str) -> None:
        self.page.get_by_role("navigation").get_by_role("link", name=section).click()
        self.page.get_by_role("heading", name=section, level=1).wait_for()

    def search(self, value: str, kind: str = "E-mail") -> None:
        page = self.page
        page.get_by_label("Identity").select_option(label=kind)
        page.get_by_label("Value", exact=True).fill(value)
        page.get_by_label("Value", exact=True).press("Enter")
        page.get_by_role("heading", name="Where this person appears").wait_for()
        page.wait_for_function("!document.querySelector('.results[aria-busy]')")

    def shot(self, name: str) -> None:
        SHOTS.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def unlabelled(self) -> list[str]:
        """Form controls that no label names (a screen reader would announce nothing)."""
        return self.page.evaluate("""() => [...document.querySelectorAll(
            'input:not([type=hidden]), select, textarea')].filter(el =>
            !(el.labels && el.labels.length) && !el.getAttribute('aria-label') &&
            !el.getAttribute('aria-labelledby')).map(el => el.outerHTML.slice(0, 120))""")

    def overflow(self) -> int:
        """How far the page is wider than the window (0: nothing to scroll sideways)."""
        return int(self.page.evaluate(
            "document.documentElement.scrollWidth - window.innerWidth"))


@pytest.fixture
def console(browser: Any, base: str) -> Iterator[Console]:
    context = browser.new_context(viewport=WIDE, accept_downloads=True)
    c = Console(context.new_page(), base)
    yield c
    context.close()
    assert c.problems == [], c.problems
