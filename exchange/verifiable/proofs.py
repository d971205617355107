"""Checkpoints, keys, Merkle proofs and receipts for API callers.

Everything here only reads (tiles, checkpoints, entries), so it can run on extra worker processes and
on a read replica. Tiles are append-only, so reading the checkpoint first and the tiles after is
consistent without a snapshot. Hashes are base64, as in checkpoints and receipts.

When no checkpoint covers an entry yet, a receipt request waits for the publisher when it runs in
this process (one publication interval plus a margin, at most 3.5 s); elsewhere, or after that, the answer is 503
``checkpoint_pending`` with ``Retry-After``: checkpoints are signed only once a batch is durable, at
most once per interval under load, so the wait is short and bounded.

With a witness policy (``ENVX_WITNESS_QUORUM`` > 0) a receipt -- and so every restoration certificate and
``.tlog-proof`` made of receipts -- is given under the newest checkpoint covering its entry that the quorum
cosigned, with those cosignatures in its note (`covering`); it waits for the witnesses up to
``WITNESS_WAIT_SECONDS``, then answers 503 ``checkpoint_pending``.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, NotFound
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from ledger import blinding, checkpoints, merkle, openings, queries, tlog_store, tree_store
from ledger.checkpoints import Published
from ledger.cosignature import WitnessPolicy
from ledger.encoding import VERSION_3, VERSION_4, decode_entry, legs_of
from ledger.receipt import make_receipt

OVERSIGHT = frozenset({"operator", "auditor"})
# How long a receipt waits for the witness quorum to cosign a checkpoint covering its entry.
WITNESS_WAIT_SECONDS = 5.0
_ACCOUNT_FIELDS = ("debit", "credit", "account", "source", "sink")

# Whether `who` is a party (the court or the payer) of restoration order N: a judicial retirement's units pass
# through the clearing account and never reach the payer, so its receipt is theirs by the order it fulfils.
# The courts package answers it; the composition root (api) passes it in.
OrderParty = Callable[[Principal, int], Awaitable[bool]]


async def no_order_party(who: Principal, order_id: int) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class LogKey:
    """A checkpoint key the log registered, from tree size `seq` on; `current`: the newest."""

    seq: int
    name: str
    key_id: str
    verifier_key: str
    current: bool


@dataclass(frozen=True, slots=True)
class InclusionProof:
    index: int
    seq: int
    tree_size: int
    leaf_hash: str
    inclusion_path: list[str]
    root: str
    checkpoint: str | None


@dataclass(frozen=True, slots=True)
class ConsistencyProof:
    first: int
    second: int
    first_root: str
    second_root: str
    proof: list[str]
    checkpoint: str | None


class CheckpointPending(DomainError):
    """No signed checkpoint covers what was asked for yet; retry after ``retry_after`` seconds."""

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__("checkpoint_pending", message, 503)
        self.retry_after = retry_after


def _b64(h: bytes) -> str:
    return base64.b64encode(h).decode("ascii")


def _retry_after(rt: Runtime) -> int:
    return max(1, math.ceil(rt.settings.checkpoint_interval_seconds))


async def _raw(conn: AsyncConnection) -> asyncpg.Connection:
    # Proofs read a handful of bytea tiles; the driver connection spares SQLAlchemy's row processing.
    fairy = await conn.get_raw_connection()
    raw: asyncpg.Connection = fairy.driver_connection
    return raw


async def checkpoint_note(rt: Runtime) -> str:
    async with rt.read() as conn:
        cp = await checkpoints.latest(await _raw(conn))
    if cp is None:
        raise CheckpointPending("no checkpoint has been published yet", _retry_after(rt))
    return cp.note


async def checkpoint_list(rt: Runtime, before: int | None, limit: int) -> list[Published]:
    async with rt.read() as conn:
        return list(await checkpoints.listing(await _raw(conn), before, limit))


async def signing_keys(rt: Runtime) -> list[LogKey]:
    async with rt.read() as conn:
        rows = await checkpoints.registered_keys(await _raw(conn))
    return [LogKey(r["seq"], r["name"], r["key_id"], r["verifier_key"], i == len(rows) - 1)
            for i, r in enumerate(rows)]


async def _tree_size(raw: asyncpg.Connection, wanted: int | None, rt: Runtime,
                     need: int) -> tuple[int, Published | None]:
    """The tree size to prove against: ``wanted`` (checked against the stored tree) or the newest
    checkpoint's, which must cover ``need`` leaves."""
    if wanted is None:
        cp = await checkpoints.latest(raw)
        if cp is None or cp.size < need:
            if need > await tree_store.stored_size(raw):
                raise DomainError("beyond_tree", f"the log has fewer than {need} entries", 404)
            raise CheckpointPending(f"no signed checkpoint covers {need} entries yet", _retry_after(rt))
        return cp.size, cp
    size = await tree_store.stored_size(raw)
    if wanted > size:
        raise DomainError("tree_size_unavailable", f"the tree has {size} leaves, not {wanted}", 409)
    return wanted, await checkpoints.at_size(raw, wanted)


async def inclusion(rt: Runtime, *, seq: int | None, index: int | None, tree_size: int | None) -> InclusionProof:
    if (seq is None) == (index is None):
        raise DomainError("validation_error", "give exactly one of seq and index", 422)
    index = seq - 1 if seq is not None else index
    assert index is not None
    if tree_size is not None and index >= tree_size:
        raise DomainError("index_out_of_range", f"leaf {index} is not in a tree of size {tree_size}", 422)
    async with rt.read() as conn:
        raw = await _raw(conn)
        size, cp = await _tree_size(raw, tree_size, rt, index + 1)
        leaf, path, root = await tree_store.inclusion_with_root(raw, index, size)
    return InclusionProof(index, index + 1, size, _b64(leaf), [_b64(h) for h in path], _b64(root),
                          cp.note if cp is not None else None)


async def consistency(rt: Runtime, *, first: int, second: int | None) -> ConsistencyProof:
    async with rt.read() as conn:
        raw = await _raw(conn)
        size, cp = await _tree_size(raw, second, rt, first)
        if first > size:
            raise DomainError("invalid_range", f"first ({first}) must not exceed second ({size})", 422)
        proof, first_root, second_root = await tree_store.consistency_with_roots(raw, first, size)
    return ConsistencyProof(first, size, _b64(first_root), _b64(second_root), [_b64(h) for h in proof],
                            cp.note if cp is not None else None)


async def _sees_by_accounts(conn: AsyncConnection, who: Principal, actor: str, entry: dict[str, Any]) -> bool:
    """Oversight, the entry's author, or a party to one of its accounts (of any leg, for an event)."""
    if who.kind in OVERSIGHT or actor == who.actor:
        return True
    accounts: set[int] = set()
    for _type, body in legs_of(entry):
        named = {body[k] for k in _ACCOUNT_FIELDS if isinstance(body.get(k), int)}
        if "hold" in body and not named:  # hold.void / hold.expire / hold.trim name only the hold
            found = await queries.hold_accounts(conn, body["hold"])
            if found is not None:
                named = set(found)
        accounts |= named
    return bool(accounts & {a for a in (who.holding_account, who.cash_account) if a is not None})


def _opens_everything(who: Principal, actor: str, meta: bytes) -> bool:
    """Whose receipt of a blinded entry opens every field: oversight's; for an enforcement's event (its committed
    metadata names the pledge) the pledgee's and the pledgor's -- the bank that realises the lot and the owner
    whose lot it is and who owes every line of the waterfall -- and nobody else's (a junior claimant, a court
    paid its share, a negotiated sale's buyer: their own legs only, see README "Visibility"); for any other
    event (an anonymous trade, whose author is the market) its author's."""
    if who.kind in OVERSIGHT:
        return True
    try:
        named = json.loads(meta)
    except ValueError:
        named = None
    if isinstance(named, dict) and "pledge" in named:
        return who.participant_id in (named.get("pledgee"), named.get("pledgor"))
    return actor == who.actor


async def _own_openings(conn: AsyncConnection, who: Principal, everything: bool,
                        opened: blinding.Openings | None) -> tuple[bool, list[dict[str, Any]]]:
    """Of a blinded entry: whether `who` sees it, and the openings its receipt carries -- every one if
    `everything` (`_opens_everything`), else those of the caller's own fields: its accounts, the holds on them, and (in
    a version-4 entry) the amounts of its own legs, those that name one of its accounts or holds. The other
    side's accounts, holds and amounts stay commitments, and so do the system legs' (the fee account's
    transfer carries both sides' fees)."""
    mine = {a for a in (who.holding_account, who.cash_account) if a is not None}
    own: list[dict[str, Any]] = []
    for i, fields in enumerate(opened or ()):
        ours: set[str] = set()
        for f, (_salt, value) in fields.items():
            if everything:
                ours.add(f)
            elif f == "hold":
                found = await queries.hold_accounts(conn, value)
                if found is not None and found[0] in mine:
                    ours.add(f)
            elif f in blinding.ACCOUNT_FIELDS and value in mine:
                ours.add(f)
        if ours:  # a leg of the caller's: its amounts are the caller's own terms
            ours |= {f for f in fields if f in blinding.AMOUNT_FIELDS}
        own += [{"leg": i, "field": f, "salt": salt.hex(), "value": value}
                for f, (salt, value) in fields.items() if f in ours]
    return everything or any(o["field"] in blinding.ACCOUNT_FIELDS for o in own), own


def _restoration_order(body: dict[str, Any], meta: bytes) -> int | None:
    """The restoration order a judicial retirement entry fulfils (named in its committed metadata)."""
    if body.get("purpose") != "judicial_restoration":
        return None
    try:
        order = (json.loads(meta).get("restoration") or {}).get("restoration_order")
    except (ValueError, AttributeError):
        return None
    return order if isinstance(order, int) else None


async def receipt(rt: Runtime, who: Principal, seq: int, order_party: OrderParty,
                  under: tuple[Published, str] | None = None) -> dict[str, Any]:
    """The offline-verifiable receipt of entry ``seq`` (format: `ledger.receipt`), under the checkpoint
    `covering` gives (or ``under``: one checkpoint for all the receipts of a certificate).

    Receipts carry the entry bytes (accounts, amounts): oversight, the author, a party, or -- for a
    judicial retirement -- the payer and the court of the restoration order it fulfils (`order_party`).
    A blinded entry's receipt also carries the openings of the caller's own fields (`_own_openings`).
    Anyone else: 404, as for no entry, before anything is said about checkpoints."""
    async with rt.read() as conn:
        row = await queries.leaf_entry(conn, seq)
        if row is None:
            raise NotFound("ledger entry", seq)
        leaf = row.leaf
        entry = decode_entry(leaf)
        own: list[dict[str, Any]] | None = None
        if entry.get("v") in (VERSION_3, VERSION_4):  # accounts by commitment: parties are read from the openings
            sees, own = await _own_openings(conn, who, _opens_everything(who, row.actor, row.meta),
                                            await openings.of_entry(conn, seq))
        else:
            sees = await _sees_by_accounts(conn, who, row.actor, entry)
        cp = await checkpoints.at_least(await _raw(conn), seq)
    if not sees:
        order = _restoration_order(entry["body"], row.meta)
        if order is None or not await order_party(who, order):
            raise NotFound("ledger entry", seq)
    if cp is None and under is None:
        v = rt.verifiable
        if v is not None:
            # Bounded: a request should not hang for a long publication interval.
            cp = await v.publisher.wait_covering(seq, timeout=min(v.publisher.interval, 2.0) + 1.5)
        if cp is None:
            raise CheckpointPending(f"entry {seq} is not covered by a signed checkpoint yet", _retry_after(rt))
    cp, note_text, path = await proven(rt, seq, under)
    if not merkle.verify_inclusion(merkle.leaf_hash(leaf), seq - 1, cp.size, path, cp.root):
        # Never hand out a receipt that would not verify: the tiles disagree with the checkpoint.
        raise RuntimeError(f"inclusion proof of entry {seq} does not match checkpoint {cp.size}")
    return make_receipt(leaf, seq - 1, cp.size, path, note_text, metadata={
        "seq": seq, "type": entry["type"], "key_id": cp.key_id,
        # The committed metadata; its SHA-256 is the entry's "meta" field.
        "meta": row.meta.decode("utf-8"),
    }, openings=own)


async def cosigned_note(raw: asyncpg.Connection, cp: Published) -> str:
    """The checkpoint note with every cosignature recorded for it appended (signature lines)."""
    return cp.note + "".join(c.line for c in await tlog_store.cosignatures(raw, cp.size))


def witness_policy(rt: Runtime) -> WitnessPolicy | None:
    """The witness policy of ``ENVX_WITNESSES`` / ``ENVX_WITNESS_QUORUM``; None when the quorum is 0."""
    s = rt.settings
    if s.witness_quorum <= 0:
        return None
    return WitnessPolicy.of([k for k, _ in s.witness_list], s.witness_quorum)


async def covering(rt: Runtime, seq: int, wait: float = WITNESS_WAIT_SECONDS) -> tuple[Published, str]:
    """The checkpoint that proofs of entry ``seq`` are given under, and its note with the cosignatures.

    Without a witness policy: the newest checkpoint (it covers ``seq``: the caller made sure one does).
    With one (``ENVX_WITNESS_QUORUM`` > 0): the newest checkpoint covering ``seq`` that the quorum of the
    configured witnesses cosigned, waiting up to ``wait`` seconds for the witnesses; else 503
    ``checkpoint_pending``. Polls the database, so it works on a read replica too."""
    policy = witness_policy(rt)
    deadline = time.monotonic() + wait
    while True:
        async with rt.read() as conn:
            raw = await _raw(conn)
            if policy is None:
                cp = await checkpoints.at_least(raw, seq)
            else:
                cp = await tlog_store.latest_witnessed(raw, [w.key_string() for w in policy.witnesses],
                                                       policy.quorum, at_least=seq)
            if cp is not None:
                return cp, await cosigned_note(raw, cp)
        if time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.05)
    if policy is None:
        raise CheckpointPending(f"entry {seq} is not covered by a signed checkpoint yet", _retry_after(rt))
    raise CheckpointPending(f"no checkpoint covering entry {seq} is cosigned by {policy.quorum} of the "
                            f"{len(policy.witnesses)} configured witnesses yet", max(1, round(wait)))


async def proven(rt: Runtime, seq: int,
                 under: tuple[Published, str] | None = None) -> tuple[Published, str, list[bytes]]:
    """The checkpoint (``under``, else `covering`) entry ``seq`` is proven under, its cosigned note, and the
    inclusion path."""
    cp, text = under if under is not None else await covering(rt, seq)
    if cp.size < seq:
        raise ValueError(f"checkpoint {cp.size} does not cover entry {seq}")
    async with rt.read() as conn:
        path = await tree_store.inclusion_proof(await _raw(conn), seq - 1, cp.size)
    return cp, text, path
