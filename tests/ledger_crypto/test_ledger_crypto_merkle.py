"""ledger.merkle: known answers (RFC 6962 / CT reference vectors), negatives and properties."""

from __future__ import annotations

import hashlib
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_crypto_reference import all_complete_nodes, leaves, load_vectors, mth, path, proof

from ledger import merkle
from ledger.merkle import EMPTY_ROOT, CompactRange

VECTORS = load_vectors()["merkle"]
LEAF_DATA = [bytes.fromhex(h) for h in VECTORS["leaf_inputs_hex"]]
LEAF_HASHES = [merkle.leaf_hash(d) for d in LEAF_DATA]
ROOTS = [bytes.fromhex(h) for h in VECTORS["roots_by_tree_size_hex"]]


def getter(hashes: list[bytes]) -> merkle.GetNode:
    nodes = all_complete_nodes(hashes)

    def get_node(level: int, index: int) -> bytes:
        return nodes[(level, index)]

    return get_node


def hx(*values: str) -> list[bytes]:
    return [bytes.fromhex(v) for v in values]


# Inclusion and consistency proofs over the 8 RFC 6962 test leaves, as published in the
# certificate-transparency test suites (transparency-dev/merkle proof/verify_test.go; its leaf
# numbers are 1-based, converted to 0-based indices here).
KNOWN_INCLUSION = [
    (0, 1, []),
    (
        0,
        8,
        hx(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        5,
        8,
        hx(
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (2, 3, hx("fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125")),
    (
        1,
        5,
        hx(
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
]

KNOWN_CONSISTENCY = [
    (1, 1, []),
    (
        1,
        8,
        hx(
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ),
    ),
    (
        6,
        8,
        hx(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
    (
        2,
        5,
        hx(
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ),
    ),
    (
        6,
        7,
        hx(
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ),
    ),
]

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


# ------------------------------------------------------------------------------------------
# Known answers
# ------------------------------------------------------------------------------------------


def test_hash_primitives() -> None:
    assert EMPTY_ROOT == hashlib.sha256(b"").digest() == ROOTS[0]
    assert merkle.leaf_hash(b"") == hashlib.sha256(b"\x00").digest()
    assert merkle.node_hash(b"a" * 32, b"b" * 32) == hashlib.sha256(b"\x01" + b"a" * 32 + b"b" * 32).digest()


@pytest.mark.parametrize("size", range(9))
def test_rfc6962_roots(size: int) -> None:
    want = ROOTS[size]
    assert merkle.root(LEAF_HASHES[:size]) == want
    assert mth(LEAF_HASHES[:size]) == want  # the reference agrees with the published vector too
    assert merkle.tree_root(size, getter(LEAF_HASHES[:size])) == want
    assert CompactRange().append(LEAF_HASHES[:size]).root == want
    if size:
        assert merkle.root_from_inclusion_proof(LEAF_HASHES[0], 0, size, path(0, LEAF_HASHES[:size])) == want


@pytest.mark.parametrize(("index", "size", "expected"), KNOWN_INCLUSION)
def test_known_inclusion_proofs(index: int, size: int, expected: list[bytes]) -> None:
    got = merkle.inclusion_proof(index, size, getter(LEAF_HASHES[:size]))
    assert got == expected
    assert merkle.verify_inclusion(LEAF_HASHES[index], index, size, expected, ROOTS[size])


@pytest.mark.parametrize("index", range(8))
def test_inclusion_every_leaf_of_size_8(index: int) -> None:
    got = merkle.inclusion_proof(index, 8, getter(LEAF_HASHES))
    assert got == path(index, LEAF_HASHES)
    assert merkle.verify_inclusion(LEAF_HASHES[index], index, 8, got, ROOTS[8])


@pytest.mark.parametrize(("old", "new", "expected"), KNOWN_CONSISTENCY)
def test_known_consistency_proofs(old: int, new: int, expected: list[bytes]) -> None:
    got = merkle.consistency_proof(old, new, getter(LEAF_HASHES[:new]))
    assert got == expected
    assert merkle.verify_consistency(old, new, ROOTS[old], ROOTS[new], expected)


def test_exhaustive_small_trees_match_reference() -> None:
    hashes = leaves(40)
    for n in range(1, 41):
        get_node = getter(hashes[:n])
        r = mth(hashes[:n])
        assert merkle.tree_root(n, get_node) == r
        for i in range(n):
            p = merkle.inclusion_proof(i, n, get_node)
            assert p == path(i, hashes[:n]), (i, n)
            assert merkle.verify_inclusion(hashes[i], i, n, p, r)
        for m in range(1, n + 1):
            c = merkle.consistency_proof(m, n, get_node)
            assert c == proof(m, hashes[:n]), (m, n)
            assert merkle.verify_consistency(m, n, mth(hashes[:m]), r, c)


# ------------------------------------------------------------------------------------------
# Negatives (modelled on the CT verifier test probes)
# ------------------------------------------------------------------------------------------


# Note: no "size + 1" probe. RFC 9162 verification hashes identically for sizes whose paths have
# the same shape (e.g. leaf 1 in sizes 5 and 6), so a proof can verify for a neighbouring size
# *with the same root*. That is by design: the (size, root) pair is authenticated together by the
# signed checkpoint, which is why receipts must check tree_size == checkpoint size.
def inclusion_probes(index: int, size: int, p: list[bytes], root: bytes, leaf: bytes) -> dict[str, tuple]:
    probes: dict[str, tuple] = {
        "index - 1": (leaf, index - 1, size, p, root),
        "index + 1": (leaf, index + 1, size, p, root),
        "index ^ 2": (leaf, index ^ 2, size, p, root),
        "size * 2": (leaf, index, size * 2, p, root),
        "size // 2": (leaf, index, size // 2, p, root),
        "wrong leaf": (SOME_HASH, index, size, p, root),
        "empty root": (leaf, index, size, p, EMPTY_ROOT),
        "random root": (leaf, index, size, p, SOME_HASH),
        "short root": (leaf, index, size, p, root[:31]),
        "short leaf": (leaf[:31], index, size, p, root),
        "trailing empty": (leaf, index, size, [*p, b""], root),
        "trailing root": (leaf, index, size, [*p, root], root),
        "preceding empty": (leaf, index, size, [b"", *p], root),
        "preceding root": (leaf, index, size, [root, *p], root),
    }
    for i in range(len(p)):
        bad = list(p)
        bad[i] = bytes([bad[i][0] ^ 8]) + bad[i][1:]
        probes[f"flipped element {i}"] = (leaf, index, size, bad, root)
        probes[f"element {i} truncated to 31 bytes"] = (leaf, index, size, [*p[:i], p[i][:31], *p[i + 1 :]], root)
    if p:
        probes["truncated proof"] = (leaf, index, size, p[:-1], root)
        probes["dropped first element"] = (leaf, index, size, p[1:], root)
    if len(p) > 1:
        probes["inserted element"] = (leaf, index, size, [p[0], SOME_HASH, *p[1:]], root)
    return probes


@pytest.mark.parametrize(("index", "size"), [(0, 1), (0, 8), (5, 8), (2, 3), (1, 5), (6, 7), (3, 8)])
def test_inclusion_rejects_corruptions(index: int, size: int) -> None:
    leaf, root = LEAF_HASHES[index], ROOTS[size]
    p = merkle.inclusion_proof(index, size, getter(LEAF_HASHES[:size]))
    assert merkle.verify_inclusion(leaf, index, size, p, root)
    accepted = [
        name for name, args in inclusion_probes(index, size, p, root, leaf).items() if merkle.verify_inclusion(*args)
    ]
    assert accepted == []


def test_same_shape_sizes_are_told_apart_only_by_the_root() -> None:
    # Documents the property above: the path of leaf 1 verifies for size 6 against size 5's root,
    # but never against size 6's real root.
    p = merkle.inclusion_proof(1, 5, getter(LEAF_HASHES[:5]))
    assert merkle.verify_inclusion(LEAF_HASHES[1], 1, 6, p, ROOTS[5])
    assert not merkle.verify_inclusion(LEAF_HASHES[1], 1, 6, p, ROOTS[6])


def test_inclusion_rejects_bad_parameters() -> None:
    leaf = LEAF_HASHES[0]
    assert not merkle.verify_inclusion(leaf, 0, 0, [], EMPTY_ROOT)  # empty tree has no leaves
    assert not merkle.verify_inclusion(leaf, 1, 1, [], leaf)  # index == size
    assert not merkle.verify_inclusion(leaf, 2, 1, [], leaf)
    assert not merkle.verify_inclusion(leaf, -1, 1, [], leaf)
    assert not merkle.verify_inclusion(leaf, True, 2, [LEAF_HASHES[0]], ROOTS[2])  # type: ignore[arg-type]
    assert not merkle.verify_inclusion(leaf, 0, 1, [], b"")
    assert not merkle.verify_inclusion("x" * 32, 0, 1, [], leaf)  # type: ignore[arg-type]
    assert merkle.verify_inclusion(leaf, 0, 1, [], leaf)
    assert merkle.root_from_inclusion_proof(leaf, 0, 1, [leaf]) is None


def consistency_probes(old: int, new: int, r1: bytes, r2: bytes, p: list[bytes]) -> dict[str, tuple]:
    probes: dict[str, tuple] = {
        "old - 1": (old - 1, new, r1, r2, p),
        "old + 1": (old + 1, new, r1, r2, p),
        "old ^ 2": (old ^ 2, new, r1, r2, p),
        "new * 2": (old, new * 2, r1, r2, p),
        "new // 2": (old, new // 2, r1, r2, p),
        "wrong old root": (old, new, SOME_HASH, r2, p),
        "wrong new root": (old, new, r1, SOME_HASH, p),
        "swapped roots": (old, new, r2, r1, p),
        "empty proof": (old, new, r1, r2, []),
        "trailing empty": (old, new, r1, r2, [*p, b""]),
        "trailing old root": (old, new, r1, r2, [*p, r1]),
        "trailing new root": (old, new, r1, r2, [*p, r2]),
        "preceding empty": (old, new, r1, r2, [b"", *p]),
        "preceding old root": (old, new, r1, r2, [r1, *p]),
        "preceding new root": (old, new, r1, r2, [r2, *p]),
        "preceding proof[0]": (old, new, r1, r2, [p[0], *p]),
        "truncated proof": (old, new, r1, r2, p[:-1]),
    }
    for i in range(len(p)):
        bad = list(p)
        bad[i] = bytes([bad[i][0] ^ 16]) + bad[i][1:]
        probes[f"flipped element {i}"] = (old, new, r1, r2, bad)
    return probes


@pytest.mark.parametrize(("old", "new"), [(1, 8), (6, 8), (2, 5), (6, 7), (3, 7), (4, 8), (1, 2), (7, 8)])
def test_consistency_rejects_corruptions(old: int, new: int) -> None:
    r1, r2 = ROOTS[old], ROOTS[new]
    p = merkle.consistency_proof(old, new, getter(LEAF_HASHES[:new]))
    assert merkle.verify_consistency(old, new, r1, r2, p)
    accepted = [
        name for name, args in consistency_probes(old, new, r1, r2, p).items() if merkle.verify_consistency(*args)
    ]
    assert accepted == []


def test_consistency_edge_cases() -> None:
    r = ROOTS
    # Equal sizes: empty proof and equal roots only.
    assert merkle.verify_consistency(5, 5, r[5], r[5], [])
    assert not merkle.verify_consistency(5, 5, r[5], r[4], [])
    assert not merkle.verify_consistency(5, 5, r[5], r[5], [r[5]])
    assert merkle.verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    # From the empty tree: empty proof, and the old root must be the empty-tree hash.
    assert merkle.verify_consistency(0, 7, EMPTY_ROOT, r[7], [])
    assert not merkle.verify_consistency(0, 7, SOME_HASH, r[7], [])
    assert not merkle.verify_consistency(0, 7, EMPTY_ROOT, r[7], [EMPTY_ROOT])
    # Shrinking trees, negative sizes, bools and malformed hashes.
    assert not merkle.verify_consistency(8, 7, r[8], r[7], [])
    assert not merkle.verify_consistency(-1, 7, EMPTY_ROOT, r[7], [])
    assert not merkle.verify_consistency(True, 2, r[1], r[2], [LEAF_HASHES[1]])  # type: ignore[arg-type]
    assert not merkle.verify_consistency(1, 2, r[1][:31], r[2], [LEAF_HASHES[1]])
    assert merkle.verify_consistency(1, 2, r[1], r[2], [LEAF_HASHES[1]])
    assert merkle.consistency_proof(0, 8, getter(LEAF_HASHES)) == []
    assert merkle.consistency_proof(8, 8, getter(LEAF_HASHES)) == []
    with pytest.raises(ValueError):
        merkle.consistency_proof(9, 8, getter(LEAF_HASHES))


def test_proof_generation_rejects_bad_parameters() -> None:
    get_node = getter(LEAF_HASHES)
    for index, size in [(0, 0), (8, 8), (-1, 8), (9, 8)]:
        with pytest.raises(ValueError):
            merkle.inclusion_proof(index, size, get_node)


def test_subtree_nodes_alignment_and_cost() -> None:
    assert merkle.subtree_nodes(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert merkle.subtree_nodes(8, 13) == [(2, 2), (0, 12)]
    for start, end in [(1, 3), (2, 6), (4, 4), (3, 2), (-1, 0)]:
        with pytest.raises(ValueError):
            merkle.subtree_nodes(start, end)
    # O(log n) lookups for any proof, even in trees that are far from a power of two.
    n = (1 << 40) - 1
    for i in [0, 1, n // 3, n - 2, n - 1]:
        assert len(merkle.inclusion_proof_nodes(i, n)) <= 2 * n.bit_length()
    assert len(merkle.consistency_proof_nodes(n // 3, n)) <= 2 * n.bit_length()


# ------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------

HASHES_300 = leaves(300, b"prop")
NODES_300 = all_complete_nodes(HASHES_300)
ROOTS_300 = [mth(HASHES_300[:n]) for n in range(301)]


def get_node_300(level: int, index: int) -> bytes:
    return NODES_300[(level, index)]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_property_proofs_verify_and_match_reference(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 300), label="size")
    i = data.draw(st.integers(0, n - 1), label="index")
    m = data.draw(st.integers(1, n), label="old size")
    root = ROOTS_300[n]

    p = merkle.inclusion_proof(i, n, get_node_300)
    assert p == path(i, HASHES_300[:n])
    assert merkle.verify_inclusion(HASHES_300[i], i, n, p, root)
    assert len(merkle.inclusion_proof_nodes(i, n)) <= 2 * n.bit_length()

    c = merkle.consistency_proof(m, n, get_node_300)
    assert c == proof(m, HASHES_300[:n])
    assert merkle.verify_consistency(m, n, ROOTS_300[m], root, c)

    # Any single-bit change of any proof element, and any other index, must fail.
    if p:
        j = data.draw(st.integers(0, len(p) - 1), label="element")
        bit = data.draw(st.integers(0, 255), label="bit")
        bad = list(p)
        bad[j] = (int.from_bytes(bad[j], "big") ^ (1 << bit)).to_bytes(32, "big")
        assert not merkle.verify_inclusion(HASHES_300[i], i, n, bad, root)
    other = data.draw(st.integers(0, n - 1), label="other index")
    if other != i:
        assert not merkle.verify_inclusion(HASHES_300[i], other, n, p, root)
    if c:
        j = data.draw(st.integers(0, len(c) - 1), label="c element")
        bad = list(c)
        bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
        assert not merkle.verify_consistency(m, n, ROOTS_300[m], root, bad)
        assert not merkle.verify_consistency(m, n, ROOTS_300[m], root, c[:-1])
        assert not merkle.verify_consistency(m, n, ROOTS_300[m], root, [*c, root])


@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(0, 300), max_size=12), start=st.integers(0, 300))
def test_property_compact_range_batches_match_reference(cuts: list[int], start: int) -> None:
    # Resume from a range loaded out of storage at an arbitrary size, then append in batches.
    start = min(start, 300)
    cr = CompactRange.from_get_node(start, get_node_300)
    assert cr.root() == ROOTS_300[start]
    assert [n.hash for n in cr.nodes()] == list(cr.hashes)
    bounds = sorted({start, 300, *(c for c in cuts if c >= start)})
    created: dict[tuple[int, int], bytes] = {}
    for a, b in itertools.pairwise(bounds):
        result = cr.append(HASHES_300[a:b])
        cr = result.range
        assert cr.size == b
        assert result.root == ROOTS_300[b]
        for node in result.nodes:
            assert (node.level, node.index) not in created  # each node is created exactly once
            created[(node.level, node.index)] = node.hash
    # Exactly the complete nodes that did not exist at `start`, with the reference hashes.
    expected = {k: v for k, v in NODES_300.items() if (k[1] + 1) << k[0] > start}
    assert created == expected


def test_compact_range_validation_and_keep_level() -> None:
    with pytest.raises(ValueError):
        CompactRange(3, (LEAF_HASHES[0],))
    with pytest.raises(ValueError):
        CompactRange(-1, ())
    with pytest.raises(ValueError):
        CompactRange(1, (b"short",))
    with pytest.raises(ValueError):
        CompactRange().append([b"short"])
    result = CompactRange().append(LEAF_HASHES, keep_level=lambda level: level == 3)
    assert result.nodes == [merkle.Node(3, 0, ROOTS[8])]
    # 2n - popcount(n) nodes for n leaves: the "about two per leaf" the writer stores.
    assert len(CompactRange().append(leaves(1000)).nodes) == 2 * 1000 - bin(1000).count("1")
