"""The ledger's RFC 9162 Merkle tree in PostgreSQL, stored as C2SP tlog tiles (`ledger_tiles`).

Leaf ``i`` is the canonical bytes of entry ``seq = i + 1`` (``ledger_entries.leaf``); the tree size is
the number of entries. The layout and the pure maths live in :mod:`ledger.tiles` and
:mod:`ledger.merkle`; this module only moves tiles in and out of the database.

Write side: :class:`TreeStore` is a set of hooks for the single ledger writer. Inside each batch's
transaction (``before_commit``) it appends the batch's leaf hashes to the right edge it keeps in
memory and upserts the changed tiles with one statement, so the tree is durable exactly when the
entries are. The new edge is adopted only in ``after_commit``: a batch that rolls back leaves the
cache at the old size and the next batch notices (``old_head.seq`` differs) and reloads.

Read side: :func:`root_at`, :func:`inclusion_proof` and :func:`consistency_proof` read the O(log n)
tiles they need with one query. Tiles only grow, so the current tiles serve every older tree size;
the functions are safe on a read replica.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import asyncpg

from ledger import merkle
from ledger.merkle import HASH_SIZE
from ledger.state import Entry, Head
from ledger.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    Tile,
    TileKey,
    TileMissingError,
    TileWriter,
    compact_range_from_tiles,
    edge_tile_ids,
    tile_for_node,
    tiles_for_consistency,
    tiles_for_inclusion,
    tiles_for_root,
)

CATCH_UP_CHUNK = 65_536

_UPSERT = """INSERT INTO ledger_tiles (level, idx, width, hashes)
              SELECT * FROM unnest($1::int[], $2::bigint[], $3::int[], $4::bytea[])
              ON CONFLICT (level, idx) DO UPDATE SET width = EXCLUDED.width, hashes = EXCLUDED.hashes"""


class TreeOutOfSync(RuntimeError):
    """The stored tiles do not match the log (more leaves than entries, or a gap): refuse to write."""


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


async def fetch_tiles(conn: asyncpg.Connection, keys: Iterable[TileKey]) -> dict[TileKey, Tile]:
    """The stored tiles with these (level, index) keys, in one query."""
    wanted = sorted(set(keys))
    if not wanted:
        return {}
    rows = await conn.fetch(
        """SELECT t.level, t.idx, t.hashes FROM ledger_tiles t
           JOIN unnest($1::int[], $2::bigint[]) AS k(level, idx) ON t.level = k.level AND t.idx = k.idx""",
        [k[0] for k in wanted], [k[1] for k in wanted],
    )
    return {(r[0], r[1]): Tile(r[0], r[1], bytes(r[2])) for r in rows}


async def stored_size(conn: asyncpg.Connection) -> int:
    """Number of leaves the stored tiles cover (the level-0 row's length)."""
    row = await conn.fetchrow("SELECT idx, width FROM ledger_tiles WHERE level = 0 ORDER BY idx DESC LIMIT 1")
    return 0 if row is None else int(row["idx"]) * TILE_WIDTH + int(row["width"])


def tile_node_getter(tiles: dict[TileKey, Tile]) -> merkle.GetNode:
    """Like `ledger.tiles.node_getter_from_tiles` (same answers, tested against it), but faster.

    A node above a tile's bottom row is recomputed from the row: 2**k - 1 hashes for level k. Here
    that is a tight loop with local names, and each result is remembered for the rest of the proof.
    """
    sha = hashlib.sha256
    rows: dict[TileKey, list[bytes]] = {}
    memo: dict[tuple[int, int], bytes] = {}

    def get_node(level: int, index: int) -> bytes:
        tile_level, k = divmod(level, TILE_HEIGHT)
        first = index << k  # first bottom-row position under the node
        key = (tile_level, first // TILE_WIDTH)
        row = rows.get(key)
        if row is None:
            tile = tiles.get(key)
            if tile is None:
                raise TileMissingError(f"tile {key} needed for node ({level}, {index}) is missing")
            h = tile.hashes
            row = rows[key] = [h[o : o + HASH_SIZE] for o in range(0, len(h), HASH_SIZE)]
        start = first - key[1] * TILE_WIDTH
        if start + (1 << k) > len(row):
            raise TileMissingError(f"tile {key} is too narrow for node ({level}, {index})")
        if k == 0:
            return row[start]
        found = memo.get((level, index))
        if found is None:
            hs = row[start : start + (1 << k)]
            while len(hs) > 1:
                hs = [sha(b"\x01" + hs[j] + hs[j + 1]).digest() for j in range(0, len(hs), 2)]
            found = memo[(level, index)] = hs[0]
        return found

    return get_node


async def _getter(conn: asyncpg.Connection, keys: Iterable[TileKey]) -> merkle.GetNode:
    return tile_node_getter(await fetch_tiles(conn, keys))


async def root_at(conn: asyncpg.Connection, size: int) -> bytes:
    """Root hash of the tree of the first ``size`` entries (``TileMissingError`` beyond the stored tree)."""
    if size == 0:
        return merkle.EMPTY_ROOT
    get = await _getter(conn, (t.key for t in tiles_for_root(size)))
    return merkle.tree_root(size, get)


async def inclusion_proof(conn: asyncpg.Connection, index: int, size: int) -> list[bytes]:
    """RFC 9162 inclusion path of leaf ``index`` (entry ``index + 1``) in the tree of ``size`` leaves."""
    get = await _getter(conn, (t.key for t in tiles_for_inclusion(index, size)))
    return merkle.inclusion_proof(index, size, get)


async def consistency_proof(conn: asyncpg.Connection, old_size: int, new_size: int) -> list[bytes]:
    """RFC 9162 consistency proof from the tree of ``old_size`` leaves to the tree of ``new_size``."""
    if old_size == 0 or old_size == new_size:
        return []
    get = await _getter(conn, (t.key for t in tiles_for_consistency(old_size, new_size)))
    return merkle.consistency_proof(old_size, new_size, get)


async def inclusion_with_root(conn: asyncpg.Connection, index: int, size: int) -> tuple[bytes, list[bytes], bytes]:
    """(leaf hash, inclusion path, root) of leaf ``index`` in the tree of ``size``, from one read of tiles."""
    keys = {t.key for t in tiles_for_inclusion(index, size)} | {t.key for t in tiles_for_root(size)}
    keys.add(tile_for_node(0, index, size).key)
    get = await _getter(conn, keys)
    return get(0, index), merkle.inclusion_proof(index, size, get), merkle.tree_root(size, get)


async def consistency_with_roots(conn: asyncpg.Connection, old_size: int,
                                 new_size: int) -> tuple[list[bytes], bytes, bytes]:
    """(consistency proof, old root, new root), from one read of tiles."""
    keys = {t.key for t in tiles_for_root(old_size)} | {t.key for t in tiles_for_root(new_size)}
    if 0 < old_size < new_size:
        keys |= {t.key for t in tiles_for_consistency(old_size, new_size)}
    get = await _getter(conn, keys)
    proof = merkle.consistency_proof(old_size, new_size, get) if 0 < old_size < new_size else []
    return proof, merkle.tree_root(old_size, get), merkle.tree_root(new_size, get)


# --------------------------------------------------------------------------------------------
# Writing: hooks for the single ledger writer
# --------------------------------------------------------------------------------------------


async def upsert_tiles(conn: asyncpg.Connection, tiles: list[Tile]) -> None:
    if tiles:
        await conn.execute(_UPSERT, [t.level for t in tiles], [t.index for t in tiles], [t.width for t in tiles],
                           [t.hashes for t in tiles])


class TreeStore:
    """Keeps ``ledger_tiles`` in step with ``ledger_entries``; register its three hooks on the writer.

    The writer is single (advisory lock), so the right edge is cached here between batches.
    """

    def __init__(self) -> None:
        self.size = 0
        self.root = merkle.EMPTY_ROOT
        self._edge: dict[TileKey, Tile] = {}
        self._pending: tuple[int, dict[TileKey, Tile], bytes] | None = None
        self._loaded = False

    def head(self) -> tuple[int, bytes]:
        """(size, root) of the durable tree, as of the last committed batch."""
        return self.size, self.root

    async def _load(self, conn: asyncpg.Connection) -> None:
        size = await stored_size(conn)
        edge = await fetch_tiles(conn, (t.key for t in edge_tile_ids(size)))
        try:
            right = compact_range_from_tiles(size, edge)
        except (ValueError, TileMissingError) as exc:
            raise TreeOutOfSync(f"stored Merkle tiles are inconsistent at size {size}: {exc}") from exc
        self.size, self.root, self._edge = size, right.root(), edge
        self._pending = None
        self._loaded = True

    def _append(self, leaves: list[bytes]) -> tuple[int, dict[TileKey, Tile], bytes, list[Tile]]:
        root, tiles = TileWriter.append(self._edge, self.size, [merkle.leaf_hash(leaf) for leaf in leaves])
        new_size = self.size + len(leaves)
        merged = {**self._edge, **{t.key: t for t in tiles}}
        # Full tiles leave the edge; the partial ones (at most one per level) are what the next batch needs.
        return new_size, {t.key: merged[t.key] for t in edge_tile_ids(new_size)}, root, tiles

    async def on_start(self, conn: asyncpg.Connection) -> None:
        """Load the right edge; build the tree for entries written without this hook (older databases,
        tools that ran a bare writer) so that tiles and log agree before the writer accepts requests."""
        await self._load(conn)
        head = await conn.fetchval("SELECT seq FROM ledger_head WHERE id = 1")
        if self.size > head:
            raise TreeOutOfSync(f"Merkle tiles cover {self.size} leaves but the log has {head} entries")
        while self.size < head:
            rows = await conn.fetch("SELECT seq, leaf FROM ledger_entries WHERE seq > $1 ORDER BY seq LIMIT $2",
                                    self.size, CATCH_UP_CHUNK)
            if not rows or rows[0]["seq"] != self.size + 1 or rows[-1]["seq"] != self.size + len(rows):
                raise TreeOutOfSync(f"ledger_entries has a gap after seq {self.size}")
            new_size, edge, root, tiles = self._append([bytes(r["leaf"]) for r in rows])
            await upsert_tiles(conn, tiles)  # one statement: atomic on its own
            self.size, self._edge, self.root = new_size, edge, root

    async def before_commit(self, conn: asyncpg.Connection, entries: list[Entry], old_head: Head) -> None:
        if not self._loaded or self.size != old_head.seq:
            # A batch that ran this hook was rolled back, or we never loaded: trust only the database.
            await self._load(conn)
            if self.size != old_head.seq:
                raise TreeOutOfSync(f"Merkle tiles cover {self.size} leaves, the chain head is at {old_head.seq}")
        if entries[0].seq != self.size + 1:
            raise TreeOutOfSync(f"batch starts at seq {entries[0].seq}, the tree has {self.size} leaves")
        new_size, edge, root, tiles = self._append([e.leaf for e in entries])
        await upsert_tiles(conn, tiles)
        self._pending = (new_size, edge, root)

    async def after_commit(self, entries: list[Entry]) -> None:
        pending, self._pending = self._pending, None
        if pending is not None and pending[0] == entries[-1].seq:
            self.size, self._edge, self.root = pending
        else:
            self._loaded = False  # unexpected: reload from the database before the next batch
