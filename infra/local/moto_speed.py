"""Local only: an equality index for moto's DynamoDB index queries, and a memo of its
server's routing.

moto answers a Query on a GSI by sorting every item of the table. The demo tables' indexes are
keyed (tenant_id, attribute), so every query of a walk walked the whole table: 60 ms a query at
1,000 contacts, seconds at 100,000, where DynamoDB answers in milliseconds whatever the size.
This shim gives moto what DynamoDB has: for a query whose sort-key condition is an equality,
only the items with that sort-key value are handed to moto's own query code, which still does
every check, sort, filter and page exactly as before. The candidate lists are kept up to
date item by item: every write marks the key of the item it wrote, and the next query
re-reads just those items (rebuilding a whole table's lists after each write made a query
that follows a write cost as much as a scan: a bulk job writes between every two queries),
so a query never misses a fresh item. A query on a table's own key reads only its partition
(moto sorts every item of the table to find them).

moto finds an account's backends under its one global lock (`_account_backend`): with them
there already, it no longer waits on the lock.

moto's server finds the backend of every request under one lock, listing its own package's
folders and matching some 300 URL patterns each time (0.3 ms a request, and every other
request waits on the lock meanwhile: a fifth of the local stack's time in a bulk job). The
answer depends only on the host it names, so it is remembered per host.

moto changes an item in place, one action of an UpdateItem after the other, and writes an
answer from the live items after its backend returns: a GetItem on another thread could see
half an update (a request's new status without its result). DynamoDB reads an item whole:
locally, every read of items (GetItem, BatchGetItem, Query, Scan, TransactGetItems) holds the
writes' lock until its answer is built.
"""

from __future__ import annotations

import threading
from typing import Any

from moto.core.base_backend import BackendDict
from moto.dynamodb.models import DynamoDBBackend
from moto.dynamodb.models.table import Table
from moto.dynamodb.responses import DynamoHandler
from moto.moto_server.werkzeug_app import DomainDispatcherApplication

_local = threading.local()
_lock = threading.Lock()
# moto's server answers on many threads and its DynamoDB writes are not atomic: a transaction
# that fails is undone by writing back what it changed, which would overwrite what another
# thread wrote meanwhile (the audit chain's head, for one). DynamoDB serialises writes to an
# item and reads it whole; locally, every write (a transaction as a whole) holds this lock,
# and every read until its answer is built
_write_lock = threading.RLock()
#: the handler's reads of items, each answered under the writes' lock
READS = ("get_item", "batch_get_item", "query", "scan", "transact_get_items")
_orig_all_items = Table.all_items
_orig_query = Table.query
_orig_table_put = Table.put_item
_orig_table_delete = Table.delete_item
_patched: dict[str, Any] = {}
_read_patched: dict[str, Any] = {}
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


class _Lists:
    """One attribute's candidate lists of one table: value -> {item key: item}, the value
    each item key is listed under, and the keys written since (appended by writers, taken
    from the front by the one query that holds `lock`: a query finds the lists up to date
    without a lock whenever nothing was written since)."""

    def __init__(self) -> None:
        self.groups: dict[Any, dict[Any, Any]] = {}
        self.where: dict[Any, Any] = {}
        self.pending: list[tuple[Any, Any]] = []
        self.built = False
        self.lock = threading.Lock()


#: table -> attribute -> its candidate lists
_lists: dict[str, dict[str, _Lists]] = {}


def _item_key(item: Any) -> tuple[Any, Any]:
    return (item.hash_key, item.range_key)


def _forget(table_name: str | None) -> None:
    """Drop the candidate lists of a table (None: of every table)."""
    with _lock:
        if table_name is None:
            _lists.clear()
        else:
            _lists.pop(table_name, None)


def _written(table_name: str, keys: list[tuple[Any, Any]]) -> None:
    """Mark items written: each list of the table re-reads them before its next answer."""
    for lists in list((_lists.get(table_name) or {}).values()):
        lists.pending.extend(keys)


def _current(table: Table, key: tuple[Any, Any]) -> Any:
    """The table's item of this key now, or None."""
    part = table.items.get(key[0])
    if part is None or not table.range_key_attr:
        return part
    return None if key[1] is None else part.get(key[1])


def _candidates(table: Table, attr: str, value: Any) -> list[Any]:
    lists = (_lists.get(table.name) or {}).get(attr)
    if lists is None:
        with _lock:  # registered before it is built: the writes meanwhile are marked in it
            lists = _lists.setdefault(table.name, {}).setdefault(attr, _Lists())
    if not lists.built or lists.pending:
        with lists.lock:
            if not lists.built:
                _build(lists, table, attr)
                lists.built = True
            n = len(lists.pending)
            for k in set(lists.pending[:n]):
                old = lists.where.pop(k, None)
                if old is not None:
                    lists.groups[old].pop(k, None)
                item = _current(table, k)
                v = None if item is None else item.attrs.get(attr)
                if v is not None:
                    lists.groups.setdefault(v, {})[k] = item
                    lists.where[k] = v
            del lists.pending[:n]
    return list(lists.groups.get(value, {}).values())


def _build(lists: _Lists, table: Table, attr: str) -> None:
    # moto's server writes from other threads meanwhile: a table that changes while it is
    # read raises, and is read again (and each of those writes is marked in `pending`)
    while True:
        try:
            groups: dict[Any, dict[Any, Any]] = {}
            where: dict[Any, Any] = {}
            for item in list(_orig_all_items(table)):
                v = item.attrs.get(attr)
                if v is not None:
                    groups.setdefault(v, {})[_item_key(item)] = item
                    where[_item_key(item)] = v
            lists.groups, lists.where = groups, where
            return
        except RuntimeError:
            continue


def _table_put(self: Table, *args: Any, **kwargs: Any) -> Any:
    item = _orig_table_put(self, *args, **kwargs)  # refused: nothing was written
    _written(self.name, [_item_key(item)])
    return item


def _table_delete(self: Table, hash_key: Any, range_key: Any) -> Any:
    try:
        return _orig_table_delete(self, hash_key, range_key)
    finally:
        _written(self.name, [(hash_key, range_key or None)])


def _all_items(self: Table) -> Any:
    override = getattr(_local, "override", None)
    if override is not None and override[0] is self:
        return list(override[1])
    return _orig_all_items(self)


def _query(self: Table, hash_key: Any, range_comparison: str | None, range_objs: list[Any],
           *args: Any, **kwargs: Any) -> Any:
    index_name = kwargs.get("index_name") or (args[4] if len(args) > 4 else None)
    if not index_name and hash_key is not None:
        # the table's own key: the items of that partition only (moto then sorts, compares,
        # filters and pages them as ever)
        part = self.items.get(hash_key)
        found = [] if part is None else (list(part.values()) if self.range_key_attr
                                         else [part])
        return _answer(self, found, hash_key, range_comparison, range_objs, args, kwargs)
    index = {i.name: i for i in self.all_indexes()}.get(index_name) if index_name else None
    schema = index.schema if index else []
    ranges = [k["AttributeName"] for k in schema if k["KeyType"] == "RANGE"]
    hashes = [k["AttributeName"] for k in schema if k["KeyType"] == "HASH"]
    if range_comparison in ("=", "EQ") and len(range_objs) == 1 and len(ranges) == 1:
        return _answer(self, _candidates(self, ranges[0], range_objs[0]), hash_key,
                       range_comparison, range_objs, args, kwargs)
    if len(hashes) == 1 and hashes[0] != "tenant_id" and hash_key is not None:
        # any other condition on an index whose partition is not the tenant (the retention
        # sweep index, `<tenant>#<month>`): the items of that partition only
        return _answer(self, _candidates(self, hashes[0], hash_key), hash_key,
                       range_comparison, range_objs, args, kwargs)
    return _orig_query(self, hash_key, range_comparison, range_objs, *args, **kwargs)


def _answer(table: Table, items: list[Any], hash_key: Any, range_comparison: str | None,
            range_objs: list[Any], args: Any, kwargs: Any) -> Any:
    """moto's own query, over these items only (in key order, as moto lists them)."""
    items.sort(key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)
    _local.override = (table, items)
    try:
        return _orig_query(table, hash_key, range_comparison, range_objs, *args, **kwargs)
    finally:
        _local.override = None


def _writer(name: str) -> Any:
    original = getattr(DynamoDBBackend, name)

    def write(self: DynamoDBBackend, *args: Any, **kwargs: Any) -> Any:
        table_name = kwargs.get("table_name") or (args[0] if args else None)
        try:
            with _write_lock:
                return original(self, *args, **kwargs)
        finally:
            if name in ("create_table", "delete_table"):
                _forget(table_name if isinstance(table_name, str) else None)
            elif name == "update_item" and isinstance(table_name, str):
                # an update changes the item in place (a new one goes through Table.put_item)
                _updated(self, table_name, kwargs.get("key") or (args[1] if len(args) > 1
                                                                 else None))

    _patched[name] = original
    return write


def _reader(name: str) -> Any:
    original = getattr(DynamoHandler, name)

    def read(self: DynamoHandler) -> Any:
        with _write_lock:  # the answer's items are copied out of the live ones in here
            return original(self)

    _read_patched[name] = original
    return read


def _updated(backend: DynamoDBBackend, table_name: str, key: Any) -> None:
    table = backend.tables.get(table_name)
    if table is None or not isinstance(key, dict):
        _forget(table_name)
        return
    try:
        hash_key, range_key = backend.get_keys_value(table, key)
    except Exception:  # noqa: BLE001 - a key moto refused: nothing was written, or all is redone
        _forget(table_name)
        return
    _written(table_name, [(hash_key, range_key or None)])


def install() -> None:
    """The local shims: this equality index, the transaction backup of only the items a
    transaction names (moto_transactions), without which each TransactWriteItems deep-copies
    whole tables and fails when another thread writes meanwhile, EventBridge's delivery to
    SQS without a pass over the whole queue per message (moto_events), and S3's version
    listings that copy only the keys under their prefix (moto_s3), header blocks read
    without the e-mail parser (moto_http), and DynamoDB's item answers written as JSON
    directly (moto_json)."""
    from infra.local import moto_events, moto_http, moto_json, moto_s3, moto_transactions

    moto_http.install()
    moto_json.install()
    moto_transactions.install()
    moto_events.install()
    moto_s3.install()
    Table.all_items = _all_items  # type: ignore[method-assign]
    Table.query = _query  # type: ignore[method-assign]
    Table.put_item = _table_put  # type: ignore[method-assign]
    Table.delete_item = _table_delete  # type: ignore[method-assign]
    DomainDispatcherApplication.get_backend_for_host = _backend_for_host  # type: ignore[method-assign]
    BackendDict._create_account_specific_backend = _account_backend  # type: ignore[method-assign]
    for name in ("put_item", "update_item", "delete_item", "transact_write_items",
                 "delete_table", "create_table"):
        setattr(DynamoDBBackend, name, _writer(name))
    for name in READS:
        setattr(DynamoHandler, name, _reader(name))


def uninstall() -> None:
    from infra.local import moto_events, moto_http, moto_json, moto_s3, moto_transactions

    # in the reverse order of install: the writers wrap moto_transactions' transaction
    for name, original in _patched.items():
        setattr(DynamoDBBackend, name, original)
    _patched.clear()
    for name, original in _read_patched.items():
        setattr(DynamoHandler, name, original)
    _read_patched.clear()
    moto_http.uninstall()
    moto_json.uninstall()
    moto_transactions.uninstall()
    moto_events.uninstall()
    moto_s3.uninstall()
    Table.all_items = _orig_all_items  # type: ignore[method-assign]
    Table.query = _orig_query  # type: ignore[method-assign]
    Table.put_item = _orig_table_put  # type: ignore[method-assign]
    Table.delete_item = _orig_table_delete  # type: ignore[method-assign]
    DomainDispatcherApplication.get_backend_for_host = (  # type: ignore[method-assign]
        _orig_backend_for_host)
    BackendDict._create_account_specific_backend = (  # type: ignore[method-assign]
        _orig_account_backend)
    _routes.clear()
    _forget(None)
