"""Domain errors: each has a code and an HTTP status; the API edge turns them into the one
error shape of API.md. Messages never carry personal data."""

from __future__ import annotations

from typing import Any


class OblioError(Exception):
    code = "error"
    status = 500

    def __init__(self, message: str, *, code: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code
        self.details = details or {}

    def to_body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class Unauthorized(OblioError):
    code, status = "unauthorized", 401


class Forbidden(OblioError):
    code, status = "forbidden", 403


class NotFound(OblioError):
    code, status = "not_found", 404


class Conflict(OblioError):
    code, status = "conflict", 409


class Gone(OblioError):
    """It existed and has expired (an access export past its date)."""

    code, status = "gone", 410


class BadRequest(OblioError):
    code, status = "bad_request", 400


class Invalid(OblioError):
    """Input that parses but is not acceptable: 422, naming the field."""

    code, status = "invalid", 422

    def __init__(self, field: str, message: str, *, code: str | None = None) -> None:
        super().__init__(message, code=code or "invalid_field", details={"field": field})
        self.field = field


class DataMapError(OblioError):
    """A data map that cannot be used; the message names the table and attribute."""

    code, status = "invalid_datamap", 500

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the data map is invalid:\n  - " + "\n  - ".join(problems),
                         details={"problems": problems})
        self.problems = problems


class TransientError(OblioError):
    """Worth retrying (throttling, unprocessed items): the state machine's Retry handles it."""

    code, status = "transient", 503


class MessageRefused(OblioError):
    """SES or SNS refused a message for good (a bad address, an unverified sender); the
    provider's error code is kept, never the address."""

    code, status = "message_refused", 502

    def __init__(self, provider_code: str) -> None:
        super().__init__(f"the message was refused ({provider_code})",
                         details={"provider_code": provider_code})
        self.provider_code = provider_code
