"""Local only: moto's ListObjectVersions reads only the keys under the prefix it is asked for.

moto answers ListObjectVersions by deep-copying every version of every key of the bucket (a
copy reads each object's body) and then dropping those outside the prefix. oblio lists the
versions of one file at a time (erasure, verification), so each listing copied the whole
bucket: a quarter of the local stack's Python time in the bulk benchmark, where S3 answers a
prefix listing in milliseconds whatever the bucket holds. While a listing with a prefix runs,
this shim has the bucket's key store hand moto's own code only the keys that start with it;
moto still copies, sorts, filters, pages and answers exactly as before, over the same keys
that would have survived its own prefix filter.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from moto.s3.models import S3Backend
from moto.s3.utils import _VersionedKeyStore

_local = threading.local()
_ORIGINAL: dict[str, Any] = {"list_object_versions": S3Backend.list_object_versions,
             "iterlists": _VersionedKeyStore.iterlists}
_installed: list[bool] = []


def _iterlists(self: _VersionedKeyStore) -> Iterator[tuple[str, list[Any]]]:
    only = getattr(_local, "only", None)
    if only is None or only[0] is not self:
        yield from _ORIGINAL["iterlists"](self)
        return
    prefix = only[1]
    for key in [k for k in list(dict.keys(self)) if k.startswith(prefix)]:
        versions = self.getlist(key)
        if versions is not None:  # deleted meanwhile by another thread
            yield key, versions


def list_object_versions(self: S3Backend, bucket_name: str, *args: Any,
                         **kwargs: Any) -> Any:
    prefix = kwargs.get("prefix", args[3] if len(args) > 3 else "") or ""
    if not prefix:
        return _ORIGINAL["list_object_versions"](self, bucket_name, *args, **kwargs)
    _local.only = (self.get_bucket(bucket_name).keys, prefix)
    try:
        return _ORIGINAL["list_object_versions"](self, bucket_name, *args, **kwargs)
    finally:
        _local.only = None


def install() -> None:
    if _installed:
        return
    _installed.append(True)
    setattr(S3Backend, "list_object_versions", list_object_versions)  # noqa: B010
    setattr(_VersionedKeyStore, "iterlists", _iterlists)  # noqa: B010


def uninstall() -> None:
    if not _installed:
        return
    _installed.clear()
    setattr(S3Backend, "list_object_versions", _ORIGINAL["list_object_versions"])  # noqa: B010
    setattr(_VersionedKeyStore, "iterlists", _ORIGINAL["iterlists"])  # noqa: B010
