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
  (exchange/pledging/enforcement.py) until they are sold or go back to the pledgor: the enforcement is not over, so
  they are reported as `pledge_enforcement` and expire, with whoever holds them, after it ends;
- units under an order hold (a resting sell order, a listing, an auction lot) are reported the same
  way; those holds end by themselves (at the close, at allocation), and the units expire at the next
  sweep;
- units under a T+1 lock expire like free ones: the lock is the registry's own trading rule, not a right
  of another party. The lock is lifted, its expired units retired and its other units (of a term still
  running) locked again, in one linked ledger group.

Between the end of a term and the sweep that retires it (the sweep runs after midnight, and a unit
held back by a hold waits for the next one), the units are still in their holder's account, but they
are no longer rights: moving them -- a transfer, a retirement, a sell order, listing, take of a buy
listing or auction lot, a block deal's delivery, a pledge -- is refused (409 `units_expired`, naming
the blocks), as is issuing a batch whose term has ended (`term_ended`, exchange/registry/issuance.py).

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
from typing import Any, TypedDict

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.calendar import SHANGHAI, trading_day
from exchange.core.errors import DomainError
from exchange.core.jobs import claim
from exchange.core.runtime import Runtime
from exchange.core.units import to_text
from exchange.registry import repository as repo
from exchange.registry.models import DueBatch, LeftBlock
from ledger import commands as lc
from ledger import queries
from ledger.state import Entry

log = logging.getLogger("envx.expiry")
ACTOR = "exchange:expiry"
PURPOSE = "expiry"  # the retirement's purpose: no participant retires with it

def today_of(rt: Runtime) -> date:
    """The calendar day (Asia/Shanghai) terms are measured against: the runtime's clock."""
    return trading_day(rt.clock())


async def refuse_ended(rt: Runtime, account: int | None, instrument: str,
                       serials: tuple[tuple[int, int], ...] | list[tuple[int, int]] | None = None, *,
                       held: bool = False, conn: AsyncConnection | None = None) -> None:
    """Refuse (409 `units_expired`, naming the blocks) a move out of `account` that could take units of an
    emission right whose term has ended and that the sweep has not retired yet: with `serials`, those the
    named ranges touch; without, any free one (the ledger takes the lowest free serials). `held`: the units
    are already under the mover's own hold (a pledge's lot, an escrow sale) and count too. `conn`: the
    caller's transaction, when it holds one (no second pooled connection is checked out inside it)."""
    if account is None:
        return
    if conn is not None:
        rows = await repo.ended_blocks(conn, account, instrument, today_of(rt), held=held)
    else:
        async with rt.read() as own:
            rows = await repo.ended_blocks(own, account, instrument, today_of(rt), held=held)
    if serials:
        rows = [r for r in rows if any(s <= r.end_serial and r.start_serial <= e for s, e in serials)]
    if rows:
        blocks = [{"instrument": instrument, "batch": r.batch, "serial_start": r.start_serial,
                   "serial_end": r.end_serial, "quantity": to_text(r.end_serial - r.start_serial + 1, r.decimals),
                   "valid_until": r.valid_until} for r in rows]
        listed = ", ".join(f"{b['serial_start']}-{b['serial_end']} (batch {b['batch']}, valid until "
                           f"{b['valid_until']})" for b in blocks[:5])
        raise DomainError("units_expired", f"the term of {instrument} serials {listed} has ended; they are retired "
                          "as expired by the registry's sweep and can no longer move", blocks=blocks)


async def hold_ended(rt: Runtime, hold: int | None) -> bool:
    """Whether a hold (a resting listing's) holds units of an emission right whose term has ended."""
    if hold is None:
        return False
    async with rt.read() as conn:
        return await repo.hold_past_term(conn, hold, today_of(rt))


def account_prefix(account: int) -> str:
    """Every expiry retirement of an account has a client id starting so (holdings list them)."""
    return f"expiry:{account}:"


def client_id(account: int, batch: int, ranges: list[tuple[int, int]]) -> str:
    digest = hashlib.sha256(repr(ranges).encode()).hexdigest()[:16]
    return f"{account_prefix(account)}{batch}:{digest}"


def _encumbered(block: LeftBlock) -> bool:
    """Held back from expiry: another party's right (pledge, freeze, enforcement) or an order's hold."""
    return (block.hold is not None and block.hold_kind != "t1") or block.frozen_by is not None or block.escrowed


def _t1_locked(block: LeftBlock) -> bool:
    return block.hold is not None and block.hold_kind == "t1" and not _encumbered(block)


def _encumbrance(block: LeftBlock) -> str:
    if block.frozen_by is not None:
        return "frozen"
    if block.escrowed and block.hold is None:  # a listed part is under its order hold, as any listing
        return "pledge_enforcement"
    kind = block.hold_kind or ""
    return {"pledge": "pledged", "t1": "t1_locked", "order": "order_hold"}.get(kind, kind)


class Expired(TypedDict):
    """Units retired at the end of their term, in one account."""

    instrument: str
    batch: int
    account: int
    valid_until: str
    quantity: str
    serials: list[list[int]]
    entry: int


class Blocked(TypedDict):
    """A block whose term ended and that an encumbrance holds back until it ends."""

    instrument: str
    batch: int
    account: int
    serial_start: int
    serial_end: int
    quantity: str
    encumbrance: str


class ExpiryReport(TypedDict):
    as_of: str
    expired: list[Expired]
    blocked: list[Blocked]


async def expire_due(rt: Runtime, today: date | None = None) -> ExpiryReport:
    """Retire what is left of every emission-right batch whose term ended before `today`."""
    today = today or today_of(rt)
    expired: list[Expired] = []
    blocked: list[Blocked] = []
    async with rt.read() as conn:
        due = await repo.batches_past_term(conn, today)
    for batch in due:
        async with rt.read() as conn:
            left = await repo.left_of_batch(conn, batch.batch_id)
        d = batch.decimals
        for b in left:
            if _encumbered(b):
                blocked.append({"instrument": batch.instrument, "batch": batch.batch_id, "account": b.account,
                                "serial_start": b.start_serial, "serial_end": b.end_serial,
                                "quantity": to_text(b.end_serial - b.start_serial + 1, d),
                                "encumbrance": _encumbrance(b)})
        for b in left:
            if _t1_locked(b):
                entry = await _expire_locked(rt, batch, b)
                if entry is not None:
                    expired.append(entry)
        free = [b for b in left if not _encumbered(b) and b.hold is None]
        for account, blocks in groupby(free, key=lambda b: b.account):
            ranges = [(b.start_serial, b.end_serial) for b in blocks]
            amount = sum(e - s + 1 for s, e in ranges)
            request = lc.Request(
                ACTOR, lc.Retire(account, rt.system["retired"], batch.instrument, amount, PURPOSE, "",
                                 tuple(ranges)),
                client_id(account, batch.batch_id, ranges),
                {"expiry": {"batch": batch.batch_id, "valid_until": batch.valid_until}})
            try:
                retired: Entry = await rt.submit(request)
            except DomainError as exc:  # encumbered since we read it: the next sweep takes what is free
                log.warning("expiry of batch %s in account %s deferred: %s", batch.batch_id, account, exc.code)
                continue
            expired.append({"instrument": batch.instrument, "batch": batch.batch_id, "account": account,
                            "valid_until": batch.valid_until, "quantity": to_text(amount, d),
                            "serials": [list(r) for r in ranges], "entry": retired.seq})
    return {"as_of": today.isoformat(), "expired": expired, "blocked": blocked}


async def _expire_locked(rt: Runtime, batch: DueBatch, block: LeftBlock) -> Expired | None:
    """Expire a T+1-locked block: lift its lock, retire the block, lock the lock's other units again --
    one linked group, named after the lock (a rerun replays it)."""
    assert block.hold is not None, "a T+1-locked block is under its lock"
    async with rt.read() as conn:
        hold = await queries.hold_state(conn, block.hold)
        rest = await queries.held_ranges(conn, block.hold, batch=batch.batch_id, in_batch=False)
        mine = await queries.held_ranges(conn, block.hold, batch=batch.batch_id, in_batch=True)
    assert hold is not None, f"block under hold {block.hold} that the ledger does not have"
    instrument, state = hold
    if state != "pending" or (block.start_serial, block.end_serial) != (mine[0] if mine else None):
        return None  # released meanwhile, or another block of the same lock and batch did it
    account, amount = block.account, sum(e - s + 1 for s, e in mine)
    base = f"{client_id(account, batch.batch_id, mine)}:t1:{block.hold}"
    meta = {"expiry": {"batch": batch.batch_id, "valid_until": batch.valid_until, "t1_lock": block.hold}}
    group = [lc.Request(ACTOR, lc.VoidHold(block.hold), f"{base}:lift", meta),
             lc.Request(ACTOR, lc.Retire(account, rt.system["retired"], batch.instrument, amount, PURPOSE, "",
                                         tuple(mine)), f"{base}:retire", meta)]
    if rest:
        group.append(lc.Request(ACTOR, lc.CreateHold("t1", account, rt.system["clearing"], instrument,
                                                     sum(e - s + 1 for s, e in rest), tuple(rest)), f"{base}:relock",
                                meta))
    try:
        entries = await rt.submit_linked(group)
    except DomainError as exc:  # changed since we read it: the next sweep takes it
        log.warning("expiry of T+1-locked batch %s in account %s deferred: %s", batch.batch_id, account, exc.code)
        return None
    return {"instrument": batch.instrument, "batch": batch.batch_id, "account": account,
            "valid_until": batch.valid_until, "quantity": to_text(amount, batch.decimals),
            "serials": [list(r) for r in mine], "entry": entries[1].seq}


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
