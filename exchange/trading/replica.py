"""Read-only serving (`ENVX_READ_ONLY=true`), e.g. on a PostgreSQL hot standby.

Such a process runs no ledger writer, no market sequencer, no scheduler and no worker: the primary's
process owns all of those. Reads that come from tables (ledger entries, proofs, checkpoints, public
inquiry, orders, trades, OHLC, holdings) work unchanged. Reads that the primary answers from its
in-memory engines (depth, listings, the market stream) come from a `MarketFollower`: the pure engine
rebuilt from the market's journal up to `markets.applied_seq` (the point up to which the primary has
settled and answered), then kept current by polling. The engine is deterministic, so the follower's
book is the primary's book at that sequence number.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, NotFound
from exchange.core.runtime import Runtime
from exchange.registry import repository as registry
from exchange.trading import journal, marketdata, markets, repository
from exchange.trading.journal import ENGINES
from exchange.trading.markets import Market
from exchange.trading.models import OrderState
from matching import commands as mc
from matching.base import Engine

log = logging.getLogger("envx.replica")

POLL_SECONDS = 0.25


class ReadOnly(DomainError):
    def __init__(self) -> None:
        super().__init__("read_only", "this envx process serves reads only; send changes to the primary", 503)


async def replay_engine(conn: AsyncConnection, market: Market, upto: int, *,
                        use_snapshot: bool = True) -> Engine:
    """The market's engine after the journal up to `upto`: the newest snapshot at or below it (if
    `use_snapshot`) plus the journal after it, exactly as the sequencer recovers, without effects."""
    head = await journal.head(conn, market.id)
    start = 0
    snap = await journal.latest_snapshot(conn, market.id, upto) if use_snapshot else None
    engine: Engine
    if snap is not None:
        engine = ENGINES[market.mode].restore(snap.snapshot)
        if engine.state_hash() != snap.state_hash:
            raise RuntimeError(f"snapshot {market.id}@{snap.seq} does not reproduce its state hash")
        start = snap.seq
    else:
        engine = ENGINES[market.mode](market.rules, head.reference_price)
    await apply_journal(conn, market.id, engine, start, upto)
    return engine


async def apply_journal(conn: AsyncConnection, market_id: str, engine: Engine, after: int, upto: int) -> int:
    """Feed journaled commands `after < seq <= upto` to `engine`; the last seq applied."""
    last = after
    for j in await journal.commands(conn, market_id, after, upto):
        engine.process(j.seq, j.ts, j.command())
        last = j.seq
    return max(last, upto)


def book_depth(engine: Engine, levels: int = 5) -> dict[str, list[tuple[int, int, int]]]:
    """Best levels as {"bids": [(price, qty, count)], "asks": [...]}, as `MarketSequencer.depth`."""
    depth = getattr(engine, "depth", None)
    if depth is None:
        return {"bids": [], "asks": []}
    d = depth(levels)
    return {"bids": list(d.get("bids", d.get(mc.BUY, []))), "asks": list(d.get("asks", d.get(mc.SELL, [])))}


class MarketFollower:
    """What the API reads of a market's sequencer (`market`, `engine`, `applied_seq`, `depth`,
    `subscribers`), following the primary's journal."""

    def __init__(self, market: Market) -> None:
        self.market = market
        self.engine: Engine = None  # type: ignore[assignment]  # set by start()
        self.applied_seq = 0
        self.last_trade = 0
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self.halted = False
        self.session_open = False
        # The open orders of a listing or auction market, as the primary's sequencer keeps them: what a listing
        # or lot answers about itself (exchange.trading.orders.enforcement_of: an enforcement sale's pledge).
        self.orders: dict[int, OrderState] = {}

    async def start(self, conn: AsyncConnection) -> None:
        row = await journal.head(conn, self.market.id)
        self.engine = await replay_engine(conn, self.market, row.applied_seq)
        self.applied_seq = row.applied_seq
        await self._load_orders(conn)
        self.last_trade = await repository.last_trade_id(conn, self.market.id, row.applied_seq)
        self.halted, self.session_open = row.halted, row.session_open

    async def refresh(self, conn: AsyncConnection) -> None:
        row = await journal.head(conn, self.market.id)
        self.halted, self.session_open = row.halted, row.session_open
        if row.applied_seq <= self.applied_seq:
            return
        self.applied_seq = await apply_journal(conn, self.market.id, self.engine, self.applied_seq, row.applied_seq)
        await self._load_orders(conn)
        # The primary's stream messages, in its order: the trades settled up to here, then the depth (a
        # replica does not know which side took: its trade messages have no `taker_side`).
        messages: list[dict[str, Any]] = []
        while True:
            batch = list(itertools.takewhile(lambda t: t.seq <= self.applied_seq, await repository.public_trades(
                conn, self.market.id, self.last_trade, 1000)))
            for t in batch:
                view = marketdata.trade_view(t, self.market.decimals)
                messages.append({"type": "trade", **view, "trading_day": t.trading_day.isoformat()})
                self.last_trade = t.trade_id
            if len(batch) < 1000:
                break
        messages.append({"type": "depth", **marketdata.depth_of(self, 5)})
        for q in list(self.subscribers):
            if q.qsize() > 10_000:  # a stalled client is dropped rather than grow memory
                self.subscribers.discard(q)
            else:
                for msg in messages:
                    q.put_nowait(msg)

    def depth(self, levels: int = 5) -> dict[str, list[tuple[int, int, int]]]:
        return book_depth(self.engine, levels)

    async def _load_orders(self, conn: AsyncConnection) -> None:
        if self.market.mode in ("listing", "auction"):  # where enforcement sales rest
            self.orders = await journal.open_orders(conn, self.market.id)

    async def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise ReadOnly()


class ReadOnlyHub:
    """Stands in for `exchange.trading.hub.MarketHub` in a read-only process."""

    def __init__(self, rt: Runtime, poll_seconds: float = POLL_SECONDS) -> None:
        self.rt = rt
        self.poll_seconds = poll_seconds
        self.sequencers: dict[str, MarketFollower] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self._sync()
        self._task = asyncio.create_task(self._run(), name="envx-replica-follower")

    async def stop(self, grace: float = 0.0) -> None:  # a follower has no batch to finish
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _sync(self) -> None:
        async with self.rt.read() as conn:
            ids = await repository.market_ids(conn)
        for market_id in ids:
            if market_id not in self.sequencers:
                follower = MarketFollower(await markets.load(self.rt, market_id))
                async with self.rt.read() as conn:
                    await follower.start(conn)
                self.sequencers[market_id] = follower
        async with self.rt.read() as conn:
            for follower in self.sequencers.values():
                await follower.refresh(conn)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.poll_seconds)
            try:
                await self._sync()
            except Exception:  # the standby restarting, a network blip: keep following
                log.warning("market follower could not refresh", exc_info=True)

    async def sweep(self, participant_id: int) -> list[str]:
        raise ReadOnly()  # a suspension is a mutation: the edge refuses it before this

    def get(self, market_id: str) -> MarketFollower:
        f = self.sequencers.get(market_id)
        if f is None:
            raise NotFound("market", market_id)
        return f

    async def start_market(self, market_id: str) -> MarketFollower:
        raise ReadOnly()

    def stopped(self) -> dict[str, str]:
        """A follower takes no writes of its own: none is stopped (the primary's health says which are)."""
        return {}


async def load_system(rt: Runtime) -> None:
    """The system accounts, read (the primary created them)."""
    async with rt.read() as conn:
        rt.system = await registry.system_accounts(conn)
