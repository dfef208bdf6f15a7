"""A Merkle tree over a list of leaves (RFC 9162, section 2.1): the leaf hash is
SHA-256(0x00 || leaf), a node is SHA-256(0x01 || left || right), and a tree of n leaves splits
at the largest power of two below n. One root commits to every leaf and to their order; an
inclusion proof (the audit path) shows that one leaf is in the tree with that root, in
log2(n) hashes. Pure: no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

_LEAF, _NODE = b"\x00", b"\x01"
EMPTY_ROOT = hashlib.sha256(b"").hexdigest()  # RFC 9162: the hash of an empty list


def leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(_LEAF + leaf).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def _root(hashes: Sequence[bytes]) -> bytes:
    # bottom-up: pairs are hashed level by level and an odd last node is carried up,
    # which gives the same tree as RFC 9162's recursive split, without recursion
    level = list(hashes)
    while len(level) > 1:
        nxt = [_node(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def root(leaves: Sequence[bytes]) -> str:
    """The tree's root, in hex (EMPTY_ROOT for no leaves)."""
    if not leaves:
        return EMPTY_ROOT
    return _root([leaf_hash(x) for x in leaves]).hex()


def _path(hashes: Sequence[bytes], index: int) -> list[bytes]:
    if len(hashes) <= 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return [*_path(hashes[:k], index), _root(hashes[k:])]
    return [*_path(hashes[k:], index - k), _root(hashes[:k])]


def proof(leaves: Sequence[bytes], index: int) -> list[str]:
    """The inclusion proof of leaf `index` (hex hashes, from the leaf's sibling upwards)."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf {index} is not in a tree of {len(leaves)} leaves")
    return [h.hex() for h in _path([leaf_hash(x) for x in leaves], index)]


def included(leaf: bytes, index: int, size: int, path: Sequence[str], root_hex: str) -> bool:
    """Whether `leaf` is leaf `index` of a tree of `size` leaves whose root is `root_hex`
    (RFC 9162, 2.1.3.2). Never raises on a malformed proof: it is just not a proof."""
    if not 0 <= index < size:
        return False
    try:
        hashes = [bytes.fromhex(h) for h in path]
    except (ValueError, TypeError):
        return False
    fn, sn, r = index, size - 1, leaf_hash(leaf)
    for p in hashes:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = _node(p, r)
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r.hex() == root_hex
