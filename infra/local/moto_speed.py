"""Local only: an equality index for moto's DynamoDB index queries, and a memo of its
server's routing.

moto answers a Query on a GSI by sorting every item of the table. The demo tables' indexes are
keyed (tenant_id, attribute), so every query of a walk walked the whole table: 60 ms a query at
1,000 contacts, seconds at 100,000, where DynamoDB answers in milliseconds whatever the size.
This shim gives moto what DynamoDB has: for a query whose sort-key condition is an equality,
only the items with that sort-key value are handed to moto's own query code, which still does
every check, sort, filter and page exactly as before. The candidate lists are rebuilt after
any write to the table (a version per table), so a query never misses a fresh item.

moto finds an account's backends under its one global lock (`_account_backend`): with them
there already, it no longer waits on the lock.

moto's server finds the backend of every request under one lock, listing its own package's
folders and matching some 300 URL patterns each time (0.3 ms a request, and every other
request waits on the lock meanwhile: a fifth of the local stack's time in a bulk job). The
answer depends only on the host it names, so it is remembered per host.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from typing import Any

from moto.core.base_backend import BackendDict
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_local = threading.local()
_lock = threading.Lock()
# moto's server answers on many threads and its DynamoDB writes are not atomic: a transaction
# that fails is undone by writing back what it changed, which would overwrite what another
# thread wrote meanwhile (the audit chain's head, for one). DynamoDB serialises writes to an
# item; locally, every write (a transaction as a whole) holds this lock
_write_lock = threading.RLock()
_versions: dict[str, int] = defaultdict(int)
_cache: dict[tuple[str, str], tuple[int, dict[Any, list[Any]]]] = {}
_orig_all_items = Table.all_items
_orig_query = Table.query
_patched: dict[str, Any] = {}
_orig_backend_for_host = DomainDispatcherApplication.get_backend_for_host
_routes: dict[str | None, Any] = {}
_orig_account_backend = BackendDict._create_account_specific_backend


def _backend_for_host(self: DomainDispatcherApplication, host: str | None) -> Any:
    # called under the dispatcher's own lock; a host no backend serves is asked again (moto
    # prints why), and so is one of another dispatcher (only one runs here)
    try:
        return _routes[host]
    except KeyError:
        backend = _orig_backend_for_host(self, host)
        if backend is not None:
            _routes[host] = backend
        return backend


def _account_backend(self: BackendDict[Any], account_id: str) -> None:
    # moto takes its one global lock on every look-up of an account's backends (several a
    # request), and lists its every account and compares every service's dict with this one
    # under it: with the account's backends there and this dict registered there is nothing
    # to do, as moto would find too (a reset clears both, and then moto's own code runs)
    if account_id in self and any(d is self for d in BackendDict._instances):  # type: ignore[misc]
        return
    _orig_account_backend(self, account_id)


def _bump(table_name: str | None) -> None:
    with _lock:
        if table_name is None:
            for name in list(_versions):
                _versions[name] += 1
            _cache.clear()
        else:
            _versions[table_name] += 1


def _candidates(table: Table, attr: str, value: Any) -> list[Any]:
    key = (table.name, attr)
    with _lock:
        version = _versions[table.name]
        hit = _cache.get(key)
        if hit is None or hit[0] != version:
            hit = _cache[key] = (version, _groups(table, attr))
    return hit[1].get(value, [])


def _groups(table: Table, attr: str) -> dict[Any, list[Any]]:
    # moto's server writes from other threads without this lock: a table that changes while
    # it is read raises, and is read again (the version bump after that write follows)
    while True:
        try:
            groups: dict[Any, list[Any]] = defaultdict(list)
            for item in list(_orig_all_items(table)):
                v = item.attrs.get(attr)
                if v is not None:
                    groups[v].append(item)
            return groups
        except RuntimeError:
            continue


def _all_items(self: Table) -> Any:
    override = getattr(_local, "override", None)
    if override is not None and override[0] is self:
        return list(override[1])
    return _orig_all_items(self)


def _query(self: Table, hash_key: Any, range_comparison: str | None, range_objs: list[Any],
           *args: Any, **kwargs: Any) -> Any:
    index_name = kwargs.get("index_name") or (args[4] if len(args) > 4 else None)
    if range_comparison in ("=", "EQ") and len(range_objs) == 1:
        if index_name:
            index = {i.name: i for i in self.all_indexes()}.get(index_name)
            ranges = [k["AttributeName"] for k in (index.schema if index else [])
                      if k["KeyType"] == "RANGE"]
        else:
            ranges = [self.range_key_attr] if self.range_key_attr else []
        if len(ranges) == 1:
            _local.override = (self, _candidates(self, ranges[0], range_objs[0]))
            try:
                return _orig_query(self, hash_key, range_comparison, range_objs, *args,
                                   **kwargs)
            finally:
                _local.override = None
    if index_name:
        # any other condition on an index whose partition is not the tenant (the retention
        # sweep index, `<tenant>#<month>`): the items of that partition only
        index = {i.name: i for i in self.all_indexes()}.get(index_name)
        hashes = [k["AttributeName"] for k in (index.schema if index else [])
                  if k["KeyType"] == "HASH"]
        if len(hashes) == 1 and hashes[0] != "tenant_id" and hash_key is not None:
            _local.override = (self, _candidates(self, hashes[0], hash_key))
            try:
                return _orig_query(self, hash_key, range_comparison, range_objs, *args,
                                   **kwargs)
            finally:
                _local.override = None
    return _orig_query(self, hash_key, range_comparison, range_objs, *args, **kwargs)


def _writer(name: str) -> Any:
    original = getattr(DynamoDBBackend, name)

    def write(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        if name == "transact_write_items":
            items = kwargs.get("transact_items") or (args[0] if args else [])
            tables = {op.get("TableName") for item in items for op in item.values()
                      if isinstance(op, dict)}
        else:
            tables = {kwargs.get("table_name") or (args[0] if args else None)}
        try:
            with _write_lock:
                return original(self, *args, **kwargs)
        finally:
            for table in tables:
                _bump(table if isinstance(table, str) else None)

    _patched[name] = original
    return write


def install() -> None:
    """The local shims: this equality index, the transaction backup of only the items a
    transaction names (moto_transactions), without which each TransactWriteItems deep-copies
    whole tables and fails when another thread writes meanwhile, EventBridge's delivery to
    SQS without a pass over the whole queue per message (moto_events), and S3's version
    listings that copy only the keys under their prefix (moto_s3), and header blocks read
    without the e-mail parser (moto_http)."""
    from infra.local import moto_events, moto_http, moto_s3, moto_transactions

    moto_http.install()
    moto_transactions.install()
    moto_events.install()
    moto_s3.install()
    Table.all_items = _all_items  # type: ignore[method-assign]
    Table.query = _query  # type: ignore[method-assign]
    DomainDispatcherApplication.get_backend_for_host = _backend_for_host  # type: ignore[method-assign]
    BackendDict._create_account_specific_backend = _account_backend  # type: ignore[method-assign]
    for name in ("put_item", "update_item", "delete_item", "transact_write_items",
                 "delete_table", "create_table"):
        setattr(DynamoDBBackend, name, _writer(name))


def uninstall() -> None:
    from infra.local import moto_events, moto_http, moto_s3, moto_transactions

    moto_http.uninstall()
    moto_transactions.uninstall()
    moto_events.uninstall()
    moto_s3.uninstall()
    Table.all_items = _orig_all_items  # type: ignore[method-assign]
    Table.query = _orig_query  # type: ignore[method-assign]
    DomainDispatcherApplication.get_backend_for_host = (  # type: ignore[method-assign]
        _orig_backend_for_host)
    BackendDict._create_account_specific_backend = (  # type: ignore[method-assign]
        _orig_account_backend)
    _routes.clear()
    for name, original in _patched.items():
        setattr(DynamoDBBackend, name, original)
    _patched.clear()
    _cache.clear()
