"""The answers the API's gateway gives itself, before any view runs, in the one error shape
of API.md: the CDK stack declares them as API Gateway gateway responses, and the local server
answers the same for a path it does not serve. Plain data, no imports: the CDK app reads it
without loading the API.

None of them repeats anything of the request: API Gateway's own messages for an unknown path
quote the Authorization header (the API key) back."""

from __future__ import annotations

import json

#: a path (or, in AWS, a method of a path) that no route serves
NOT_FOUND = ("not_found", "no route of this API answers this method and path; "
             "GET /v1/openapi.json lists the routes it serves")

#: API Gateway response type -> (status, code, message). MISSING_AUTHENTICATION_TOKEN is what
#: API Gateway answers for a path or method it has no route for; INCOMPLETE_SIGNATURE the
#: same with an Authorization header that is not SigV4 (an API key), whose message would
#: repeat that header.
GATEWAY_RESPONSES: dict[str, tuple[int, str, str]] = {
    "MISSING_AUTHENTICATION_TOKEN": (404, *NOT_FOUND),
    "INCOMPLETE_SIGNATURE": (404, *NOT_FOUND),
    "UNSUPPORTED_MEDIA_TYPE": (415, "unsupported_media_type",
                               "send the body as JSON with 'Content-Type: application/json'"),
    "REQUEST_TOO_LARGE": (413, "request_too_large", "the request is larger than the API "
                          "takes (10 MB); send a smaller body, or upload a CSV through "
                          "POST /v1/bulk-erasures"),
    "THROTTLED": (429, "too_many_requests", "too many requests for this API; retry after "
                  "the number of seconds of the Retry-After header"),
    "QUOTA_EXCEEDED": (429, "too_many_requests", "the request quota of this API is used up; "
                       "retry later"),
    "INTEGRATION_TIMEOUT": (504, "timeout", "the API did not answer in time; try again (a "
                            "write with an Idempotency-Key is not done twice)"),
    "DEFAULT_4XX": (400, "bad_request", "the gateway refused the request as sent; see "
                    "GET /v1/openapi.json for what each route takes"),
    "DEFAULT_5XX": (502, "gateway_error", "the API could not answer; try again later (a "
                    "write with an Idempotency-Key is not done twice)"),
}
#: statuses a gateway response keeps from API Gateway (the DEFAULT_* types cover many)
KEEP_STATUS = ("DEFAULT_4XX", "DEFAULT_5XX")


def body(code: str, message: str) -> str:
    """The one error shape as JSON text."""
    return json.dumps({"error": {"code": code, "message": message, "details": {}}})
