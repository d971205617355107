"""The search certificate's PDF, rendered for anonymous visitors without letting them slow the registry.

One render costs about 2 s of CPU (subsetting the CJK font). Unbounded, a few anonymous clients would
slow every write (red team round 4, F7); bounded by one global queue, six looping clients kept every
visitor out and still slowed transfers 0.006 s -> 0.45 s (round 5, F5). So:

- renders run one at a time, in a separate, lower-priority process (the font work then competes neither
  for the server's GIL nor, at equal terms, for its cores);
- a rendered PDF is kept for the same search over the same ledger head: asking again costs nothing;
- each client address has one render in flight at most and a small budget (`PER_ADDRESS_BURST` renders,
  then one per `PER_ADDRESS_SECONDS`): beyond it 429 `rate_limited` with Retry-After;
- the few waiting places go to the addresses that rendered least lately: a newcomer takes the place of
  the waiter whose address rendered most, the newest of those on a tie (that one is told 503
  `render_busy`); a newcomer is refused only when every waiter's address rendered less than its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import hashlib
import itertools
import json
import math
import multiprocessing
import os
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from api.security.ratelimit import TokenBuckets
from exchange.core.errors import DomainError, Refusal

KEPT = 64  # PDFs kept, most recently asked first
WAITING = 4  # renders that may wait for the one running
PER_ADDRESS_BURST = 3
PER_ADDRESS_SECONDS = 60.0
RECENT_SECONDS = 600.0  # how far back "rendered least lately" looks
RENDER_NICE = 10

Draw = Callable[[list[dict[str, Any]]], bytes]
Runner = Callable[[Draw, list[dict[str, Any]]], Awaitable[bytes]]


def _lower_priority() -> None:
    os.nice(RENDER_NICE)


class _ProcessRunner:
    """One spawned worker process (not forked: the server holds sockets, threads and an event loop)."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None

    async def __call__(self, draw: Draw, answers: list[dict[str, Any]]) -> bytes:
        if self._pool is None:
            self._pool = concurrent.futures.ProcessPoolExecutor(
                max_workers=1, mp_context=multiprocessing.get_context("spawn"), initializer=_lower_priority)
        return await asyncio.wrap_future(self._pool.submit(draw, answers))


async def in_thread(draw: Draw, answers: list[dict[str, Any]]) -> bytes:
    return await asyncio.to_thread(draw, answers)


@dataclass(slots=True)
class _Waiter:
    address: str
    key: bytes
    answers: list[dict[str, Any]]
    draw: Draw
    recent: int
    order: int
    done: asyncio.Future[bytes] = field(default_factory=lambda: asyncio.get_running_loop().create_future())


def _busy() -> DomainError:
    return DomainError(Refusal.RENDER_BUSY, "the certificate PDF renderer is busy; retry in a few seconds "
                       "(the signed JSON certificate is available at once)", retry_after=5)


class InquiryPdfs:
    def __init__(self, kept: int = KEPT, waiting: int = WAITING, *, runner: Runner | None = None,
                 burst: int = PER_ADDRESS_BURST, per_seconds: float = PER_ADDRESS_SECONDS) -> None:
        self._kept: OrderedDict[bytes, bytes] = OrderedDict()
        self._size, self._most_waiting = kept, waiting
        self._run: Runner = runner or _ProcessRunner()
        self._budget = TokenBuckets(1.0 / per_seconds, burst)
        self._queue: list[_Waiter] = []
        self._in_flight: set[str] = set()
        self._rendered: dict[str, deque[float]] = {}
        self._worker: asyncio.Task[None] | None = None
        self._orders = itertools.count()

    @staticmethod
    def key(answers: list[dict[str, Any]]) -> bytes:
        """The searches and what they found, at which ledger head -- not when the certificate was signed."""
        certs = [{k: v for k, v in a["certificate"].items() if k != "issued_at"} for a in answers]
        return hashlib.sha256(json.dumps(certs, sort_keys=True, ensure_ascii=False).encode()).digest()

    def _recent(self, address: str, now: float) -> int:
        times = self._rendered.get(address)
        while times and now - times[0] > RECENT_SECONDS:
            times.popleft()
        if times is not None and not times:
            del self._rendered[address]
            return 0
        return len(times) if times else 0

    async def render(self, answers: list[dict[str, Any]], draw: Draw, address: str = "") -> bytes:
        key = self.key(answers)
        if (kept := self._kept.get(key)) is not None:
            self._kept.move_to_end(key)
            return kept
        if address in self._in_flight:
            raise DomainError(Refusal.RATE_LIMITED, "one certificate PDF at a time per address; retry when the "
                              "first is done", retry_after=5)
        now = time.monotonic()
        waiter = _Waiter(address, key, answers, draw, self._recent(address, now), next(self._orders))
        if len(self._queue) >= self._most_waiting:
            worst = max(self._queue, key=lambda w: (w.recent, w.order))
            # Equal shares: the newcomer takes the newest waiter's place, so a queue of addresses that never
            # rendered cannot keep every later visitor out (round 6, F3); the evicted one is told to retry.
            if worst.recent < waiter.recent:
                raise _busy()
        else:
            worst = None
        if (wait := self._budget.take(address, now)) > 0:
            raise DomainError(Refusal.RATE_LIMITED, "too many certificate PDFs from this address; the signed "
                              "JSON certificate is available at once", retry_after=max(1, math.ceil(wait)))
        if worst is not None:
            self._queue.remove(worst)
            worst.done.set_exception(_busy())
        self._queue.append(waiter)
        self._in_flight.add(address)
        self._rendered.setdefault(address, deque()).append(now)
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._drain())
        try:
            return await waiter.done
        finally:
            self._in_flight.discard(address)

    async def _drain(self) -> None:
        while self._queue:
            waiter = min(self._queue, key=lambda w: (w.recent, w.order))
            self._queue.remove(waiter)
            if waiter.done.done():  # its caller went away
                continue
            try:
                kept = self._kept.get(waiter.key)
                if kept is None:  # rendered while this one waited?
                    kept = await self._run(waiter.draw, waiter.answers)
                    self._kept[waiter.key] = kept
                    if len(self._kept) > self._size:
                        self._kept.popitem(last=False)
            except BaseException as exc:  # the caller gets the failure; the queue goes on
                if not waiter.done.done():
                    waiter.done.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
                if not isinstance(exc, Exception):
                    raise
                continue
            if not waiter.done.done():
                waiter.done.set_result(kept)
