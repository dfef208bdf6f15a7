"""The Merkle tree of a chunk's certificates (RFC 9162 hashing), property-tested."""

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oblio.core import merkle

leaves = st.lists(st.binary(max_size=40), min_size=1, max_size=70)


def _h(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def test_root_follows_rfc_9162_for_small_trees():
    a, b, c = b"a", b"b", b"c"
    la, lb, lc = (_h(b"\x00" + x) for x in (a, b, c))
    assert merkle.root([a]) == la.hex()
    assert merkle.root([a, b]) == _h(b"\x01" + la + lb).hex()
    # three leaves split 2 + 1: the odd leaf is not duplicated
    assert merkle.root([a, b, c]) == _h(b"\x01" + _h(b"\x01" + la + lb) + lc).hex()
    assert merkle.root([]) == hashlib.sha256(b"").hexdigest()


@given(leaves, st.data())
def test_every_leaf_has_a_proof_that_verifies(xs, data):
    i = data.draw(st.integers(0, len(xs) - 1))
    r = merkle.root(xs)
    assert merkle.included(xs[i], i, len(xs), merkle.proof(xs, i), r)


@given(leaves, st.data())
def test_a_changed_leaf_or_a_wrong_position_is_not_included(xs, data):
    i = data.draw(st.integers(0, len(xs) - 1))
    r, p = merkle.root(xs), merkle.proof(xs, i)
    assert not merkle.included(xs[i] + b"!", i, len(xs), p, r)
    j = data.draw(st.integers(0, len(xs) - 1))
    if xs[j] != xs[i]:
        assert not merkle.included(xs[i], j, len(xs), merkle.proof(xs, j), r)
    assert not merkle.included(xs[i], len(xs), len(xs), p, r)


@given(leaves, st.data())
def test_the_root_commits_to_every_leaf_and_their_order(xs, data):
    r = merkle.root(xs)
    i = data.draw(st.integers(0, len(xs) - 1))
    changed = [*xs[:i], xs[i] + b"\x00", *xs[i + 1:]]
    assert merkle.root(changed) != r
    if len(xs) > 1:
        assert merkle.root(xs[:i] + xs[i + 1:]) != r  # one removed
        swapped = list(xs)
        swapped[0], swapped[-1] = swapped[-1], swapped[0]
        if swapped != xs:
            assert merkle.root(swapped) != r


@given(leaves, st.data())
def test_a_tampered_proof_fails(xs, data):
    i = data.draw(st.integers(0, len(xs) - 1))
    r, p = merkle.root(xs), merkle.proof(xs, i)
    if p:
        k = data.draw(st.integers(0, len(p) - 1))
        bad = [*p[:k], ("0" if p[k][0] != "0" else "1") + p[k][1:], *p[k + 1:]]
        assert not merkle.included(xs[i], i, len(xs), bad, r)
        assert not merkle.included(xs[i], i, len(xs), p[:-1], r)
    assert not merkle.included(xs[i], i, len(xs), [*p, "00" * 32], r)
    assert not merkle.included(xs[i], i, len(xs), ["not hex"], r)


def test_a_leaf_outside_the_tree_has_no_proof():
    with pytest.raises(IndexError):
        merkle.proof([b"a"], 1)
    assert not merkle.included(b"a", 1, 1, [], merkle.root([b"a"]))
