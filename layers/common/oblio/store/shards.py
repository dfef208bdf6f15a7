"""Sharded tenant partitions: oblio's busiest tables (requests, suppression, consents) key an
item by `pk = "<tenant>#<shard>"`, not by the tenant alone, so that a tenant's million writes
(and reads) of a bulk job spread over `SHARDS` partitions instead of queueing on one (a
DynamoDB partition takes 1,000 write and 3,000 read units a second; a tenant's requests under
one key with an ever-increasing sort key would be one hot partition).

- `key(tenant, sort_key)` is the one place a sharded key is built: the shard is BLAKE2b of the
  item's sort key (a request's `req#<id>`, an open marker's `open#<type>#<subject ref>`, a
  suppression entry's `<kind>#<identity hmac>`), so each item lives in exactly one shard and
  a sort key is unique across the tenant's shards. A model may shard by a prefix of its sort
  key instead (`ShardedModel.shard_basis`: the consent ledger by the identity its records are
  filed under), so that the items read together stay in one shard.
- `ShardedModel` is the base of those models: built with `tenant_id` and its sort key, an item
  gets its `pk` without the caller naming it; `get`, `query`, `count` and `batch_get` refuse a
  bare tenant id as the partition key (it would silently find nothing).
- `query_tenant` reads a whole tenant: one Query per shard, merged in sort order lazily (memory
  holds one page per shard), resumable `after` a sort key: since a sort key lives in one shard
  only, the last sort key returned is a position in every shard at once (the multi-shard
  cursor). `count_tenant` adds the shards' counts."""

from __future__ import annotations

import hashlib
import heapq
import re
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

from pynamodb.attributes import UnicodeAttribute

from oblio.store.counted import CountedModel

#: partitions per tenant: 16 x 1,000 WCU = 16,000 write units a second for one tenant
SHARDS = 16
_KEY = re.compile(r"^[^#]+#(\d{2})$")

_M = TypeVar("_M", bound="ShardedModel")


class BareTenantKey(ValueError):
    """A read of a sharded table by the tenant id alone (a programming error)."""


def shard(sort_key: str) -> int:
    """The shard of an item, from its sort key: stable across processes and releases."""
    digest = hashlib.blake2b(sort_key.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % SHARDS


def key(tenant_id: str, sort_key: str) -> str:
    """The partition key of the tenant's item with this sort key."""
    return f"{tenant_id}#{shard(sort_key):02d}"


def tenant_keys(tenant_id: str) -> list[str]:
    """Every partition key of the tenant, in shard order."""
    return [f"{tenant_id}#{n:02d}" for n in range(SHARDS)]


def checked(pk: Any) -> str:
    """`pk` if it is a sharded partition key; a bare tenant id is refused."""
    hit = _KEY.match(pk) if isinstance(pk, str) else None
    if hit is None or int(hit.group(1)) >= SHARDS:
        raise BareTenantKey(f"{pk!r} is not a sharded partition key: build it with "
                            "shards.key(tenant, sort_key), or read the whole tenant with "
                            "shards.query_tenant")
    return str(pk)


class ShardedModel(CountedModel):
    """A model keyed by `pk = key(tenant_id, <its range key>)`, `tenant_id` kept beside it.

    A model whose items are read together under a prefix of their sort key (the consent
    ledger: every record of one identity) shards by that prefix instead: `shard_basis`."""

    pk = UnicodeAttribute(hash_key=True)
    tenant_id = UnicodeAttribute()

    @classmethod
    def shard_basis(cls, sort_key: str) -> str:
        """What of a sort key picks its shard: all of it, unless a model says otherwise."""
        return sort_key

    @classmethod
    def partition(cls, tenant_id: str, sort_key: str) -> str:
        """The partition key of the tenant's item with this sort key (or sort-key prefix,
        for a model that shards by one)."""
        return key(tenant_id, cls.shard_basis(sort_key))

    def __init__(self, hash_key: Any = None, range_key: Any = None,
                 _user_instantiated: bool = True, **attributes: Any) -> None:
        if _user_instantiated and hash_key is None and attributes.get("pk") is None:
            sort = range_key if range_key is not None else attributes.get(
                self._range_keyname or "")
            if attributes.get("tenant_id") is not None and sort is not None:
                attributes["pk"] = self.partition(attributes["tenant_id"], sort)
        super().__init__(hash_key, range_key, _user_instantiated, **attributes)

    @classmethod
    def get(cls: type[_M], hash_key: Any, range_key: Any = None,
            *args: Any, **kwargs: Any) -> _M:
        return super().get(checked(hash_key), range_key, *args, **kwargs)

    @classmethod
    def query(cls: type[_M], hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        return super().query(checked(hash_key), *args, **kwargs)

    @classmethod
    def count(cls, hash_key: Any = None, *args: Any, **kwargs: Any) -> int:
        return super().count(checked(hash_key), *args, **kwargs)

    @classmethod
    def batch_get(cls: type[_M], items: Iterable[Any], *args: Any,
                  **kwargs: Any) -> Iterator[_M]:
        keys = [tuple(i) for i in items]
        for k in keys:
            checked(k[0])
        return super().batch_get(keys, *args, **kwargs)


def query_tenant(model: type[_M], tenant_id: str, range_key_condition: Any = None, *,
                 filter_condition: Any = None, scan_index_forward: bool = True,
                 limit: int | None = None, after: str | None = None,
                 attributes_to_get: list[str] | None = None,
                 consistent_read: bool = False) -> Iterator[_M]:
    """The tenant's items matching the conditions, over every shard, in sort-key order
    (descending when not `scan_index_forward`), at most `limit`, starting after the sort key
    `after` (exclusive). Each shard is read lazily, a page (`limit` items, or DynamoDB's own
    page) at a time."""
    sort_name = model._range_keyname or ""
    wanted = None if attributes_to_get is None else sorted(
        {*attributes_to_get, "pk", sort_name})

    def one(pk: str) -> Iterator[_M]:
        start = {"pk": {"S": pk}, sort_name: {"S": after}} if after is not None else None
        return iter(model.query(pk, range_key_condition, filter_condition=filter_condition,
                                scan_index_forward=scan_index_forward, limit=limit,
                                page_size=None if limit is None else max(limit, 25),
                                last_evaluated_key=start, attributes_to_get=wanted,
                                consistent_read=consistent_read))

    merged = heapq.merge(*(one(pk) for pk in tenant_keys(tenant_id)),
                         key=lambda m: getattr(m, sort_name), reverse=not scan_index_forward)
    for n, item in enumerate(merged):
        if limit is not None and n >= limit:
            return
        yield item


def count_tenant(model: type[ShardedModel], tenant_id: str, range_key_condition: Any = None,
                 *, filter_condition: Any = None) -> int:
    """How many of the tenant's items match, counted by DynamoDB shard by shard (Select=COUNT)
    without reading them."""
    return sum(model.count(pk, range_key_condition, filter_condition=filter_condition)
               for pk in tenant_keys(tenant_id))
