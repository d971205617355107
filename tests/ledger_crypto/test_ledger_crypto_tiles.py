"""ledger.tiles: C2SP tlog-tiles geometry, tile writer against the naive reference, proofs from tiles."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ledger_crypto_reference import all_complete_nodes, leaves, mth, path, proof

from ledger import merkle, tiles
from ledger.tiles import TILE_WIDTH, Tile, TileId, TileMissingError, TileStore, TileWriter

# ------------------------------------------------------------------------------------------
# Geometry (examples from the C2SP tlog-tiles specification)
# ------------------------------------------------------------------------------------------


def test_tile_paths() -> None:
    assert tiles.tile_path(0, 1234067) == "tile/0/x001/x234/067"
    assert tiles.tile_path(0, 0) == "tile/0/000"
    assert tiles.tile_path(1, 1000, 17) == "tile/1/x001/000.p/17"
    assert tiles.tile_path(2, 999, 1) == "tile/2/999.p/1"
    assert TileId(3, 5, 256).path() == "tile/3/005"
    for bad in [(64, 0, 256), (-1, 0, 256), (0, -1, 256), (0, 0, 0), (0, 0, 257)]:
        with pytest.raises(ValueError):
            tiles.tile_path(*bad)


def test_tiles_for_size_matches_spec_examples() -> None:
    # "a tree of size 70,000 will be represented by 273 full level 0 tiles, one partial level 0
    # tile of width 112, one full level 1 tile, one partial level 1 tile of width 17, and one
    # partial level 2 tile of width 1."
    ids = tiles.tiles_for_size(70000)
    counts: dict[tuple[int, int], int] = {}
    for t in ids:
        counts[(t.level, t.width)] = counts.get((t.level, t.width), 0) + 1
    assert counts == {(0, 256): 273, (0, 112): 1, (1, 256): 1, (1, 17): 1, (2, 1): 1}
    # "a tree of size 256 will be represented by a full level 0 tile and a partial level 1 tile of width 1."
    assert tiles.tiles_for_size(256) == [TileId(0, 0, 256), TileId(1, 0, 1)]
    assert tiles.tiles_for_size(0) == []
    assert tiles.edge_tile_ids(70000) == [TileId(0, 273, 112), TileId(1, 1, 17), TileId(2, 0, 1)]
    assert tiles.edge_tile_ids(256) == [TileId(1, 0, 1)]
    assert tiles.edge_tile_ids(65536) == [TileId(2, 0, 1)]
    for size in [0, 1, 255, 256, 257, 70000, 65536 * 3 + 5]:
        for t in tiles.tiles_for_size(size):
            assert tiles.tile_width(t.level, t.index, size) == t.width
            # "The partial tile at level l for a tree of size s has floor(s / 256**l) mod 256 entries."
            if t.width < TILE_WIDTH:
                assert t.width == (size // 256**t.level) % 256


def test_tile_for_node() -> None:
    size = 70000
    assert tiles.tile_for_node(0, 69999, size) == TileId(0, 273, 112)
    assert tiles.tile_for_node(7, 0, size) == TileId(0, 0, 256)  # levels 1..7 live in the level-0 tile
    assert tiles.tile_for_node(8, 0, size) == TileId(1, 0, 256)  # level 8 is the level-1 tile's row
    assert tiles.tile_for_node(8, 272, size) == TileId(1, 1, 17)
    assert tiles.tile_for_node(16, 0, size) == TileId(2, 0, 1)
    with pytest.raises(ValueError):
        tiles.tile_for_node(1, 34999, 69999)  # incomplete node


# ------------------------------------------------------------------------------------------
# Writer
# ------------------------------------------------------------------------------------------


def expected_tiles(hashes: list[bytes]) -> dict[tuple[int, int], bytes]:
    """Tile contents straight from the spec formula, using the naive reference MTH."""
    out: dict[tuple[int, int], bytes] = {}
    for t in tiles.tiles_for_size(len(hashes)):
        span = 256**t.level
        row = [mth(hashes[(t.index * 256 + i) * span : (t.index * 256 + i + 1) * span]) for i in range(t.width)]
        out[(t.level, t.index)] = b"".join(row)
    return out


def run_batches(hashes: list[bytes], bounds: list[int]) -> tuple[TileStore, list[list[Tile]]]:
    store = TileStore()
    emitted: list[list[Tile]] = []
    for a, b in itertools.pairwise(bounds):
        root, upserts = TileWriter.append(store.edge_tiles(a), a, hashes[a:b])
        assert root == mth(hashes[:b])
        for t in upserts:
            # Each emitted tile is exactly the tile of the new size, never anything stale.
            assert t.width == tiles.tile_width(t.level, t.index, b)
        store.upsert(upserts)
        store.size = b
        emitted.append(upserts)
    return store, emitted


@settings(max_examples=120, deadline=None)
@given(n=st.integers(0, 600), cuts=st.lists(st.integers(0, 600), max_size=10))
def test_property_tile_writer_random_batches(n: int, cuts: list[int]) -> None:
    hashes = HASHES_600[:n]
    bounds = sorted({0, n, *(c for c in cuts if c <= n)})
    store, emitted = run_batches(hashes, bounds)
    assert {k: t.hashes for k, t in store.tiles.items()} == expected_tiles(hashes)
    # Every complete node is readable from the tiles and equals the reference.
    get_node = tiles.node_getter_from_tiles(store.tiles)
    for (level, index), h in all_complete_nodes(hashes).items():
        assert get_node(level, index) == h
    # Full tiles are written once and never again.
    full = [t.key for batch in emitted for t in batch if t.is_full]
    assert len(full) == len(set(full))


HASHES_600 = leaves(600, b"tiles")


def test_large_tree_in_irregular_batches() -> None:
    # Crosses level-1 tile completion (65,536 leaves) and creates a level-2 tile.
    n = 70000
    hashes = leaves(n, b"big")
    bounds = [0]
    step = 1
    while bounds[-1] < n:
        bounds.append(min(n, bounds[-1] + step))
        step = step * 7 % 4099 + 1
    store, emitted = run_batches(hashes, bounds)
    whole = TileStore()
    whole.append(hashes)
    assert store.tiles == whole.tiles
    assert store.root() == mth(hashes)
    # Cost per batch: new full tiles plus at most one partial tile per level.
    for (a, b), batch in zip(itertools.pairwise(bounds), emitted, strict=True):
        levels = len(tiles.edge_tile_ids(b)) + 1
        assert len(batch) <= (b - a) // 256 + 2 * levels
    # Spot-check proofs against the reference at old sizes (served from the newer, wider tiles).
    for size in [1, 255, 256, 257, 65535, 65536, 65537, 69999, 70000]:
        for i in {0, size // 2, size - 1}:
            p = store.inclusion_proof(i, size)
            assert merkle.verify_inclusion(hashes[i], i, size, p, mth(hashes[:size]))
    p = store.consistency_proof(65535, 70000)
    assert merkle.verify_consistency(65535, 70000, mth(hashes[:65535]), mth(hashes), p)


def test_writer_rejects_wrong_edge_tiles() -> None:
    hashes = leaves(300)
    store = TileStore()
    store.append(hashes)
    edge = store.edge_tiles(300)  # [(0,1) width 44, (1,0) width 1]
    assert [t.id for t in edge] == [TileId(0, 1, 44), TileId(1, 0, 1)]
    new = leaves(3, b"more")
    with pytest.raises(ValueError, match="missing"):
        TileWriter.append(edge[:1], 300, new)
    with pytest.raises(ValueError, match="not an edge tile"):
        TileWriter.append([*edge, store.tiles[(0, 0)]], 300, new)
    with pytest.raises(ValueError, match="width"):
        TileWriter.append(edge, 301, new)  # size says 45 hashes in tile (0,1), it has 44
    with pytest.raises(ValueError, match="twice"):
        TileWriter.append([*edge, edge[0]], 300, new)
    # A wider stored tile (the same tile later in time) is accepted and truncated.
    root, upserts = TileWriter.append(edge, 290, hashes[290:])
    assert root == mth(hashes)
    assert {t.key: t for t in upserts}[(0, 1)] == store.tiles[(0, 1)]
    # Mapping input works too, and an empty batch changes nothing.
    root, upserts = TileWriter.append({t.key: t for t in edge}, 300, [])
    assert (root, upserts) == (mth(hashes), [])
    assert TileWriter.append([], 0, []) == (merkle.EMPTY_ROOT, [])


def test_store_enforces_append_only_tiles() -> None:
    store = TileStore()
    store.append(leaves(256))
    full = store.tiles[(0, 0)]
    tampered = Tile(0, 0, bytes([full.hashes[0] ^ 1]) + full.hashes[1:])
    with pytest.raises(ValueError):
        store.upsert([tampered])
    with pytest.raises(ValueError):
        store.upsert([full.truncated(10)])
    store.upsert([full])  # idempotent rewrite is fine


# ------------------------------------------------------------------------------------------
# Reading
# ------------------------------------------------------------------------------------------


def test_tile_validation_and_read_node() -> None:
    hashes = leaves(256)
    tile = Tile(0, 0, b"".join(hashes))
    nodes = all_complete_nodes(hashes)
    for level in range(8):
        for index in range(256 >> level):
            assert tiles.read_node(tile, level, index) == nodes[(level, index)]
    with pytest.raises(ValueError):
        tiles.read_node(tile, 8, 0)  # level 8 belongs to the level-1 tile
    with pytest.raises(ValueError):
        tiles.read_node(tile, 0, 256)  # next tile
    with pytest.raises(TileMissingError):
        tiles.read_node(tile.truncated(100), 2, 25)  # needs hashes 100..103
    for bad in [b"", b"x" * 31, b"x" * 32 * 257]:
        with pytest.raises(ValueError):
            Tile(0, 0, bad)
    with pytest.raises(TileMissingError):
        tiles.node_getter_from_tiles({})(0, 0)
    assert tile.hash_at(255) == hashes[255]
    with pytest.raises(IndexError):
        tile.hash_at(256)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_property_proofs_need_only_the_listed_tiles(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 600), label="size")
    i = data.draw(st.integers(0, n - 1), label="index")
    m = data.draw(st.integers(0, n), label="old size")
    hashes = HASHES_600[:n]
    stored = STORE_600.tiles

    def restricted(ids: list[TileId]) -> merkle.GetNode:
        # Exactly the listed tiles, at exactly the listed widths: nothing else is readable.
        return tiles.node_getter_from_tiles({t.key: stored[t.key].truncated(t.width) for t in ids})

    p = merkle.inclusion_proof(i, n, restricted(tiles.tiles_for_inclusion(i, n)))
    assert p == path(i, hashes)
    c = merkle.consistency_proof(m, n, restricted(tiles.tiles_for_consistency(m, n)))
    assert c == ([] if m == 0 else proof(m, hashes))
    assert merkle.tree_root(n, restricted(tiles.tiles_for_root(n))) == mth(hashes)
    assert tiles.compact_range_from_tiles(n, STORE_600.edge_tiles(n)).root() == mth(hashes)


STORE_600 = TileStore()
STORE_600.append(HASHES_600)


def test_tiles_needed_per_proof_is_small() -> None:
    # For a 1M-leaf tree a proof touches at most two tiles per tile level (path tile + edge tile).
    n = 1_000_000
    for i in [0, 1, 123_456, n // 2, n - 257, n - 1]:
        ids = tiles.tiles_for_inclusion(i, n)
        assert len(ids) <= 2 * 3
        assert len({t.level for t in ids}) <= 3
