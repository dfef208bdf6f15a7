"""The API's edge: authentication, the one error shape (each domain error's status), JSON
bodies and query strings parsed into their models (`oblio.core.bodies`), and idempotency
keys. Route functions in app.py stay a few lines each."""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
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

from oblio.control import metering, tenants
from oblio.control.tenants import Principal
from oblio.core.bodies import Body, Tagged, check_path, parse
from oblio.core.boundary import fault_of, transient
from oblio.core.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    MessageRefused,
    NotFound,
    OblioError,
    TooLarge,
    TooManyRequests,
    TransientError,
    Unauthorized,
    Unprocessable,
)
from oblio.core.observability import logger
from oblio.core.settings import get_settings
from oblio.store import aws

JSON = {"Content-Type": "application/json"}


#: the HTTP status of each kind of domain error; a subclass answers its nearest ancestor's
#: (InvalidLink is a BadRequest: 400; RateLimited a TooManyRequests: 429); anything else 500
STATUS: dict[type[OblioError], int] = {
    BadRequest: 400, Unauthorized: 401, Forbidden: 403, NotFound: 404, Conflict: 409,
    Gone: 410, TooLarge: 413, Unprocessable: 422, Invalid: 422, TooManyRequests: 429,
    MessageRefused: 502, TransientError: 503,
}


def status_of(exc: OblioError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 500


def error_response(exc: OblioError) -> Response:
    headers = dict(JSON)
    wait = exc.details.get("retry_after_seconds")
    if isinstance(exc, TooManyRequests) and isinstance(wait, int) and wait >= 0:
        headers["Retry-After"] = str(max(1, wait))  # RFC 9110: seconds to wait
    return Response(body=exc.to_body(), status_code=status_of(exc), headers=headers)


#: Chalice answers some errors itself, before a view runs, in its own `{"Code", "Message"}`
#: shape: the one error shape instead, saying what to do and repeating nothing the caller sent
#: (not the media type, not the method)
_CHALICE_ERRORS: dict[str, tuple[str, str]] = {
    "MethodNotAllowedError": ("method_not_allowed", "this path does not take this method; "
                              "the Allow header lists the ones it takes (see /v1/openapi.json)"),
    "UnsupportedMediaType": ("unsupported_media_type", "send the body as JSON with "
                             "'Content-Type: application/json'"),
    "BadRequest": ("bad_request", "the request cannot be answered as sent; see "
                   "/v1/openapi.json for what this route takes"),
}


def one_error_shape(event: Any, get_response: Callable[[Any], Response]) -> Response:
    """Chalice middleware: a response Chalice made itself (405, 415, its own 400 and 500)
    in the one error shape of API.md."""
    response = get_response(event)
    body = response.body
    if isinstance(body, dict) and set(body) == {"Code", "Message"}:
        code, message = _CHALICE_ERRORS.get(str(body["Code"]), (
            "internal_error", "an internal error occurred; it has been logged, try again "
                              "later"))
        headers = {k: v for k, v in (response.headers or {}).items()
                   if k.lower() in ("allow", "access-control-allow-origin")}
        status = response.status_code if code != "internal_error" else 500
        return Response(body={"error": {"code": code, "message": message, "details": {}}},
                        status_code=status, headers={**JSON, **headers})
    return response


#: what a route takes as its body or query: a model, or a union of models told apart by a tag
Schema = type[Body] | Tagged[Any]


#: no body the API takes nests deeper than a few levels; deeper is refused before anything
#: recurses over it (a body nested thousands deep would otherwise exhaust the stack)
MAX_JSON_DEPTH = 32


def _too_deep() -> BadRequest:
    return BadRequest(f"the body nests deeper than {MAX_JSON_DEPTH} levels; no field of this "
                      "API takes that: send the JSON object the route documents",
                      code="body_too_deep")


def _depth_ok(data: Any) -> bool:
    """Whether `data` nests at most MAX_JSON_DEPTH levels (walked without recursion)."""
    todo = [(data, 1)]
    while todo:
        value, depth = todo.pop()
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                return False
            todo.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict)
                                                  else value))
    return True


def json_body(app: Chalice) -> Any:
    """The request's body as JSON (an empty body is {}), whatever its declared type; a body
    that is not JSON, or nests deeper than MAX_JSON_DEPTH, is a BadRequest (400)."""
    raw = app.current_request.raw_body
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except RecursionError:
        raise _too_deep() from None
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("the body is not valid JSON; send a JSON object with "
                         "'Content-Type: application/json'") from None
    if not _depth_ok(data):
        raise _too_deep()
    return data


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
            # a call that files a request (or a job) adds its AWS calls to that record
            with metering.invocation(kind="api"):
                return answer(*args, **kwargs)

        def answer(*args: Any, **kwargs: Any) -> Any:
            try:
                if scope is not None:
                    headers = app.current_request.headers
                    principal = tenants.authenticate(headers.get("authorization"))
                    if scope:
                        principal.require(scope)
                    args = (principal, *args)
                check_path(kwargs)
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
            except Exception as exc:  # noqa: BLE001 - the last boundary: log it, answer the shape
                if transient(exc):  # a throttle or 5xx that outlasted the SDK's retries
                    logger.warning("transient error", extra=fault_of(exc))
                    return error_response(TransientError(
                        "the service is busy; nothing was changed that a retry would repeat: "
                        "send the request again in a moment", code="service_busy"))
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


@dataclass(frozen=True)
class Replay:
    """What the idempotency record of an operation keeps of its answer, so that the record
    holds no personal data and no secret (it lives 24 h, and is not erased with a subject):

    - by default the answer as it is: the operation's answers hold neither (ids, statuses,
      counts, the subject's HMAC reference);
    - `rerun_dry_runs`: a dry run's answer (a plan: item keys, which can be e-mail addresses)
      is not kept; a replay runs the dry run again (it changes nothing) and answers what is
      true now (after the subject's erasure: nothing found);
    - `rerun`: the operation changes nothing and its answer is secret-like (a signed
      withdrawal link): nothing of it is kept; a replay runs it again (a fresh link);
    - `rebuild=fn, drop=(...)`: the answer holds short-lived credentials (a presigned upload
      URL): the fields in `drop` are not kept, and a replay answers the rest with what
      `fn(principal, kept_answer)` adds (a fresh URL, or an error saying why there is none);
    - `secret="key_id"`: the answer holds a secret shown once (a new API key): only the
      field named (its reference) is kept, and a replay is 409 `secret_not_replayed` naming
      that reference, never the secret.

    A dry run or an operation run again for a replay is called with `replayed=True`: it was
    audited the first time and is not audited again."""

    rerun_dry_runs: bool = False
    rerun: bool = False
    secret: str | None = None
    drop: tuple[str, ...] = ()
    rebuild: Callable[[Principal, dict[str, Any]], dict[str, Any]] | None = None

    def kept(self, raw: Any, status: int, answer: Any) -> dict[str, Any]:
        if self.rerun or (self.rerun_dry_runs and isinstance(raw, dict)
                          and raw.get("dry_run") is True):
            return {"status": status, "rerun": True}
        if self.rebuild is not None and isinstance(answer, dict):
            return {"status": status, "rebuild": True,
                    "body": {k: v for k, v in answer.items() if k not in self.drop}}
        if self.secret is not None:
            ref = answer.get(self.secret) if isinstance(answer, dict) else None
            return {"status": status, "secret_of": {self.secret: ref}}
        return {"status": status, "body": answer}


_REPLAYS: dict[str, Replay] = {}
#: the answer of the operation this thread has just run (not a replay): the client gets it
#: whole, the record keeps `Replay.kept` of it
_fresh = threading.local()


def _answer(out: Any) -> tuple[int, Any]:
    """A view's answer as (status, body): a body alone is 200."""
    if isinstance(out, tuple):
        status, body = out
        return int(status), body
    return 200, out


def idempotent_write(app: Chalice, name: str, body: Schema | None = None,
                     context: dict[str, Callable[[Chalice], Any]] | None = None,
                     replay: Replay | None = None,
                     ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a write route once, under `@api`: it runs once per `Idempotency-Key` (see
    `idempotent`). The view receives the principal, the JSON body parsed into `body` (no
    `body`: the route reads none), the path parameters and the `context` values (e.g. the
    base URL), and answers a body (200) or (status, body). A body that does not parse is
    refused before anything is recorded. `name` names the operation in the idempotency
    record: a replay must find the same name, path parameters, context and body. `replay`
    says what the record keeps of the answer (see `Replay`: never personal data, never a
    secret)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        def operation(principal: Principal, raw: Any, params: dict[str, Any]) -> tuple[int, Any]:
            args = (principal, parse(body, raw)) if body is not None else (principal,)
            return _answer(fn(*args, **params))

        _OPERATIONS[name] = operation
        _REPLAYS[name] = replay or Replay()

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
        aws.count_calls(_persistence.client)  # its calls are the request's too
    return _persistence


# Powertools keys a record by this function's module and name (chalicelib.edge._run) and the
# call's [tenant_id, key], and checks the call's digest (a keyed HMAC of [op, params, body]) on
# a replay: keep all of them as they are, or the records written before a deploy are no
# longer found (or, for the digest, a replay of one is taken for another body: 409).
def _run(call: dict[str, Any]) -> dict[str, Any]:
    status, body = _OPERATIONS[call["op"]](_principal(call), call["body"], call["params"])
    _fresh.answer = (status, body)
    return _REPLAYS[call["op"]].kept(call["body"], status, body)


def _principal(call: dict[str, Any]) -> Principal:
    p = call["principal"]
    return Principal(p["tenant_id"], p["key_id"], frozenset(p["scopes"]), p["children"])


def _digest(tenant_id: str, op: str, body: Any, params: dict[str, Any]) -> str:
    """What a replay's body is compared by: a keyed HMAC (the tenant's key) of the operation,
    its parameters and body, so that the record's hash of it is no guessable hash of an
    e-mail address."""
    canon = json.dumps([op, params, body], sort_keys=True, separators=(",", ":"), default=str)
    return tenants.get_tenant(tenant_id).keys.hmac("idempotency", canon)


def _replayed(call: dict[str, Any], out: dict[str, Any]) -> tuple[int, Any]:
    """The answer of a replay, from what the record kept."""
    if out.get("rerun"):
        return _OPERATIONS[call["op"]](_principal(call), call["body"],
                                       {**call["params"], "replayed": True})
    if out.get("rebuild"):
        rebuild = _REPLAYS[call["op"]].rebuild
        assert rebuild is not None
        kept = dict(out["body"])
        return int(out["status"]), {**kept, **rebuild(_principal(call), kept)}
    if "secret_of" in out:
        raise Conflict("the first request with this Idempotency-Key made a secret, which is "
                       "shown once and never replayed: find what it made by the reference in "
                       "details (GET /v1/keys), and revoke it if its answer was lost",
                       code="secret_not_replayed", details=dict(out["secret_of"]))
    return int(out["status"]), out["body"]


def idempotent(app: Chalice, principal: Principal, op: str, body: Any,
               params: dict[str, Any] | None = None) -> tuple[int, Any]:
    """Run a write once per `Idempotency-Key` (per tenant, 24 h): a replay with the same body
    returns the first answer (as the operation's `Replay` kept it: a dry run is run again, a
    secret is never replayed); another body with the same key is 409."""
    params = params or {}
    key = app.current_request.headers.get("idempotency-key")
    if not key:
        return _OPERATIONS[op](principal, body, params)
    if len(key) > 255:
        raise Invalid("Idempotency-Key", "the Idempotency-Key header must be at most 255 "
                                         "characters")
    call = {"tenant_id": principal.tenant_id, "key": key, "op": op, "body": body,
            "params": params, "digest": _digest(principal.tenant_id, op, body, params),
            "principal": {"tenant_id": principal.tenant_id, "key_id": principal.key_id,
                          "scopes": sorted(principal.scopes), "children": principal.children}}
    fn = idempotent_function(
        data_keyword_argument="call", persistence_store=_store(),
        config=IdempotencyConfig(event_key_jmespath="[tenant_id, key]",
                                 payload_validation_jmespath="digest",
                                 expires_after_seconds=24 * 3600))(_run)
    _fresh.answer = None
    try:
        out = fn(call=call)
    except IdempotencyValidationError:
        raise Conflict("this Idempotency-Key was already used with another request body; "
                       "use a new key for a new request", code="idempotency_key_reused") \
            from None
    except IdempotencyAlreadyInProgressError:
        raise Conflict("a request with this Idempotency-Key is still in progress; retry in a "
                       "moment", code="idempotency_in_progress") from None
    fresh, _fresh.answer = _fresh.answer, None
    if fresh is not None:
        return int(fresh[0]), fresh[1]
    return _replayed(call, out)
