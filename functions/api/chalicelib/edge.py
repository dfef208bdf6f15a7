"""The API's edge: authentication, the one error shape (each domain error's status), JSON
bodies and query strings parsed into their models (`oblio.core.bodies`), and idempotency
keys. Route functions in app.py stay a few lines each."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any, cast

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
from oblio.core.bodies import Body, Tagged, parse
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


#: what a route takes as its body or query: a model, or a union of models told apart by a tag
Schema = type[Body] | Tagged[Any]


def json_body(app: Chalice) -> Any:
    """The request's body as JSON (an empty body is {}), whatever its declared type."""
    raw = app.current_request.raw_body
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON; send a JSON object with "
                         "'Content-Type: application/json'") from None


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


def api(app: Chalice, scope: str | None = None, *, query: Schema | None = None,
        body: Schema | None = None) -> Callable[..., Any]:
    """Authenticate (unless `scope` is None), check the scope (unless it is "": the route
    checks itself), parse the query string into `query` (the route's `q`) and the JSON body
    into `body` (its `body`), and turn domain errors into the one error shape. The route
    receives the principal as its first argument and answers a body (200), (status, body) or
    a Response."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def view(*args: Any, **kwargs: Any) -> Any:
            try:
                if scope is not None:
                    headers = app.current_request.headers
                    principal = tenants.authenticate(headers.get("authorization"))
                    if scope:
                        principal.require(scope)
                    args = (principal, *args)
                if query is not None:
                    kwargs["q"] = parse(query, dict(app.current_request.query_params or {}))
                if body is not None:
                    kwargs["body"] = parse(body, json_body(app))
                out = fn(*args, **kwargs)
                if isinstance(out, tuple):
                    status, answer = out
                    return Response(body=answer, status_code=status, headers=JSON)
                return out
            except OblioError as exc:
                return error_response(exc)
            except Exception:  # noqa: BLE001 - the last boundary: log it, answer the shape
                logger.exception("unhandled error")
                return error_response(OblioError(
                    "an internal error occurred; it has been logged, try again later",
                    code="internal_error"))

        declared = cast(Any, view)  # what the OpenAPI document is checked against
        declared.scope = scope
        declared.query_schema = query
        if body is not None:
            declared.body_schema = body
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


def idempotent_write(app: Chalice, name: str, body: Schema | None = None,
                     context: dict[str, Callable[[Chalice], Any]] | None = None,
                     ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a write route once, under `@api`: it runs once per `Idempotency-Key` (see
    `idempotent`). The view receives the principal, the JSON body parsed into `body` (no
    `body`: the route reads none), the path parameters and the `context` values (e.g. the
    base URL), and answers a body (200) or (status, body). A body that does not parse is
    refused before anything is recorded. `name` names the operation in the idempotency
    record: a replay must find the same name, path parameters, context and body."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def operation(principal: Principal, raw: Any, params: dict[str, Any]) -> tuple[int, Any]:
            args = (principal, parse(body, raw)) if body is not None else (principal,)
            return _answer(fn(*args, **params))

        _OPERATIONS[name] = operation

        @functools.wraps(fn)
        def view(principal: Principal, **path: str) -> tuple[int, Any]:
            raw = json_body(app) if body is not None else {}
            if body is not None:
                parse(body, raw)  # 400 / 422 before the idempotency record
            params = {**path, **{k: get(app) for k, get in (context or {}).items()}}
            return idempotent(app, principal, name, raw, params)

        declared = cast(Any, view)
        declared.body_schema = body
        declared.idempotent = True
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
