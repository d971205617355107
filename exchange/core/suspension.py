"""What a suspension means for what a participant has in flight and at rest (issue #13).

When an operator's suspension of participant P is answered:

1. **Nothing P asked for commits after it.** Three guards, each at a point where P's work commits:
   - the HTTP edge (`MutationGate`, one per process: the API runs in one process): a mutation by P
     that starts after the suspension began is refused (401), and the suspension waits for P's
     mutations already under way to end (at most DRAIN_SECONDS) before it commits;
   - the ledger writer (`ledger_gate`, inside the writer's batch transaction): a request whose actor
     is a participant that is not active is refused (`participant_suspended`), releases of its holds
     excepted;
   - each market's journal (`inactive`, inside the journal transaction): a command of a participant
     that is not active -- its order, listing, quote, response, bid, or a deal one of whose two parties
     it is -- is refused and its funding released.
   The two database checks read the participant row FOR KEY SHARE, which the suspension's FOR UPDATE
   excludes: a batch either commits before the suspension, or waits for it and sees it.
2. **What P has at rest is cancelled.** Right after the suspension commits, every market cancels P's
   open orders (continuous book) and listings and withdraws its block quotes (their negotiations close),
   releasing their holds, before the suspension is answered (exchange.trading.sequencer `sweep`) -- as a venue
   does for a member suspended from trading. Not cancelled: P's auction lots, bids and deposits (an
   auction's terms bind its bidders; an operator may cancel the auction), pledges and freezes (they are
   registrations, not orders). A retry of the suspension sweeps again.

Reinstatement lifts the gate; nothing cancelled comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable

import asyncpg

from exchange.core import store
from ledger import commands as c
from ledger.state import Rejection

DRAIN_SECONDS = 10.0
# What a suspended participant's requests may still do at the ledger: give back (a hold voided or expired).
RELEASES = (c.VoidHold, c.ExpireHold)
ACTOR_PREFIX = "participant:"

async def inactive(conn: asyncpg.Connection, participant_ids: Iterable[int]) -> set[int]:
    """Which of these participants are not active, read under FOR KEY SHARE (see the module docstring)."""
    ids = sorted(set(participant_ids))
    if not ids:
        return set()
    return {i for i, status in (await store.statuses_for_key_share(conn, ids)).items() if status != "active"}


def _participant(actor: str) -> int | None:
    if not actor.startswith(ACTOR_PREFIX):
        return None
    tail = actor[len(ACTOR_PREFIX):]
    return int(tail) if tail.isascii() and tail.isdigit() else None


async def ledger_gate(conn: asyncpg.Connection, requests: list[c.Request]) -> list[Rejection | None]:
    """The ledger writer's gate: refuse the requests of participants that are not active."""
    actors = [None if isinstance(r.command, RELEASES) else _participant(r.actor) for r in requests]
    stopped = await inactive(conn, (a for a in actors if a is not None))
    return [Rejection("participant_suspended", f"participant {a} is suspended: nothing was done")
            if a in stopped else None for a in actors]


class MutationGate:
    """In-flight mutations per participant in this process, and the participants being suspended."""

    def __init__(self) -> None:
        self._running: dict[int, int] = {}
        self._idle: dict[int, asyncio.Event] = {}
        self._stopped: set[int] = set()

    @contextlib.asynccontextmanager
    async def mutation(self, participant_id: int) -> AsyncIterator[bool]:
        """Around a mutation's handler: yields False (refuse it) if the participant is being suspended."""
        if participant_id in self._stopped:
            yield False
            return
        # No await between the check and the count: a suspension starting now waits for this one.
        self._running[participant_id] = self._running.get(participant_id, 0) + 1
        self._idle.setdefault(participant_id, asyncio.Event()).clear()
        try:
            yield True
        finally:
            left = self._running[participant_id] - 1
            if left:
                self._running[participant_id] = left
            else:
                del self._running[participant_id]
                self._idle.pop(participant_id).set()

    async def stop(self, participant_id: int, timeout: float = DRAIN_SECONDS) -> bool:
        """Refuse the participant's new mutations from now on; wait for the ones under way to end.
        False if some were still running after `timeout` (the database guards stand behind them)."""
        self._stopped.add(participant_id)
        idle = self._idle.get(participant_id)
        if idle is None:
            return True
        try:
            await asyncio.wait_for(idle.wait(), timeout)
        except TimeoutError:
            return False
        return True

    def resume(self, participant_id: int) -> None:
        self._stopped.discard(participant_id)

    def stopped(self, participant_id: int) -> bool:
        return participant_id in self._stopped

    def __repr__(self) -> str:
        return f"MutationGate(running={self._running!r}, stopped={sorted(self._stopped)!r})"
