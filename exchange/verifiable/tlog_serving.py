"""The log as C2SP tlog-tiles resources: the (cosigned) checkpoint, hash tiles, entry bundles.

Everything is cut from what the database stores, bounded by the latest published checkpoint: a tile or
bundle the checkpoint does not cover is 404 (a client must not ask for it; C2SP tlog-tiles). Read-only,
so it runs on read replicas as the proofs do. Entry bundles hold the entries' bytes -- accounts,
quantities, the digests of private metadata -- so they are served to operators and auditors unless
``ENVX_TLOG_ENTRIES_PUBLIC`` is set; anyone else gets 404, as for an object they may not see.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, NotFound
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.verifiable import proofs
from exchange.verifiable.proofs import CheckpointPending
from exchange.verifiable.witnessing import Witnessing
from ledger import checkpoints, tlog_store, tree_store
from ledger.checkpoints import Published
from ledger.tiles import TILE_WIDTH
from ledger.tlog_paths import TilePath, bundle_seqs, encode_bundle, parse_tile_path, resources_for_size, tile_bytes
from ledger.tlog_proof import format_tlog_proof

OVERSIGHT = frozenset({"operator", "auditor"})


async def _raw(conn: AsyncConnection) -> asyncpg.Connection:
    fairy = await conn.get_raw_connection()
    return fairy.driver_connection


async def cosigned_note(raw: asyncpg.Connection, cp: Published) -> str:
    """The checkpoint note with every cosignature recorded for it appended (signature lines)."""
    return cp.note + "".join(c.line for c in await tlog_store.cosignatures(raw, cp.size))


async def checkpoint(rt: Runtime) -> str:
    async with rt.read() as conn:
        raw = await _raw(conn)
        cp = await checkpoints.latest(raw)
        if cp is None:
            raise DomainError("checkpoint_pending", "no checkpoint has been published yet", 503)
        return await cosigned_note(raw, cp)


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
    yield "checkpoint", (await cosigned_note(raw, cp)).encode("utf-8")


async def _covering(rt: Runtime, witnessing: Witnessing | None, seq: int) -> Published | None:
    """The checkpoint a proof of ``seq`` is given under: with a witness policy the newest witnessed one,
    else the newest one."""
    async with rt.read() as conn:
        raw = await _raw(conn)
        policy = witnessing.policy if witnessing is not None else None
        if policy is not None and policy.quorum > 0:
            keys = [w.key_string() for w in policy.witnesses]
            return await tlog_store.latest_witnessed(raw, keys, policy.quorum, at_least=seq)
        return await checkpoints.at_least(raw, seq)


async def tlog_proof(rt: Runtime, who: Principal, seq: int, witnessing: Witnessing | None,
                     order_party: proofs.OrderParty, wait: float = 5.0) -> str:
    """Entry ``seq`` as a C2SP tlog-proof (ledger/tlog_proof.py), under a cosigned checkpoint.

    Who may have it is decided as for the JSON receipt (the entry's bytes are in it). With a witness
    policy, waits (bounded) for a checkpoint that meets it; else 503 ``checkpoint_pending``.
    """
    # Visibility and the covering checkpoint, as for the JSON receipt.
    entry = base64.b64decode((await proofs.receipt(rt, who, seq, order_party))["entry"])
    deadline = time.monotonic() + wait
    cp = await _covering(rt, witnessing, seq)
    while cp is None and time.monotonic() < deadline:
        if witnessing is not None:
            await witnessing.wait_witnessed(seq, max(0.0, deadline - time.monotonic()))
        await asyncio.sleep(0.05)
        cp = await _covering(rt, witnessing, seq)
    if cp is None:
        raise CheckpointPending(f"no checkpoint covering entry {seq} is cosigned by the witness quorum yet",
                                max(1, round(wait)))
    async with rt.read() as conn:
        raw = await _raw(conn)
        path = await tree_store.inclusion_proof(raw, seq - 1, cp.size)
        text = await cosigned_note(raw, cp)
    return format_tlog_proof(entry, seq - 1, path, text)
