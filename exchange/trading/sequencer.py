"""One sequencer per market: stamp, journal, match, settle, project.

Each batch of commands is stamped with consecutive sequence numbers and written to `market_journal`
in one transaction (with the rows of new orders) before the engine sees it. The pure engine then
produces events; every trade is settled delivery-versus-payment through the ledger writer as one
linked group (units from the seller's hold, cash from the buyer's hold, fees), holds of finished
orders are released, and the order/trade projection moves together with `markets.applied_seq` in one
transaction. Callers are answered after that, so an acknowledged order is journaled and its trades
are settled.

Recovery: restore the latest snapshot at or below `applied_seq`, replay the journal up to
`applied_seq` silently (its effects are already durable), then replay the rest with effects. The
ledger's idempotency (client ids derived from market, trade and hold ids) makes re-settlement a
no-op, so a crash at any point settles every journaled trade exactly once.

Failures follow the one policy of exchange/core/refusals.py. An outage (the database or the ledger
writer away for now) pauses the market: it rebuilds from the journal until the database is back.
Anything else is a broken invariant, a bug: holds are sized so that a journaled trade always settles,
so a settlement the ledger refuses (or a replay that raises, or a ledger writer stopped on its own
broken invariant) means the market's state can no longer be trusted. The market then stops
taking writes (every command answers 503 `market_stopped` with the reason), says why in `/health`,
logs it once as CRITICAL and does not retry; reads keep working, other markets trade on, nothing
settles halfway (each trade is one linked ledger group) and holds stay where they are. A restart
replays the journal again and stops at the same point until the bug is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Any

import asyncpg
from sqlalchemy import text

from exchange.core import suspension
from exchange.core.database import asyncpg_dsn, database_unreachable
from exchange.core.errors import DomainError
from exchange.core.runtime import Runtime
from exchange.trading import marketdata
from exchange.trading.markets import Market
from exchange.trading.pricing import fill_fee, notional
from ledger import commands as lc
from ledger.state import Rejection
from ledger.writer import WriterUnavailable
from matching import commands as mc
from matching import events as ev
from matching.auction import AuctionHouse
from matching.base import Engine
from matching.block import BlockDesk
from matching.book import ContinuousBook
from matching.listing import ListingBook

log = logging.getLogger("envx.sequencer")

ENGINES: dict[str, type[Engine]] = {"continuous": ContinuousBook, "listing": ListingBook, "block": BlockDesk,
                                    "auction": AuctionHouse}
SNAPSHOT_EVERY = 10_000
MAX_BATCH = 1024


def encode_command(cmd: Any) -> dict[str, Any]:
    fields = {f.name: getattr(cmd, f.name) for f in dataclasses.fields(cmd)}
    return {"t": type(cmd).__name__, "f": fields}


def decode_command(data: dict[str, Any]) -> Any:
    cls = getattr(mc, data["t"])
    f = dict(data["f"])
    if "counterparties" in f:
        f["counterparties"] = tuple(f["counterparties"])
    return cls(**f)


@dataclass(slots=True)
class OrderState:
    """An open order (or listing, take, quote, bid) as settlement needs it."""

    id: int
    participant_id: int
    kind: str
    side: str
    price: int | None
    qty: int
    open_qty: int
    hold_id: int | None
    hold_amount: int
    holding_account: int
    cash_account: int
    filled_qty: int = 0
    filled_notional: int = 0
    fees: int = 0
    status: str = "open"
    reason: str | None = None
    purpose: dict[str, Any] | None = None
    parent: int | None = None  # the auction a bid or deposit belongs to



def accounts_of(purpose: dict[str, Any] | None, holding: int, cash: int) -> tuple[int, int]:
    """Where an order delivers from and is paid to: an enforcement sale (exchange.pledging) sells from
    the pledgee's escrow account and is paid there; every other order uses its participant's accounts."""
    escrow = ((purpose or {}).get("enforcement") or {}).get("escrow")
    return (int(escrow), int(escrow)) if escrow else (holding, cash)


def enforcement_of(o: OrderState) -> int | None:
    """The pledge registration whose lot this order sells, if it is an enforcement sale."""
    pledge = ((o.purpose or {}).get("enforcement") or {}).get("pledge_id")
    return int(pledge) if pledge is not None else None


# Called after a batch's settlement is durable with the enforcement sales it touched: (market id,
# [{"pledge_id", "order_id", "trade_id"?, "ended"?}]). exchange.pledging pays the proceeds out.
SettlementHook = Callable[[str, list[dict[str, Any]]], Awaitable[None]]


class Effect(Enum):
    """What a linked ledger group of a batch does; its outcome is read by this, never from client ids."""

    TRADE = "trade"  # settles one trade, delivery versus payment; its first entry is the trade's settlement
    RAISE = "raise"  # moves a raised bid's holds into one hold (the group's last entry), or only releases them
    RELEASE = "release"  # gives back what is left of a finished order's hold; "already resolved" is fine


@dataclass(slots=True)
class Group:
    """One linked ledger group a batch queues, with what the sequencer learns from its entries."""

    effect: Effect
    requests: list[lc.Request]
    trade: dict[str, Any] | None = None  # TRADE: the trade's row, which takes the group's first entry's seq
    bid: OrderState | None = None  # RAISE: the raised bid whose one new hold the group's last entry creates


@dataclass(slots=True)
class _Staged:
    """A matched batch waiting for its settlement to be durable."""

    groups: list[Group]
    futures: list[asyncio.Future[list[Any]]]
    # Releases of a batch that traded wait for its trades: if a trade is refused, its parties' holds stay.
    releases: list[Group]
    trade_rows: list[dict[str, Any]]
    order_rows: list[dict[str, Any]]
    last: int
    count: int
    published: list[dict[str, Any]]
    results: list[tuple[int, list[ev.Event]]]
    callers: list[Any]
    # Commands the engine refused, as (seq, code, message): kept so a retry is refused the same way.
    refusals: list[tuple[int, str, str]] = field(default_factory=list)
    # Raised auction bids whose one new hold a group of this batch creates (Group.bid).
    raises: list[OrderState] = field(default_factory=list)
    # Enforcement sales this batch settled or ended, for the settlement hooks (exchange.pledging).
    enforcement: list[dict[str, Any]] = field(default_factory=list)


def _relabel(events: list[ev.Event], reason: str | None) -> list[ev.Event]:
    """The engine's events of a command the exchange gave its own cancel `reason` (a suspension's sweep)."""
    if reason is None:
        return events
    return [(e[0], e[1], e[2], e[3], reason) if e[0] == ev.CANCELLED and e[4] == ev.BY_REQUEST else e
            for e in events]


@dataclass(slots=True)
class Submission:
    """A command for the engine; `make(seq)` builds it once the id (= seq) is known."""

    make: Callable[[int], Any]
    order: dict[str, Any] | None = None  # context of a new order: participant, hold, accounts, ...
    # (seq, events, the new order's projected row or None if nothing about it changed)
    future: asyncio.Future[tuple[int, list[ev.Event], dict[str, Any] | None]] = field(default=None)  # type: ignore[assignment]
    client: dict[str, Any] | None = None  # {"p": participant, "c": client id, "fp": fingerprint} for row-less commands
    # The pre-trade hold to create before the order is journaled; its entry's seq becomes order["hold_id"].
    hold: lc.Request | None = None
    # (participant, client id) of a new order: if an order was already journaled under it, the
    # submission is answered with that row (a Replay) instead of being journaled again.
    lookup: tuple[int, str] | None = None
    # The participant whose request this is (None: the exchange's own, e.g. a session change); it, and
    # every participant a new order or deal names, must be active when the command is journaled.
    actor: int | None = None
    # Not a command: cancel what this participant has resting here (`sweep`), at this point of the queue.
    sweep: int | None = None
    # The reason this command's cancels carry instead of the engine's `requested` (a sweep's: suspended);
    # journaled with it, so a replay after a restart projects the same.
    reason: str | None = None

    def participants(self) -> set[int]:
        ids = set() if self.actor is None else {self.actor}
        for ctx in (self.order, *((self.order or {}).get("extra", ()))):
            if ctx and ctx.get("participant_id") is not None:
                ids.add(int(ctx["participant_id"]))
        if self.client is not None:
            ids.add(int(self.client["p"]))
        return ids


@dataclass(slots=True, frozen=True)
class Replay:
    """The answer to a retry: the row of the order first journaled under the same client id."""

    row: dict[str, Any]


def _now_us() -> int:
    return time.time_ns() // 1000


def _consumed(f: asyncio.Future[Any]) -> None:
    """For futures nobody awaits: a refusal (already released by the caller) is no news."""
    if not f.cancelled():
        f.exception()


def _when_all(target: asyncio.Future[Any], futures: list[asyncio.Future[Any]]) -> None:
    """Resolve `target` with how many `futures` there are once all are done (or with the first failure)."""
    if not futures:
        target.set_result(0)
        return
    left = len(futures)

    def done(f: asyncio.Future[Any]) -> None:
        nonlocal left
        left -= 1
        if target.done():
            return
        if not f.cancelled() and f.exception() is not None:
            target.set_exception(f.exception())  # type: ignore[arg-type]
        elif f.cancelled():
            target.cancel()
        elif left == 0:
            target.set_result(len(futures))

    for f in futures:
        f.add_done_callback(done)


class SettlementRefused(RuntimeError):
    """The ledger refused the settlement of something the market had journaled: a broken invariant."""


def outage(exc: BaseException | None) -> bool:
    """The database or the ledger writer is away for now (wait and rebuild), as opposed to a bug (stop).
    Walks the chain, since drivers and SQLAlchemy wrap each other's errors."""
    if database_unreachable(exc):
        return True
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, WriterUnavailable | TimeoutError):
            return True
        # SQLSTATE classes of a server in trouble rather than a statement in error: connection (08),
        # transaction rollback (40: serialization, deadlock), resources (53), operator intervention (57),
        # system (58).
        state = getattr(exc, "sqlstate", None)
        if isinstance(state, str) and state[:2] in ("08", "40", "53", "57", "58"):
            return True
        exc = exc.__cause__ or getattr(exc, "orig", None) or exc.__context__
    return False


class MarketSequencer:
    def __init__(self, rt: Runtime, market: Market, trading_day: date | None) -> None:
        self.rt = rt
        self.market = market
        self.engine: Engine = ENGINES[market.mode](market.rules)
        self.orders: dict[int, OrderState] = {}
        # States each journaled command created (its own order, or the funding of a block deal): a
        # rejection of that command finishes them, and only them.
        self.created: dict[int, list[int]] = {}
        self.last_seq = 0
        self.applied_seq = 0
        self.trading_day = trading_day
        self.queue: asyncio.Queue[Submission] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        # Stage two of the pipeline: batches whose settlement is in the writer's queue, in order.
        self.finishing: asyncio.Queue[_Staged | None] = asyncio.Queue()
        self.finisher: asyncio.Task[None] | None = None
        self.subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._conns: dict[str, asyncpg.Connection] = {}
        self.actor = f"exchange:{market.id}"
        # Mirrors of markets.halted / session_open, kept by exchange.trading.sessions (one process owns a market).
        self.halted = False
        self.session_open = False
        # Why the market takes no writes any more (a broken invariant, see the module docstring), or None.
        self.stopped: str | None = None
        # Serialises session changes (operator calls and calendar jobs) of this market.
        self.session_lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self.recover()
        self.finisher = asyncio.create_task(self._finish_loop(), name=f"settle-{self.market.id}")
        self.task = asyncio.create_task(self._run(), name=f"sequencer-{self.market.id}")

    async def _connection(self, role: str) -> asyncpg.Connection:
        """One connection per pipeline stage (they run concurrently), reopened after a failure."""
        conn = self._conns.get(role)
        if conn is None or conn.is_closed():
            conn = await asyncpg.connect(asyncpg_dsn(self.rt.url))
            self._conns[role] = conn
        return conn

    async def stop(self) -> None:
        for task in (self.task, self.finisher):
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for conn in self._conns.values():  # after the stages: nothing is using them any more
            with contextlib.suppress(Exception):
                await conn.close()
        while not self.queue.empty():
            sub = self.queue.get_nowait()
            if not sub.future.done():
                sub.future.set_exception(DomainError("market_unavailable", "the market sequencer stopped", 503))

    def stopped_error(self) -> DomainError:
        return DomainError("market_stopped", f"market {self.market.id} takes no writes: {self.stopped}", 503,
                           reason=self.stopped)

    def stop_writes(self, exc: BaseException) -> None:
        """A broken invariant: no more writes, no retries; say why (health, the log) and fail the waiting."""
        self.stopped = f"{type(exc).__name__}: {exc}"
        log.critical("market %s stops taking writes: %s. This is a bug, not an outage: the market is not "
                     "retried; fix the cause and restart (recovery replays the journal)", self.market.id,
                     self.stopped)
        error = self.stopped_error()
        while not self.queue.empty():
            sub = self.queue.get_nowait()
            if not sub.future.done():
                sub.future.set_exception(error)

    def _caller_error(self, exc: BaseException) -> DomainError:
        """What a caller whose command was in a failed batch is told: retry later (outage), or stopped."""
        if outage(exc):
            return DomainError("market_unavailable", f"market {self.market.id} is recovering from {exc}; retry "
                               "with the same Idempotency-Key", 503)
        return DomainError("market_stopped", f"market {self.market.id} takes no writes: "
                           f"{type(exc).__name__}: {exc}", 503)

    async def submit(self, make: Callable[[int], Any], order: dict[str, Any] | None = None,
                     client: dict[str, Any] | None = None, *, actor: int | None = None,
                     ) -> tuple[int, list[ev.Event], dict[str, Any] | None]:
        out = await self.submit_funded(make, order, client=client, actor=actor)
        assert not isinstance(out, Replay)
        return out

    async def submit_funded(self, make: Callable[[int], Any], order: dict[str, Any] | None = None, *,
                            hold: lc.Request | None = None, lookup: tuple[int, str] | None = None,
                            client: dict[str, Any] | None = None, actor: int | None = None,
                            ) -> tuple[int, list[ev.Event], dict[str, Any] | None] | Replay:
        """Submit a command; with `hold`, the sequencer creates the hold first (batched with the holds of
        the other orders in its batch), with `lookup` it answers a retry from the journaled row. `actor`:
        the participant asking (exchange/core/suspension.py: it must be active when the command is journaled)."""
        self._check_running()
        sub = Submission(make, order, asyncio.get_running_loop().create_future(), client, hold, lookup, actor)
        self.queue.put_nowait(sub)
        return await sub.future

    def _check_running(self) -> None:
        if self.stopped is not None:
            raise self.stopped_error()
        if self.task is None or self.task.done() or self.finisher is None or self.finisher.done():
            raise DomainError("market_unavailable", f"market {self.market.id} is not running now; retry with the "
                              "same Idempotency-Key", 503)

    async def sweep(self, participant_id: int) -> int:
        """Cancel the participant's open orders and listings and withdraw its block quotes, releasing their
        holds; answered once that is settled. Queued like a command, so whatever of the participant's was
        journaled before is included (and nothing of it can be journaled after: see `_admit`). How many."""
        self._check_running()
        sub = Submission(lambda _s: None, future=asyncio.get_running_loop().create_future(), sweep=participant_id)
        self.queue.put_nowait(sub)
        return await sub.future  # type: ignore[return-value]

    def _resting(self, participant_id: int) -> list[Any]:
        """The cancels of what the participant has resting in this market now."""
        quotes = getattr(self.engine, "quotes", None)
        if quotes is not None:  # block negotiation: its quotes (withdrawing one closes its negotiations)
            return [mc.Cancel(int(q["quote_id"]), participant_id) for q in quotes(participant_id)
                    if q["account"] == participant_id]
        return [mc.Cancel(o.id, participant_id) for o in sorted(self.orders.values(), key=lambda o: o.id)
                if o.participant_id == participant_id and o.status == "open" and o.kind in ("order", "listing")]

    def _expand_sweeps(self, items: list[Submission]) -> list[Submission]:
        if all(it.sweep is None for it in items):
            return items
        loop = asyncio.get_running_loop()
        out: list[Submission] = []
        for it in items:
            if it.sweep is None:
                out.append(it)
                continue
            cancels = [Submission(lambda _s, cmd=cmd: cmd, future=loop.create_future(), reason=ev.SUSPENDED)
                       for cmd in self._resting(it.sweep)]
            out += cancels
            _when_all(it.future, [c.future for c in cancels])
        return out

    async def _admit(self, conn: asyncpg.Connection, items: list[Submission]) -> list[Submission]:
        """Inside the journal transaction: refuse the commands of participants that are not active (their
        funding is released), keep the rest."""
        stopped = await suspension.inactive(conn, (p for it in items for p in it.participants()))
        if not stopped:
            return items
        keep = []
        for it in items:
            who = it.participants() & stopped
            if not who:
                keep.append(it)
                continue
            holds = [ctx.get("hold_id") for ctx in (it.order, *((it.order or {}).get("extra", ()))) if ctx]
            for hold in holds:
                if hold is not None:  # named like every release: a hold is resolved once
                    with contextlib.suppress(WriterUnavailable):  # then the hub voids it when it starts
                        self.rt.writer.enqueue([lc.Request(self.actor, lc.VoidHold(hold),
                                                           f"{self.market.id}:release:hold:{hold}")]
                                               ).add_done_callback(_consumed)
            if not it.future.done():
                it.future.set_exception(DomainError(
                    "participant_suspended", f"participant {min(who)} is suspended: nothing was done"))
        return keep

    # ------------------------------------------------------------------ recovery

    async def recover(self) -> None:
        mid = self.market.id
        async with self.rt.read() as conn:
            row = (await conn.execute(text(
                "SELECT applied_seq, reference_price, halted, session_open FROM markets WHERE id = :m"),
                {"m": mid})).one()
            self.halted, self.session_open = row.halted, row.session_open
            snap = (await conn.execute(text(
                """SELECT seq, state_hash, snapshot FROM market_snapshots WHERE market_id = :m AND seq <= :a
                   ORDER BY seq DESC LIMIT 1"""), {"m": mid, "a": row.applied_seq})).first()
        self.applied_seq = row.applied_seq
        start = 0
        if snap is not None:
            self.engine = type(self.engine).restore(snap.snapshot)
            if self.engine.state_hash() != bytes(snap.state_hash):
                raise RuntimeError(f"snapshot {mid}@{snap.seq} does not reproduce its state hash")
            start = snap.seq
        else:
            self.engine = ENGINES[self.market.mode](self.market.rules, row.reference_price)
        pending: list[tuple[int, int, Any, dict | None, str | None]] = []
        async with self.rt.read() as conn:
            rows = await conn.execute(text(
                "SELECT seq, ts, command FROM market_journal WHERE market_id = :m AND seq > :s ORDER BY seq"),
                {"m": mid, "s": start})
            for r in rows:
                cmd = decode_command(r.command)
                if r.seq <= self.applied_seq:
                    self.engine.process(r.seq, r.ts, cmd)  # effects already durable
                else:
                    pending.append((r.seq, r.ts, cmd, r.command.get("order"), r.command.get("reason")))
                self.last_seq = r.seq
            self.last_seq = max(self.last_seq, self.applied_seq)
            await self._load_open_orders(conn)
        if pending:
            log.warning("market %s: replaying %d journaled commands after a restart", mid, len(pending))
            results = []
            for seq, ts, cmd, order, reason in pending:
                results.append((seq, ts, cmd, _relabel(self.engine.process(seq, ts, cmd), reason), order))
            await self._finish(self._stage(results, []))

    async def _load_open_orders(self, conn: Any) -> None:
        rows = await conn.execute(text(
            """SELECT o.*, p.holding_account, p.cash_account
               FROM orders o JOIN participants p ON p.id = o.participant_id
               WHERE o.market_id = :m AND o.status = 'open'"""), {"m": self.market.id})
        self.orders = {}
        for r in rows:
            holding, cash = accounts_of(r.purpose, r.holding_account, r.cash_account)
            self.orders[r.id] = OrderState(
                r.id, r.participant_id, r.kind, r.side, r.price, r.qty, r.open_qty, r.hold_id, r.hold_amount,
                holding, cash, r.filled_qty, r.filled_notional, r.fees, r.status, r.reason, r.purpose, r.parent)

    @staticmethod
    def _order_state(seq: int, o: dict[str, Any]) -> OrderState:
        return OrderState(seq, o["participant_id"], o["kind"], o["side"], o.get("price"), o["qty"], o["qty"],
                          o.get("hold_id"), o.get("hold_amount", 0), o["holding_account"], o["cash_account"],
                          purpose=o.get("purpose"), parent=o.get("parent"))

    def _register(self, seq: int, ctx: dict[str, Any] | None) -> None:
        """Create the states a command brings: its own order (id = seq) and transient ones (block deals)."""
        if ctx is None:
            return
        ids = []
        if ctx.get("kind"):
            self.orders[seq] = self._order_state(seq, ctx)
            ids.append(seq)
        for extra in ctx.get("extra", ()):
            self.orders[extra["id"]] = self._order_state(extra["id"], extra)
            ids.append(extra["id"])
        if ids:
            self.created[seq] = ids

    # ------------------------------------------------------------------ the loop

    async def _run(self) -> None:
        while True:
            first = await self.queue.get()
            items = [first]
            while len(items) < MAX_BATCH and not self.queue.empty():
                items.append(self.queue.get_nowait())
            try:
                await self._process(items)
            except Exception as exc:
                log.exception("market %s: batch failed", self.market.id)
                error = self._caller_error(exc)
                for it in items:
                    if not it.future.done():
                        it.future.set_exception(error)
                # The journal may or may not have committed: rebuild from the database, once the
                # batches already in stage two are durable. A bug is not retried.
                delay = 0.2
                while True:
                    try:
                        await self._drain()
                        if not outage(exc):
                            self.stop_writes(exc)
                            return
                        for conn in self._conns.values():
                            with contextlib.suppress(Exception):
                                await conn.close()
                        self._conns.clear()
                        await self.recover()
                        break
                    except asyncio.CancelledError:
                        raise
                    except Exception as again:
                        if not outage(again):
                            self.stop_writes(again)
                            return
                        log.warning("market %s: recovery failed (%s); retrying", self.market.id, again)
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, 5.0)

    async def _prefund(self, items: list[Submission]) -> list[Submission]:
        """Answer retries of journaled orders from their rows, then create the holds of the rest: one
        look-up and one writer batch for the whole batch instead of two round trips per order. A hold
        created here whose order then fails to be journaled is voided by the caller or, after a crash,
        when the hub starts."""
        lookups = [it.lookup for it in items if it.lookup is not None]
        if lookups:
            conn = await self._connection("journal")
            rows = await conn.fetch(
                """SELECT o.* FROM orders o JOIN unnest($1::bigint[], $2::text[]) AS k(p, c)
                     ON o.participant_id = k.p AND o.client_id = k.c""",
                [k[0] for k in lookups], [k[1] for k in lookups])
            if rows:
                found = {(r["participant_id"], r["client_id"]): dict(r) for r in rows}
                keep = []
                for it in items:
                    row = found.get(it.lookup) if it.lookup is not None else None
                    if row is None:
                        keep.append(it)
                    elif not it.future.done():
                        it.future.set_result(Replay(row))  # type: ignore[arg-type]
                items = keep
        funded = [it for it in items if it.hold is not None]
        if not funded:
            return items
        outcomes = await asyncio.gather(*(self._enqueue_hold(it.hold) for it in funded),  # type: ignore[arg-type]
                                        return_exceptions=True)
        refused: set[int] = set()
        for it, out in zip(funded, outcomes, strict=True):
            if isinstance(out, BaseException):
                refused.add(id(it))
                if not it.future.done():
                    it.future.set_exception(out)
            else:
                assert it.order is not None
                it.order["hold_id"] = out[0].seq
        return [it for it in items if id(it) not in refused]

    async def _enqueue_hold(self, hold: lc.Request) -> list[Any]:
        return await self.rt.writer.enqueue([hold])  # enqueue raises at once if the writer is down

    async def _process(self, items: list[Submission]) -> None:
        items = await self._prefund(self._expand_sweeps(items))
        if not items:
            return
        ts = _now_us()
        day = self.trading_day or date.today()
        # Raw asyncpg and COPY on the market's own connection: this transaction is on every order's path.
        conn = await self._connection("journal")
        async with conn.transaction():
            items = await self._admit(conn, items)
            seq = self.last_seq
            staged: list[tuple[int, Any, Submission]] = []
            journal: list[dict[str, Any]] = []
            new_orders: list[dict[str, Any]] = []
            for it in items:
                seq += 1
                cmd = it.make(seq)
                payload = encode_command(cmd)
                if it.order is not None:
                    payload["order"] = it.order
                if it.client is not None:
                    payload["client"] = it.client
                if it.reason is not None:
                    payload["reason"] = it.reason
                if it.order is not None and it.order.get("kind"):
                    o = it.order
                    new_orders.append({
                        "id": seq, "m": self.market.id, "p": o["participant_id"], "kind": o["kind"],
                        "side": o["side"], "type": o.get("type", "limit"), "tif": o.get("tif", "day"),
                        "price": o.get("price"), "qty": o["qty"], "hold": o.get("hold_id"),
                        "hold_amount": o.get("hold_amount", 0),
                        "purpose": json.dumps(o.get("purpose"), ensure_ascii=False) if o.get("purpose") else None,
                        "day": day, "cid": o["client_id"], "fp": bytes.fromhex(o["fingerprint"]),
                        "parent": o.get("parent")})
                journal.append({"m": self.market.id, "seq": seq, "ts": ts,
                                "c": json.dumps(payload, ensure_ascii=False)})
                staged.append((seq, cmd, it))
            if journal:
                await conn.copy_records_to_table(
                    "market_journal", columns=["market_id", "seq", "ts", "command"],
                    records=[(j["m"], j["seq"], j["ts"], j["c"]) for j in journal])
            if new_orders:
                await conn.copy_records_to_table(
                    "orders",
                    columns=["id", "market_id", "participant_id", "kind", "side", "type", "tif", "price", "qty",
                             "open_qty", "status", "hold_id", "hold_amount", "purpose", "trading_day", "client_id",
                             "fingerprint", "parent"],
                    records=[(o["id"], o["m"], o["p"], o["kind"], o["side"], o["type"], o["tif"], o["price"], o["qty"],
                              o["qty"], "open", o["hold"], o["hold_amount"], o["purpose"], o["day"], o["cid"], o["fp"],
                              o["parent"])
                             for o in new_orders])
        if not staged:
            return
        self.last_seq = seq
        results = []
        for seq, cmd, it in staged:
            results.append((seq, ts, cmd, _relabel(self.engine.process(seq, ts, cmd), it.reason), it.order))
        # Settlement goes to the writer's queue now; stage two awaits it and answers the callers, while
        # this stage journals and matches the next batch.
        st = self._stage(results, [it for _, _, it in staged])
        self.finishing.put_nowait(st)
        if st.raises:  # the raised bids' new hold ids come from the ledger: later batches need them
            await self._drain()

    async def _finish_loop(self) -> None:
        while True:
            staged = await self.finishing.get()
            if staged is None:
                self.finishing.task_done()
                continue
            try:
                await self._finish(staged)
            except Exception as exc:
                log.error("market %s: settlement stage failed (%s)", self.market.id, exc)
                self._fail_staged(staged, self._caller_error(exc))
                if not await self._recover_after_failure(exc):
                    return
                continue
            self.finishing.task_done()

    def _fail_staged(self, staged: _Staged, exc: BaseException) -> None:
        """Fail this batch and every batch matched after it: recovery re-derives them from the journal."""
        failed = [staged]
        while not self.finishing.empty():
            nxt = self.finishing.get_nowait()
            if nxt is not None:
                failed.append(nxt)
        for st in failed:
            for fut in st.futures:  # their settlement may still finish; nobody waits for it here
                fut.add_done_callback(lambda f: f.cancelled() or f.exception())
            for it in st.callers:
                if not it.future.done():
                    it.future.set_exception(exc)
            self.finishing.task_done()

    async def _recover_after_failure(self, exc: BaseException) -> bool:
        """Stop matching, then rebuild from the journal (idempotent re-settlement) until the database is
        back; a database outage or failover thus pauses the market instead of ending it. A bug stops
        the market's writes instead (False)."""
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.task
        if not outage(exc):
            self.stop_writes(exc)
            return False
        delay = 0.2
        while True:
            try:
                for conn in self._conns.values():
                    with contextlib.suppress(Exception):
                        await conn.close()
                self._conns.clear()
                await self.recover()
                break
            except Exception as again:
                if not outage(again):
                    self.stop_writes(again)
                    return False
                log.warning("market %s: recovery failed (%s); retrying in %.1fs", self.market.id, again, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
        log.warning("market %s: recovered at seq %d after %s", self.market.id, self.applied_seq, exc)
        self.task = asyncio.create_task(self._run(), name=f"sequencer-{self.market.id}")
        return True

    async def _drain(self) -> None:
        await self.finishing.join()

    # ------------------------------------------------------------------ effects

    def _stage(self, results: list[tuple[int, int, Any, list[ev.Event], dict[str, Any] | None]],
               callers: list[Submission]) -> _Staged:
        groups: list[Group] = []
        trade_rows: list[dict[str, Any]] = []
        # Keyed by (id, hold): the two sides of a block deal are states named after the quote and the deal,
        # and each confirmation funds them afresh, so one id can stand for several fundings in one batch.
        changed: dict[tuple[int, int | None], OrderState] = {}
        published: list[dict[str, Any]] = []
        refusals: list[tuple[int, str, str]] = []
        raising: list[Group] = []
        enforcement: list[dict[str, Any]] = []
        for seq, _ts, _cmd, events, ctx in results:
            # States are created command by command, right before that command's events are settled:
            # two confirmations on one quote in one batch each settle against their own funding.
            self._register(seq, ctx)
            for e in events:
                kind = e[0]
                if kind == ev.TRADE:
                    group, row = self._settle(e, seq)
                    groups.append(Group(Effect.TRADE, group, trade=row))
                    trade_rows.append(row)
                    pledge = enforcement_of(self.orders[row["so"]])
                    if pledge is not None:
                        enforcement.append({"pledge_id": pledge, "order_id": row["so"], "trade_id": row["tid"]})
                    for oid in (e[ev.T_MAKER_ID], e[ev.T_TAKER_ID]):
                        o = self.orders[oid]
                        changed[(oid, o.hold_id)] = o
                    published.append(marketdata.trade_message(row, e[ev.T_TAKER_SIDE], self.market.decimals))
                elif kind == ev.REJECTED:
                    # Only what this command brought is refused; a refused cancel or reduce names an
                    # order that stays as it was.
                    for oid in self.created.get(seq, ()):
                        self._finish_state(oid, "rejected", e[2], changed)
                    if not refusals or refusals[-1][0] != seq:
                        refusals.append((seq, e[2], e[3]))
                elif kind in (ev.CANCELLED, ev.EXPIRED):
                    self._finish_state(e[1], "cancelled" if kind == ev.CANCELLED else "expired",
                                       e[4] if kind == ev.CANCELLED else "end_of_day", changed)
                elif kind == ev.BID_WITHDRAWN:
                    self._finish_state(e[2], "cancelled", "withdrawn", changed)
                elif kind == ev.BID_REPLACED:
                    bid = self._raise(e[2], e[4], changed)
                    raising.append(Group(Effect.RAISE, self._raise_group(bid, e[2]), bid=bid))
                    groups.append(raising[-1])
                elif kind == ev.AUCTION_RESULT or (kind == ev.AUCTION_PHASE and e[2] == "cancelled"):
                    # The auction is over: unsold units, losing bids and every deposit go back.
                    aid = e[1]
                    for oid, o in list(self.orders.items()):
                        if oid == aid or o.parent == aid:
                            reason = "auction_cancelled" if kind == ev.AUCTION_PHASE else (
                                "deposit_returned" if o.kind == "deposit" else "auction_allocated")
                            self._finish_state(oid, "filled" if o.filled_qty else "cancelled", reason, changed)
                elif kind == ev.REDUCED and e[1] in self.orders:
                    o = self.orders[e[1]]
                    o.open_qty = e[4] if len(e) > 4 else o.open_qty
                    changed[(o.id, o.hold_id)] = o
                elif kind == ev.CONVERTED and e[1] in self.orders:
                    o = self.orders[e[1]]
                    o.price = e[2]
                    changed[(o.id, o.hold_id)] = o
        # Finished orders give back what is left of their hold. Always asked, never computed: after a
        # restart the ledger may be ahead of the projection, and a fully posted hold just answers
        # "already resolved", which is what we wanted.
        releases: list[Group] = []
        for o in changed.values():
            if o.status == "open" and o.open_qty == 0 and o.filled_qty > 0:
                o.status = "filled"
            if o.status != "open" and o.hold_id is not None:
                # Named after the hold it releases: a hold is resolved once, and nothing else (another
                # funding of the same quote, a trade) can ever share this client id.
                releases.append(Group(Effect.RELEASE, [lc.Request(self.actor, lc.VoidHold(o.hold_id),
                                                                  f"{self.market.id}:release:hold:{o.hold_id}")]))
            pledge = enforcement_of(o)
            if o.status != "open" and pledge is not None and not any(
                    x["order_id"] == o.id and "ended" in x for x in enforcement):
                enforcement.append({"pledge_id": pledge, "order_id": o.id, "ended": o.status})
        for g in raising:
            if g.bid is not None and g.bid.status != "open":  # raised, then ended in this same batch
                g.requests = g.requests[:-1]  # release the old and the top-up holds, create none
                g.bid = None
        raises = [g.bid for g in raising if g.bid is not None]
        for r in results:
            self.created.pop(r[0], None)
        if not groups:  # nothing traded: the releases need not wait
            groups, releases = releases, []
        futures = [self.rt.writer.enqueue(g.requests) for g in groups]
        rows = [{"open": o.open_qty, "filled": o.filled_qty, "notional": o.filled_notional, "fees": o.fees,
                 "status": o.status, "reason": o.reason, "price": o.price, "m": self.market.id, "id": o.id}
                for o in changed.values()]
        for o in changed.values():
            if o.status != "open" and self.orders.get(o.id) is o:
                del self.orders[o.id]
        last = results[-1][0] if results else self.applied_seq
        return _Staged(groups, futures, releases, trade_rows, rows, last, len(results), published,
                       [(r[0], r[3]) for r in results], callers, refusals, raises, enforcement)

    def _raise(self, old_id: int, new_id: int, changed: dict[tuple[int, int | None], OrderState]) -> OrderState:
        """A raise replaced a standing bid: the old bid ends and its hold moves, with the raise's top-up,
        into one new hold for the new bid (built by `_raise_group`; its id is set when it is written)."""
        old, new = self.orders[old_id], self.orders[new_id]
        self._finish_state(old_id, "cancelled", "replaced", changed)
        new.hold_amount += old.hold_amount
        changed[(new.id, new.hold_id)] = new
        return new

    def _raise_group(self, new: OrderState, old_id: int) -> list[lc.Request]:
        """One linked group: void the old bid's hold and the raise's top-up, hold the sum for the new bid.
        Nothing is ever held twice, and the sum is free by construction, so the group cannot fail."""
        old = self.orders.get(old_id)
        assert old is not None and old.hold_id is not None, f"raised bid {old_id} has no hold"
        cmds: list[lc.Command] = [lc.VoidHold(old.hold_id)]
        old.hold_id = None  # released by this group, not by the end-of-order release
        if new.hold_id is not None:
            cmds.append(lc.VoidHold(new.hold_id))
            new.hold_id = None
        cmds.append(lc.CreateHold("order", new.cash_account, self.rt.system["clearing"], "CNY", new.hold_amount))
        cid = f"{self.market.id}:raise:{new.id}"
        return [lc.Request(self.actor, cmd, f"{cid}:{k}", {"market": self.market.id, "bid": new.id, "replaces": old_id}
                           if k == 0 else {}) for k, cmd in enumerate(cmds)]

    async def _settled(self, groups: list[Group], futures: list[asyncio.Future[list[Any]]]) -> None:
        """Wait for the groups' entries and note what each tells (a trade's settlement, a raised bid's hold).
        A refusal is a broken invariant, except a release finding its hold already resolved."""
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        for g, out in zip(groups, outcomes, strict=True):
            if isinstance(out, Rejection) and g.effect is Effect.RELEASE and out.code == "hold_already_resolved":
                continue  # fully posted by its fills (or released before a restart): nothing left to give back
            if isinstance(out, Rejection):
                # Holds are sized so that this cannot happen; if it does, it is a bug: the market stops.
                raise SettlementRefused(f"the ledger refused settlement {g.requests[0].client_id}: {out.code}: {out}")
            if isinstance(out, BaseException):
                raise out  # an outage (recover when the database is back) or a bug (stop): the caller decides
            if g.trade is not None:
                g.trade["settlement_seq"] = out[0].seq
            if g.bid is not None:
                g.bid.hold_id = out[-1].seq

    async def _finish(self, st: _Staged) -> None:
        await self._settled(st.groups, st.futures)
        projected = {r["id"]: r for r in st.order_rows}
        for o in st.raises:  # the raised bid's one hold, created by its group's last entry
            projected[o.id]["hold_id"] = o.hold_id
        if st.releases:
            await self._settled(st.releases, [self.rt.writer.enqueue(g.requests) for g in st.releases])
        conn = await self._connection("project")
        async with conn.transaction():
            if st.trade_rows:
                t = st.trade_rows
                await conn.execute(
                    """INSERT INTO trades (market_id, trade_id, seq, ts, mode, instrument, price, qty, notional,
                                           buy_order, sell_order, buyer_id, seller_id, buyer_fee, seller_fee,
                                           in_close, trading_day, settlement_seq)
                       SELECT $1, * FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::text[], $6::text[],
                           $7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[],
                           $13::bigint[], $14::bigint[], $15::bigint[], $16::bool[], $17::date[], $18::bigint[])
                       ON CONFLICT DO NOTHING""",
                    self.market.id, *([r[k] for r in t] for k in (
                        "tid", "seq", "ts", "mode", "inst", "price", "qty", "notional", "bo", "so", "bp", "sp", "bf",
                        "sf", "close", "day", "settlement_seq")))
            if st.order_rows:
                o = st.order_rows
                await conn.execute(
                    """UPDATE orders SET open_qty = u.open, filled_qty = u.filled, filled_notional = u.notional,
                                         fees = u.fees, status = u.status, reason = u.reason, price = u.price,
                                         updated_at = now()
                       FROM unnest($2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], $7::text[],
                                   $8::text[], $9::bigint[])
                            AS u(id, open, filled, notional, fees, status, reason, price)
                       WHERE orders.market_id = $1 AND orders.id = u.id""",
                    self.market.id, *([r[k] for r in o] for k in (
                        "id", "open", "filled", "notional", "fees", "status", "reason", "price")))
            if st.raises:
                await conn.execute(
                    """UPDATE orders SET hold_id = u.hold, hold_amount = u.amount
                       FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS u(id, hold, amount)
                       WHERE orders.market_id = $1 AND orders.id = u.id""",
                    self.market.id, [o.id for o in st.raises], [o.hold_id for o in st.raises],
                    [o.hold_amount for o in st.raises])
            if st.refusals:
                await conn.execute(
                    """INSERT INTO market_refusals (market_id, seq, code, detail)
                       SELECT $1, * FROM unnest($2::bigint[], $3::text[], $4::text[]) ON CONFLICT DO NOTHING""",
                    self.market.id, *([r[k] for r in st.refusals] for k in range(3)))
            await conn.execute("UPDATE markets SET applied_seq = $1 WHERE id = $2", st.last, self.market.id)
        before = self.applied_seq
        self.applied_seq = st.last
        if self.applied_seq // SNAPSHOT_EVERY != before // SNAPSHOT_EVERY:
            await self.snapshot()
        self._publish(st.published)
        await self._call_settlement_hooks(st.enforcement)
        rows = {r["id"]: r for r in st.order_rows}
        for it, (seq, events) in zip(st.callers, st.results, strict=False):
            if not it.future.done():
                it.future.set_result((seq, events, rows.get(seq)))

    async def _call_settlement_hooks(self, items: list[dict[str, Any]]) -> None:
        """Tell the settlement hooks (exchange.pledging) about enforcement sales this batch settled or
        ended, before the callers are answered. A failing hook never stops the market: the pledge
        worker reconciles every enforcement sale from the trades table anyway."""
        if not items:
            return
        for hook in list(self.rt.settlement_hooks):
            try:
                await hook(self.market.id, items)
            except Exception:
                log.exception("market %s: settlement hook failed; the pledge worker will reconcile", self.market.id)

    def _finish_state(self, oid: int | None, status: str, reason: str | None,
                      changed: dict[tuple[int, int | None], OrderState]) -> None:
        o = self.orders.get(oid) if oid is not None else None
        if o is None or o.status != "open":
            return
        o.status, o.reason, o.open_qty = status, reason, 0
        changed[(o.id, o.hold_id)] = o

    def _settle(self, e: ev.Event, seq: int) -> tuple[list[lc.Request], dict[str, Any]]:
        m = self.market
        price, qty = e[ev.T_PRICE], e[ev.T_QTY]
        taker, maker = self.orders[e[ev.T_TAKER_ID]], self.orders[e[ev.T_MAKER_ID]]
        buyer, seller = (taker, maker) if e[ev.T_TAKER_SIDE] == mc.BUY else (maker, taker)
        n = notional(price, qty, m.decimals, m.years)
        fees = {}
        for o in (buyer, seller):
            before = o.filled_notional
            o.filled_qty += qty
            o.filled_notional += n
            o.open_qty -= qty
            fees[o.id] = fill_fee(before, o.filled_notional, m.fee_bps)
            o.fees += fees[o.id]
        fb, fs = fees[buyer.id], fees[seller.id]
        system = self.rt.system
        clearing = system["clearing"]
        cid = f"{m.id}:trade:{e[ev.T_ID]}"
        retire = buyer.purpose is not None and buyer.purpose.get("retire")
        reqs: list[lc.Command] = [lc.PostHold(seller.hold_id, qty, keep_remainder=True)]  # type: ignore[arg-type]
        if retire:
            reqs.append(lc.Retire(clearing, system["retired"], m.instrument, qty, "judicial_restoration",
                                  str(buyer.purpose.get("beneficiary", "")) if buyer.purpose else ""))
        else:
            reqs.append(lc.Transfer(clearing, buyer.holding_account, m.instrument, qty))
        reqs.append(lc.PostHold(buyer.hold_id, n + fb, keep_remainder=True))  # type: ignore[arg-type]
        if n - fs > 0:
            reqs.append(lc.Transfer(clearing, seller.cash_account, "CNY", n - fs))
        if fb + fs > 0:
            reqs.append(lc.Transfer(clearing, system["fees"], "CNY", fb + fs))
        if m.t_plus_1 and not retire:
            # Bought today, sellable tomorrow: a lock released at the next session's open.
            reqs.append(lc.CreateHold("t1", buyer.holding_account, clearing, m.instrument, qty))
        meta = {"market": m.id, "trade_id": e[ev.T_ID], "price": price, "qty": qty, "buyer": buyer.participant_id,
                "seller": seller.participant_id, "buy_order": buyer.id, "sell_order": seller.id}
        # The trade's terms go on its first entry; a judicial retirement carries them too (with the case),
        # because that entry is what a restoration certificate proves. The certificate is public, so the
        # retirement names the case, not the parties' participant ids (the payer is found from the case).
        retire_meta = {k: v for k, v in meta.items() if k not in ("buyer", "seller", "buy_order", "sell_order")}
        if retire and buyer.purpose:
            retire_meta["restoration"] = buyer.purpose
        group = [lc.Request(self.actor, cmd, f"{cid}:{k}",
                            retire_meta if isinstance(cmd, lc.Retire) else meta if k == 0 else {})
                 for k, cmd in enumerate(reqs)]
        row = {"m": m.id, "tid": e[ev.T_ID], "seq": seq, "ts": e[ev.T_TS], "mode": e[ev.T_MODE],
               "inst": m.instrument, "price": price, "qty": qty, "notional": n, "bo": buyer.id, "so": seller.id,
               "bp": buyer.participant_id, "sp": seller.participant_id, "bf": fb, "sf": fs, "close": m.in_close,
               "day": self.trading_day or date.today(), "settlement_seq": 0}
        return group, row

    # ------------------------------------------------------------------ snapshots and market data

    async def snapshot(self) -> None:
        snap = self.engine.snapshot()
        async with self.rt.tx() as conn:
            await conn.execute(text(
                """INSERT INTO market_snapshots (market_id, seq, state_hash, snapshot)
                   VALUES (:m, :s, :h, CAST(:snap AS jsonb)) ON CONFLICT DO NOTHING"""),
                {"m": self.market.id, "s": self.applied_seq, "h": self.engine.state_hash(),
                 "snap": json.dumps(snap)})

    def depth(self, levels: int = 5) -> dict[str, list[tuple[int, int, int]]]:
        """Best levels as {"bids": [(price, qty, count)], "asks": [...]}, best first."""
        depth = getattr(self.engine, "depth", None)
        if depth is None:
            return {"bids": [], "asks": []}
        d = depth(levels)
        return {"bids": list(d.get("bids", d.get(mc.BUY, []))), "asks": list(d.get("asks", d.get(mc.SELL, [])))}

    def _publish(self, messages: list[dict[str, Any]]) -> None:
        if not self.subscribers:
            return
        out = [*messages, {"type": "depth", **marketdata.depth_of(self, 5)}]
        for q in list(self.subscribers):
            for msg in out:
                if q.qsize() > 10_000:  # a stalled client is dropped rather than grow memory
                    self.subscribers.discard(q)
                    break
                q.put_nowait(msg)
