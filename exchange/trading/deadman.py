"""The dead-man switch: "cancel all my orders after N seconds unless I renew", as market makers use it
(Kraken's cancelAllOrdersAfter, Binance's countdownCancelAll, Deribit's and Coinbase's cancel on disconnect).

A participant arms a switch over one market or every market with a timeout (1 to MAX_TIMEOUT_SECONDS); each
renewal (the same call again) moves the deadline to timeout-from-now; a timeout of 0 disarms it. When a
deadline passes without renewal, the switch fires once: it is disarmed and a mass cancel runs over its scope
with the reason `dead_man_switch` (exchange/trading/mass_cancel.py), releasing every hold; what it cancelled
is kept on the switch (`last_fired_at`, `last_fired_cancelled`). A renewal after that arms it again.

Switches are rows (`dead_man_switches`), and deadlines are the database's clock, so they outlive the process:
across a restart an armed switch keeps its deadline -- a deadline that passed while the exchange was down
fires as soon as it is back, before the caller could renew (nobody could renew while it was down) -- and a
firing claimed but not finished is finished at the start. A market that is recovering from an outage when a
switch fires is tried again each second until it takes the cancels; a market stopped on a bug takes no writes
at all (its holds stay, as the policy says). One process serves the API, and the watcher runs in it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

from exchange.core.errors import DomainError, Forbidden
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import iso
from exchange.registry import participants
from exchange.trading import inflight, mass_cancel, repository, running
from exchange.trading.models import DeadManSwitch
from matching import events as ev

log = logging.getLogger("envx.deadman")
MAX_TIMEOUT_SECONDS = 86_400
ALL = "*"  # the scope of a switch over every market
_IDLE_SECONDS = 5.0  # the watcher looks again at least this often (a switch armed elsewhere, a market back)
_RETRY_SECONDS = 1.0


@dataclass(frozen=True, slots=True)
class Switch:
    """A switch as its owner sees it."""

    row: DeadManSwitch

    def as_dict(self) -> dict[str, Any]:
        r = self.row
        return {"market_id": r.market_id, "armed": r.deadline is not None,
                "timeout_seconds": None if r.timeout_ms is None else r.timeout_ms // 1000,
                "deadline": iso(r.deadline) if r.deadline else None,
                "renewed_at": iso(r.renewed_at) if r.renewed_at else None,
                "last_fired_at": iso(r.last_fired_at) if r.last_fired_at else None,
                "last_fired_cancelled": r.last_fired_cancelled, "firing": r.firing_since is not None}


async def set_switch(rt: Runtime, watch: DeadManWatch, who: Principal, client_id: str, timeout_seconds: int,
                     market_id: str | None) -> Switch:
    """Arm, renew (timeout > 0) or disarm (0) the caller's switch over `market_id` (None: every market).
    A retry under the client id of the last change answers the switch as it is, without moving it."""
    if who.kind not in participants.HOLDER_KINDS:
        raise Forbidden("this participant kind does not trade")
    if market_id is not None:
        running.sequencer(rt, market_id)  # 404 for an unknown market
    if not 0 <= timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise DomainError("validation_error", f"timeout_seconds is 0 (disarm) to {MAX_TIMEOUT_SECONDS}")
    scope = market_id or ALL
    timeout_ms = timeout_seconds * 1000 or None

    async def run() -> Switch:
        async with rt.tx() as conn:
            current = await repository.switch(conn, who.participant_id, scope)
            if current is not None and current.client_id == client_id:
                return Switch(current)  # this change, again: nothing moves
            row = await repository.set_switch(conn, who.participant_id, scope, timeout_ms, client_id)
        watch.poke()
        return Switch(row)

    return await inflight.once(rt, ("dead_man", who.participant_id, client_id), f"{scope}:{timeout_seconds}", run)


async def switches(rt: Runtime, who: Principal) -> list[Switch]:
    async with rt.read() as conn:
        return [Switch(r) for r in await repository.switches(conn, who.participant_id)]


class DeadManWatch:
    """The task that fires due switches: sleeps until the next deadline (or a change), then fires them."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.changed = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.fired = 0  # firings finished by this process (tests and metrics read it)

    async def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name="dead-man-switches")

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task

    def poke(self) -> None:
        """A switch changed: look at the deadlines again."""
        self.changed.set()

    async def _run(self) -> None:
        while True:
            self.changed.clear()  # before reading: a change from now on wakes the wait below
            try:
                left = await self.fire_due()
                async with self.rt.read() as conn:
                    wait = await repository.seconds_to_next_switch(conn)
                wait = _IDLE_SECONDS if wait is None else min(max(wait, 0.0), _IDLE_SECONDS)
                if left:
                    wait = min(wait, _RETRY_SECONDS)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away: look again shortly
                log.warning("dead-man switches: could not look at the deadlines now", exc_info=True)
                wait = _RETRY_SECONDS
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.changed.wait(), wait)

    async def fire_due(self) -> int:
        """Fire every switch due (and finish those claimed before); how many are left to try again."""
        async with self.rt.tx() as conn:
            due = await repository.claim_due_switches(conn)
        left = 0
        for s in due:
            try:
                done = await mass_cancel.cancel_all(self.rt, s.participant_id, s.market_id, ev.DEAD_MAN)
            except DomainError as exc:  # the market is gone from this process: nothing rests there
                log.warning("dead-man switch of participant %s over %s: %s", s.participant_id, s.scope, exc)
                done = None
            if done is not None and any(n.code == "market_unavailable" for n in done.not_cancelled):
                left += 1  # a market recovering from an outage: what it did cancel stays cancelled; again soon
                continue
            async with self.rt.tx() as conn:
                await repository.switch_fired(conn, s.participant_id, s.scope,
                                              0 if done is None else len(done.cancelled))
            self.fired += 1
            log.info("dead-man switch of participant %s over %s fired: %d cancelled", s.participant_id, s.scope,
                     0 if done is None else len(done.cancelled))
        return left
