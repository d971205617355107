"""The tree store's pieces that need no server: the fast tile getter, tree rebuild of the verifier."""

from __future__ import annotations

import hashlib
import random

import pytest

from ledger import merkle
from ledger.checkpoints import key_in_force
from ledger.tiles import TileMissingError, TileStore, node_getter_from_tiles
from ledger.tree_store import tile_node_getter
from ledger.verify import expected_tiles


def _leaves(n: int) -> list[bytes]:
    return [merkle.leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(n)]


@pytest.mark.parametrize("size", [1, 2, 255, 256, 257, 511, 4097, 65_536 + 300])
def test_fast_getter_agrees_with_the_reference_getter_and_proofs(size: int) -> None:
    leaves = _leaves(size)
    store = TileStore()
    for start in range(0, size, 1000):  # batches, as the writer appends them
        store.append(leaves[start:start + 1000])
    fast, ref = tile_node_getter(store.tiles), node_getter_from_tiles(store.tiles)
    rng = random.Random(size)
    for _ in range(60):
        level = rng.randrange(0, size.bit_length())
        if size >> level == 0:
            continue
        index = rng.randrange(size >> level)
        assert fast(level, index) == ref(level, index)
    root = merkle.root(leaves)
    assert merkle.tree_root(size, fast) == root
    for index in {0, size - 1, rng.randrange(size)}:
        for tree_size in {size, index + 1, (index + size + 1) // 2}:
            path = merkle.inclusion_proof(index, tree_size, fast)
            assert merkle.verify_inclusion(leaves[index], index, tree_size, path, merkle.root(leaves[:tree_size]))
    # The verifier's rebuild yields exactly the tiles the writer stored.
    assert expected_tiles(b"".join(leaves)) == store.tiles


def test_fast_getter_refuses_nodes_beyond_the_stored_tiles() -> None:
    store = TileStore()
    store.append(_leaves(300))
    get = tile_node_getter(store.tiles)
    with pytest.raises(TileMissingError):
        get(0, 300)  # leaf 300 does not exist yet
    with pytest.raises(TileMissingError):
        get(8, 1)  # the second level-8 node needs leaves 256..511
    with pytest.raises(TileMissingError):
        get(16, 0)


def test_key_in_force_is_the_last_registered_at_or_before_the_size() -> None:
    keys = [(1, "a"), (50, "b"), (90, "c")]
    assert [key_in_force(keys, s) for s in (0, 1, 49, 50, 89, 90, 10**9)] == [None, "a", "a", "b", "b", "c", "c"]
