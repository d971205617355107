"""C2SP tlog-tiles resources (https://c2sp.org/tlog-tiles): which paths exist, and what they hold.

A log of tree size ``s`` (its latest checkpoint) serves:

- ``checkpoint``: the signed note (mutable, short-lived caching);
- ``tile/<L>/<N>``: a full tile, 256 hashes (immutable);
- ``tile/<L>/<N>.p/<W>``: a partial tile of ``W`` hashes (1..255), the first ``W`` hashes of tile
  ``(L, N)``; it exists once the tree at level ``L`` has at least ``N*256 + W`` complete nodes;
- ``tile/entries/<N>[.p/<W>]``: an entry bundle, the leaves ``N*256 .. N*256+W-1`` (the log's entry
  bytes), each as a big-endian uint16 length followed by the bytes.

``<N>`` is written in 3-digit groups, all but the last prefixed with ``x`` (``x001/x234/067``). Only the
canonical spelling of a path is accepted: one resource has one path, as for the base64 in notes.

Pure: no I/O. The stored tiles (``ledger.tiles.Tile``) may be wider than the checkpoint's tree; a
resource is cut from them, never computed beyond what the checkpoint covers.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from ledger.merkle import HASH_SIZE
from ledger.tiles import TILE_WIDTH, tile_path, tile_width, tiles_for_size

__all__ = [
    "ENTRIES",
    "MAX_ENTRY_BYTES",
    "TilePath",
    "bundle_seqs",
    "decode_bundle",
    "encode_bundle",
    "parse_tile_path",
    "resources_for_size",
    "tile_bytes",
]

ENTRIES = -1
"""The ``level`` of an entry bundle (``tile/entries/...``)."""

MAX_ENTRY_BYTES = 0xFFFF  # uint16 length prefix
_LEVEL = re.compile(r"0|[1-9][0-9]?")
_WIDTH = re.compile(r"[1-9][0-9]{0,2}")
_GROUP = re.compile(r"[0-9]{3}")


@dataclass(frozen=True, slots=True)
class TilePath:
    """One tile resource: ``level`` (``ENTRIES`` for a bundle), ``index``, ``width`` (256: full)."""

    level: int
    index: int
    width: int

    @property
    def is_entries(self) -> bool:
        return self.level == ENTRIES

    @property
    def is_full(self) -> bool:
        return self.width == TILE_WIDTH

    @property
    def first_leaf(self) -> int:
        """For a bundle: the index of its first leaf."""
        return self.index * TILE_WIDTH

    def path(self) -> str:
        if self.is_entries:
            return "tile/entries/" + tile_path(0, self.index, self.width)[len("tile/0/"):]
        return tile_path(self.level, self.index, self.width)

    def exists_at(self, size: int) -> bool:
        """Whether a tree of ``size`` leaves has this resource (a full tile, or this prefix of one)."""
        available = tile_width(0 if self.is_entries else self.level, self.index, size)
        return available == TILE_WIDTH if self.is_full else 1 <= self.width <= available


def parse_tile_path(path: str) -> TilePath:
    """Parse ``tile/<L>/<N>[.p/<W>]`` or ``tile/entries/<N>[.p/<W>]`` (leading ``/`` allowed).

    Raises ``ValueError`` for anything but the canonical spelling of a resource.
    """
    if not isinstance(path, str) or not path.isascii():
        raise ValueError("not a tile path")
    parts = path.lstrip("/").split("/")
    if len(parts) < 3 or parts[0] != "tile":
        raise ValueError("not a tile path")
    head, rest = parts[1], parts[2:]
    if head == "entries":
        level = ENTRIES
    elif _LEVEL.fullmatch(head) and int(head) <= 63:
        level = int(head)
    else:
        raise ValueError(f"tile level {head!r} is not 0..63")
    width = TILE_WIDTH
    if len(rest) >= 2 and rest[-2].endswith(".p"):
        w = rest[-1]
        if not _WIDTH.fullmatch(w) or not 1 <= int(w) < TILE_WIDTH:
            raise ValueError(f"partial tile width {w!r} is not 1..255")
        width = int(w)
        rest = [*rest[:-2], rest[-2][:-2]]
    index = 0
    for i, group in enumerate(rest):
        last = i == len(rest) - 1
        digits = group if last else group[1:] if group.startswith("x") else ""
        if not _GROUP.fullmatch(digits):
            raise ValueError(f"tile index element {group!r} is malformed")
        index = index * 1000 + int(digits)
    out = TilePath(level, index, width)
    if out.path() != path.lstrip("/"):
        raise ValueError(f"{path!r} is not the canonical path of its tile ({out.path()})")
    return out


def resources_for_size(size: int) -> Iterator[TilePath]:
    """Every hash tile and entry bundle of a tree of ``size`` leaves (for a static export)."""
    for t in tiles_for_size(size):
        yield TilePath(t.level, t.index, t.width)
        if t.level == 0:
            yield TilePath(ENTRIES, t.index, t.width)


def tile_bytes(stored_hashes: bytes, width: int) -> bytes:
    """The resource cut from a stored (possibly wider) tile; ``ValueError`` if it is too narrow."""
    if len(stored_hashes) < width * HASH_SIZE:
        raise ValueError("stored tile is narrower than the resource")
    return stored_hashes[: width * HASH_SIZE]


def encode_bundle(entries: Iterable[bytes]) -> bytes:
    """An entry bundle: each entry as a big-endian uint16 length and its bytes."""
    out = bytearray()
    for e in entries:
        if len(e) > MAX_ENTRY_BYTES:
            raise ValueError(f"an entry of {len(e)} bytes does not fit a bundle's uint16 length")
        out += len(e).to_bytes(2, "big") + e
    return bytes(out)


def decode_bundle(data: bytes) -> list[bytes]:
    out: list[bytes] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise ValueError("entry bundle ends inside a length prefix")
        n = int.from_bytes(data[pos:pos + 2], "big")
        if pos + 2 + n > len(data):
            raise ValueError("entry bundle ends inside an entry")
        out.append(data[pos + 2:pos + 2 + n])
        pos += 2 + n
    return out


def bundle_seqs(tp: TilePath) -> Sequence[int]:
    """The ledger sequence numbers (leaf index + 1) a bundle holds."""
    return range(tp.first_leaf + 1, tp.first_leaf + tp.width + 1)
