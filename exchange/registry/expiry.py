"""Emission rights expire at the end of their term: what is left of a batch is retired as `expired`.

A batch (one grant) of an emission right is valid from `valid_from` to `valid_until` (its term, whole
years: exchange/registry/kinds.py). From the day after `valid_until` (Asia/Shanghai), the sweep
retires every unit of the batch that is still held to the retired sink with purpose `expiry`, one
ledger entry per holder account and batch, naming the serial blocks. The holder's holdings then list
those blocks as `expired`.

Encumbered units at the end of the term (decided here, written in the README):
- pledged (质押) or frozen (司法冻结) units are **not** expired by the registry on its own: the pledge
  and the freeze are a bank's or a court's registered rights over them, which only the bank's release,
  an enforcement or the court lifts. They stay encumbered, every sweep reports them as `blocked` with
  the encumbrance, and they expire at the first sweep after it ends;
- units of a pledge being enforced by an exchange sale rest in the bank's pledge escrow
  (exchange/pledging/service.py) until they are sold or go back to the pledgor: the enforcement is not over, so
  they are reported as `pledge_enforcement` and expire, with whoever holds them, after it ends;
- units under an order hold (a resting sell order, a listing, an auction lot) or a T+1 lock are
  reported the same way; those holds end by themselves (at the close, at allocation, at the next
  open), and the units expire at the next sweep.

The sweep runs daily at 00:05 Asia/Shanghai, claimed once per day in `job_runs`, and operators can run
it now (`POST /v1/instruments/expiry-sweeps`). It is idempotent: each retirement's client id is derived
from the account, the batch and the exact serial ranges, so a rerun, or a rerun after a crash, retires
nothing twice.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime
from itertools import groupby
from typing import Any

from sqlalchemy import text

from exchange.core.calendar import SHANGHAI, trading_day
from exchange.core.jobs import claim
from exchange.core.runtime import Runtime
from exchange.core.units import to_text
from ledger import commands as lc
from ledger.state import Rejection

log = logging.getLogger("envx.expiry")
ACTOR = "exchange:expiry"
PURPOSE = "expiry"  # the retirement's purpose: no participant retires with it

_DUE = text("""
    SELECT r.batch_id, r.instrument, r.attributes->>'valid_until' AS valid_until, i.decimals
    FROM issuance_requests r JOIN instruments i ON i.code = r.instrument
    WHERE i.kind = 'emission_right' AND r.batch_id IS NOT NULL
      AND CAST(r.attributes->>'valid_until' AS date) < :today
    ORDER BY r.batch_id""")
_LEFT = text("""
    SELECT b.account, b.start_serial, b.end_serial, b.hold, b.frozen_by, h.kind AS hold_kind,
           EXISTS (SELECT 1 FROM pledge_escrow_accounts e WHERE e.account = b.account) AS escrowed
    FROM ledger_blocks b LEFT JOIN ledger_holds h ON h.id = b.hold
    WHERE b.batch = :batch AND b.retired_seq IS NULL ORDER BY b.account, b.start_serial""")


def account_prefix(account: int) -> str:
    """Every expiry retirement of an account has a client id starting so (holdings list them)."""
    return f"expiry:{account}:"


def client_id(account: int, batch: int, ranges: list[tuple[int, int]]) -> str:
    digest = hashlib.sha256(repr(ranges).encode()).hexdigest()[:16]
    return f"{account_prefix(account)}{batch}:{digest}"


def _encumbered(block: Any) -> bool:
    return block.hold is not None or block.frozen_by is not None or block.escrowed


def _encumbrance(block: Any) -> str:
    if block.frozen_by is not None:
        return "frozen"
    if block.escrowed and block.hold is None:  # a listed part is under its order hold, as any listing
        return "pledge_enforcement"
    return {"pledge": "pledged", "t1": "t1_locked", "order": "order_hold"}.get(block.hold_kind, block.hold_kind)


async def expire_due(rt: Runtime, today: date | None = None) -> dict[str, Any]:
    """Retire what is left of every emission-right batch whose term ended before `today`."""
    today = today or trading_day(datetime.now(SHANGHAI))
    expired: list[dict[str, Any]] = []
    blocked: list[dict[str, Any]] = []
    async with rt.read() as conn:
        due = (await conn.execute(_DUE, {"today": today})).all()
    for batch in due:
        async with rt.read() as conn:
            left = (await conn.execute(_LEFT, {"batch": batch.batch_id})).all()
        d = batch.decimals
        for b in left:
            if _encumbered(b):
                blocked.append({"instrument": batch.instrument, "batch": batch.batch_id, "account": b.account,
                                "serial_start": b.start_serial, "serial_end": b.end_serial,
                                "quantity": to_text(b.end_serial - b.start_serial + 1, d),
                                "encumbrance": _encumbrance(b)})
        free = [b for b in left if not _encumbered(b)]
        for account, blocks in groupby(free, key=lambda b: b.account):
            ranges = [(b.start_serial, b.end_serial) for b in blocks]
            amount = sum(e - s + 1 for s, e in ranges)
            request = lc.Request(
                ACTOR, lc.Retire(account, rt.system["retired"], batch.instrument, amount, PURPOSE, "",
                                 tuple(ranges)),
                client_id(account, batch.batch_id, ranges),
                {"expiry": {"batch": batch.batch_id, "valid_until": batch.valid_until}})
            try:
                entry = await rt.submit(request)
            except Rejection as rej:  # encumbered since we read it: the next sweep takes what is free
                log.warning("expiry of batch %s in account %s deferred: %s", batch.batch_id, account, rej)
                continue
            expired.append({"instrument": batch.instrument, "batch": batch.batch_id, "account": account,
                            "valid_until": batch.valid_until, "quantity": to_text(amount, d),
                            "serials": [list(r) for r in ranges], "entry": entry.seq})
    return {"as_of": today.isoformat(), "expired": expired, "blocked": blocked}


def install_jobs(rt: Runtime, scheduler: Any) -> None:
    scheduler.add_job(_job, "cron", hour=0, minute=5, timezone=SHANGHAI, args=[rt], id="emission-right-expiry",
                      replace_existing=True, misfire_grace_time=3600, coalesce=True)


async def _job(rt: Runtime) -> None:
    day = trading_day(datetime.now(SHANGHAI))
    if not await claim(rt, "emission_right_expiry", day.isoformat()):
        return
    report = await expire_due(rt, day)
    log.info("emission-right expiry %s: %d retirements, %d blocks held back", day, len(report["expired"]),
             len(report["blocked"]))
