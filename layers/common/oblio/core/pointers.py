"""What an attribute mapped to a bucket (`s3:`) points to, read the one way for the erasure,
its verification and the export.

A pointer is an object key in the attribute's declared bucket; a map `{bucket, key}`; an
`s3://bucket/key` URL, or an S3 `https://` URL (virtual-hosted or path-style, its key
percent-decoded); or a list or set of any of those (one attribute may name several files).
A pointer that names a bucket the map does not declare is `outside` (the subject's file, that
oblio may not touch: reported, never followed). A value that is none of these (a number, a map
without a key, another kind of URL) is `unreadable`: oblio cannot tell which file it names,
and says so rather than treat it as no file. An empty value (none, "", an empty list) names
no file."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

Kind = Literal["file", "outside", "unreadable"]

#: `<bucket>.s3.amazonaws.com`, `<bucket>.s3.<region>.amazonaws.com`, `<bucket>.s3-<region>...`
_VIRTUAL = re.compile(r"^(?P<bucket>.+?)\.s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?$")
#: a value read as a URL: one that starts with a scheme
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
#: `s3.amazonaws.com`, `s3.<region>.amazonaws.com`, `s3-<region>.amazonaws.com`
_PATH_STYLE = re.compile(r"^s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com(?:\.cn)?$")


@dataclass(frozen=True)
class Pointer:
    """One file a value names: a `file` of a declared bucket (`bucket`, `key`), one `outside`
    the map (`bucket` as named, or None), or an `unreadable` value (neither)."""

    kind: Kind
    bucket: str | None = None
    key: str | None = None


def read(value: Any, own: str, declared: Collection[str]) -> list[Pointer]:
    """The files `value` names; `own` is the attribute's declared bucket (physical name),
    `declared` every bucket of the map (physical names)."""
    if value is None or value == "":
        return []
    if isinstance(value, (list, tuple, set, frozenset)):
        return [p for v in value for p in read(v, own, declared)]
    if isinstance(value, str):
        if not _SCHEME.match(value):  # a key may hold '://' further on
            return [Pointer("file", own, value)]
        named = _url(value)
        return [_named(*named, declared)] if named else [Pointer("unreadable")]
    if isinstance(value, dict):
        key = value.get("key")
        if not isinstance(key, str) or not key:
            return [Pointer("unreadable")]
        bucket = value.get("bucket") or own
        return [_named(bucket if isinstance(bucket, str) else "", key, declared)]
    return [Pointer("unreadable")]


def _named(bucket: str, key: str, declared: Collection[str]) -> Pointer:
    return Pointer("file", bucket, key) if bucket in declared else \
        Pointer("outside", bucket or None, key)


def _url(value: str) -> tuple[str, str] | None:
    """(bucket, key) of an S3 URL, or None for any other URL."""
    if value.startswith("s3://"):
        # everything after the bucket is the key, as written: '#' and '?' are its own
        bucket, _, key = value[len("s3://"):].partition("/")
        return (bucket, key) if bucket and key else None
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http"):
        return None
    host = (parts.hostname or "").lower()
    path = unquote(parts.path.lstrip("/"))
    if hit := _VIRTUAL.match(host):
        return (hit["bucket"], path) if path else None
    if _PATH_STYLE.match(host):
        bucket, _, key = path.partition("/")
        return (bucket, key) if bucket and key else None
    return None
