"""The pledge worker and the sweeps it runs: webhook delivery after commits, expiry of registrations
past their term and of filings not confirmed in time, reconciliation of exchange sales."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import date, datetime
from typing import Any

from exchange.core.errors import DomainError
from exchange.core.principal import SYSTEM_ACTOR
from exchange.core.runtime import Runtime
from exchange.pledging import repository as repo
from exchange.pledging import webhooks
from exchange.pledging.exchange_sale import reconcile_sales, settlement_hook, unbooked
from exchange.pledging.filing import (
    confirm_by,
)
from exchange.pledging.frozen_lots import (
    return_units,
)
from exchange.pledging.recording import (
    kick,
    ledger_id,
    ledger_meta,
    record_event,
)
from exchange.pledging.refusals import translate_refusals
from exchange.pledging.valuation import revalue
from exchange.pledging.values import (
    now,
    ranges_of,
)
from ledger import commands as c
from pledges import lifecycle
from pledges import ranges as rg

log = logging.getLogger("envx.pledges")

class PledgeWorker:
    """Background task: delivers the webhook outbox after commits, sweeps expired pledges and freezes,
    books enforcement-sale settlements the market's hook missed.

    It waits on the runtime's `pledge_outbox` event, which `recording.kick` sets after a commit that
    queued webhooks. Both jobs claim their rows in the database (leases, row locks, ledger client ids), so several
    processes may run the worker at once without double deliveries or double expiries.
    """

    def __init__(self, rt: Runtime, sender: webhooks.Sender | None = None,
                 sweeps: Sequence[Callable[[Runtime], Awaitable[object]]] = ()) -> None:
        self.rt = rt
        # Sweeps of other packages run on the same beat (judicial freezes' expiry, from the composition root).
        self.sweeps = tuple(sweeps)
        self.sender = sender or webhooks.http_sender(rt.settings.webhook_allowed_host_list)
        self._task: asyncio.Task[None] | None = None
        self._last_sweep = 0.0
        self._hook: Callable[[str, list[dict[str, Any]]], Awaitable[None]] | None = None

    async def start(self) -> None:
        self._hook = settlement_hook(self.rt)  # enforcement sales pay out as the market settles them
        self.rt.settlement_hooks.append(self._hook)
        self.rt.close_hooks.append(self._revalue)  # valuations follow each close
        self._task = asyncio.create_task(self._run(), name="envx-pledge-worker")

    async def stop(self) -> None:
        with contextlib.suppress(ValueError):
            if self._hook is not None:
                self.rt.settlement_hooks.remove(self._hook)
        with contextlib.suppress(ValueError):
            self.rt.close_hooks.remove(self._revalue)
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _revalue(self, instrument: str, price: int, day: date) -> None:
        await revalue(self.rt, instrument, price, day)

    async def _run(self) -> None:
        settings = self.rt.settings
        loop = asyncio.get_running_loop()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.rt.pledge_outbox.wait(), timeout=settings.pledge_worker_interval_seconds)
            self.rt.pledge_outbox.clear()
            try:
                while await webhooks.deliver_due(self.rt.engine, self.sender) > 0:
                    pass
                if loop.time() - self._last_sweep >= settings.pledge_sweep_interval_seconds:
                    self._last_sweep = loop.time()
                    await reconcile_sales(self.rt)
                    await expire_due(self.rt)
                    for sweep in self.sweeps:
                        await sweep(self.rt)
            except asyncio.CancelledError:
                raise
            except Exception:  # the worker outlives any one failure; rows stay due and are retried
                log.exception("pledge worker pass failed")


# ----------------------------------------------------------------------------------- expiry and freezes


@translate_refusals
async def expire_due(rt: Runtime, at: datetime | None = None) -> list[int]:
    """Expire registrations past their term (+ grace). Idempotent; safe in several processes at once.

    An exchange sale running at the expiry ends first (listings at the close, auctions when allocated or
    cancelled); then the unsold units go back to the pledgor (the courts' share frozen again) and the
    pledgee's unpaid rest is an unsecured claim (民法典 §438)."""
    at = at or now()
    async with rt.read() as conn:
        ids = await repo.due_pledges(conn, at)
        filings = await repo.lapsed_filings(conn, at, rt.settings.pledge_confirm_days)
    done = await _lapse(rt, filings, at)
    for pledge_id in ids:
        try:
            async with rt.tx() as conn:
                p = await repo.lock_pledge(conn, pledge_id)
                if p is None or p.expires_at > at or p.status not in lifecycle.LOCKED:
                    continue
                method = (p.enforcement or {}).get("method")
                claims = await repo.claims_of(conn, p.id, ("filed", "registered"))
                info: dict[str, Any] = {}
                changes: dict[str, Any] = {}
                if method == "exchange":
                    if any(o.status == "open" for o in await repo.sale_orders(conn, p.id)) or \
                            await unbooked(conn, p.id):
                        continue  # the sale ends, and every settlement of it is paid out, first
                    e = dict(p.running)
                    lot = ranges_of(e["lot"])
                    entries = await return_units(conn, rt, p, lot, relock=False, actor=SYSTEM_ACTOR) if lot else []
                    e.update(lot=[], returned=[list(r) for r in lot])
                    changes = {"enforcement": e}
                    info = {"returned": [list(r) for r in lot], "quantity": rg.total(lot)}
                else:
                    entries = [await rt.submit(c.Request(SYSTEM_ACTOR, c.ExpireHold(p.hold),
                                                         ledger_id(p, "expire"), ledger_meta(p, "expire")))]
                for cl in claims:
                    await repo.update_claim(conn, cl.id, status="lapsed")
                await record_event(conn, p, "expired", changes,
                                   info={**info, "claims_lapsed": [cl.id for cl in claims]},
                              actor=SYSTEM_ACTOR, seqs=[x.seq for x in entries],
                              notify=(p.pledgor_id, *(cl.claimant_id for cl in claims)))
                done.append(pledge_id)
        except DomainError as exc:  # e.g. the ledger clock is a hair behind ours: next sweep
            log.warning("pledge %s not expired: %s %s", pledge_id, exc.code, exc.message)
    if done:
        kick(rt)
    return done


async def _lapse(rt: Runtime, ids: list[int], at: datetime) -> list[int]:
    """Filings not confirmed in time expire: nothing was locked, so nothing is released; the bank and the
    pledgor hear of it."""
    done = []
    for pledge_id in ids:
        async with rt.tx() as conn:
            p = await repo.lock_pledge(conn, pledge_id)
            if p is None or p.status != lifecycle.FILED or min(confirm_by(rt, p), p.expires_at) > at:
                continue
            await record_event(conn, p, "expired", {}, info={"lapsed": "not_confirmed", "filed_at": p.created_at},
                          actor=SYSTEM_ACTOR, notify=(p.pledgor_id,))
            done.append(pledge_id)
    return done


