"""The venue ends its auctions: when an auction's bidding window is over it is closed and allocated.

A venue's clock ends a 限时竞价, not the seller: left to the seller, an auction past its end stayed in
`bidding` (no bidder may close it) or, closed, was never allocated, and every bidder's cash stayed held
(red team round 5, F6). The engine decides (matching.auction `due`, and `CloseAuction` is refused while the
window runs, so a bid that extends it in the same batch wins); this task only asks, once a second. An
allocation the engine refuses is logged and not asked again by this process (an operator can still run
it, or cancel with a reason).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from exchange.core.errors import DomainError
from exchange.core.runtime import Runtime
from exchange.trading import running
from matching import commands as mc
from matching import events as ev
from matching.auction import BIDDING, AuctionHouse

log = logging.getLogger("envx.auctions")

TICK_SECONDS = 1.0


def _given(cmd: mc.CloseAuction | mc.Allocate) -> Callable[[int], mc.CloseAuction | mc.Allocate]:
    return lambda _seq: cmd


class AuctionClock:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.task: asyncio.Task[None] | None = None
        self._refused: set[tuple[str, int, str]] = set()

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="auction-clock")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    async def _run(self) -> None:
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database or a market away for now: look again at the next tick
                log.warning("auction clock: could not end the auctions due now", exc_info=True)
            await asyncio.sleep(TICK_SECONDS)

    async def run_due(self) -> int:
        """Close every auction whose window has ended and allocate every closed one; how many steps ran."""
        steps = 0
        now = time.time_ns() // 1000
        for seq in running.sequencers(self.rt):
            market_id = seq.market.id
            # A halted market is the venue's pause: nothing ends there until it resumes (round 6, F5). The
            # window is not lengthened by the halt; a venue that wants to give the bidders their time back
            # cancels the auction with a reason and announces it again.
            if seq.market.mode != "auction" or seq.halted or market_id in self.rt.exchange.stopped():
                continue
            house = seq.engine
            assert isinstance(house, AuctionHouse), type(house)  # an auction market's engine
            for auction_id, phase in house.due(now):
                key = (market_id, auction_id, phase)
                if key in self._refused:
                    continue
                cmd = mc.CloseAuction(auction_id) if phase == BIDDING else mc.Allocate(auction_id)
                try:
                    _, events, _ = await seq.submit(_given(cmd))
                except DomainError as exc:  # the market paused or stopped: the next tick tries again
                    log.info("auction %s/%s: %s deferred (%s)", market_id, auction_id, type(cmd).__name__, exc.code)
                    continue
                refused = [e for e in events if e[0] == ev.REJECTED]
                if refused and refused[0][2] != "auction_still_open":
                    self._refused.add(key)
                    log.warning("auction %s/%s: the venue's %s was refused: %s", market_id, auction_id,
                                type(cmd).__name__, refused[0][3])
                    continue
                steps += 0 if refused else 1
        return steps
