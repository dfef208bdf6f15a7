"""Domain errors: each has a code, a message and details, and no HTTP status: the API edge
(`functions/api/chalicelib/edge.py`) maps each class, by its place in this hierarchy, to a
status and the one error shape of API.md. Task functions name a failure by its class (the
state machines retry `TransientError`). Messages never carry personal data."""

from __future__ import annotations

from typing import Any


class OblioError(Exception):
    code = "error"

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
    """No credential, or one oblio does not know."""

    code = "unauthorized"


class Forbidden(OblioError):
    """A known credential without the right to do this."""

    code = "forbidden"


class NotFound(OblioError):
    code = "not_found"


class Conflict(OblioError):
    """The thing is in a state that does not allow this (now)."""

    code = "conflict"


class StaleAttempt(Conflict):
    """A task of an attempt that is no longer the request's current one (a client retried,
    or the request ended): its write is refused, never applied."""

    code = "stale_attempt"


class SubjectErased(Conflict):
    """The subject of an access export was erased while the export ran: what it collected
    may hold what the erasure deleted, so its archive and work files were deleted instead of
    delivered (the request fails with this code; file a new one to export what is left)."""

    code = "subject_erased"


class Gone(OblioError):
    """It existed and has expired (an access export past its date)."""

    code = "gone"


class BadRequest(OblioError):
    """Input that cannot be read at all (not JSON), or a wrong secret (a one-time code)."""

    code = "bad_request"


class Unprocessable(OblioError):
    """Input that was read but cannot be used (a bad field, a bad file)."""

    code = "unprocessable"


class Invalid(Unprocessable):
    """Input that parses but is not acceptable, naming the field."""

    code = "invalid"

    def __init__(self, field: str, message: str, *, code: str | None = None,
                 details: dict[str, Any] | None = None) -> None:
        super().__init__(message, code=code or "invalid_field",
                         details={"field": field, **(details or {})})
        self.field = field


class TooManyRequests(OblioError):
    """A limit per caller and time window was reached; details say when to try again."""

    code = "too_many_requests"


class TooLarge(OblioError):
    """A body larger than the route takes; details name the limit (max_bytes) and the
    message the way to send a larger one."""

    code = "too_large"


class DataMapError(OblioError):
    """A data map that cannot be used; the message names the table and attribute."""

    code = "invalid_datamap"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("the data map is invalid:\n  - " + "\n  - ".join(problems),
                         details={"problems": problems})
        self.problems = problems


class TransientError(OblioError):
    """Worth retrying (throttling, unprocessed items): the state machine's Retry handles it."""

    code = "transient"


class MessageRefused(OblioError):
    """SES or SNS refused a message for good (a bad address, an unverified sender); the
    provider's error code is kept, never the address."""

    code = "message_refused"

    def __init__(self, provider_code: str) -> None:
        super().__init__(f"the message was refused ({provider_code})",
                         details={"provider_code": provider_code})
        self.provider_code = provider_code
