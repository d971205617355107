"""Independent, deliberately naive RFC 9162 reference used to cross-check ledger.merkle / ledger.tiles.

Written straight from the recursive definitions (RFC 9162 §2.1.1, §2.1.3.1, §2.1.4.1) with its
own hashing, so a shared bug with the optimised code is unlikely.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

VECTORS_PATH = Path(__file__).resolve().parent.parent / "data" / "vectors.json"


def load_vectors() -> dict[str, Any]:
    with VECTORS_PATH.open(encoding="utf-8") as f:
        data: dict[str, Any] = json.load(f)
    return data


def ref_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def ref_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def _k(n: int) -> int:
    """Largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(hashes: list[bytes]) -> bytes:
    """MTH over a list of *leaf hashes*."""
    n = len(hashes)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return hashes[0]
    k = _k(n)
    return ref_node(mth(hashes[:k]), mth(hashes[k:]))


def path(m: int, hashes: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of RFC 9162 §2.1.3.1, over leaf hashes."""
    n = len(hashes)
    if n == 1:
        return []
    k = _k(n)
    if m < k:
        return [*path(m, hashes[:k]), mth(hashes[k:])]
    return [*path(m - k, hashes[k:]), mth(hashes[:k])]


def _subproof(m: int, hashes: list[bytes], b: bool) -> list[bytes]:
    n = len(hashes)
    if m == n:
        return [] if b else [mth(hashes)]
    k = _k(n)
    if m <= k:
        return [*_subproof(m, hashes[:k], b), mth(hashes[k:])]
    return [*_subproof(m - k, hashes[k:], False), mth(hashes[:k])]


def proof(m: int, hashes: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of RFC 9162 §2.1.4.1 for 0 < m <= n."""
    return _subproof(m, hashes, True)


def all_complete_nodes(hashes: list[bytes]) -> dict[tuple[int, int], bytes]:
    """Every complete subtree (level, index) -> hash of a tree with these leaf hashes."""
    out: dict[tuple[int, int], bytes] = {}
    level = 0
    while (1 << level) <= len(hashes):
        width = 1 << level
        for index in range(len(hashes) // width):
            out[(level, index)] = mth(hashes[index * width : (index + 1) * width])
        level += 1
    return out


def leaves(n: int, salt: bytes = b"") -> list[bytes]:
    """n distinct deterministic leaf hashes."""
    return [ref_leaf(salt + i.to_bytes(8, "big")) for i in range(n)]
