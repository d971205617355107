"""The log as C2SP tlog-tiles resources: the (cosigned) checkpoint, hash tiles, entry bundles.

Everything is cut from what the database stores, bounded by the latest published checkpoint: a tile or
bundle the checkpoint does not cover is 404 (a client must not ask for it; C2SP tlog-tiles). Read-only,
so it runs on read replicas as the proofs do. Entry bundles hold the entries' bytes -- accounts,
quantities, the digests of private metadata -- so they are served to operators and auditors unless
``ENVX_TLOG_ENTRIES_PUBLIC`` is set; anyone else gets 404, as for an object they may not see.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, NotFound
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.verifiable import proofs
from ledger import checkpoints, tlog_store, tree_store
from ledger.tiles import TILE_WIDTH
from ledger.tlog_paths import TilePath, bundle_seqs, encode_bundle, parse_tile_path, resources_for_size, tile_bytes
from ledger.tlog_proof import format_tlog_proof

OVERSIGHT = frozenset({"operator", "auditor"})


async def _raw(conn: AsyncConnection) -> asyncpg.Connection:
    fairy = await conn.get_raw_connection()
    return fairy.driver_connection


async def checkpoint(rt: Runtime) -> str:
    async with rt.read() as conn:
        raw = await _raw(conn)
        cp = await checkpoints.latest(raw)
        if cp is None:
            raise DomainError("checkpoint_pending", "no checkpoint has been published yet", 503)
        return await proofs.cosigned_note(raw, cp)


def entries_visible(rt: Runtime, who: Principal | None) -> bool:
    return rt.settings.tlog_entries_public or (who is not None and who.kind in OVERSIGHT)


async def read_resource(raw: asyncpg.Connection, tp: TilePath, size: int) -> bytes:
    """The bytes of one resource of the tree of ``size`` leaves (``LookupError`` if it has none)."""
    if not tp.exists_at(size):
        raise LookupError(tp.path())
    if tp.is_entries:
        return encode_bundle(await tlog_store.leaves(raw, bundle_seqs(tp)[0], tp.width))
    tile = (await tree_store.fetch_tiles(raw, [(tp.level, tp.index)])).get((tp.level, tp.index))
    if tile is None:
        raise LookupError(tp.path())
    return tile_bytes(tile.hashes, tp.width)


@dataclass(frozen=True, slots=True)
class Resource:
    body: bytes
    full: bool  # a full tile or bundle (its bytes never change; nor do a partial one's)


async def tile(rt: Runtime, who: Principal | None, path: str) -> Resource:
    try:
        tp = parse_tile_path(path)
    except ValueError:
        raise NotFound("tile", path) from None
    if tp.is_entries and not entries_visible(rt, who):
        # The entry bytes are not public here (ENVX_TLOG_ENTRIES_PUBLIC): as for any object not visible.
        raise NotFound("entry bundle (served to operators and auditors)", path)
    async with rt.read() as conn:
        raw = await _raw(conn)
        cp = await checkpoints.latest(raw)
        try:
            body = await read_resource(raw, tp, cp.size if cp is not None else 0)
        except LookupError:
            raise NotFound("tile", path) from None
    return Resource(body, tp.width == TILE_WIDTH)


async def export(raw: asyncpg.Connection) -> AsyncIterator[tuple[str, bytes]]:
    """``(path, bytes)`` of the checkpoint and every tile and bundle of the latest checkpoint's tree."""
    cp = await checkpoints.latest(raw)
    if cp is None:
        return
    for tp in resources_for_size(cp.size):
        yield tp.path(), await read_resource(raw, tp, cp.size)
    yield "checkpoint", (await proofs.cosigned_note(raw, cp)).encode("utf-8")


async def tlog_proof(rt: Runtime, who: Principal, seq: int, order_party: proofs.OrderParty) -> str:
    """Entry ``seq`` as a C2SP tlog-proof (ledger/tlog_proof.py): the JSON receipt's facts in that shape.

    Who may have it, and the checkpoint it is given under (with a witness policy: the oldest one the
    quorum cosigned, waited for), are decided as for the JSON receipt (`proofs.receipt`).
    """
    return receipt_as_tlog_proof(await proofs.receipt(rt, who, seq, order_party))


def receipt_as_tlog_proof(r: dict[str, Any]) -> str:
    """A JSON receipt (ledger/receipt.py) as a tlog-proof: extra = the entry bytes, the same path and note."""
    return format_tlog_proof(base64.b64decode(r["entry"]), r["index"],
                             [base64.b64decode(h) for h in r["inclusion_path"]], r["checkpoint"])
