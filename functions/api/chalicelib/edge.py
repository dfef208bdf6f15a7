"""The API's edge: authentication, the one error shape, JSON bodies, query parameters and
idempotency keys. Route functions in app.py stay a few lines each."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from chalice import Chalice, Response

from oblio.control import tenants
from oblio.control.tenants import Principal
from oblio.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    MessageRefused,
    NotFound,
    OblioError,
    TooManyRequests,
    TransientError,
    Unauthorized,
    Unprocessable,
)
from oblio.core.observability import logger
from oblio.core.settings import get_settings

JSON = {"Content-Type": "application/json"}


#: the HTTP status of each kind of domain error; a subclass answers its nearest ancestor's
#: (InvalidLink is a BadRequest: 400; RateLimited a TooManyRequests: 429); anything else 500
STATUS: dict[type[OblioError], int] = {
    BadRequest: 400, Unauthorized: 401, Forbidden: 403, NotFound: 404, Conflict: 409,
    Gone: 410, Unprocessable: 422, Invalid: 422, TooManyRequests: 429, MessageRefused: 502,
    TransientError: 503,
}


def status_of(exc: OblioError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(exc: OblioError) -> Response:
    return Response(body=exc.to_body(), status_code=status_of(exc), headers=JSON)


def json_body(app: Chalice) -> Any:
    raw = app.current_request.raw_body
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON; send a JSON object with "
                         "'Content-Type: application/json'") from None


def query(app: Chalice) -> dict[str, str]:
    return dict(app.current_request.query_params or {})


def source_ip(app: Chalice) -> str:
    """The caller's address as API Gateway saw it (never a client-set header)."""
    identity = (app.current_request.context or {}).get("identity") or {}
    return str(identity.get("sourceIp") or "unknown")


def base_url(app: Chalice) -> str:
    """Where people reach this API (links put in messages): the setting, else the host."""
    configured = get_settings().public_base_url
    if configured:
        return configured.rstrip("/")
    req = app.current_request
    host = req.headers.get("host", "127.0.0.1")
    local = host.startswith(("127.0.0.1", "localhost"))
    proto = req.headers.get("x-forwarded-proto", "http" if local else "https")
    stage = (req.context or {}).get("stage") if ".execute-api." in host else None
    return f"{proto}://{host}" + (f"/{stage}" if stage else "")


def page_args(params: dict[str, str]) -> tuple[int, str | None]:
    raw = params.get("limit", "50")
    try:
        limit = int(raw)
    except ValueError:
        raise Invalid("limit", "limit must be a whole number between 1 and 500") from None
    if not 1 <= limit <= 500:
        raise Invalid("limit", "limit must be between 1 and 500")
    return limit, params.get("cursor") or None


def api(app: Chalice, scope: str | None = None) -> Callable[..., Any]:
    """Authenticate (unless `scope` is None), check the scope (unless it is "": the route
    checks itself), and turn domain errors into
    the one error shape. The route receives the principal as its first argument."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def view(*args: Any, **kwargs: Any) -> Any:
            try:
                if scope is None:
                    out = fn(*args, **kwargs)
                else:
                    headers = app.current_request.headers
                    principal = tenants.authenticate(headers.get("authorization"))
                    if scope:
                        principal.require(scope)
                    out = fn(principal, *args, **kwargs)
                if isinstance(out, tuple):
                    status, body = out
                    return Response(body=body, status_code=status, headers=JSON)
                return out
            except OblioError as exc:
                return error_response(exc)
            except Exception:  # noqa: BLE001 - the last boundary: log it, answer the shape
                logger.exception("unhandled error")
                return error_response(OblioError(
                    "an internal error occurred; it has been logged, try again later",
                    code="internal_error"))

        return view

    return wrap


_persistence: DynamoDBPersistenceLayer | None = None
#: the write operations, by name: what `_run` calls, the first time and for a replay
_OPERATIONS: dict[str, Callable[[Principal, Any, dict[str, Any]], tuple[int, Any]]] = {}


def _answer(out: Any) -> tuple[int, Any]:
    """A view's answer as (status, body): a body alone is 200."""
    if isinstance(out, tuple):
        status, body = out
        return int(status), body
    return 200, out


def idempotent_write(app: Chalice, name: str, body: bool = False,
                     context: dict[str, Callable[[Chalice], Any]] | None = None,
                     ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a write route once, under `@api`: it runs once per `Idempotency-Key` (see
    `idempotent`). The view receives the principal, the JSON body when `body` (else the body
    is not read), the path parameters and the `context` values (e.g. the base URL), and
    answers a body (200) or (status, body). `name` names the operation in the idempotency
    record: a replay must find the same name, path parameters, context and body."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def operation(principal: Principal, raw: Any, params: dict[str, Any]) -> tuple[int, Any]:
            args = (principal, raw) if body else (principal,)
            return _answer(fn(*args, **params))

        _OPERATIONS[name] = operation

        @functools.wraps(fn)
        def view(principal: Principal, **path: str) -> tuple[int, Any]:
            raw = json_body(app) if body else {}
            params = {**path, **{k: get(app) for k, get in (context or {}).items()}}
            return idempotent(app, principal, name, raw, params)

        return view

    return wrap


def _store() -> DynamoDBPersistenceLayer:
    global _persistence
    if _persistence is None:
        _persistence = DynamoDBPersistenceLayer(table_name=get_settings().table("idempotency"))
    return _persistence


# Powertools keys a record by this function's module and name (chalicelib.edge._run) and the
# call's [tenant_id, key], and checks [op, params, body] on a replay: keep all of them as they
# are, or the records written before a deploy are no longer found.
def _run(call: dict[str, Any]) -> dict[str, Any]:
    p = call["principal"]
    principal = Principal(p["tenant_id"], p["key_id"], frozenset(p["scopes"]), p["children"])
    status, body = _OPERATIONS[call["op"]](principal, call["body"], call["params"])
    return {"status": status, "body": body}


def idempotent(app: Chalice, principal: Principal, op: str, body: Any,
               params: dict[str, Any] | None = None) -> tuple[int, Any]:
    """Run a write once per `Idempotency-Key` (per tenant, 24 h): a replay with the same body
    returns the first answer; another body with the same key is 409."""
    params = params or {}
    key = app.current_request.headers.get("idempotency-key")
    if not key:
        return _OPERATIONS[op](principal, body, params)
    if len(key) > 255:
        raise Invalid("Idempotency-Key", "the Idempotency-Key header must be at most 255 "
                                         "characters")
    call = {"tenant_id": principal.tenant_id, "key": key, "op": op, "body": body,
            "params": params,
            "principal": {"tenant_id": principal.tenant_id, "key_id": principal.key_id,
                          "scopes": sorted(principal.scopes), "children": principal.children}}
    fn = idempotent_function(
        data_keyword_argument="call", persistence_store=_store(),
        config=IdempotencyConfig(event_key_jmespath="[tenant_id, key]",
                                 payload_validation_jmespath="[op, params, body]",
                                 expires_after_seconds=24 * 3600))(_run)
    try:
        out = fn(call=call)
    except IdempotencyValidationError:
        raise Conflict("this Idempotency-Key was already used with another request body; "
                       "use a new key for a new request", code="idempotency_key_reused") \
            from None
    except IdempotencyAlreadyInProgressError:
        raise Conflict("a request with this Idempotency-Key is still in progress; retry in a "
                       "moment", code="idempotency_in_progress") from None
    return int(out["status"]), out["body"]
