"""The market hub: starts (and so recovers) every market's sequencer and routes commands to them."""

from __future__ import annotations

import asyncio
import logging

from exchange.core.errors import NotFound
from exchange.core.runtime import Runtime
from exchange.trading import markets, repository, sessions
from exchange.trading.pipeline import MarketSequencer, outage
from ledger import commands as lc
from ledger import queries

log = logging.getLogger("envx.hub")


class MarketHub:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.sequencers: dict[str, MarketSequencer] = {}

    async def start(self) -> None:
        async with self.rt.read() as conn:
            ids = await repository.market_ids(conn)
        for market_id in ids:
            await self.start_market(market_id)
        await self._void_orphan_holds()

    async def start_market(self, market_id: str) -> MarketSequencer:
        if market_id in self.sequencers:
            return self.sequencers[market_id]
        market = await markets.load(self.rt, market_id)
        async with self.rt.read() as conn:
            day = await repository.trading_day(conn, market_id)
        seq = MarketSequencer(self.rt, market, day)
        try:
            await seq.start()
        except Exception as exc:
            if outage(exc):
                raise
            # Its journal does not replay (a bug): this market takes no writes, the others start.
            seq.stop_writes(exc)
        self.sequencers[market_id] = seq
        await sessions.start(self.rt, market_id)  # its calendar: jobs now, and the session it should be in
        return seq

    def stopped(self) -> dict[str, str]:
        """Markets that take no writes, and why."""
        return {m: s.stopped for m, s in self.sequencers.items() if s.stopped is not None}

    async def sweep(self, participant_id: int) -> list[str]:
        """Cancel what the participant has resting in every market that takes writes (MarketSequencer.sweep);
        the markets that could not take it now. A market stopped for a bug takes no writes, so nothing of it
        can trade there."""
        markets = [s for s in self.sequencers.values() if s.stopped is None]
        outcomes = await asyncio.gather(*(s.sweep(participant_id) for s in markets), return_exceptions=True)
        return [s.market.id for s, out in zip(markets, outcomes, strict=True) if isinstance(out, BaseException)]

    async def _void_orphan_holds(self) -> None:
        """Order holds whose order never reached a journal (a crash in between) go back to their owners.
        A stopped market's own holds (the funding of block deals it could not settle) stay: its journal
        still needs them once the bug is fixed."""
        keep = [f"exchange:{m}" for m in self.stopped()]
        async with self.rt.read() as conn:
            orphans = await queries.orphan_order_holds(conn, keep)
        for hold in orphans:
            log.warning("voiding order hold %s: its order was never journaled", hold)
            await self.rt.submit(lc.Request("exchange", lc.VoidHold(hold), f"orphan-hold:{hold}"))

    async def stop(self, grace: float = 0.0) -> None:
        """Stop every sequencer; with `grace`, first let each finish (at most that many seconds in all) the
        batches it holds: matched, journaled, settled."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        for seq in self.sequencers.values():
            if grace > 0 and not await seq.drain(max(0.0, deadline - loop.time())):
                log.warning("market %s: stopped before its batches finished (grace of %.0fs over); the next start "
                            "replays its journal", seq.market.id, grace)
        for seq in self.sequencers.values():
            await seq.stop()

    def get(self, market_id: str) -> MarketSequencer:
        seq = self.sequencers.get(market_id)
        if seq is None:
            raise NotFound("market", market_id)
        return seq
