"""What the API takes: every JSON body and query string as a typed model (pydantic v2), and
the one way they are parsed.

A model checks the shape: the fields it knows (an unknown one is refused, naming it and the
closest known name), their types (no true for a number, no number for true, a list where a
list is due), enums and lengths. What needs the data map or the tenant (mapped table and
attribute names, the tenant's purposes, identities the map knows) stays with the domain,
which receives the parsed model. The OpenAPI document is generated from these same models.

`parse(Model, data)` returns the model or raises `Invalid` (422) naming the first field at
fault, or `BadRequest` (400) when the body is not a JSON object. Messages name fields and
what they take, never a value sent (values may be personal data)."""

from __future__ import annotations

import difflib
import functools
import ipaddress
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import (
    Annotated,
    Any,
    ClassVar,
    Generic,
    Literal,
    TypeVar,
    Union,
    cast,
    get_args,
    get_origin,
    overload,
)

import phonenumbers
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError

from oblio.core.errors import BadRequest, Invalid, NotFound

# -- the vocabulary of the API --------------------------------------------------------------

REQUEST_TYPES = ("access", "erasure", "anonymisation", "rectification", "restriction",
                 "objection")
REQUEST_STATUSES = ("received", "awaiting_verification", "awaiting_approval", "queued",
                    "running", "finishing", "completed", "completed_with_errors", "failed",
                    "cancelled")
#: what a person may ask for through the self-service page
PUBLIC_TYPES = ("access", "erasure", "objection")
SCOPES = ("dsr:read", "dsr:write", "dsr:erase", "consent:write", "consent:read", "audit:read",
          "admin")
CHANNELS = ("email", "sms", "phone", "post", "web")
CONSENT_STATUSES = ("granted", "withdrawn")
#: what a consent's `proof` may hold; an IP address is kept only as its HMAC
PROOF_FIELDS = ("submission_id", "form_id", "campaign_id", "message_id", "ip_address")
#: a one-click withdrawal link lives this many days (from, to) and by default
LINK_DAYS = (1, 730)
DEFAULT_LINK_DAYS = 90
EXPORT_TTL_DAYS = (10, 14, 30)
#: a tenant's public name (its self-service page), and a consent purpose's name
SLUG = re.compile(r"^[a-z0-9](?:[a-z0-9-]{1,38})[a-z0-9]$")
PURPOSE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
MAX_PURPOSES = 50
POLICY_ACTIONS = ("anonymise", "delete", "export_then_delete", "export_only")
#: "items": a policy acts on the table's items found; "subjects": on everything of the
#: subjects those items name
POLICY_SCOPES = ("items", "subjects")

# -- models and parsing -----------------------------------------------------------------------


class Body(BaseModel):
    """A JSON body: unknown fields refused, types strict."""

    model_config = ConfigDict(extra="forbid", strict=True)

    #: field -> the message of any error of that field (what it takes, in a sentence), but
    #: for an unknown field and the validators' own messages
    hints: ClassVar[dict[str, str]] = {}
    #: field -> the error code of its errors, where it is not `invalid_field`
    codes: ClassVar[dict[str, str]] = {}
    #: what a client should send, shown when the body is not a JSON object
    example: ClassVar[str] = "{}"
    kind: ClassVar[str] = "body"


class Query(Body):
    """A query string: its values arrive as text, so numbers and true/false are read from it."""

    model_config = ConfigDict(extra="forbid", strict=False)

    kind: ClassVar[str] = "query"


B = TypeVar("B", bound=Body)
U = TypeVar("U")


@dataclass(frozen=True)
class Tagged(Generic[U]):
    """A body that is one of several models, told apart by the value of its field `tag`
    (a union discriminated on `type`); `name` names it in the OpenAPI document."""

    name: str
    tag: str
    members: tuple[type[Body], ...]
    example: str = "{}"
    code: str = "invalid_type"
    by_tag: dict[str, type[Body]] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        tags = {get_args(m.model_fields[self.tag].annotation)[0]: m for m in self.members}
        object.__setattr__(self, "by_tag", tags)

    @cached_property
    def adapter(self) -> TypeAdapter[Any]:
        union = cast(Any, Union)[self.members]
        tagged: Any = Annotated[union, Field(discriminator=self.tag)]
        return TypeAdapter(tagged)

    @property
    def fields(self) -> set[str]:
        return {f for m in self.members for f in m.model_fields}


@overload
def parse(schema: type[B], data: Any) -> B: ...


@overload
def parse(schema: Tagged[U], data: Any) -> U: ...


def parse(schema: type[B] | Tagged[U], data: Any) -> B | U:
    """`data` (a decoded JSON body, a query's dict) as `schema`, or Invalid / BadRequest."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise BadRequest(f"the body must be a JSON object, e.g. {schema.example}")
    if isinstance(schema, Tagged):
        tag = data.get(schema.tag)
        model = schema.by_tag.get(tag) if isinstance(tag, str) else None
        if model is None:
            raise Invalid(schema.tag, f"{schema.tag} must be one of {', '.join(schema.by_tag)}",
                          code=schema.code)
        # a field of another member sent as null means "not given" (API.md's example body
        # of an erasure names tables, changes and purposes as null)
        data = {k: v for k, v in data.items()
                if v is not None or k in model.model_fields or k not in schema.fields}
        return cast(U, _validate(model, data, schema))
    return _validate(schema, data, None)


def _validate(model: type[B], data: Mapping[str, Any], union: Tagged[Any] | None) -> B:
    try:
        return model.model_validate(dict(data))
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False)
        raise _invalid(model, errors, union) from None


def _path(loc: tuple[int | str, ...]) -> str:
    """The field a location names, as API.md's errors name fields (`subject.email`); a list
    item is its list (`scopes`), whose message says what each item must be."""
    return ".".join(str(part) for part in loc if not isinstance(part, int))


def _nested(annotation: Any) -> type[Body] | None:
    if isinstance(annotation, type) and issubclass(annotation, Body):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        return next((a for a in get_args(annotation)
                     if isinstance(a, type) and issubclass(a, Body)), None)
    return None


def _owner(model: type[Body], loc: tuple[int | str, ...]
           ) -> tuple[type[Body], tuple[int | str, ...]]:
    """The innermost model a location points into, and the location within it."""
    owner, rest = model, loc
    while len(rest) > 1 and isinstance(rest[0], str):
        info = owner.model_fields.get(rest[0])
        sub = _nested(info.annotation) if info is not None else None
        if sub is None:
            break
        owner, rest = sub, rest[1:]
    return owner, rest


_KINDS = {"string_type": "a string", "int_type": "a whole number", "int_parsing": "a whole number",
          "int_from_float": "a whole number", "float_type": "a number",
          "float_parsing": "a number", "bool_type": "true or false",
          "bool_parsing": "true or false", "list_type": "a list", "dict_type": "an object",
          "model_type": "an object", "model_attributes_type": "an object"}
#: pydantic's messages of these say what was expected, never what was sent
_CONSTRAINTS = {"string_too_short", "string_too_long", "too_short", "too_long",
                "greater_than", "greater_than_equal", "less_than", "less_than_equal",
                "string_pattern_mismatch", "multiple_of"}
_OWN = "oblio_invalid"


def _explain(owner: type[Body], rest: tuple[int | str, ...], err: ErrorDetails,
             where: str) -> str:
    kind, ctx = err["type"], err.get("ctx") or {}
    if kind == _OWN:
        return f"{where} {err['msg']}"
    if kind == "value_error":
        return f"{where} {ctx.get('error', 'is not valid')}"
    name = str(rest[0]) if rest else ""
    if name in owner.hints:
        return owner.hints[name]
    if kind == "missing":
        return f"{where} is required"
    if kind in _KINDS:
        return f"{where} must be {_KINDS[kind]}"
    if kind == "literal_error":
        return f"{where} must be {ctx.get('expected', 'one of the values documented')}"
    if kind in _CONSTRAINTS:
        return f"{where}: {err['msg'][:1].lower()}{err['msg'][1:]}"
    return f"{where} is not valid"


def _unknown(owner: type[Body], key: str, where: str, parent: str,
             union: Tagged[Any] | None) -> tuple[str, str, str | None]:
    """The field to name, the message for an unknown field, and the closest known name. The
    name sent is repeated only where it is a misspelling of a known field name or a field of
    another type: anything else may be a value put where a name goes (an e-mail address as a
    key), so the message names where it is, not what it is."""
    known = list(owner.model_fields)
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    of_another = union is not None and owner in union.members and any(
        key in m.model_fields for m in union.members)
    if not close and not of_another and key not in _vocabulary() and not (
            union is not None and difflib.get_close_matches(key, sorted(union.fields), n=1,
                                                            cutoff=0.6)):
        at = f"'{parent}'" if parent else f"the {owner.kind}"
        takes = (f"type '{get_args(owner.model_fields[union.tag].annotation)[0]}' takes"
                 if union is not None and owner in union.members and not parent
                 else "it takes")
        return (parent or owner.kind, f"{at} has an unknown field (its name is not repeated: "
                                      f"it may be personal data); {takes} "
                                      f"{', '.join(known)}", None)
    suggestion = f"; did you mean '{close[0]}'?" if close else ""
    if union is not None and owner in union.members:
        tag = union.tag
        mine = get_args(owner.model_fields[tag].annotation)[0]
        known = [tag, *(k for k in known if k != tag)]
        takes = f"{tag} '{mine}' takes {', '.join(known)}"
        others = [repr(t) for t, m in union.by_tag.items() if key in m.model_fields]
        if others:
            return (where, f"{where} does not apply to {tag} '{mine}': it is a field of {tag} "
                           f"{', '.join(others)} ({takes})", None)
        if not close:
            close = difflib.get_close_matches(key, sorted(union.fields), n=1, cutoff=0.6)
            if close:
                of = [repr(t) for t, m in union.by_tag.items() if close[0] in m.model_fields]
                suggestion = f"; did you mean '{close[0]}' (a field of {tag} {', '.join(of)})?"
    else:
        takes = f"{parent or 'the ' + owner.kind} takes {', '.join(known)}"
    return where, f"unknown field '{where}'{suggestion} ({takes})", (close[0] if close else None)


#: names the API refuses in a body although it knows them (the tenant comes from the key)
_REFUSED_NAMES = frozenset({"tenant_id"})


@functools.cache
def _vocabulary() -> frozenset[str]:
    """Every field name of every body and query of the API (and the names it refuses): an
    unknown field of one of these names is repeated in a message, as it is a name of the
    API, not something of the caller's."""
    models: list[type[BaseModel]] = [Subject, PublicSubject, Proof, TenantSettings,
                                     PageQuery, RequestsQuery, SubjectQuery, TokenQuery]
    for schema in BODIES:
        models += list(schema.members) if isinstance(schema, Tagged) else [schema]
    return frozenset(f for m in models for f in m.model_fields) | _REFUSED_NAMES


def _invalid(model: type[Body], errors: list[ErrorDetails], union: Tagged[Any] | None,
             ) -> Invalid:
    # an unknown field first: a misspelt name usually explains the other complaints
    errors = sorted(errors, key=lambda e: e["type"] != "extra_forbidden")
    problems: list[dict[str, Any]] = []
    for err in errors:
        loc = tuple(err["loc"])
        owner, rest = _owner(model, loc)
        where = _path(loc)
        if err["type"] == "extra_forbidden":
            where, message, close = _unknown(owner, str(rest[-1]), where,
                                           _path(loc[:-1]), union)
            problems.append({"field": where, "message": message, "did_you_mean": close})
        else:
            code = owner.codes.get(str(rest[0])) if rest else None
            problems.append({"field": where, "message": _explain(owner, rest, err, where),
                             "code": code})
    first = problems[0]
    details: dict[str, Any] = {}
    if "did_you_mean" in first:
        details["did_you_mean"] = first["did_you_mean"]
    if len(problems) > 1:
        details["problems"] = [{"field": p["field"], "message": p["message"]}
                               for p in problems]
    return Invalid(first["field"], first["message"], code=first.get("code"), details=details)


# -- pieces -------------------------------------------------------------------------------------


def _own(predicate: str) -> PydanticCustomError:
    return PydanticCustomError(_OWN, predicate)


def _null_is_false(value: Any) -> Any:
    return False if value is None else value


#: true or false; null is taken as false (as a missing flag)
Flag = Annotated[bool, BeforeValidator(_null_is_false)]


def _whole(value: Any) -> Any:
    if type(value) is not int:
        raise _own("must be a whole number")
    return value


def _query_bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise _own("must be true or false")


#: true or false in a query string
QueryBool = Annotated[bool, BeforeValidator(_query_bool)]


def _stripped(value: str) -> str:
    if not value.strip():
        raise _own("must not be blank")
    return value.strip()


def _ip(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _own("is not an IPv4 or IPv6 address") from None


#: non-blank strings of at most so many characters, taken without their outer spaces
Text64 = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_stripped)]
Text200 = Annotated[str, Field(min_length=1, max_length=200), AfterValidator(_stripped)]
Text1000 = Annotated[str, Field(min_length=1, max_length=1000), AfterValidator(_stripped)]
Text10000 = Annotated[str, Field(min_length=1, max_length=10_000), AfterValidator(_stripped)]
IpAddress = Annotated[Text200, AfterValidator(_ip)]


def _instance_of(kinds: tuple[type, ...], words: str) -> Any:
    """A check that a JSON value is one of `kinds` (a bool is not a number unless named)."""

    def check(value: Any) -> Any:
        if isinstance(value, kinds) and (bool in kinds or not isinstance(value, bool)):
            return value
        raise _own(f"must be {words}")

    return check


ChangeValue = Annotated[Any, PlainValidator(
    _instance_of((str, int, bool), "a string, a whole number or a boolean"),
    json_schema_input_type=str | int | bool)]
FilterValue = Annotated[Any, PlainValidator(
    _instance_of((str, int, float, bool), "a string, a number or a boolean"),
    json_schema_input_type=str | float | bool)]
ExternalId = Annotated[Any, PlainValidator(
    _instance_of((str, int), "a string or a whole number"), json_schema_input_type=str | int)]


class Subject(Body):
    """The person a request is about, named by one or more identities (which ones a tenant
    takes is its data map's)."""

    email: str | None = Field(default=None, description="an e-mail address (compared case-"
                                                "insensitively after trimming)")
    phone: str | None = Field(default=None, description="a phone number, E.164 or national in the "
                                                "tenant's default region")
    external_id: ExternalId | None = Field(default=None, description="the tenant's own id of the "
                                                             "person")

    def identities(self) -> dict[str, Any]:
        """The identities as sent (unset ones left out)."""
        return self.model_dump(exclude_unset=True)


class PublicSubject(Body):
    """The one e-mail address or phone number a self-service request is about: the one-time
    code goes to it."""

    email: str | None = None
    phone: str | None = None

    def identities(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


_SUBJECT = ("subject is required: name the person by at least one of email, phone, "
            "external_id, e.g. {\"email\": \"name@example.com\"}")

# -- POST /v1/requests ------------------------------------------------------------------------


class _Request(Body):
    subject: Subject
    dry_run: Flag = Field(default=False, description="answer at once with what the request would do, "
                                             "table by table; nothing changes")
    include_children: Flag = Field(default=False, description="also in the tenant's child tenants "
                                                      "(a key with children access)")
    reason: str | None = Field(default=None, max_length=1000, description="why, for the record")

    hints: ClassVar[dict[str, str]] = {
        "subject": _SUBJECT,
        "reason": "reason must be a string of at most 1000 characters"}
    example: ClassVar[str] = ("{\"type\": \"erasure\", \"subject\": {\"email\": "
                              "\"name@example.com\"}, \"confirm\": true}")


class AccessRequest(_Request):
    """Art. 15 and 20: an export of everything held about the subject."""

    type: Literal["access"]
    notify_email: str | None = Field(default=None, description="who is e-mailed when the archive is "
                                                       "ready (the requester, not the subject)")


class _Irreversible(_Request):
    confirm: Flag = Field(default=False, description="required (true) unless dry_run: the action "
                                             "cannot be undone")


class ErasureRequest(_Irreversible):
    """Art. 17: every item of the subject deleted, or anonymised where the map keeps a shell."""

    type: Literal["erasure"]


class AnonymisationRequest(_Irreversible):
    """The data map's anonymise rules applied to the subject's items."""

    type: Literal["anonymisation"]
    tables: list[str] | None = Field(default=None, min_length=1, description="only these mapped "
                                                                     "tables")

    hints: ClassVar[dict[str, str]] = {
        **_Request.hints, "tables": "tables must be a non-empty list of mapped table names"}


class RectificationRequest(_Request):
    """Art. 16: attributes updated on every item that holds them."""

    type: Literal["rectification"]
    changes: dict[str, ChangeValue] = Field(min_length=1, description="attribute (or "
                                            "identity) -> its new value")

    hints: ClassVar[dict[str, str]] = {
        **_Request.hints,
        "changes": "rectification needs changes: {attribute: new value}, e.g. "
                   "{\"email\": \"new@example.com\"}"}


class RestrictionRequest(_Request):
    """Art. 18: the profile flagged, the subject off pending deliveries."""

    type: Literal["restriction"]
    lift: Flag = Field(default=False, description="lift a restriction instead")


class ObjectionRequest(_Request):
    """Art. 21: processing for the purposes stopped (default: marketing)."""

    type: Literal["objection"]
    purposes: list[str] | None = Field(default=None, min_length=1,
                                       description="purposes of the tenant's data map; "
                                                   "default (absent or null) marketing")

    hints: ClassVar[dict[str, str]] = {
        **_Request.hints, "purposes": "purposes must be a non-empty list of purpose names "
                                      "(leave it out for marketing)"}


RequestBody = Union[AccessRequest, ErasureRequest, AnonymisationRequest,  # noqa: UP007
                    RectificationRequest, RestrictionRequest, ObjectionRequest]
IrreversibleRequest = Union[ErasureRequest, AnonymisationRequest]  # noqa: UP007
REQUEST: Tagged[RequestBody] = Tagged(
    "RequestBody", "type", (AccessRequest, ErasureRequest, AnonymisationRequest,
                            RectificationRequest, RestrictionRequest, ObjectionRequest),
    example=_Request.example)


class ExtendBody(Body):
    """Move a request's due date (Art. 12(3))."""

    months: Annotated[Literal[1, 2], BeforeValidator(_whole)] = Field(
        description="1 or 2; two in all at most")
    reason: Text10000 = Field(description="why the request needs more time")

    hints: ClassVar[dict[str, str]] = {
        "months": "months must be 1 or 2 (Art. 12(3) allows two more months)",
        "reason": "reason is required: say why the request needs more time"}
    example: ClassVar[str] = "{\"months\": 1, \"reason\": ...}"


class DenyBody(Body):
    """Refuse a self-service request awaiting approval (Art. 12(4))."""

    reason: Text1000 = Field(description="told to the person")

    hints: ClassVar[dict[str, str]] = {
        "reason": "reason is required (at most 1000 characters): Art. 12(4) asks to tell the "
                  "person why nothing is done"}
    example: ClassVar[str] = "{\"reason\": ...}"


# -- consents -----------------------------------------------------------------------------------


class Proof(Body):
    """What proves the consent; an IP address is kept only as its HMAC."""

    submission_id: Text200 | None = None
    form_id: Text200 | None = None
    campaign_id: Text200 | None = None
    message_id: Text200 | None = None
    ip_address: IpAddress | None = None


class ConsentFields(Body):
    """One consent event, without its subject."""

    purpose: str = Field(description="one of the tenant's purposes (setting purposes)")
    channel: str = Field(description="how it was given or withdrawn",
                         json_schema_extra={"enum": list(CHANNELS)})
    status: Literal["granted", "withdrawn"]
    source: Text200 | None = Field(default=None, description="where it was recorded (default api)")
    policy_version: Text64 | None = None
    notice_hash: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$",
                                    description="SHA-256 of the notice text shown")
    proof: Proof | None = None
    at: str | None = Field(default=None, description="when (RFC 3339, not in the future); default now")

    hints: ClassVar[dict[str, str]] = {
        "status": "status must be 'granted' or 'withdrawn'",
        "notice_hash": "notice_hash must be the SHA-256 of the notice text shown, 64 "
                       "hexadecimal characters",
        "at": "at must be an RFC 3339 time such as '2026-03-01T10:00:00Z'",
        "source": "source must be a non-empty string of at most 200 characters",
        "policy_version": "policy_version must be a non-empty string of at most 64 characters",
        "proof": "proof must be an object, e.g. {\"submission_id\": \"f-123\", "
                 "\"ip_address\": \"203.0.113.7\"}"}
    example: ClassVar[str] = ("{\"subject\": {\"email\": ...}, \"purpose\": \"newsletter\", "
                              "\"channel\": \"web\", \"status\": \"granted\"}")


class ConsentBody(ConsentFields):
    """`POST /v1/consents`: a grant or a withdrawal, for a subject."""

    subject: Subject

    hints: ClassVar[dict[str, str]] = {**ConsentFields.hints, "subject": _SUBJECT}


class LinkBody(Body):
    """`POST /v1/consents/links`: a signed one-click withdrawal URL."""

    subject: Subject
    purpose: str = Field(description="one of the tenant's purposes")
    channel: str = Field(default="email", json_schema_extra={"enum": list(CHANNELS)})
    expires_in_days: int = Field(default=DEFAULT_LINK_DAYS, ge=LINK_DAYS[0], le=LINK_DAYS[1])

    hints: ClassVar[dict[str, str]] = {
        "subject": _SUBJECT,
        "expires_in_days": f"expires_in_days must be a whole number from {LINK_DAYS[0]} to "
                           f"{LINK_DAYS[1]}"}
    example: ClassVar[str] = ("{\"subject\": {\"email\": ...}, \"purpose\": \"newsletter\"}")


# -- self-service -------------------------------------------------------------------------------

_TENANT = ("tenant is required: the public name of the organisation you are asking, as its "
           "privacy page gives it")


class _PublicRequest(Body):
    tenant: str = Field(description="the organisation's public name (its public_slug)")
    subject: PublicSubject

    hints: ClassVar[dict[str, str]] = {
        "tenant": _TENANT,
        "subject": "subject names the one e-mail address or phone number the request is "
                   "about, e.g. {\"email\": \"name@example.com\"}: the code goes to it"}
    example: ClassVar[str] = ("{\"tenant\": \"acme\", \"type\": \"erasure\", \"subject\": "
                              "{\"email\": \"name@example.com\"}}")


class PublicAccess(_PublicRequest):
    type: Literal["access"]


class PublicErasure(_PublicRequest):
    type: Literal["erasure"]


class PublicObjection(_PublicRequest):
    type: Literal["objection"]
    purposes: list[str] | None = Field(default=None, min_length=1)

    hints: ClassVar[dict[str, str]] = {
        **_PublicRequest.hints, "purposes": "purposes must be a non-empty list of purpose "
                                            "names (leave it out for marketing)"}


PublicRequestBody = Union[PublicAccess, PublicErasure, PublicObjection]  # noqa: UP007
PUBLIC_REQUEST: Tagged[PublicRequestBody] = Tagged(
    "PublicRequestBody", "type", (PublicAccess, PublicErasure, PublicObjection),
    example=_PublicRequest.example)


class VerifyBody(Body):
    """The one-time code sent to the person."""

    tenant: str
    code: str = Field(pattern=r"^\s*\d{6}\s*$", description="the 6 digits received")

    hints: ClassVar[dict[str, str]] = {
        "tenant": _TENANT, "code": "code is the 6 digits of the message you received"}
    example: ClassVar[str] = "{\"tenant\": ..., \"code\": \"123456\"}"


# -- the tenant and its keys ----------------------------------------------------------------


def _purposes(value: list[str]) -> list[str]:
    if len(set(value)) != len(value):
        raise _own("names a purpose twice")
    return value


def _slug(value: str | None) -> str | None:
    if value is None:
        return None
    if not SLUG.match(value.lower()):
        raise _own("must be 3 to 40 lower-case letters, digits or '-' (not first or last), "
                   "or null to close the self-service page")
    return value.lower()


def _region(value: str | None) -> str | None:
    if value is None:
        return None
    if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise _own("must be a two-letter region code such as 'IT' or 'FR', or null")
    return value.upper()


class TenantSettings(Body):
    """A tenant's settings, with their defaults; a PATCH names only those it changes."""

    export_ttl_days: Annotated[Literal[10, 14, 30], BeforeValidator(_whole)] = Field(
        default=14, description="how many days an access export is kept")
    require_export_before_anonymisation: bool = Field(
        default=False, description="an anonymisation needs an unexpired access export of the subject")
    default_phone_region: Annotated[str | None, AfterValidator(_region)] = Field(
        default=None, description="two letters (IT, FR): how national phone numbers are read")
    purposes: Annotated[list[Annotated[str, Field(pattern=PURPOSE.pattern)]],
                        Field(min_length=1, max_length=MAX_PURPOSES),
                        AfterValidator(_purposes)] = Field(
        default_factory=lambda: ["marketing", "newsletter", "analytics", "profiling"],
        description="what consent is recorded for")
    public_slug: Annotated[str | None, AfterValidator(_slug)] = Field(
        default=None, description="the self-service page's name, unique across tenants; null closes it")
    selfservice_requires_approval: bool = Field(
        default=False, description="a verified self-service request waits for a DPO's approval")
    selfservice_due_pauses_until_verified: bool = Field(
        default=False, description="the due date does not run while the code is awaited")
    public_requests_per_hour: int = Field(default=20, ge=1, le=10_000,
                                          description="self-service requests from one address")
    bulk_max_concurrency: int | None = Field(
        default=None, ge=1, le=10_000,
        description="at most this many chunks of a bulk job erased at once (null: oblio's cap)")

    hints: ClassVar[dict[str, str]] = {
        "export_ttl_days": "export_ttl_days must be 10, 14 or 30",
        "require_export_before_anonymisation": "require_export_before_anonymisation must be "
                                               "true or false",
        "purposes": f"purposes must be a list of 1 to {MAX_PURPOSES} purpose names of "
                    "lower-case letters, digits, '_' or '-' (at most 40 characters), e.g. "
                    "[\"marketing\", \"newsletter\"]",
        "selfservice_requires_approval": "selfservice_requires_approval must be true or false",
        "selfservice_due_pauses_until_verified": "selfservice_due_pauses_until_verified must "
                                                 "be true or false",
        "public_requests_per_hour": "public_requests_per_hour must be a whole number from 1 "
                                    "to 10000 (requests from one address per hour)",
        "bulk_max_concurrency": "bulk_max_concurrency must be a whole number from 1 to 10000 "
                                "(chunks of a bulk job erased at once) or null"}

    def changes(self) -> dict[str, Any]:
        """The settings a PATCH names, with their new values."""
        return self.model_dump(exclude_unset=True)


class TenantPatch(Body):
    """`PATCH /v1/tenant`: `{"settings": {...}}` (the settings alone are taken too)."""

    settings: TenantSettings

    example: ClassVar[str] = "{\"settings\": {name: value}}"

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, data: Any) -> Any:
        if isinstance(data, dict) and "settings" not in data:
            return {"settings": data}
        return data


class KeyBody(Body):
    """`POST /v1/keys`: a new API key (shown once)."""

    scopes: list[Literal[SCOPES]] = Field(  # type: ignore[valid-type]
        min_length=1, json_schema_extra={"uniqueItems": True},
        description="each scope once: a list that names one twice is refused (422)")
    name: str | None = None
    children: Flag = Field(default=False, description="may act on child tenants (if this key may)")

    hints: ClassVar[dict[str, str]] = {
        "scopes": f"scopes must name at least one scope of {', '.join(SCOPES)}"}
    example: ClassVar[str] = "{\"scopes\": [...], \"name\": ...}"

    @field_validator("scopes")
    @classmethod
    def _once(cls, v: list[str]) -> list[str]:
        # refused rather than deduplicated: a key's scopes are what its creator meant, and a
        # repeated one is more likely a typo of another (dsr:write for dsr:erase)
        again = [i for i, s in enumerate(v) if s in v[:i]]
        if again:
            raise ValueError(f"item {', '.join(str(i) for i in again)} repeats a scope named "
                             "before it: name each scope once")
        return v


#: a tenant's id (it names the tenant in keys and in the physical names of silo tables)
TENANT_ID = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61})[a-z0-9]$")
TENANT_TAKES = ("2 to 63 lower-case letters, digits or '-' (not first or last), e.g. 'acme' "
                "or 'acme-eu'")
KEY_ID = re.compile(r"^key_[0-9A-Za-z]{26}$")


class TenantBody(Body):
    """`POST /v1/tenants` (the operator key): a tenant, under an existing parent when given,
    with its first admin key (shown once)."""

    tenant_id: str = Field(pattern=TENANT_ID.pattern, description=f"the tenant's id: {TENANT_TAKES}")
    name: str = Field(min_length=1, max_length=200, description="a name people read")
    parent_id: str | None = Field(default=None, pattern=TENANT_ID.pattern,
                                  description="an existing tenant this one is a child of")
    settings: TenantSettings | None = Field(default=None, description="settings other than the "
                                                                      "defaults")

    hints: ClassVar[dict[str, str]] = {
        "tenant_id": f"tenant_id must be {TENANT_TAKES}",
        "parent_id": f"parent_id must be an existing tenant's id ({TENANT_TAKES})",
        "name": "name must be a non-empty string of at most 200 characters"}
    example: ClassVar[str] = "{\"tenant_id\": \"acme-eu\", \"name\": \"ACME Europe\"}"

    @field_validator("name")
    @classmethod
    def _named(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("name must be a non-empty string of at most 200 characters")
        return v.strip()


# -- bulk erasure and retention ---------------------------------------------------------------


class BulkBody(Body):
    """`POST /v1/bulk-erasures`: a job waiting for its CSV."""

    dry_run: bool = Field(default=False, description="report what would be erased; nothing changes")

    example: ClassVar[str] = "{\"dry_run\": false}"


class PolicyBody(Body):
    """`PUT /v1/retention-policies/{id}`: a retention rule."""

    table: str = Field(description="a mapped table")
    date_attribute: str | None = Field(default=None, description="the date the age counts from "
                                                         "(default: the table's sweep date)")
    older_than: str = Field(description="an ISO 8601 duration (P18M, P30D) or a date "
                                         "(2025-01-01: what is dated before it)")
    action: Literal[POLICY_ACTIONS]  # type: ignore[valid-type]
    filter: dict[str, FilterValue] | None = Field(default=None, description="attribute: value "
                                                                    "(equality)")
    hold_attribute: str | None = Field(default=None, description="items where it is true are skipped "
                                                         "(default legal_hold if mapped)")
    enabled: bool = True
    description: str = Field(default="", max_length=500)
    scope: Literal[POLICY_SCOPES] = "items"  # type: ignore[valid-type]

    hints: ClassVar[dict[str, str]] = {
        "table": "table must name a mapped table",
        "older_than": "older_than must be an ISO 8601 duration such as P18M, P30D, P2Y or "
                      "P1Y6M, or a date (2025-01-01: what is dated before it)",
        "action": f"action must be one of {', '.join(POLICY_ACTIONS)}",
        "filter": "filter must be an object of attribute: value (equality)",
        "enabled": "enabled must be true or false",
        "description": "description must be a string of at most 500 characters",
        "scope": "scope must be items (the table's items) or subjects (everything of the "
                 "subjects the items name)"}
    codes: ClassVar[dict[str, str]] = {"table": "unmapped_table",
                                       "older_than": "invalid_duration",
                                       "action": "invalid_action"}
    example: ClassVar[str] = ("{\"table\": \"contacts\", \"older_than\": \"P18M\", "
                              "\"action\": \"anonymise\"}")


class RunBody(Body):
    """`POST /v1/retention-policies/{id}/run`: a dry run, or a sweep (irreversible: it needs
    `confirm`)."""

    dry_run: bool = Field(default=False, description="answer at once with what a sweep would do")
    confirm: bool = Field(default=False, description="required (true) unless dry_run: a sweep "
                                                     "cannot be undone")

    hints: ClassVar[dict[str, str]] = {
        "dry_run": "dry_run must be true or false",
        "confirm": "confirm must be true or false (true to run a sweep for real)"}
    example: ClassVar[str] = "{\"dry_run\": true} or {\"confirm\": true}"


class BackfillBody(Body):
    """`POST /v1/backfills`: write the shadows of identities stored as typed, once, for the
    items the tenant's tables already hold."""

    tables: list[str] | None = Field(default=None, min_length=1, max_length=100,
                                     description="logical tables of the data map (default: "
                                                 "every table with an identity stored as "
                                                 "typed)")
    segments: int | None = Field(default=None, ge=1, le=64,
                                 description="parallel Scan segments per physical table "
                                             "(default: the deployment's, 4)")

    hints: ClassVar[dict[str, str]] = {
        "tables": "tables must be a list of 1 to 100 logical table names of the data map, or "
                  "left out for every table with an identity stored as typed",
        "segments": "segments must be a whole number between 1 and 64"}
    codes: ClassVar[dict[str, str]] = {"tables": "unmapped_table"}
    example: ClassVar[str] = "{} or {\"tables\": [\"contacts\"], \"segments\": 4}"


# -- path parameters ----------------------------------------------------------------------------

#: the form of the ULIDs oblio gives out as request, job and sweep ids: 26 letters and digits
#: (not Crockford's alphabet alone: an id of that length that no ULID spells is simply not
#: found, 404, as before; what the form refuses is what an id never looks like)
ULID_ID = re.compile(r"^[0-9A-Za-z]{26}$")
#: a retention policy's id, as its admin names it
POLICY_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
#: each path parameter of the API: its pattern, what it takes (in an error message), and the
#: thing it names when oblio gave the id out (an id not of its form names nothing: 404, as an
#: unknown id) or None when the caller chooses it (a policy's name: 422, a bad input)
PATH_IDS: dict[str, tuple[re.Pattern[str], str, str | None]] = {
    "request_id": (ULID_ID, "the 26-character id that POST /v1/requests answered",
                   "request"),
    "job_id": (ULID_ID, "the 26-character id that POST /v1/bulk-erasures answered",
               "bulk erasure job"),
    "sweep_id": (ULID_ID, "the 26-character id that a run of a retention policy answered",
                 "retention sweep"),
    "backfill_id": (ULID_ID, "the 26-character id that POST /v1/backfills answered",
                    "backfill"),
    "policy_id": (POLICY_ID, "1-63 lower-case letters, digits, '-' or '_'", None),
    "tenant_id": (TENANT_ID, TENANT_TAKES, "tenant"),
    "key_id": (KEY_ID, "the key_id that creating the key answered (key_ and 26 characters)",
               "API key"),
}


def check_path(params: Mapping[str, str]) -> None:
    """Refuse a path parameter that is not of its form, naming the parameter and never
    repeating it (a path is where a careless client puts an e-mail address): an id oblio
    gives out names nothing (NotFound, 404), a name the caller chooses is Invalid (422)."""
    for name, value in params.items():
        known = PATH_IDS.get(name)
        if known is None or (isinstance(value, str) and known[0].match(value)):
            continue
        _, takes, thing = known
        if thing is not None:
            raise NotFound(f"no {thing} with this id in this tenant ({name} is {takes})")
        raise Invalid(name, f"{name} in the path is not one this API takes: it takes {takes}",
                      code="invalid_id")


# -- query strings ------------------------------------------------------------------------------


class PageQuery(Query):
    limit: int = Field(default=50, ge=1, le=500, description="at most this many items (1-500)")
    cursor: str | None = Field(default=None, description="the next_cursor of the previous page")

    hints: ClassVar[dict[str, str]] = {
        "limit": "limit must be a whole number between 1 and 500",
        "cursor": "cursor is not one this API gave out; start again without it"}


class IdPageQuery(PageQuery):
    """A page of a list whose cursor is the last id of the previous page (bulk jobs, sweeps):
    anything else is refused, not read as a key."""

    cursor: Annotated[str, Field(pattern=ULID_ID.pattern)] | None = Field(
        default=None, description="the next_cursor of the previous page")


class AuditQuery(PageQuery):
    """A page of the audit log: the cursor is the last entry id of the previous page."""

    cursor: Annotated[str, Field(pattern=r"^[0-9]{12}$")] | None = Field(
        default=None, description="the next_cursor of the previous page")


class AuditVerifyQuery(Query):
    """One call of the chain's verification: it checks at most `limit` entries (all by
    default) and about 20,000 bulk chunk certificates, then answers a `next_cursor`."""

    limit: int | None = Field(default=None, ge=1, le=10_000,
                              description="check at most this many entries (1-10000)")
    cursor: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,1000}$")] | None = Field(
        default=None, description="the next_cursor of the previous call")

    hints: ClassVar[dict[str, str]] = {
        "limit": "limit must be a whole number between 1 and 10000",
        "cursor": "cursor is not one this API gave out; start again without it"}


class RequestsQuery(PageQuery):
    type: Literal[REQUEST_TYPES] | None = None  # type: ignore[valid-type]
    status: Literal[REQUEST_STATUSES] | None = None  # type: ignore[valid-type]
    overdue: QueryBool = Field(default=False, description="only open requests past their due date")

    hints: ClassVar[dict[str, str]] = {
        **PageQuery.hints,
        "type": f"type must be one of {', '.join(REQUEST_TYPES)}",
        "status": f"status must be one of {', '.join(REQUEST_STATUSES)}",
        "overdue": "overdue must be true or false"}


class IdentityQuery(Query):
    """A subject named in the query string: `?email=` (or phone, external_id)."""

    email: str | None = None
    phone: str | None = Field(default=None, description="E.164 (write the + as %2B) or a "
                                                        "national number of the tenant's "
                                                        "default region")
    external_id: str | None = None

    @field_validator("phone")
    @classmethod
    def _plus_kept(cls, v: str | None) -> str | None:
        # an unencoded + in a query string arrives as a space: '?phone=+33 6...' reads
        # ' 33 6...', which would be taken for a national number of the tenant's region
        if v is not None and re.match(r"^\s+\d", v):
            raise ValueError("starts with a space before its digits: an unencoded + in a URL "
                             "is read as a space; write the + as %2B (?phone=%2B39...)")
        return v

    def identities(self) -> dict[str, Any]:
        return self.model_dump(exclude_unset=True)


class SubjectQuery(IdentityQuery):
    include_children: QueryBool = Field(default=False, description="also in the child tenants")

    def identities(self) -> dict[str, Any]:
        return {k: v for k, v in super().identities().items() if k != "include_children"}


class SearchBody(Body):
    """`POST /v1/subjects/search`: `GET /v1/subjects` with the identity in the body, so that
    it stays out of URLs, access logs and browser history (the console searches this way)."""

    subject: Subject
    include_children: bool = Field(default=False, description="also in the child tenants "
                                                              "(a key with children access)")

    hints: ClassVar[dict[str, str]] = {
        "subject": _SUBJECT,
        "include_children": "include_children must be true or false"}
    example: ClassVar[str] = ("{\"subject\": {\"email\": \"name@example.com\"}, "
                              "\"include_children\": false}")

    def identities(self) -> dict[str, Any]:
        return self.subject.identities()


class TokenQuery(Query):
    """A signed link's query: other parameters (a mail client's tracking) are ignored, so
    that a withdrawal never fails for what someone appended to the link."""

    model_config = ConfigDict(extra="ignore", strict=False)

    token: str | None = Field(default=None, description="the signed token of the link")


#: every model a route takes, for the OpenAPI document
BODIES: tuple[type[Body] | Tagged[Any], ...] = (
    REQUEST, ExtendBody, DenyBody, ConsentBody, LinkBody, PUBLIC_REQUEST, VerifyBody,
    TenantPatch, KeyBody, TenantBody, BulkBody, PolicyBody, RunBody, BackfillBody,
    SearchBody)


def schema_of(schema: type[Body] | Tagged[Any], ref: str = "#/$defs/{model}"
              ) -> dict[str, Any]:
    """The JSON Schema (2020-12) of a body or query model; nested models as `$defs`."""
    adapter: TypeAdapter[Any] = schema.adapter if isinstance(schema, Tagged) \
        else TypeAdapter(schema)
    return adapter.json_schema(ref_template=ref)

