"""Read queries over the ledger's projections and log. Safe to run on a read replica."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.encoding import decode_entry


async def balances(conn: AsyncConnection, accounts: list[int]) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text("""SELECT account, instrument, posted, pending_out, pending_in
                FROM ledger_balances WHERE account = ANY(:a) ORDER BY account, instrument"""),
        {"a": accounts},
    )
    return [dict(r._mapping) for r in rows]


async def blocks(conn: AsyncConnection, accounts: list[int], instrument: str | None = None,
                 limit: int = 1000, after: tuple[str, int] | None = None) -> list[dict[str, Any]]:
    sql = """SELECT b.instrument, b.start_serial, b.end_serial, b.batch, b.account, b.hold, b.retired_seq,
                    b.frozen_by, h.kind AS hold_kind
             FROM ledger_blocks b LEFT JOIN ledger_holds h ON h.id = b.hold
             WHERE b.account = ANY(:a)"""
    params: dict[str, Any] = {"a": accounts, "limit": limit}
    if instrument:
        sql += " AND b.instrument = :i"
        params["i"] = instrument
    if after:
        sql += " AND (b.instrument, b.start_serial) > (:ai, :as)"
        params["ai"], params["as"] = after
    sql += " ORDER BY b.instrument, b.start_serial LIMIT :limit"
    rows = await conn.execute(text(sql), params)
    return [dict(r._mapping) for r in rows]


async def retired_blocks(conn: AsyncConnection, accounts: list[int], entries: list[int], instrument: str | None = None,
                         limit: int = 1000, after: tuple[str, int] | None = None,
                         except_purpose: str | None = None) -> list[dict[str, Any]]:
    """Retired blocks (they rest in the retired sink) that `accounts` retired -- the account named in the
    retire entry's body -- or that the retire entries `entries` retired, with the entry's purpose and
    beneficiary; none retired with `except_purpose`. Same order and paging as `blocks`."""
    sql = """SELECT b.instrument, b.start_serial, b.end_serial, b.batch, b.account, b.hold, b.retired_seq,
                    b.frozen_by, NULL AS hold_kind, x.body ->> 'purpose' AS purpose,
                    x.body ->> 'beneficiary' AS beneficiary
             FROM ledger_blocks b JOIN ledger_entries e ON e.seq = b.retired_seq AND e.type = 'retire'
             CROSS JOIN LATERAL (SELECT convert_from(substring(e.leaf from 14), 'UTF8')::jsonb -> 'body' AS body) x
             WHERE b.retired_seq IS NOT NULL
               AND ((x.body ->> 'account')::bigint = ANY(:a) OR b.retired_seq = ANY(:s))"""
    params: dict[str, Any] = {"a": accounts, "s": entries, "limit": limit}
    if instrument:
        sql += " AND b.instrument = :i"
        params["i"] = instrument
    if except_purpose:
        sql += " AND (x.body ->> 'purpose') IS DISTINCT FROM :xp"
        params["xp"] = except_purpose
    if after:
        sql += " AND (b.instrument, b.start_serial) > (:ai, :as)"
        params["ai"], params["as"] = after
    sql += " ORDER BY b.instrument, b.start_serial LIMIT :limit"
    rows = await conn.execute(text(sql), params)
    return [dict(r._mapping) for r in rows]


async def blocks_of_hold(conn: AsyncConnection, hold: int) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text("""SELECT instrument, start_serial, end_serial, batch, account FROM ledger_blocks
                WHERE hold = :h ORDER BY start_serial"""), {"h": hold})
    return [dict(r._mapping) for r in rows]


async def batch(conn: AsyncConnection, batch_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM ledger_batches WHERE id = :b"), {"b": batch_id})).first()
    return dict(row._mapping) if row else None


async def hold(conn: AsyncConnection, hold_id: int) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM ledger_holds WHERE id = :h"), {"h": hold_id})).first()
    return dict(row._mapping) if row else None


def _entry(row: Any) -> dict[str, Any]:
    leaf = bytes(row.leaf)
    return {
        "seq": row.seq,
        "ts": row.ts,
        "type": row.type,
        "actor": row.actor,
        "client_id": row.client_id,
        "hash": bytes(row.hash).hex(),
        "entry": decode_entry(leaf),
        "leaf": leaf,
        "meta": bytes(row.meta),
    }


async def entries(conn: AsyncConnection, after: int = 0, limit: int = 100) -> list[dict[str, Any]]:
    rows = await conn.execute(
        text("SELECT * FROM ledger_entries WHERE seq > :after ORDER BY seq LIMIT :limit"),
        {"after": after, "limit": limit},
    )
    return [_entry(r) for r in rows]


async def entry(conn: AsyncConnection, seq: int) -> dict[str, Any] | None:
    row = (await conn.execute(text("SELECT * FROM ledger_entries WHERE seq = :s"), {"s": seq})).first()
    return _entry(row) if row else None


async def head(conn: AsyncConnection) -> dict[str, Any]:
    row = (await conn.execute(text("SELECT seq, hash, ts FROM ledger_head WHERE id = 1"))).one()
    return {"seq": row.seq, "hash": bytes(row.hash).hex(), "ts": row.ts}


# --- for exchange/registry (wp/b-registry) ------------------------------------------------------------------


async def instrument_defined(conn: AsyncConnection, code: str) -> bool:
    found = (await conn.execute(text("SELECT 1 FROM ledger_instruments WHERE code = :c"), {"c": code})).first()
    return found is not None


async def batch_id_by_reference(conn: AsyncConnection, reference: str) -> int | None:
    found = (await conn.execute(text("SELECT id FROM ledger_batches WHERE reference = :r"), {"r": reference})).scalar()
    return None if found is None else int(found)


async def first_entry_by_client_id(conn: AsyncConnection, type_: str, client_id: str) -> tuple[int, bytes] | None:
    """(seq, meta bytes) of the first entry of `type_` under `client_id` (any actor)."""
    row = (await conn.execute(
        text("SELECT seq, meta FROM ledger_entries WHERE type = :t AND client_id = :c ORDER BY seq LIMIT 1"),
        {"t": type_, "c": client_id})).first()
    return None if row is None else (int(row.seq), bytes(row.meta))


async def retired_by_prefix(conn: AsyncConnection, actor: str, client_id_prefix: str, instrument: str | None,
                            limit: int = 1000) -> list[dict[str, Any]]:
    """Blocks retired by `actor`'s entries whose client id starts with the prefix (an account's expiries)."""
    rows = await conn.execute(text(
        """SELECT b.instrument, b.start_serial, b.end_serial, b.batch, b.hold, b.frozen_by
           FROM ledger_entries e JOIN ledger_blocks b ON b.retired_seq = e.seq
           WHERE e.actor = :actor AND e.client_id LIKE :prefix AND e.type = 'retire'
             AND (CAST(:i AS text) IS NULL OR b.instrument = CAST(:i AS text))
           ORDER BY b.instrument, b.start_serial LIMIT :limit"""),
        {"actor": actor, "prefix": client_id_prefix + "%", "i": instrument, "limit": limit})
    return [dict(r._mapping) for r in rows]


async def hold_state(conn: AsyncConnection, hold_id: int) -> tuple[str, str] | None:
    """(instrument, state) of a hold."""
    row = (await conn.execute(text("SELECT instrument, state FROM ledger_holds WHERE id = :h"), {"h": hold_id})).first()
    return None if row is None else (str(row.instrument), str(row.state))


async def held_ranges(conn: AsyncConnection, hold_id: int, *, batch: int, in_batch: bool) -> list[tuple[int, int]]:
    """The unretired serial ranges under a hold, of `batch` (`in_batch`) or of every other batch."""
    rows = await conn.execute(text(
        """SELECT start_serial, end_serial FROM ledger_blocks
           WHERE hold = :h AND retired_seq IS NULL AND (batch = :b) = :mine ORDER BY start_serial"""),
        {"h": hold_id, "b": batch, "mine": in_batch})
    return [(int(r.start_serial), int(r.end_serial)) for r in rows]


async def orphan_order_holds(conn: AsyncConnection, keep_actors: list[str]) -> list[int]:
    """Pending order holds that no row of `orders` names (their order never reached a market's journal),
    except those created by the actors `keep_actors` (a stopped market's own fundings)."""
    rows = await conn.execute(text(
        """SELECT h.id FROM ledger_holds h JOIN ledger_entries e ON e.seq = h.id
           WHERE h.kind = 'order' AND h.state = 'pending' AND e.actor <> ALL(:keep)
             AND NOT EXISTS (SELECT 1 FROM orders o WHERE o.hold_id = h.id)
           ORDER BY h.id"""), {"keep": keep_actors})
    return [int(r.id) for r in rows]


@dataclass(frozen=True, slots=True)
class RequestEntry:
    """The entry a ledger request (named by its actor and client id) became."""

    seq: int
    actor: str
    client_id: str
    meta: bytes

    @classmethod
    def from_row(cls, r: Any) -> RequestEntry:
        return cls(r.seq, r.actor, r.client_id, bytes(r.meta))


async def entries_of_requests(conn: AsyncConnection, requests: list[tuple[str, str]]) -> list[RequestEntry]:
    """The entries of these (actor, client id) requests that are in the ledger, by seq."""
    if not requests:
        return []
    rows = await conn.execute(
        text("""SELECT e.seq, e.actor, e.client_id, e.meta
                FROM unnest(CAST(:a AS text[]), CAST(:c AS text[])) AS k(actor, client_id)
                JOIN ledger_entries e ON e.actor = k.actor AND e.client_id = k.client_id ORDER BY e.seq"""),
        {"a": [a for a, _ in requests], "c": [c for _, c in requests]})
    return [RequestEntry.from_row(r) for r in rows]


@dataclass(frozen=True, slots=True)
class LeafEntry:
    """An entry's canonical bytes (the Merkle leaf) and committed metadata."""

    seq: int
    actor: str
    leaf: bytes
    meta: bytes


async def leaf_entry(conn: AsyncConnection, seq: int) -> LeafEntry | None:
    row = (await conn.execute(text("SELECT seq, actor, leaf, meta FROM ledger_entries WHERE seq = :s"),
                              {"s": seq})).first()
    return None if row is None else LeafEntry(row.seq, row.actor, bytes(row.leaf), bytes(row.meta))


async def hold_accounts(conn: AsyncConnection, hold_id: int) -> tuple[int, int] | None:
    """(debit, credit) of a hold."""
    row = (await conn.execute(text("SELECT debit, credit FROM ledger_holds WHERE id = :h"), {"h": hold_id})).first()
    return None if row is None else (int(row.debit), int(row.credit))


@dataclass(frozen=True, slots=True)
class FrozenBlock:
    """A block of serials a freeze hold locks; `hold`: the pledge hold it also sits in, if any."""

    instrument: str
    start_serial: int
    end_serial: int
    batch: int
    account: int
    hold: int | None

    @property
    def size(self) -> int:
        return self.end_serial - self.start_serial + 1


async def frozen_blocks(conn: AsyncConnection, freeze_hold: int) -> list[FrozenBlock]:
    rows = await conn.execute(text("""SELECT instrument, start_serial, end_serial, batch, account, hold
                                      FROM ledger_blocks WHERE frozen_by = :h ORDER BY start_serial"""),
                              {"h": freeze_hold})
    return [FrozenBlock(r.instrument, r.start_serial, r.end_serial, r.batch, r.account, r.hold) for r in rows]


async def freezable_blocks(conn: AsyncConnection, account: int, instrument: str) -> list[tuple[int, int, bool]]:
    """(start, end, pledged) of the blocks a freeze may lock: free ones and pledged ones (not retired, not
    frozen, no other hold), lowest first."""
    rows = await conn.execute(text("""
        SELECT b.start_serial, b.end_serial, b.hold IS NOT NULL AS pledged
        FROM ledger_blocks b LEFT JOIN ledger_holds h ON h.id = b.hold
        WHERE b.account = :a AND b.instrument = :i AND b.retired_seq IS NULL AND b.frozen_by IS NULL
          AND (b.hold IS NULL OR h.kind = 'pledge')
        ORDER BY b.start_serial"""), {"a": account, "i": instrument})
    return [(int(r.start_serial), int(r.end_serial), bool(r.pledged)) for r in rows]


async def block_bounds(conn: AsyncConnection, instrument: str, account: int | None = None) -> list[tuple[int, int]]:
    """Batch ranges of the instrument, plus the account's current blocks when given (see pledges.ranges.split_at)."""
    rows = list(await conn.execute(text("SELECT start_serial, end_serial FROM ledger_batches WHERE instrument = :i"),
                                   {"i": instrument}))
    if account is not None:
        rows += list(await conn.execute(text("""SELECT start_serial, end_serial FROM ledger_blocks
                                                WHERE account = :a AND instrument = :i"""),
                                        {"a": account, "i": instrument}))
    return [(int(r.start_serial), int(r.end_serial)) for r in rows]


async def pending_t1_holds(conn: AsyncConnection, instrument: str, before_ts: int) -> list[int]:
    """The pending T+1 locks of the instrument made before `before_ts` (UTC microseconds), in id order."""
    rows = await conn.execute(text(
        """SELECT h.id FROM ledger_holds h JOIN ledger_entries e ON e.seq = h.id
           WHERE h.kind = 't1' AND h.state = 'pending' AND h.instrument = :i AND e.ts < :t ORDER BY h.id"""),
        {"i": instrument, "t": before_ts})
    return [int(r.id) for r in rows]


# --- for exchange/pledging (wp/s3-pledging) -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeldBlock:
    """A block of serials a (pledge) hold encumbers; `frozen_by`: the freeze hold sitting on it, if any."""

    instrument: str
    start_serial: int
    end_serial: int
    batch: int
    account: int
    frozen_by: int | None

    @property
    def size(self) -> int:
        return self.end_serial - self.start_serial + 1


async def held_blocks(conn: AsyncConnection, hold: int) -> list[HeldBlock]:
    """The exact blocks a hold encumbers, lowest first, with any freeze sitting on them."""
    rows = await conn.execute(text("""SELECT instrument, start_serial, end_serial, batch, account, frozen_by
                                      FROM ledger_blocks WHERE hold = :h ORDER BY start_serial"""), {"h": hold})
    return [HeldBlock(r.instrument, int(r.start_serial), int(r.end_serial), int(r.batch), int(r.account),
                      r.frozen_by) for r in rows]


async def free_ranges(conn: AsyncConnection, account: int, instrument: str) -> list[tuple[int, int]]:
    """(start, end) of the account's blocks that no hold, freeze or retirement touches, lowest first."""
    rows = await conn.execute(text("""SELECT start_serial, end_serial FROM ledger_blocks
                                      WHERE account = :a AND instrument = :i AND hold IS NULL AND frozen_by IS NULL
                                        AND retired_seq IS NULL ORDER BY start_serial"""),
                              {"a": account, "i": instrument})
    return [(int(r.start_serial), int(r.end_serial)) for r in rows]


@dataclass(frozen=True, slots=True)
class RetiredPart:
    """A part of some serials that is retired, with the retiring entry."""

    start_serial: int
    end_serial: int
    retired_seq: int


async def retired_parts(conn: AsyncConnection, instrument: str, serials: list[tuple[int, int]]) -> list[RetiredPart]:
    """The parts of `serials` (start, end) that are retired, lowest first."""
    rows = await conn.execute(text("""
        SELECT GREATEST(b.start_serial, x.s) AS start_serial, LEAST(b.end_serial, x.e) AS end_serial, b.retired_seq
        FROM ledger_blocks b
        JOIN (SELECT (r->>0)::bigint AS s, (r->>1)::bigint AS e FROM jsonb_array_elements(CAST(:r AS jsonb)) r) x
          ON b.start_serial <= x.e AND b.end_serial >= x.s
        WHERE b.instrument = :i AND b.retired_seq IS NOT NULL ORDER BY 1"""),
        {"i": instrument, "r": json.dumps([list(r) for r in serials])})
    return [RetiredPart(int(r.start_serial), int(r.end_serial), int(r.retired_seq)) for r in rows]


@dataclass(frozen=True, slots=True)
class ClippedBlock:
    """An account's block clipped to some serials, with the hold and freeze on it, if any."""

    start_serial: int
    end_serial: int
    batch: int
    hold: int | None
    frozen_by: int | None


async def blocks_within(conn: AsyncConnection, account: int, instrument: str, serials: list[list[int]]
                        ) -> list[ClippedBlock]:
    """The account's unretired blocks inside `serials` ([start, end] ranges), clipped to them, lowest first."""
    rows = await conn.execute(text("""
        SELECT GREATEST(b.start_serial, x.s) AS start_serial, LEAST(b.end_serial, x.e) AS end_serial, b.batch,
               b.hold, b.frozen_by
        FROM ledger_blocks b
        JOIN (SELECT (r->>0)::bigint AS s, (r->>1)::bigint AS e FROM jsonb_array_elements(CAST(:r AS jsonb)) r) x
          ON b.start_serial <= x.e AND b.end_serial >= x.s
        WHERE b.account = :a AND b.instrument = :i AND b.retired_seq IS NULL ORDER BY 1"""),
        {"a": account, "i": instrument, "r": json.dumps(serials)})
    return [ClippedBlock(int(r.start_serial), int(r.end_serial), int(r.batch), r.hold, r.frozen_by) for r in rows]


async def entry_serials(conn: AsyncConnection, actor: str, client_id: str) -> list[list[int]] | None:
    """The serial ranges a ledger entry moved (its metadata's `serials`, or its first moving leg's), found by
    its client id (None: no such entry)."""
    row = (await conn.execute(text("SELECT meta FROM ledger_entries WHERE actor = :a AND client_id = :c"),
                              {"a": actor, "c": client_id})).first()
    if row is None:
        return None
    meta = json.loads(bytes(row.meta))
    # A version-2 entry (an event) keeps each leg's ranges apart: those of its first leg that moved units
    # (a trade's: the seller's units out of its hold).
    moved: list[list[int]] = meta.get("serials") or next(
        (leg["serials"] for leg in meta.get("legs", ()) if leg.get("serials")), [])
    return [list(r) for r in moved]


async def batches_covering(conn: AsyncConnection, instrument: str, serials: list[list[int]]) -> list[int]:
    """The batches of the instrument that any of `serials` ([start, end] ranges) falls in, by id."""
    rows = await conn.execute(text("""
        SELECT b.id FROM ledger_batches b
        WHERE b.instrument = :i AND EXISTS (
            SELECT 1 FROM jsonb_array_elements(CAST(:s AS jsonb)) x
            WHERE (x->>0)::bigint <= b.end_serial AND (x->>1)::bigint >= b.start_serial)
        ORDER BY b.id"""), {"i": instrument, "s": json.dumps(serials)})
    return [int(r.id) for r in rows]
async def batch_serials(conn: AsyncConnection, batch_ids: list[int]) -> dict[int, tuple[int, int]]:
    """Batch id -> (first serial, last serial) of each named batch that exists."""
    if not batch_ids:
        return {}
    rows = await conn.execute(text("SELECT id, start_serial, end_serial FROM ledger_batches WHERE id = ANY(:b)"),
                              {"b": sorted(set(batch_ids))})
    return {int(r.id): (int(r.start_serial), int(r.end_serial)) for r in rows}


# --- for exchange/pledging (wp/n-pledging) ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Retirement:
    """A retired block with what its `retire` entry says: the retiring account, purpose and beneficiary (in the
    entry's body) and, for a judicial retirement, the restoration order its committed metadata names."""

    instrument: str
    start_serial: int
    end_serial: int
    batch: int
    seq: int
    ts: int
    account: int | None
    purpose: str | None
    beneficiary: str | None
    restoration_order: int | None


async def retirements(conn: AsyncConnection, *, instrument: str | None, serial: int | None,
                      accounts: list[int] | None, orders: list[int] | None, limit: int) -> list[Retirement]:
    """Retired blocks, oldest entry first, of `instrument` and covering `serial` (None: any). With `accounts`
    (and `orders`): only those retired from one of the accounts outside any restoration order, or under one of
    the orders (a judicial retirement passes through the clearing account, never the payer's)."""
    # The body is in the leaf (13-byte domain tag + canonical JSON); the restoration order in the metadata.
    rows = await conn.execute(text("""
        WITH r AS (
            SELECT b.instrument, b.start_serial, b.end_serial, b.batch, e.seq, e.ts, x.body,
                   (convert_from(e.meta, 'UTF8')::jsonb #>> '{restoration,restoration_order}')::bigint AS order_id
            FROM ledger_blocks b JOIN ledger_entries e ON e.seq = b.retired_seq
            CROSS JOIN LATERAL (SELECT convert_from(substring(e.leaf from 14), 'UTF8')::jsonb -> 'body' AS body) x
            WHERE b.retired_seq IS NOT NULL AND e.type = 'retire'
              AND (CAST(:instrument AS text) IS NULL OR b.instrument = CAST(:instrument AS text))
              AND (CAST(:serial AS bigint) IS NULL OR (b.start_serial <= CAST(:serial AS bigint)
                                                   AND b.end_serial >= CAST(:serial AS bigint))))
        SELECT r.instrument, r.start_serial, r.end_serial, r.batch, r.seq, r.ts, (r.body ->> 'account')::bigint
               AS account, r.body ->> 'purpose' AS purpose, r.body ->> 'beneficiary' AS beneficiary, r.order_id
        FROM r
        WHERE CAST(:accounts AS bigint[]) IS NULL
           OR (r.order_id IS NULL AND (r.body ->> 'account')::bigint = ANY(CAST(:accounts AS bigint[])))
           OR r.order_id = ANY(CAST(:orders AS bigint[]))
        ORDER BY r.seq, r.start_serial LIMIT :limit"""),
        {"instrument": instrument, "serial": serial, "accounts": accounts,
         "orders": None if accounts is None else (orders or []), "limit": limit})
    return [Retirement(r.instrument, int(r.start_serial), int(r.end_serial), int(r.batch), int(r.seq), int(r.ts),
                       r.account, r.purpose, r.beneficiary, r.order_id) for r in rows]


# --- for exchange/registry's totals, encumbrances and ends of terms (wp/n-pledging) -------------------------


@dataclass(frozen=True, slots=True)
class Supply:
    """An instrument's units in the ledger: issued (its batches), under a pledge hold, frozen (a freeze hold or
    a freeze laid over a held block), and retired by the purpose its `retire` entry names ('' when none)."""

    issued: int
    pledged: int
    frozen: int
    retired: dict[str, int]


async def supply(conn: AsyncConnection) -> dict[str, Supply]:
    """Instrument code -> its Supply, for every instrument with a batch or a block."""
    issued = {r.instrument: int(r.q) for r in await conn.execute(text(
        "SELECT instrument, sum(end_serial - start_serial + 1) AS q FROM ledger_batches GROUP BY 1"))}
    states = {r.instrument: (int(r.pledged or 0), int(r.frozen or 0)) for r in await conn.execute(text("""
        SELECT b.instrument,
               sum(b.end_serial - b.start_serial + 1) FILTER (WHERE h.kind = 'pledge') AS pledged,
               sum(b.end_serial - b.start_serial + 1) FILTER (WHERE h.kind = 'freeze' OR b.frozen_by IS NOT NULL)
                   AS frozen
        FROM ledger_blocks b LEFT JOIN ledger_holds h ON h.id = b.hold GROUP BY 1"""))}
    retired: dict[str, dict[str, int]] = {}
    for r in await conn.execute(text("""
            SELECT b.instrument, COALESCE(convert_from(substring(e.leaf from 14), 'UTF8')::jsonb #>> '{body,purpose}',
                                          '') AS purpose, sum(b.end_serial - b.start_serial + 1) AS q
            FROM ledger_blocks b JOIN ledger_entries e ON e.seq = b.retired_seq
            WHERE b.retired_seq IS NOT NULL AND e.type = 'retire' GROUP BY 1, 2 ORDER BY 1, 2""")):
        retired.setdefault(r.instrument, {})[r.purpose] = int(r.q)
    return {code: Supply(issued.get(code, 0), *states.get(code, (0, 0)), retired.get(code, {}))
            for code in sorted({*issued, *states, *retired})}


@dataclass(frozen=True, slots=True)
class BlockState:
    """A block (or the part of it inside some named serials) with what stands on it: whether it is the asked
    account's, its hold and that hold's kind, the freeze laid over it, the entry that retired it."""

    account: int
    start_serial: int
    end_serial: int
    hold: int | None
    hold_kind: str | None
    frozen_by: int | None
    retired_seq: int | None
    batch: int


async def blocks_across(conn: AsyncConnection, instrument: str, serials: list[tuple[int, int]]) -> list[BlockState]:
    """Every block of `instrument` that `serials` (start, end) touch, whoever holds it, clipped to each named
    range, lowest first."""
    rows = await conn.execute(text("""
        WITH x AS (SELECT (r->>0)::bigint AS s, (r->>1)::bigint AS e FROM jsonb_array_elements(CAST(:r AS jsonb)) r)
        SELECT b.account, GREATEST(b.start_serial, x.s) AS start_serial, LEAST(b.end_serial, x.e) AS end_serial,
               b.hold, h.kind AS hold_kind, b.frozen_by, b.retired_seq, b.batch
        FROM ledger_blocks b JOIN x ON b.start_serial <= x.e AND b.end_serial >= x.s
        LEFT JOIN ledger_holds h ON h.id = b.hold
        WHERE b.instrument = :i ORDER BY 2"""), {"i": instrument, "r": json.dumps([list(r) for r in serials])})
    return [_block_state(r) for r in rows]


async def unretired_blocks(conn: AsyncConnection, *, batch: int | None = None, batches: list[int] | None = None,
                           account: int | None = None, hold: int | None = None) -> list[BlockState]:
    """Unretired blocks of a batch (or of any of `batches`), of an account, under a hold -- each filter that is
    given -- by account, then lowest serial first."""
    rows = await conn.execute(text("""
        SELECT b.account, b.start_serial, b.end_serial, b.hold, h.kind AS hold_kind, b.frozen_by, b.retired_seq,
               b.batch
        FROM ledger_blocks b LEFT JOIN ledger_holds h ON h.id = b.hold
        WHERE b.retired_seq IS NULL
          AND (CAST(:batch AS bigint) IS NULL OR b.batch = CAST(:batch AS bigint))
          AND (CAST(:batches AS bigint[]) IS NULL OR b.batch = ANY(CAST(:batches AS bigint[])))
          AND (CAST(:account AS bigint) IS NULL OR b.account = CAST(:account AS bigint))
          AND (CAST(:hold AS bigint) IS NULL OR b.hold = CAST(:hold AS bigint))
        ORDER BY b.account, b.start_serial"""), {"batch": batch, "batches": batches, "account": account, "hold": hold})
    return [_block_state(r) for r in rows]


def _block_state(r: Any) -> BlockState:
    return BlockState(int(r.account), int(r.start_serial), int(r.end_serial), r.hold, r.hold_kind, r.frozen_by,
                      r.retired_seq, int(r.batch))


# --- for exchange/verifiable (online key rotation) ---------------------------------------------------------


async def key_registrations(conn: AsyncConnection) -> list[tuple[int, str, str | None]]:
    """(seq, verifier key, client id) of every checkpoint-key registration in the log, oldest first."""
    rows = await conn.execute(text("SELECT seq, leaf, client_id FROM ledger_entries WHERE type = 'key.register' "
                                   "ORDER BY seq"))
    return [(int(r.seq), str(decode_entry(bytes(r.leaf))["body"]["key"]), r.client_id) for r in rows]
