"""The single ledger writer: one task appends for everyone, with group commit.

Loop: wait for the first request, drain whatever else is queued (no fixed sleep), load and lock the
rows the batch touches in sorted order, apply the requests in arrival order through the pure state
machine (each refusal is the caller's own, with its code), write the whole batch, move the chain
head by compare-and-swap, commit once, and only then answer the callers and run after-commit hooks.

A second writer is refused by a session advisory lock held on the writer's own connection.

Failures follow the one policy of exchange/core/refusals.py. A `Rejection` is its caller's alone. Losing
the database is an outage: the batch's callers get `WriterUnavailable` and the writer reconnects. A
broken invariant (`broken_invariant`: the state machine's `InvariantViolation`, a PostgreSQL backstop
firing, the chain head moved under it) is a bug: nothing of the batch commits, the writer logs one
CRITICAL line and stops taking writes (`stopped` says why; every caller, queued or later, gets
`WriterStopped`), and it is never answered as a refusal. Any other error of a batch is retried request
by request, so that it fails only the request that causes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import typing
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from ledger import blinding, openings, store
from ledger import commands as c
from ledger.encoding import canonical_json, sha256
from ledger.state import Entry, Head, InvariantViolation, LedgerState, Rejection

log = logging.getLogger("envx.ledger.writer")

# pg advisory lock key: "envx" in ASCII, the ledger writer's lock.
WRITER_LOCK_KEY = 0x656E7678
MAX_BATCH = 2048
# An idle writer handed at least twice this many requests at once writes the first half while it applies the
# second (so that database and Python overlap from the first batch on).
PIPELINE_SPLIT = 64
# A batch applied while another is written yields to the event loop every this many requests, so that the
# write in flight can send its next statement meanwhile.
PIPELINE_YIELD = 256
# How long the writer keeps trying to reach a server (the same one restarted, or a promoted standby
# named in a multi-host URL) before it gives up and stops.
RECONNECT_SECONDS = 60.0
# What losing the database looks like: a dropped socket, a server shutting down or still starting,
# or a closed connection used again.
CONNECTION_LOST = (asyncpg.PostgresConnectionError, asyncpg.exceptions.OperatorInterventionError,
                   asyncpg.InterfaceError, ConnectionError, OSError)

AfterCommit = Callable[[list[Entry]], Awaitable[None]]
# Runs inside the batch's transaction after the entries are written and before the commit; may add
# rows that must be durable together with the entries (Merkle tree nodes). Raising aborts the batch.
BeforeCommit = Callable[[asyncpg.Connection, list[Entry], Head], Awaitable[None]]
# Runs once on the writer's connection after it takes the lock, before it accepts requests
# (fork checks: refuse a database behind the last published checkpoint).
OnStart = Callable[[asyncpg.Connection], Awaitable[None]]
# Runs inside the batch's transaction before anything is applied, on the requests about to be applied
# (retries of applied ones are answered before it); a refusal (or None) per request. A linked group with
# one refused request is refused whole. The application decides who may write (a suspended participant).
Gate = Callable[[asyncpg.Connection, list[c.Request]], Awaitable[list[Rejection | None]]]


class WriterUnavailable(RuntimeError):
    """The writer is not running (stopped, lost its lock, or its database)."""


class WriterStopped(RuntimeError):
    """The writer stopped taking writes on a broken invariant (a bug); the message says why. Not an
    outage: it does not come back without a restart."""


class SecondWriter(RuntimeError):
    """Another process holds the writer lock on this database."""


def broken_invariant(exc: BaseException) -> bool:
    """A bug the writer must stop on, as opposed to a refusal, an outage or one request's own error."""
    if isinstance(exc, InvariantViolation | store.ChainHeadMoved):
        return True
    # PostgreSQL's backstops behind the state machine: CHECK constraints (no overdraft, retired units
    # final, the sink never debited), the log tables' append-only triggers, one resolution per hold.
    if isinstance(exc, asyncpg.CheckViolationError | asyncpg.InsufficientPrivilegeError):
        return True
    return isinstance(exc, asyncpg.UniqueViolationError) and exc.constraint_name == "ledger_hold_resolutions_pkey"


# Each command's dataclass-generated __repr__ without the recursion guard dataclasses wrap it in (a command is
# a frozen value of ints, strings and tuples: never recursive), so the same string at half the cost.
_REPRS: dict[type, Callable[[Any], str]] = {
    t: getattr(t.__repr__, "__wrapped__", t.__repr__) for t in typing.get_args(c.Command)
}


def fingerprint(request: c.Request) -> bytes:
    """Digest of what the caller asked for, to tell a faithful retry from a reused client id.

    Commands are frozen dataclasses of ints, strings and tuples, so their repr is canonical. The digests are
    stored with the entries and compared on every retry: they must never change (tests/ledger/test_fingerprint.py).
    """
    meta = request.meta
    if meta and not meta.keys().isdisjoint(c.PROVENANCE_META):  # how it arrived is not part of what was asked
        meta = {k: v for k, v in meta.items() if k not in c.PROVENANCE_META}
    command = request.command
    return sha256(_REPRS.get(type(command), repr)(command).encode() + b"\x00" + canonical_json(meta))


@dataclass(slots=True)
class _Item:
    requests: list[c.Request]
    future: asyncio.Future[list[Entry]]
    fingerprints: list[bytes | None] = field(default_factory=list)
    # (actor, client id) of each request that has one, in order.
    client_ids: list[tuple[str, str]] = field(default_factory=list)


@dataclass(slots=True)
class _Applied:
    """A batch applied in memory: what its transaction writes, and what its callers get once it commits."""

    items: list[_Item]
    lookup: bool  # retries were looked up before it was applied
    gated: bool  # its gates ran before it was applied, in the transaction that writes it
    head: Head  # the chain head it starts from
    results: dict[int, Any]  # by item: its entries, its refusal, or a `_Later`
    live: list[int]  # the items applied (not answered by a look-up, not a duplicate within the batch)
    refused: list[int]  # the live items a gate or the state refused
    state: LedgerState
    originals: store.Originals
    written: list[Entry]
    fingerprints: list[bytes | None]  # of each written entry's request
    started: float


class _GateRefused(Exception):
    """A gate refused a request of a batch that was applied before its gates ran: the serial path applies it
    again, gates first."""


def _now_us() -> int:
    return time.time_ns() // 1000


class LedgerWriter:
    def __init__(
        self,
        dsn: str,
        *,
        max_batch: int = MAX_BATCH,
        clock: Callable[[], int] = _now_us,
        after_commit: Sequence[AfterCommit] = (),
        before_commit: Sequence[BeforeCommit] = (),
        on_start: Sequence[OnStart] = (),
        gates: Sequence[Gate] = (),
        reconnect_seconds: float = RECONNECT_SECONDS,
        blinding_key: bytes | None = None,
        pipeline: bool = False,
    ) -> None:
        self._dsn = dsn
        # Apply the next batch while one is written (`_pipeline`; ENVX_WRITER_PIPELINE); off: one batch at a time.
        self._pipelining = pipeline
        self._reconnect_seconds = reconnect_seconds
        # Salts of blinded events (ledger/blinding.py): from `blinding_key`, else the database's (made at start).
        self._salts = blinding.KeyedSalts(blinding_key) if blinding_key is not None else None
        self._max_batch = max_batch
        self._clock = clock
        self._after_commit = list(after_commit)
        self._before_commit = list(before_commit)
        self._on_start = list(on_start)
        self._gates = list(gates)
        # The queue: callers append, the writer takes everything queued at once. A plain deque and one future
        # the idle writer waits on (asyncio.Queue's per-item bookkeeping cost more than the rest of a submit).
        self._queue: deque[_Item] = deque()
        self._wakeup: asyncio.Future[None] | None = None
        self._conn: asyncpg.Connection | None = None
        # Reads of the batch applied while the one before it is written (the pipeline); None: no pipelining.
        self._reader: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._busy = False  # a batch is being written (a graceful stop lets it commit: `drain`)
        # Why the writer takes no writes any more (a broken invariant), or None.
        self.stopped: str | None = None
        self.blocks = store.BlockCache()
        self.batches = 0
        self.entries_written = 0
        # Batches applied in the pipeline (on the result of the batch in flight), and how many of them were
        # thrown away unwritten because that batch did not commit as applied (its requests applied again).
        self.pipelined = 0
        self.pipeline_discarded = 0
        # Called after each committed batch with (requests, entries written, seconds in the transaction).
        self._batch_observers: list[Callable[[int, int, float], None]] = []

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        # The writer keeps thousands of callers' futures alive; full GC passes over them stalled
        # batches by ~100 ms. Objects alive at start go to the permanent generation, and gen-0
        # collections run less often (cyclic garbage is rare on this path).
        gc.freeze()
        gc.set_threshold(50_000, 20, 50)
        self.blocks.clear()
        self.stopped = None
        self._conn = await asyncpg.connect(self._dsn)
        if not await self._conn.fetchval("SELECT pg_try_advisory_lock($1)", WRITER_LOCK_KEY):
            await self._conn.close()
            self._conn = None
            raise SecondWriter("another envx writer holds the ledger lock on this database")
        try:
            if self._salts is None:
                self._salts = blinding.KeyedSalts(await openings.blinding_key(self._conn))
            for hook in self._on_start:
                await hook(self._conn)
        except BaseException:
            await self._conn.close()
            self._conn = None
            raise
        await self._open_reader()
        self._task = asyncio.create_task(self._run(), name="envx-ledger-writer")

    async def _open_reader(self) -> None:
        if self._reader is not None:
            self._reader.terminate()
            self._reader = None
        if not self._pipelining:
            return
        try:
            self._reader = await asyncpg.connect(self._dsn)
        except Exception as exc:  # without it the writer works, one batch at a time
            log.warning("ledger writer's reader connection failed (%s): no pipelining", exc)

    async def drain(self, timeout: float) -> bool:
        """Wait, at most `timeout` seconds, until nothing is queued and no batch is being written: a graceful stop
        lets what its callers already handed over commit instead of cancelling it. False if time ran out."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while (self._busy or self._queue) and self._task is not None and not self._task.done():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    async def stop(self) -> None:
        self._stopping = True
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        while self._queue:
            item = self._queue.popleft()
            if not item.future.done():
                item.future.set_exception(WriterUnavailable("ledger writer stopped"))
        if self._conn:
            await self._conn.close()
            self._conn = None
        if self._reader is not None:
            await self._reader.close()
            self._reader = None

    def add_after_commit(self, hook: AfterCommit) -> None:
        self._after_commit.append(hook)

    def add_before_commit(self, hook: BeforeCommit) -> None:
        self._before_commit.append(hook)

    def add_on_start(self, hook: OnStart) -> None:
        self._on_start.append(hook)

    def add_batch_observer(self, observer: Callable[[int, int, float], None]) -> None:
        """Told of every committed batch: its requests, the entries it wrote, its transaction's seconds (metrics)."""
        self._batch_observers.append(observer)

    @property
    def queue_depth(self) -> int:
        """Requests waiting for a batch."""
        return len(self._queue)

    def add_gate(self, gate: Gate) -> None:
        self._gates.append(gate)

    @property
    def connection(self) -> asyncpg.Connection | None:
        """The writer's own connection, for hooks only (it holds the writer lock)."""
        return self._conn

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    # ----------------------------------------------------------------- submit

    async def submit(self, request: c.Request) -> Entry:
        return (await self.enqueue([request]))[0]

    async def submit_linked(self, requests: list[c.Request]) -> list[Entry]:
        """Append `requests` all together or not at all; raises `Rejection` with the first refusal."""
        return await self.enqueue(requests)

    def enqueue(self, requests: list[c.Request]) -> asyncio.Future[list[Entry]]:
        """Queue a linked group now and return its future: the writer applies its queue in order, so
        callers can pipeline dependent groups (settle, then release) without waiting in between."""
        if self.stopped is not None:
            raise WriterStopped(self.stopped)
        if not self.running:
            raise WriterUnavailable("ledger writer is not running")
        fut: asyncio.Future[list[Entry]] = asyncio.get_running_loop().create_future()
        requests = list(requests)
        if len(requests) == 1:
            r = requests[0]
            if r.client_id:
                item = _Item(requests, fut, [fingerprint(r)], [(r.actor, r.client_id)])
            else:
                item = _Item(requests, fut, [None], [])
        else:
            item = _Item(requests, fut, [fingerprint(r) if r.client_id else None for r in requests],
                         [(r.actor, r.client_id) for r in requests if r.client_id])
        self._queue.append(item)
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.done():
            wakeup.set_result(None)
        return fut

    async def _next(self) -> list[_Item]:
        """Wait for the first queued request, then take whatever else is queued (at most `max_batch` groups)."""
        queue = self._queue
        while not queue:
            self._wakeup = wakeup = asyncio.get_running_loop().create_future()
            try:
                await wakeup
            finally:
                self._wakeup = None
        if len(queue) <= self._max_batch:
            items = list(queue)
            queue.clear()
            return items
        return [queue.popleft() for _ in range(self._max_batch)]

    # ----------------------------------------------------------------- loop

    async def _run(self) -> None:
        while not self._stopping:
            items = await self._next()
            self._busy = True
            try:
                await self._pipeline(items)
            finally:
                self._busy = False
        # Stopped for good (no database, refused, a broken invariant): nobody may wait forever on a queued
        # request.
        while self._queue:
            self._fail([self._queue.popleft()], WriterStopped(self.stopped) if self.stopped is not None
                       else WriterUnavailable("ledger writer stopped"))

    async def _pipeline(self, items: list[_Item]) -> None:
        """Write batches with at most one in flight: while batch N is written and committed on the writer's
        connection, batch N+1 is applied in memory on top of N's result (its rows read on the reader
        connection). N+1 is written only once N has committed and its callers are answered, and only if N
        committed exactly as applied; otherwise (N failed, was redone, or N+1's reads failed) N+1's
        requests go back to the head of the queue, untouched, and are applied again on what the database
        holds. Nobody is answered before their entry is durable."""
        if not self._reader_ok():  # no pipelining (off, or no reader connection)
            await self._serial(items)
            return
        if len(items) >= 2 * PIPELINE_SPLIT:
            # An idle writer handed many requests at once writes the first half while it applies the rest.
            half = (len(items) + 1) // 2
            self._queue.extendleft(reversed(items[half:]))
            items = items[:half]
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[_Applied] = loop.create_future()
        task: asyncio.Task[_Applied | None] = asyncio.create_task(self._serial(items, ready))
        held: list[_Item] = []  # taken from the queue, applied, not yet handed to a write
        try:
            while True:
                await asyncio.wait((ready, task), return_when=asyncio.FIRST_COMPLETED)
                if not ready.done() or self._stopping or not self._reader_ok():
                    break
                base = ready.result()
                held = await self._take_while(task, len(base.items))
                if not held:
                    break
                applied: _Applied | None = None
                try:
                    assert self._reader is not None
                    applied = await self._apply(self._reader, held, lookup=False, head=base.state.head,
                                                gate=False, base=base.state)
                except Exception:  # whatever it was, the serial path meets it again and decides
                    applied = None
                else:
                    self.pipelined += 1
                committed = await task
                if committed is not base or applied is None or self._stopping:
                    if applied is not None:
                        self.pipeline_discarded += 1
                    break
                items, held = held, []
                ready = loop.create_future()
                ready.set_result(applied)
                task = asyncio.create_task(self._follow(applied))
            await task
        except BaseException:
            # Cancelled (stop): the write in flight goes with it; nobody is left waiting on its answer.
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            self._fail(items, WriterUnavailable("ledger writer stopped"))
            raise
        finally:
            if held:
                self._queue.extendleft(reversed(held))

    async def _take_while(self, task: asyncio.Task[Any], in_flight: int) -> list[_Item]:
        """What is queued (at most `max_batch` groups), waiting for it while `task` (a write of `in_flight` groups)
        runs; [] if it ends first. Half of it if it is more than twice the write in flight: a crowd that arrived
        at once is written in two halves, so that one is applied while the other is written."""
        queue = self._queue
        if not queue:
            self._wakeup = wakeup = asyncio.get_running_loop().create_future()
            try:
                await asyncio.wait((wakeup, task), return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._wakeup = None
            if not queue:
                return []
        n = len(queue)
        if n >= 2 * max(PIPELINE_SPLIT, in_flight):
            n = (n + 1) // 2
        n = min(n, self._max_batch)
        if n == len(queue):
            items = list(queue)
            queue.clear()
            return items
        return [queue.popleft() for _ in range(n)]

    def _reader_ok(self) -> bool:
        return self._reader is not None and not self._reader.is_closed()

    async def _serial(self, items: list[_Item], ready: asyncio.Future[_Applied] | None = None) -> _Applied | None:
        """Write one batch on the writer's connection, reads and all, and deal with its failure; returns what it
        committed as first applied (the one given to `ready`), else None. Never raises but for cancellation."""
        try:
            return await self._process(items, ready)
        except Exception as exc:
            if broken_invariant(exc):
                self._stop_writes(items, exc)
                return None
            if self._lost(exc):
                await self._lost_database(items, exc)
                return None
            # Neither a bug of the ledger nor an outage (one request's own error, say metadata that
            # does not encode): it must not stop the ledger; isolate the culprit.
            log.exception("batch of %d failed; retrying one by one", len(items))
            if len(items) == 1:
                self._fail(items, exc)
                return None
            for n, item in enumerate(items):
                try:
                    await self._process([item])
                except Exception as exc2:
                    if broken_invariant(exc2):
                        self._stop_writes(items[n:], exc2)
                        break
                    if self._lost(exc2):
                        await self._lost_database(items[n:], exc2)
                        break
                    log.exception("request failed alone")
                    self._fail([item], exc2)
            return None

    async def _follow(self, applied: _Applied) -> _Applied | None:
        """Write a batch applied in the pipeline (its gates run now, in its transaction). Any failure but a
        broken invariant or an outage sends its requests down the serial path, applied again from the database."""
        conn = self._conn
        try:
            assert conn is not None
            async with conn.transaction():
                changed = await self._write(conn, applied)
        except Exception as exc:
            self.blocks.clear()
            self.pipeline_discarded += 1
            if broken_invariant(exc):
                self._stop_writes(applied.items, exc)
            elif self._lost(exc):
                await self._lost_database(applied.items, exc)
            else:  # a gate's refusal, a reused client id, one request's own error: decided by the serial path
                await self._serial(applied.items)
            return None
        try:
            await self._answer(applied, changed)
        except Exception:  # committed: nothing to retry (a failing batch observer); its callers are told below
            log.exception("answering a committed batch failed")
            self._fail(applied.items, WriterUnavailable("the batch's answer was lost; retry with its client id"))
        return applied

    def _stop_writes(self, items: list[_Item], exc: BaseException) -> None:
        """A broken invariant: no more writes, no retries; say why (`stopped`, the log) and fail the waiting."""
        self.stopped = f"{type(exc).__name__}: {exc}"
        self._stopping = True
        log.critical("ledger writer stops taking writes: %s. This is a bug, not an outage: nothing of the batch "
                     "was committed and the writer is not retried; fix the cause and restart", self.stopped)
        self._fail(items, WriterStopped(self.stopped))

    def _lost(self, exc: BaseException) -> bool:
        return isinstance(exc, CONNECTION_LOST) or self._conn is None or self._conn.is_closed()

    async def _lost_database(self, items: list[_Item], exc: BaseException) -> None:
        # The batch may or may not have committed: callers get 503 and retry with their client ids,
        # which replay whatever did commit.
        log.error("ledger writer lost its database: %s", exc)
        self._fail(items, WriterUnavailable(f"ledger database unavailable: {exc}"))
        await self._reconnect()

    def _fail(self, items: list[_Item], exc: BaseException) -> None:
        for item in items:
            if not item.future.done():
                item.future.set_exception(exc)

    async def _reconnect(self) -> None:
        self.blocks.clear()  # possibly another server after a failover
        if self._conn is not None:
            self._conn.terminate()  # the socket is dead or suspect; do not wait for a goodbye
            self._conn = None
        deadline = time.monotonic() + self._reconnect_seconds
        delay = 0.05
        while not self._stopping and time.monotonic() < deadline:
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            try:
                # With a multi-host URL (target_session_attrs=read-write) this finds the promoted standby.
                conn = await asyncpg.connect(self._dsn)
            except Exception as exc:  # refused, still starting, in recovery, not writable: retry
                log.warning("reconnect failed: %s", exc)
                continue
            try:
                if not await conn.fetchval("SELECT pg_try_advisory_lock($1)", WRITER_LOCK_KEY):
                    log.critical("writer lock taken by another process after reconnect; stopping")
                    await conn.close()
                    break
                # Possibly another server now (failover): reload the tree from it and refuse it if it
                # is behind the last published checkpoint, exactly as at start.
                for hook in self._on_start:
                    await hook(conn)
            except Exception as exc:
                if isinstance(exc, CONNECTION_LOST):
                    log.warning("reconnect failed: %s", exc)
                    conn.terminate()
                    continue
                log.critical("the database found after reconnecting is refused: %s; writer stops", exc)
                conn.terminate()
                break
            log.warning("ledger writer reconnected")
            self._conn = conn
            await self._open_reader()
            return
        self._stopping = True

    async def _process(self, items: list[_Item], ready: asyncio.Future[_Applied] | None = None) -> _Applied | None:
        """Optimistic about idempotency: most client ids are new, so the batch is written without a
        look-up and the unique index decides; if it fires, the batch is redone with the look-up.
        `ready` is given the batch as applied (before it is written) for the pipeline; returns it if it
        committed, None if it was redone."""
        try:
            try:
                return await self._process_once(items, lookup=False, ready=ready)
            except asyncpg.UniqueViolationError as exc:
                if exc.constraint_name != "ledger_entries_client_id":
                    raise
                await self._process_once(items, lookup=True)
                return None
        except BaseException:
            self.blocks.clear()  # whatever happened, trust only the database from here on
            raise

    async def _process_once(self, items: list[_Item], lookup: bool,
                            ready: asyncio.Future[_Applied] | None = None) -> _Applied:
        conn = self._conn
        assert conn is not None
        async with conn.transaction():
            head = await store.read_head(conn)
            applied = await self._apply(conn, items, lookup=lookup, head=head, gate=True)
            if ready is not None and not ready.done():
                ready.set_result(applied)
            changed = await self._write(conn, applied)
        await self._answer(applied, changed)
        return applied

    async def _apply(self, conn: asyncpg.Connection, items: list[_Item], *, lookup: bool, head: Head, gate: bool,
                     base: LedgerState | None = None) -> _Applied:
        """Apply a batch in memory on the rows it touches, as they are after `base` (the batch before it, if
        still being written; its rows are then read without locks, on `conn` the reader connection).
        `gate`: run the gates first; otherwise `_write` runs them and any refusal sends the batch back."""
        # Results decided before the transaction: faithful retries and reused ids.
        results: dict[int, Any] = {}
        started = time.perf_counter()
        existing: dict[tuple[str, str], tuple[bytes | None, Entry]] = {}
        if lookup:
            keys = [(r.actor, r.client_id) for it in items for r in it.requests if r.client_id]
            existing = await store.find_idempotent(conn, keys)
        live: list[int] = []
        seen_in_batch: dict[tuple[str, str], int] = {}
        for i, it in enumerate(items):
            if existing:
                outcome = self._replay(it, existing)
                if outcome is not None:
                    results[i] = outcome
                    continue
            dup = None
            if it.client_ids:
                for k in it.client_ids:
                    if k in seen_in_batch:
                        dup = seen_in_batch[k]
                        break
                if dup is not None:
                    results[i] = _Later(dup, it)
                    continue
                for k in it.client_ids:
                    seen_in_batch[k] = i
            live.append(i)

        gated = await self._gate(conn, items, live) if gate else {}
        touched = store.Touched()
        add = touched.add
        for i in live:
            for r in items[i].requests:
                add(r.command)
        state, originals = await store.load_view(conn, head, touched, self.blocks, base, lock=base is None)
        state.salts = self._salts
        written: list[Entry] = []
        fingerprints: list[bytes | None] = []  # of each written entry's request
        refused: list[int] = []  # items a gate or the state refused
        clock = self._clock
        apply_linked = state.apply_linked
        for n, i in enumerate(live):
            it = items[i]
            if gated and i in gated:
                results[i] = gated[i]
                refused.append(i)
                continue
            try:
                entries = apply_linked(it.requests, clock())
            except Rejection as rej:
                results[i] = rej
                refused.append(i)
                continue
            # An InvariantViolation is not caught: it aborts the transaction and stops the writer.
            results[i] = entries
            written += entries
            fingerprints += it.fingerprints
            if base is not None and n % PIPELINE_YIELD == PIPELINE_YIELD - 1:
                await asyncio.sleep(0)  # let the batch in flight send its next statement
        return _Applied(items, lookup, gate, head, results, live, refused, state, originals, written, fingerprints,
                        started)

    async def _write(self, conn: asyncpg.Connection, applied: _Applied) -> store.Originals:
        """Inside the batch's transaction: what its gates and look-ups decide, then the rows, then the hooks."""
        items, results, state = applied.items, applied.results, applied.state
        if not applied.gated and self._gates and applied.live and await self._gate(conn, items, applied.live):
            raise _GateRefused("a gate refused a request of a pipelined batch")
        if not applied.lookup:
            # A retry of something already applied may now be refused by the state (a hold voided
            # twice) instead of reaching the unique index: a refused request with a client id is
            # looked up before its refusal is believed.
            refused = [i for i in applied.refused if items[i].client_ids]
            if refused:
                keys2 = [k for i in refused for k in items[i].client_ids]
                found = await store.find_idempotent(conn, keys2)
                for i in refused:
                    replay = self._replay(items[i], found)
                    if replay is not None:
                        results[i] = replay
        written = applied.written
        changed_blocks = await store.flush(conn, state, applied.originals, written, applied.fingerprints,
                                           applied.head)
        await openings.write(conn, written)  # a blinded event's openings, privately
        if written:
            for before in self._before_commit:
                await before(conn, written, applied.head)
        return changed_blocks

    async def _answer(self, applied: _Applied, changed_blocks: store.Originals) -> None:
        """After the commit: the block cache learns, the callers are answered, then the side effects."""
        self.blocks.commit(applied.originals, changed_blocks)  # committed: now the cache may learn from it
        items, results, written = applied.items, applied.results, applied.written
        self.batches += 1
        self.entries_written += len(written)
        for observe in self._batch_observers:
            observe(sum(len(it.requests) for it in items), len(written), time.perf_counter() - applied.started)
        for i, it in enumerate(items):
            res = results[i]
            if type(res) is _Later:
                res = res.resolve(items, results)
            fut = it.future
            if fut.done():
                continue
            if isinstance(res, BaseException):
                fut.set_exception(res)
            else:
                fut.set_result(res)
        if written:
            for hook in self._after_commit:
                try:
                    await hook(written)
                except Exception:
                    log.exception("after-commit hook failed")

    async def _gate(self, conn: asyncpg.Connection, items: list[_Item], live: list[int]) -> dict[int, Rejection]:
        """The gates' refusals, by item: an item is refused whole for the first refusal of any request."""
        refused: dict[int, Rejection] = {}
        if not self._gates or not live:
            return refused
        flat = [(i, r) for i in live for r in items[i].requests]
        for gate in self._gates:
            for (i, _), verdict in zip(flat, await gate(conn, [r for _, r in flat]), strict=True):
                if verdict is not None and i not in refused:
                    refused[i] = verdict
        return refused

    @staticmethod
    def _replay(it: _Item, existing: dict[tuple[str, str], tuple[bytes | None, Entry]]
                ) -> list[Entry] | Rejection | None:
        found = [existing.get(k) for k in it.client_ids]
        if not found or all(f is None for f in found):
            return None
        fps = [fp for r, fp in zip(it.requests, it.fingerprints, strict=True) if r.client_id]
        hits = [f for f in found if f is not None]
        if len(hits) != len(found) or any(bytes(f[0] or b"") != fp for f, fp in zip(hits, fps, strict=True)):
            return Rejection("idempotency_conflict", "this client id was already used for a different request")
        return [f[1] for f in hits]


@dataclass(slots=True)
class _Later:
    """A duplicate client id within one batch: a faithful copy gets what the first got."""

    first: int
    item: _Item

    def resolve(self, items: list[_Item], results: dict[int, Any]) -> list[Entry] | BaseException:
        if items[self.first].fingerprints != self.item.fingerprints:
            return Rejection("idempotency_conflict", "this client id was already used for a different request")
        first: list[Entry] | BaseException = results[self.first]
        return first
