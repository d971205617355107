"""RFC 9162 (Certificate Transparency v2) Merkle tree maths, pure and storage-agnostic.

Hashing (RFC 9162 §2.1.1, identical to RFC 6962):

* ``leaf_hash(d) = SHA-256(0x00 || d)``
* ``node_hash(l, r) = SHA-256(0x01 || l || r)``
* the root of the empty tree is ``SHA-256("")``.

Node coordinates. A *complete* (perfect) subtree is addressed as ``(level, index)``: it covers
the leaves ``[index * 2**level, (index + 1) * 2**level)``; level 0 nodes are the leaf hashes.
Storage only ever has to hold complete nodes, because they never change once the tree has
grown past them. Proof elements that are roots of *incomplete* right-edge subtrees (trees whose
size is not a power of two) are recomputed here from at most ``log2(n)`` complete nodes, so a
proof always costs ``O(log n)`` lookups through the caller's ``get_node(level, index)``.

Nothing in this module performs I/O, reads the clock or uses randomness.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "AppendResult",
    "CompactRange",
    "GetNode",
    "Node",
    "NodeId",
    "compact_range_nodes",
    "consistency_proof",
    "consistency_proof_nodes",
    "inclusion_proof",
    "inclusion_proof_nodes",
    "leaf_hash",
    "node_hash",
    "root",
    "root_from_inclusion_proof",
    "subtree_nodes",
    "subtree_root",
    "tree_root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT: bytes = hashlib.sha256(b"").digest()

_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

GetNode = Callable[[int, int], bytes]
"""``get_node(level, index)`` returns the hash of the complete subtree at that coordinate."""


class NodeId(NamedTuple):
    """Coordinate of a complete subtree: covers leaves ``[index << level, (index + 1) << level)``."""

    level: int
    index: int  # type: ignore[assignment]  # named as in RFC 9162; shadows tuple.index, which nothing calls


class Node(NamedTuple):
    """A complete subtree and its hash, as produced by :meth:`CompactRange.append`."""

    level: int
    index: int  # type: ignore[assignment]  # as NodeId's
    hash: bytes


def leaf_hash(data: bytes) -> bytes:
    """Merkle leaf hash of one entry: ``SHA-256(0x00 || data)``."""
    return hashlib.sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Merkle interior node hash: ``SHA-256(0x01 || left || right)``."""
    return hashlib.sha256(_NODE_PREFIX + left + right).digest()


def _split_point(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (``n >= 2``): RFC 9162's ``k``."""
    return 1 << ((n - 1).bit_length() - 1)


def _fold_right(hashes: Sequence[bytes]) -> bytes:
    """Root of consecutive perfect subtrees listed left to right, largest first.

    MTH of any list is ``H(c1, H(c2, ... ck))`` where ``c1..ck`` are the perfect subtrees of the
    binary decomposition of its length, so folding from the right reproduces RFC 9162's
    recursive definition without recursion.
    """
    if not hashes:
        return EMPTY_ROOT
    acc = hashes[-1]
    for h in reversed(hashes[:-1]):
        acc = node_hash(h, acc)
    return acc


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Merkle Tree Hash (RFC 9162 §2.1.1) of a list of *leaf hashes*, in O(n) time, O(log n) memory."""
    stack: list[bytes] = []
    for size, h in enumerate(leaf_hashes):
        # Each set low bit of ``size`` is a finished subtree of that height waiting on the stack.
        while size & 1:
            h = node_hash(stack.pop(), h)
            size >>= 1
        stack.append(h)
    return _fold_right(stack)


# --------------------------------------------------------------------------------------------
# Subtrees and proofs from complete nodes
# --------------------------------------------------------------------------------------------


def subtree_nodes(start: int, end: int) -> list[NodeId]:
    """Complete nodes whose hashes determine ``MTH(D[start:end])``, left to right.

    ``[start, end)`` must be a subtree that RFC 9162 proofs can name: non-empty, with ``start``
    a multiple of the largest power of two not exceeding ``end - start`` (every such range is
    one node of the tree of size ``end``, possibly incomplete). Returns at most
    ``log2(end - start) + 1`` coordinates.
    """
    n = end - start
    if start < 0 or n <= 0:
        raise ValueError(f"empty or negative range [{start}, {end})")
    if start % (1 << (n.bit_length() - 1)):
        raise ValueError(f"range [{start}, {end}) is not aligned to a subtree of the tree")
    out: list[NodeId] = []
    pos = start
    for level in range(n.bit_length() - 1, -1, -1):
        if n >> level & 1:
            out.append(NodeId(level, pos >> level))
            pos += 1 << level
    return out


def subtree_root(start: int, end: int, get_node: GetNode) -> bytes:
    """``MTH(D[start:end])`` computed from the complete nodes of :func:`subtree_nodes`.

    This is how roots of incomplete right-edge subtrees are obtained: O(log n) lookups.
    """
    return _fold_right([get_node(level, index) for level, index in subtree_nodes(start, end)])


def tree_root(size: int, get_node: GetNode) -> bytes:
    """Root hash of the tree of ``size`` leaves from complete nodes (``EMPTY_ROOT`` for size 0)."""
    if size < 0:
        raise ValueError("negative tree size")
    return EMPTY_ROOT if size == 0 else subtree_root(0, size, get_node)


def _inclusion_ranges(index: int, size: int) -> list[tuple[int, int]]:
    """Leaf ranges of the RFC 9162 §2.1.3.1 ``PATH(m, D[n])`` elements, leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} is outside a tree of size {size}")
    out: list[tuple[int, int]] = []
    start, end = 0, size
    while end - start > 1:
        mid = start + _split_point(end - start)
        if index < mid:
            out.append((mid, end))
            end = mid
        else:
            out.append((start, mid))
            start = mid
    out.reverse()
    return out


def _consistency_ranges(old_size: int, new_size: int) -> list[tuple[int, int]]:
    """Leaf ranges of the RFC 9162 §2.1.4.1 ``PROOF(m, D[n])`` elements, in proof order."""
    if old_size < 0 or old_size > new_size:
        raise ValueError(f"no consistency proof from size {old_size} to size {new_size}")
    if old_size == 0 or old_size == new_size:
        # Every tree extends the empty tree, and a tree is consistent with itself: empty proof.
        return []
    out: list[tuple[int, int]] = []
    start, end, m, whole_old_tree = 0, new_size, old_size, True
    while True:
        n = end - start
        if m == n:
            # The old tree's root is known to the verifier only while we are still on the path
            # of the whole old tree (RFC 9162's flag ``b``); otherwise this subtree is needed.
            if not whole_old_tree:
                out.append((start, end))
            break
        k = _split_point(n)
        if m <= k:
            out.append((start + k, end))
            end = start + k
        else:
            out.append((start, start + k))
            start += k
            m -= k
            whole_old_tree = False
    out.reverse()
    return out


def _flatten(ranges: Iterable[tuple[int, int]]) -> list[NodeId]:
    return [node for s, e in ranges for node in subtree_nodes(s, e)]


def inclusion_proof_nodes(index: int, size: int) -> list[NodeId]:
    """Every complete node :func:`inclusion_proof` will look up (to prefetch storage)."""
    return _flatten(_inclusion_ranges(index, size))


def consistency_proof_nodes(old_size: int, new_size: int) -> list[NodeId]:
    """Every complete node :func:`consistency_proof` will look up (to prefetch storage)."""
    return _flatten(_consistency_ranges(old_size, new_size))


def inclusion_proof(index: int, size: int, get_node: GetNode) -> list[bytes]:
    """RFC 9162 §2.1.3.1 inclusion path of leaf ``index`` in the tree of ``size`` leaves.

    Costs at most ``2 * log2(size)`` node lookups: at most one element is the root of an
    incomplete subtree, and it is rebuilt from ``popcount``-many complete nodes.
    """
    return [subtree_root(s, e, get_node) for s, e in _inclusion_ranges(index, size)]


def consistency_proof(old_size: int, new_size: int, get_node: GetNode) -> list[bytes]:
    """RFC 9162 §2.1.4.1 consistency proof from ``old_size`` to ``new_size``.

    Empty when ``old_size`` is 0 or equals ``new_size`` (see :func:`verify_consistency`).
    """
    return [subtree_root(s, e, get_node) for s, e in _consistency_ranges(old_size, new_size)]


# --------------------------------------------------------------------------------------------
# Verification (RFC 9162 §2.1.3.2 and §2.1.4.2), strict
# --------------------------------------------------------------------------------------------


def _is_hash(value: object) -> bool:
    return isinstance(value, bytes) and len(value) == HASH_SIZE


def _is_size(value: object) -> bool:
    # bool is an int subclass; a True "size" is a bug, not a size.
    return type(value) is int and value >= 0


def root_from_inclusion_proof(leaf: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes | None:
    """Root implied by an inclusion path, or ``None`` if the path has the wrong shape.

    Follows RFC 9162 §2.1.3.2 step by step; the path length must match ``(index, size)``
    exactly, so extra or missing elements are rejected, not ignored.
    """
    if not (_is_hash(leaf) and _is_size(index) and _is_size(size) and index < size):
        return None
    if not all(_is_hash(p) for p in proof):
        return None
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return None  # more elements than the tree is tall
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            # Climb past levels where this node is a left child with no right sibling.
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        return None  # truncated path
    return r


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> bool:
    """True iff ``proof`` proves leaf hash ``leaf`` is at ``index`` in the tree ``(size, root_hash)``."""
    if not _is_hash(root_hash):
        return False
    computed = root_from_inclusion_proof(leaf, index, size, proof)
    return computed is not None and hmac.compare_digest(computed, root_hash)


def verify_consistency(old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]) -> bool:
    """True iff ``proof`` shows the tree ``(new_size, new_root)`` extends ``(old_size, old_root)``.

    RFC 9162 §2.1.4.2 for ``0 < old_size < new_size``. The edge cases RFC 9162 leaves to the
    caller are decided strictly: equal sizes need an empty proof and equal roots; old size 0
    needs an empty proof and ``old_root == EMPTY_ROOT``.
    """
    if not (_is_size(old_size) and _is_size(new_size) and _is_hash(old_root) and _is_hash(new_root)):
        return False
    if not all(_is_hash(p) for p in proof):
        return False
    if old_size > new_size:
        return False
    if old_size == new_size:
        return not proof and hmac.compare_digest(old_root, new_root)
    if old_size == 0:
        return not proof and hmac.compare_digest(old_root, EMPTY_ROOT)
    if not proof:
        return False
    path = list(proof)
    if old_size & (old_size - 1) == 0:
        # The old tree is a complete subtree of the new one, so its root is implied.
        path.insert(0, old_root)
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False  # extra elements
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and hmac.compare_digest(fr, old_root) and hmac.compare_digest(sr, new_root)


# --------------------------------------------------------------------------------------------
# Incremental appends: the compact range ("right edge")
# --------------------------------------------------------------------------------------------


def compact_range_nodes(size: int) -> list[NodeId]:
    """Coordinates of the right-edge stack of a tree of ``size`` leaves, largest first.

    One complete node per set bit of ``size``; together they determine the root and are all
    that is needed to keep appending.
    """
    if size < 0:
        raise ValueError("negative tree size")
    return [] if size == 0 else subtree_nodes(0, size)


class AppendResult(NamedTuple):
    """Outcome of :meth:`CompactRange.append`."""

    range: CompactRange
    root: bytes
    nodes: list[Node]


@dataclass(frozen=True, slots=True)
class CompactRange:
    """Right edge of a Merkle tree: its size plus the roots of its maximal complete subtrees.

    ``hashes[i]`` is the hash of ``compact_range_nodes(size)[i]`` (largest subtree first).
    Immutable: :meth:`append` returns a new range, so a writer can retry a failed batch from
    the old one.
    """

    size: int = 0
    hashes: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if type(self.size) is not int or self.size < 0:
            raise ValueError("tree size must be a non-negative int")
        if len(self.hashes) != self.size.bit_count():
            raise ValueError(
                f"a tree of size {self.size} has {self.size.bit_count()} right-edge nodes, got {len(self.hashes)}"
            )
        if not all(_is_hash(h) for h in self.hashes):
            raise ValueError("right-edge hashes must be 32-byte values")

    @classmethod
    def from_get_node(cls, size: int, get_node: GetNode) -> CompactRange:
        """Load the right edge of a stored tree: ``popcount(size)`` lookups."""
        return cls(size, tuple(get_node(level, index) for level, index in compact_range_nodes(size)))

    def nodes(self) -> list[Node]:
        """The right-edge nodes with their coordinates."""
        return [Node(lv, ix, h) for (lv, ix), h in zip(compact_range_nodes(self.size), self.hashes, strict=True)]

    def root(self) -> bytes:
        """Root hash of the tree this range is the right edge of."""
        return _fold_right(self.hashes)

    def append(
        self,
        leaf_hashes: Iterable[bytes],
        *,
        keep_level: Callable[[int], bool] | None = None,
    ) -> AppendResult:
        """Append leaf hashes; return the new range, the new root and every new complete node.

        The new nodes are the new leaves (level 0) and each interior node completed by them,
        i.e. about two per leaf, in creation order (children before parents). ``keep_level``
        filters which levels are reported (the tile writer only needs every 8th level); it
        does not change the hashing.
        """
        stack = list(self.hashes)
        size = self.size
        nodes: list[Node] = []
        for h in leaf_hashes:
            if not _is_hash(h):
                raise ValueError("leaf hashes must be 32-byte values")
            if keep_level is None or keep_level(0):
                nodes.append(Node(0, size, h))
            level, index = 0, size
            # A set low bit means a finished sibling of this height sits on the stack.
            while index & 1:
                h = node_hash(stack.pop(), h)
                level += 1
                index >>= 1
                if keep_level is None or keep_level(level):
                    nodes.append(Node(level, index, h))
            stack.append(h)
            size += 1
        new = CompactRange(size, tuple(stack))
        return AppendResult(new, new.root(), nodes)
