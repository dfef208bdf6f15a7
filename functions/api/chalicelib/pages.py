"""What a person sees after following a link oblio sent them (a one-click withdrawal, a
self-service export's download): a small HTML page with no key and no script, or a redirect.
The domain says what happened (or raises InvalidLink / ExpiredLink); the words are here."""

from __future__ import annotations

import functools
import html
from collections.abc import Callable
from typing import Any

from chalice import Response

from chalicelib.edge import status_of
from oblio.control.links import ExpiredLink, InvalidLink
from oblio.rights.consent import Withdrawn

#: (title, text) of a page
Page = tuple[str, str]

LINK_EXPIRED: Page = ("This link has expired",
                      "Nothing was changed. Use the link in a more recent message, or contact "
                      "the sender to withdraw your consent.")
LINK_INVALID: Page = ("This link is not valid",
                      "Nothing was changed. The link may have been cut or altered: copy the "
                      "whole link from the message and try again.")
DOWNLOAD_EXPIRED: Page = ("This download has expired",
                          "Your data was deleted on the date the message gave. You can ask for "
                          "a new copy.")
DOWNLOAD_INVALID: Page = ("This link is not valid",
                          "The link may have been cut or altered: copy the whole link from the "
                          "message and try again.")

_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def page(title: str, text: str) -> str:
    """A small HTML page for a person who followed a link (no key, no script)."""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<meta name=\"robots\" content=\"noindex\">"
            f"<title>{html.escape(title)}</title></head>"
            "<body style=\"font-family: sans-serif; max-width: 32em; margin: 3em auto\">"
            f"<h1>{html.escape(title)}</h1><p>{html.escape(text)}</p></body></html>")


def html_page(status: int, shown: Page) -> Response:
    return Response(body=page(*shown), status_code=status,
                    headers={"Content-Type": "text/html; charset=utf-8", **_HEADERS})


def redirect(url: str) -> Response:
    """302 to a presigned URL, never cached, never sent on as a referrer."""
    return Response(body="", status_code=302, headers={"Location": url, **_HEADERS})


def unsubscribed(done: Withdrawn) -> Response:
    return html_page(200, ("You are unsubscribed",
                           f"{done.organisation} will no longer use your data for "
                           f"{done.purpose}. You can close this page."))


def on_bad_link(invalid: Page, expired: Page) -> Callable[[Callable[..., Any]],
                                                          Callable[..., Any]]:
    """A link route's answer to a link oblio did not sign as it is, or that has expired: the
    page that says so (with the error's status), never the JSON error shape."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def view(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except ExpiredLink as exc:
                return html_page(status_of(exc), expired)
            except InvalidLink as exc:
                return html_page(status_of(exc), invalid)

        return view

    return wrap
