"""A market's journal and its projection: how commands are journaled and replayed, and their SQL.

The sequencer (exchange/trading/pipeline.py) writes on raw asyncpg connections of its own (COPY into
`market_journal` and `orders`, the projection of `trades`, `orders`, `market_refusals` and
`markets.applied_seq` in one transaction): that path is on every order's way. Recovery, snapshots and
the read-only follower (exchange/trading/replica.py) read through SQLAlchemy connections. Every
function takes the caller's connection; rows become models right here.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
import msgspec
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.trading.models import BlockDeal, Order, OrderState, OrderUpdate, Trade
from matching import commands as mc
from matching import events as ev
from matching.auction import AuctionHouse
from matching.base import Engine
from matching.block import BlockDesk
from matching.book import ContinuousBook
from matching.listing import ListingBook

ENGINES: dict[str, type[Engine]] = {"continuous": ContinuousBook, "listing": ListingBook, "block": BlockDesk,
                                    "auction": AuctionHouse}


def encode_command(cmd: Any) -> dict[str, Any]:
    fields = {f.name: getattr(cmd, f.name) for f in dataclasses.fields(cmd)}
    return {"t": type(cmd).__name__, "f": fields}


def decode_command(data: dict[str, Any]) -> Any:
    cls = getattr(mc, data["t"])
    f = dict(data["f"])
    if "counterparties" in f:
        f["counterparties"] = tuple(f["counterparties"])
    return cls(**f)


# ------------------------------------------------------------------ typed rows


@dataclass(frozen=True, slots=True)
class MarketHead:
    """Where a market's journal stands: applied up to `applied_seq`, and its session flags."""

    applied_seq: int
    reference_price: int | None
    halted: bool
    session_open: bool


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int
    state_hash: bytes
    snapshot: Any


@dataclass(frozen=True, slots=True)
class Journaled:
    """One journaled command: its seq, its stamp, and the payload as written (command, order, client)."""

    seq: int
    ts: int
    payload: dict[str, Any]

    def command(self) -> Any:
        return decode_command(self.payload)

    def order(self) -> dict[str, Any] | None:
        return self.payload.get("order")

    def reason(self) -> str | None:
        """The cancel reason the exchange gave this command (a suspension's sweep), journaled with it."""
        return self.payload.get("reason")


@dataclass(frozen=True, slots=True)
class ClientCommand:
    """A row-less command journaled under a participant's client id (block negotiation)."""

    market_id: str
    seq: int
    fingerprint: str | None


@dataclass(frozen=True, slots=True)
class JournalRecord:
    """A command as the sequencer journals it."""

    seq: int
    ts: int
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NewOrder:
    """The row of `orders` a journaled command creates."""

    id: int
    participant_id: int
    kind: str
    side: str
    type: str
    tif: str
    price: int | None
    qty: int
    hold_id: int | None
    hold_amount: int
    purpose: dict[str, Any] | None
    trading_day: date
    client_id: str
    fingerprint: bytes
    parent: int | None

    @classmethod
    def of(cls, order_id: int, o: dict[str, Any], day: date) -> NewOrder:
        return cls(order_id, o["participant_id"], o["kind"], o["side"], o.get("type", "limit"), o.get("tif", "day"),
                   o.get("price"), o["qty"], o.get("hold_id"), o.get("hold_amount", 0), o.get("purpose") or None,
                   day, o["client_id"], bytes.fromhex(o["fingerprint"]), o.get("parent"))


# ------------------------------------------------------------------ the sequencer's path (asyncpg)


async def journaled_orders(conn: asyncpg.Connection, keys: list[tuple[int, str]]) -> dict[tuple[int, str], Order]:
    """The orders already journaled under these (participant, client id) pairs."""
    rows = await conn.fetch(
        """SELECT o.* FROM orders o JOIN unnest($1::bigint[], $2::text[]) AS k(p, c)
             ON o.participant_id = k.p AND o.client_id = k.c""",
        [k[0] for k in keys], [k[1] for k in keys])
    return {(r["participant_id"], r["client_id"]): Order.from_row(r) for r in rows}


# A journaled command as JSON text for its jsonb column (PostgreSQL parses it: only the value counts, not the bytes).
_JSON = msgspec.json.Encoder().encode


async def append(conn: asyncpg.Connection, market_id: str, records: list[JournalRecord],
                 new_orders: list[NewOrder]) -> None:
    """Journal a batch and the rows of its new orders (inside the caller's transaction)."""
    if records:
        await conn.copy_records_to_table(
            "market_journal", columns=["market_id", "seq", "ts", "command"],
            records=[(market_id, j.seq, j.ts, _JSON(j.payload).decode()) for j in records])
    if new_orders:
        await conn.copy_records_to_table(
            "orders",
            columns=["id", "market_id", "participant_id", "kind", "side", "type", "tif", "price", "qty",
                     "open_qty", "status", "hold_id", "hold_amount", "purpose", "trading_day", "client_id",
                     "fingerprint", "parent"],
            records=[(o.id, market_id, o.participant_id, o.kind, o.side, o.type, o.tif, o.price, o.qty, o.qty,
                      "open", o.hold_id, o.hold_amount,
                      json.dumps(o.purpose, ensure_ascii=False) if o.purpose else None, o.trading_day, o.client_id,
                      o.fingerprint, o.parent)
                     for o in new_orders])


async def project(conn: asyncpg.Connection, market_id: str, trades: list[Trade], updates: list[OrderUpdate],
                  raises: list[OrderState], refusals: list[tuple[int, str, str]], last: int) -> None:
    """Move the projection of a settled batch and `markets.applied_seq` (inside the caller's transaction)."""
    if trades:
        await conn.execute(
            """INSERT INTO trades (market_id, trade_id, seq, ts, mode, instrument, price, qty, notional,
                                   buy_order, sell_order, buyer_id, seller_id, buyer_fee, seller_fee,
                                   in_close, trading_day, settlement_seq)
               SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
                   $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
                   $13::bigint[], $14::bigint[], $15::bigint[], $16::bool[], $17::date[], $18::bigint[])
               ON CONFLICT DO NOTHING""",
            market_id, *([getattr(t, k) for t in trades] for k in (
                "trade_id", "seq", "ts", "mode", "instrument", "price", "qty", "notional", "buy_order", "sell_order",
                "buyer_id", "seller_id", "buyer_fee", "seller_fee", "in_close", "trading_day", "settlement_seq")))
    if updates:
        await conn.execute(
            """UPDATE orders SET open_qty = u.open, filled_qty = u.filled, filled_notional = u.notional,
                                 fees = u.fees, status = u.status, reason = u.reason, price = u.price,
                                 updated_at = now()
               FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[],
                           $8::text[], $9::bigint[])
                    AS u(id, open, filled, notional, fees, status, reason, price)
               WHERE orders.market_id = $1 AND orders.id = u.id""",
            market_id, *([getattr(u, k) for u in updates] for k in (
                "id", "open_qty", "filled_qty", "filled_notional", "fees", "status", "reason", "price")))
    if raises:
        await conn.execute(
            """UPDATE orders SET hold_id = u.hold, hold_amount = u.amount
               FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS u(id, hold, amount)
               WHERE orders.market_id = $1 AND orders.id = u.id""",
            market_id, [o.id for o in raises], [o.hold_id for o in raises], [o.hold_amount for o in raises])
    if refusals:
        await conn.execute(
            """INSERT INTO market_refusals (market_id, seq, code, detail)
               SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING""",
            market_id, *([r[k] for r in refusals] for k in range(3)))
    await conn.execute("UPDATE markets SET applied_seq = $1 WHERE id = $2", last, market_id)


# Events that move a block negotiation's row (migrations 0020, `block_deals`).
DEAL_EVENTS = frozenset({ev.DEAL_PROPOSED, ev.DEAL_CONFIRMED, ev.DEAL_CLOSED})


def deal_changes(results: list[tuple[int, list[Any]]]) -> list[tuple[int, Any]]:
    """The block negotiation events of a batch's results ((seq, events) each), in order, with their seq."""
    return [(seq, e) for seq, events in results for e in events if e[0] in DEAL_EVENTS]


async def project_deals(conn: asyncpg.Connection, market_id: str, changes: list[tuple[int, Any]]) -> None:
    """Move the rows of the negotiations a settled batch changed, event by event (inside the caller's
    transaction; block deals are few). A proposal sets the terms and its proposer as the one confirmed (the
    engine's rule, matching.block); a confirmation adds its party; a close records the engine's reason. Each
    step is idempotent, so a batch projected again after a recovery leaves the same row."""
    for seq, e in changes:
        if e[0] == ev.DEAL_PROPOSED:
            _, did, qid, proposer, price, qty = e
            await conn.execute(
                """INSERT INTO block_deals (market_id, deal_id, quote_id, quoter_id, responder_id, price, qty,
                                            confirmed, status)
                   SELECT $1, $2, $3, (command->'f'->>'account')::bigint, $4, $5, $6, ARRAY[$4::bigint], 'open'
                   FROM market_journal WHERE market_id = $1 AND seq = $3
                   ON CONFLICT (market_id, deal_id) DO UPDATE
                   SET price = excluded.price, qty = excluded.qty, confirmed = ARRAY[$4::bigint]""",
                market_id, did, qid, proposer, price, qty)
        elif e[0] == ev.DEAL_CONFIRMED:
            await conn.execute(
                """UPDATE block_deals SET confirmed = CASE WHEN $3 = ANY(confirmed) THEN confirmed
                                                          ELSE confirmed || $3::bigint END
                   WHERE market_id = $1 AND deal_id = $2""", market_id, e[1], e[2])
        else:
            await conn.execute(
                "UPDATE block_deals SET status = $3, ended_seq = $4 WHERE market_id = $1 AND deal_id = $2",
                market_id, e[1], e[2], seq)


async def block_deal(conn: AsyncConnection, market_id: str, deal_id: int) -> BlockDeal | None:
    r = (await conn.execute(text("SELECT * FROM block_deals WHERE market_id = :m AND deal_id = :d"),
                            {"m": market_id, "d": deal_id})).first()
    return None if r is None else BlockDeal.from_row(r._mapping)


# ------------------------------------------------------------------ recovery, snapshots, followers


async def head(conn: AsyncConnection, market_id: str) -> MarketHead:
    r = (await conn.execute(text(
        "SELECT applied_seq, reference_price, halted, session_open FROM markets WHERE id = :m"),
        {"m": market_id})).one()
    return MarketHead(r.applied_seq, r.reference_price, r.halted, r.session_open)


async def latest_snapshot(conn: AsyncConnection, market_id: str, upto: int) -> Snapshot | None:
    """The newest snapshot of the market's engine at or below `upto`."""
    r = (await conn.execute(text(
        """SELECT seq, state_hash, snapshot FROM market_snapshots WHERE market_id = :m AND seq <= :a
           ORDER BY seq DESC LIMIT 1"""), {"m": market_id, "a": upto})).first()
    return None if r is None else Snapshot(r.seq, bytes(r.state_hash), r.snapshot)


async def write_snapshot(conn: AsyncConnection, market_id: str, seq: int, state_hash: bytes, snap: Any) -> None:
    await conn.execute(text(
        """INSERT INTO market_snapshots (market_id, seq, state_hash, snapshot)
           VALUES (:m, :s, :h, CAST(:snap AS jsonb)) ON CONFLICT DO NOTHING"""),
        {"m": market_id, "s": seq, "h": state_hash, "snap": json.dumps(snap)})


async def commands(conn: AsyncConnection, market_id: str, after: int, upto: int | None = None) -> list[Journaled]:
    """Journaled commands `after < seq (<= upto)`, in order."""
    sql = "SELECT seq, ts, command FROM market_journal WHERE market_id = :m AND seq > :a"
    params: dict[str, Any] = {"m": market_id, "a": after}
    if upto is not None:
        sql += " AND seq <= :u"
        params["u"] = upto
    rows = await conn.execute(text(sql + " ORDER BY seq"), params)
    return [Journaled(r.seq, r.ts, r.command) for r in rows]


async def registration_opened(conn: AsyncConnection, market_id: str, auction_id: int) -> int | None:
    """When (the sequencer's stamp, UTC microseconds) registration of auction `auction_id` opened: its first
    journaled OpenRegistration (the engine accepts only the first, from the announced phase), or None."""
    row = (await conn.execute(text(
        "SELECT ts FROM market_journal WHERE market_id = :m AND command->>'t' = 'OpenRegistration' "
        "AND command->'f'->>'auction_id' = :a ORDER BY seq LIMIT 1"), {"m": market_id, "a": str(auction_id)})).first()
    return None if row is None else int(row[0])


async def open_orders(conn: AsyncConnection, market_id: str) -> dict[int, OrderState]:
    """The market's open orders with the accounts they deliver from and are paid to."""
    rows = await conn.execute(text(
        """SELECT o.*, p.holding_account, p.cash_account
           FROM orders o JOIN participants p ON p.id = o.participant_id
           WHERE o.market_id = :m AND o.status = 'open'"""), {"m": market_id})
    return {s.id: s for s in (OrderState.from_row(r._mapping) for r in rows)}


async def client_command(conn: AsyncConnection, participant_id: int, client_id: str) -> ClientCommand | None:
    """The row-less command journaled under this participant's client id, if any."""
    r = (await conn.execute(text(
        """SELECT market_id, seq, command->'client'->>'fp' AS fp FROM market_journal
           WHERE command ? 'client' AND command->'client'->>'p' = :p AND command->'client'->>'c' = :c"""),
        {"p": str(participant_id), "c": client_id})).first()
    return None if r is None else ClientCommand(r.market_id, r.seq, r.fp)

