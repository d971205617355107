"""Tile storage layout for the Merkle tree, following C2SP tlog-tiles (https://c2sp.org/tlog-tiles).

Layout. Tiles have height 8: the tile at *tile level* ``L`` and *tile index* ``N`` holds the
consecutive hashes of the complete tree nodes at tree level ``8 * L`` with indices
``N * 256 .. N * 256 + width - 1`` (``width`` 1..256). Equivalently, in RFC 6962 terms, entry
``i`` of tile ``(L, N)`` is ``MTH(D[(N*256 + i) * 256**L : (N*256 + i + 1) * 256**L])``. Only
this bottom row is stored; the seven levels above it inside the tile (tree levels
``8L+1 .. 8L+7``) are recomputed from the row on read, and level ``8L+8`` is the next tile
level's row. A full tile is 256 hashes (8,192 bytes); for a tree of size ``s`` the rightmost
tile at level ``L`` is *partial* with ``(s >> 8L) % 256`` hashes (absent when that is 0).

Why this layout: the writer stores ~1/255 extra hashes per leaf instead of one per interior
node, upserts only the tiles a batch touches (new full tiles plus one partial tile per level,
~log_256(n)), and a proof reads ~2 tiles per tile level. Tiles only ever grow by appending,
so a stored (wider or full) tile also serves every older, smaller tree size: the partial tile
``(L, N, w)`` is the first ``w`` hashes of any stored version of ``(L, N)``.

The real store keeps rows ``(tile_level, tile_index, width, hashes bytea)``; this module is
pure (no I/O) and ships :class:`TileStore`, an in-memory stand-in used by the tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from ledger import merkle
from ledger.merkle import HASH_SIZE, CompactRange, GetNode, NodeId

__all__ = [
    "TILE_HEIGHT",
    "TILE_WIDTH",
    "Tile",
    "TileAppendResult",
    "TileId",
    "TileMissingError",
    "TileStore",
    "TileWriter",
    "compact_range_from_tiles",
    "edge_tile_ids",
    "node_getter_from_tiles",
    "read_node",
    "tile_for_node",
    "tile_path",
    "tile_width",
    "tiles_for_consistency",
    "tiles_for_inclusion",
    "tiles_for_nodes",
    "tiles_for_root",
    "tiles_for_size",
]

TILE_HEIGHT = 8
TILE_WIDTH = 1 << TILE_HEIGHT  # 256 hashes per full tile
_MAX_TILE_LEVEL = 63  # C2SP bound; also keeps tile levels within 64-bit tree sizes

TileKey = tuple[int, int]
"""``(tile_level, tile_index)``: the primary key of a stored tile."""


class TileMissingError(LookupError):
    """A node was requested whose tile is absent or too narrow (store out of sync with size)."""


class TileId(NamedTuple):
    """A tile of a specific tree size: its level, index and width in hashes (1..256)."""

    level: int
    index: int  # type: ignore[assignment]  # the tile index of c2sp tlog-tiles; shadows tuple.index
    width: int

    @property
    def key(self) -> TileKey:
        return (self.level, self.index)

    def path(self) -> str:
        """C2SP tlog-tiles resource path, e.g. ``tile/1/x001/000.p/17``."""
        return tile_path(self.level, self.index, self.width)


def tile_path(level: int, index: int, width: int = TILE_WIDTH) -> str:
    """``tile/<L>/<N>[.p/<W>]`` with ``<N>`` split into ``x``-prefixed 3-digit groups."""
    if not 0 <= level <= _MAX_TILE_LEVEL or index < 0 or not 1 <= width <= TILE_WIDTH:
        raise ValueError(f"invalid tile ({level}, {index}, {width})")
    groups = [f"{index % 1000:03d}"]
    index //= 1000
    while index:
        groups.append(f"x{index % 1000:03d}")
        index //= 1000
    path = f"tile/{level}/{'/'.join(reversed(groups))}"
    return path if width == TILE_WIDTH else f"{path}.p/{width}"


@dataclass(frozen=True, slots=True)
class Tile:
    """One stored tile: the bottom-row hashes, concatenated (``width * 32`` bytes)."""

    level: int
    index: int
    hashes: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.level <= _MAX_TILE_LEVEL or self.index < 0:
            raise ValueError(f"invalid tile coordinate ({self.level}, {self.index})")
        n, rem = divmod(len(self.hashes), HASH_SIZE)
        if rem or not 1 <= n <= TILE_WIDTH:
            raise ValueError(f"tile ({self.level}, {self.index}) has {len(self.hashes)} bytes")

    @property
    def width(self) -> int:
        return len(self.hashes) // HASH_SIZE

    @property
    def key(self) -> TileKey:
        return (self.level, self.index)

    @property
    def id(self) -> TileId:
        return TileId(self.level, self.index, self.width)

    @property
    def is_full(self) -> bool:
        return self.width == TILE_WIDTH

    def hash_at(self, i: int) -> bytes:
        if not 0 <= i < self.width:
            raise IndexError(f"tile {self.key} has no hash {i}")
        return self.hashes[i * HASH_SIZE : (i + 1) * HASH_SIZE]

    def truncated(self, width: int) -> Tile:
        """The same tile as it was when it had ``width`` hashes (tiles only grow)."""
        if not 1 <= width <= self.width:
            raise ValueError(f"cannot truncate tile {self.key} of width {self.width} to {width}")
        return self if width == self.width else Tile(self.level, self.index, self.hashes[: width * HASH_SIZE])


# --------------------------------------------------------------------------------------------
# Geometry: which tiles exist / are needed
# --------------------------------------------------------------------------------------------


def tile_width(level: int, index: int, size: int) -> int:
    """Width of tile ``(level, index)`` in the tree of ``size`` leaves (0: it does not exist yet)."""
    row_len = size >> (TILE_HEIGHT * level)  # complete nodes at tree level 8*level
    return max(0, min(TILE_WIDTH, row_len - index * TILE_WIDTH))


def tiles_for_size(size: int) -> list[TileId]:
    """Every tile of the tree of ``size`` leaves, by level then index."""
    out: list[TileId] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        row_len = size >> (TILE_HEIGHT * level)
        full, partial = divmod(row_len, TILE_WIDTH)
        out.extend(TileId(level, n, TILE_WIDTH) for n in range(full))
        if partial:
            out.append(TileId(level, full, partial))
        level += 1
    return out


def edge_tile_ids(size: int) -> list[TileId]:
    """The partial tiles of a tree of ``size`` leaves, lowest level first.

    They are exactly what :meth:`TileWriter.append` needs to continue the tree: the right-edge
    nodes of the tree all lie in them.
    """
    out: list[TileId] = []
    level = 0
    while size >> (TILE_HEIGHT * level):
        row_len = size >> (TILE_HEIGHT * level)
        if row_len % TILE_WIDTH:
            out.append(TileId(level, row_len // TILE_WIDTH, row_len % TILE_WIDTH))
        level += 1
    return out


def tile_for_node(level: int, index: int, size: int) -> TileId:
    """The tile (with its width at ``size``) from which node ``(level, index)`` is read."""
    tile_level, k = divmod(level, TILE_HEIGHT)
    first = index << k  # first bottom-row hash under this node
    if (index + 1) << level > size:
        raise ValueError(f"node ({level}, {index}) is not complete in a tree of size {size}")
    tile_index = first // TILE_WIDTH
    return TileId(tile_level, tile_index, tile_width(tile_level, tile_index, size))


def tiles_for_nodes(nodes: Iterable[NodeId | tuple[int, int]], size: int) -> list[TileId]:
    """Distinct tiles covering ``nodes`` in the tree of ``size`` leaves, sorted by (level, index)."""
    ids = {tile_for_node(level, index, size) for level, index in nodes}
    return sorted(ids)


def tiles_for_inclusion(index: int, size: int) -> list[TileId]:
    """Tiles needed to build the inclusion proof of leaf ``index`` in the tree of ``size``."""
    return tiles_for_nodes(merkle.inclusion_proof_nodes(index, size), size)


def tiles_for_consistency(old_size: int, new_size: int) -> list[TileId]:
    """Tiles needed to build the consistency proof ``old_size -> new_size``."""
    return tiles_for_nodes(merkle.consistency_proof_nodes(old_size, new_size), new_size)


def tiles_for_root(size: int) -> list[TileId]:
    """Tiles needed to recompute the root of the tree of ``size`` leaves (its edge tiles)."""
    return tiles_for_nodes(merkle.compact_range_nodes(size), size)


# --------------------------------------------------------------------------------------------
# Reading nodes from tiles
# --------------------------------------------------------------------------------------------


def _perfect_root(row: bytes) -> bytes:
    """Root of a perfect subtree given its 2**k leaves-of-the-tile, concatenated."""
    hashes = [row[i : i + HASH_SIZE] for i in range(0, len(row), HASH_SIZE)]
    while len(hashes) > 1:
        hashes = [merkle.node_hash(hashes[i], hashes[i + 1]) for i in range(0, len(hashes), 2)]
    return hashes[0]


def read_node(tile: Tile, level: int, index: int) -> bytes:
    """Hash of complete node ``(level, index)``, which must lie within ``tile``.

    Level ``8L`` is read directly; level ``8L + k`` (k = 1..7) is recomputed from the 2**k row
    hashes below it (at most 127 hash operations).
    """
    k = level - TILE_HEIGHT * tile.level
    if not 0 <= k < TILE_HEIGHT:
        raise ValueError(f"node level {level} is not stored in a level-{tile.level} tile")
    start = (index << k) - tile.index * TILE_WIDTH
    count = 1 << k
    if start < 0 or start + count > TILE_WIDTH:
        raise ValueError(f"node ({level}, {index}) is not in tile {tile.key}")
    if start + count > tile.width:
        raise TileMissingError(f"tile {tile.key} has width {tile.width}; node ({level}, {index}) needs more")
    row = tile.hashes[start * HASH_SIZE : (start + count) * HASH_SIZE]
    return row if k == 0 else _perfect_root(row)


def node_getter_from_tiles(tiles_by_key: Mapping[TileKey, Tile]) -> GetNode:
    """A ``get_node(level, index)`` for :mod:`ledger.merkle`, backed by tiles keyed by (L, N).

    Tiles may be wider than the tree size being proven (they are append-only), so one set of
    stored tiles serves proofs for every earlier checkpoint. Raises :class:`TileMissingError`
    if a needed tile is absent or too narrow.
    """

    def get_node(level: int, index: int) -> bytes:
        key = (level // TILE_HEIGHT, (index << (level % TILE_HEIGHT)) // TILE_WIDTH)
        tile = tiles_by_key.get(key)
        if tile is None:
            raise TileMissingError(f"tile {key} needed for node ({level}, {index}) is missing")
        return read_node(tile, level, index)

    return get_node


def compact_range_from_tiles(size: int, edge_tiles: Iterable[Tile] | Mapping[TileKey, Tile]) -> CompactRange:
    """Right edge of the tree of ``size`` leaves, read from its partial (edge) tiles."""
    tiles = _edge_tiles_for(size, edge_tiles)
    return CompactRange.from_get_node(size, node_getter_from_tiles(tiles))


def _edge_tiles_for(size: int, edge_tiles: Iterable[Tile] | Mapping[TileKey, Tile]) -> dict[TileKey, Tile]:
    """Validate the caller's edge tiles against ``size``; return them truncated to their width."""
    if type(size) is not int or size < 0:
        raise ValueError("tree size must be a non-negative int")
    given = list(edge_tiles.values()) if isinstance(edge_tiles, Mapping) else list(edge_tiles)
    wanted = {t.key: t for t in edge_tile_ids(size)}
    out: dict[TileKey, Tile] = {}
    for tile in given:
        want = wanted.get(tile.key)
        if want is None:
            raise ValueError(f"tile {tile.key} is not an edge tile of a tree of size {size}")
        if tile.key in out:
            raise ValueError(f"tile {tile.key} given twice")
        if tile.width < want.width:
            raise ValueError(f"edge tile {tile.key} has width {tile.width}, size {size} needs {want.width}")
        # A wider stored tile is the same tile later in time; its prefix is this size's tile.
        out[tile.key] = tile.truncated(want.width)
    missing = sorted(set(wanted) - set(out))
    if missing:
        raise ValueError(f"edge tiles {missing} are missing for size {size}")
    return out


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


class TileAppendResult(NamedTuple):
    """Outcome of :meth:`TileWriter.append`; unpacks as ``(new_root, tiles_to_upsert)``."""

    root: bytes
    tiles: list[Tile]


class TileWriter:
    """Pure tile maintenance for an append-only tree; stateless, so all methods are static."""

    @staticmethod
    def append(
        existing_edge_tiles: Iterable[Tile] | Mapping[TileKey, Tile],
        size: int,
        new_leaf_hashes: Sequence[bytes],
    ) -> TileAppendResult:
        """Append a batch of leaf hashes to a tree of ``size`` leaves.

        ``existing_edge_tiles`` must be the tiles of :func:`edge_tile_ids` for ``size`` (stored
        versions may be wider; their prefix is used). Returns the root of the tree of
        ``size + len(new_leaf_hashes)`` leaves and the tiles to upsert: every tile whose
        content changed, each complete up to the new size. A tile returned full (256 hashes)
        is final and is never returned again by later batches; partial tiles are rewritten
        with their longer prefix. Tiles are ordered by (level, index).
        """
        tiles = _edge_tiles_for(size, existing_edge_tiles)
        edge = CompactRange.from_get_node(size, node_getter_from_tiles(tiles))
        result = edge.append(new_leaf_hashes, keep_level=lambda level: level % TILE_HEIGHT == 0)

        # New bottom-row hashes per tile, in index order (CompactRange emits them in order per level).
        rows: dict[TileKey, list[bytes]] = {}
        for node in result.nodes:
            tile_level = node.level // TILE_HEIGHT
            rows.setdefault((tile_level, node.index // TILE_WIDTH), []).append(node.hash)

        out: list[Tile] = []
        for key in sorted(rows):
            prefix = tiles[key].hashes if key in tiles else b""
            out.append(Tile(key[0], key[1], prefix + b"".join(rows[key])))
        return TileAppendResult(result.root, out)


@dataclass
class TileStore:
    """In-memory stand-in for the tile table (tests, benchmarks, offline tools).

    Enforces the invariants the real store must keep: tiles only grow by appending, and a full
    tile never changes.
    """

    tiles: dict[TileKey, Tile] = field(default_factory=dict)
    size: int = 0

    def upsert(self, tiles: Iterable[Tile]) -> None:
        for tile in tiles:
            old = self.tiles.get(tile.key)
            if old is not None and (old.width > tile.width or not tile.hashes.startswith(old.hashes)):
                raise ValueError(f"tile {tile.key} would be rewritten, not extended")
            self.tiles[tile.key] = tile

    def get(self, level: int, index: int) -> Tile | None:
        return self.tiles.get((level, index))

    def edge_tiles(self, size: int | None = None) -> list[Tile]:
        """Stored edge tiles for ``size`` (default: the store's size), as the writer loads them."""
        size = self.size if size is None else size
        out = []
        for tid in edge_tile_ids(size):
            tile = self.tiles.get(tid.key)
            if tile is None:
                raise TileMissingError(f"edge tile {tid.key} is missing")
            out.append(tile)
        return out

    def append(self, leaf_hashes: Sequence[bytes]) -> bytes:
        """Writer loop in miniature: load edge tiles, append, upsert; return the new root."""
        new_root, tiles = TileWriter.append(self.edge_tiles(), self.size, leaf_hashes)
        self.upsert(tiles)
        self.size += len(leaf_hashes)
        return new_root

    def get_node(self, level: int, index: int) -> bytes:
        return node_getter_from_tiles(self.tiles)(level, index)

    def root(self, size: int | None = None) -> bytes:
        return merkle.tree_root(self.size if size is None else size, self.get_node)

    def inclusion_proof(self, index: int, size: int | None = None) -> list[bytes]:
        return merkle.inclusion_proof(index, self.size if size is None else size, self.get_node)

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> list[bytes]:
        return merkle.consistency_proof(old_size, self.size if new_size is None else new_size, self.get_node)
