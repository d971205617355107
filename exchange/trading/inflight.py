"""One run per client id at a time: a second request with the same (participant, client id) that arrives
while the first is still on its way waits for the first one's answer instead of being sent again.

The HTTP edge replays answered requests byte for byte (api/security/replays.py); this covers what it does
not: two requests in flight at once, including those of callers inside the process (a pledgee's
enforcement sale, a court's restoration purchase). The registry lives on the runtime (`Runtime.inflight`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from exchange.core.errors import DomainError
from exchange.core.runtime import Runtime

T = TypeVar("T")


async def once(rt: Runtime, key: tuple[Any, ...], fingerprint: str, run: Callable[[], Awaitable[T]]) -> T:
    """`run()`, unless the same key is running: then its result (or its failure), if `fingerprint` matches."""
    running = rt.inflight.get(key)
    if running is not None:  # the same request is already on its way: answer both with one result
        return await joined(running, fingerprint)  # type: ignore[no-any-return]  # what the first's `run` returns
    fut = claim(rt, key)
    try:
        result = await run()
    except BaseException as exc:
        release(rt, key, fut, error=exc)
        raise
    release(rt, key, fut, (fingerprint, result))
    return result


async def joined(running: asyncio.Future[tuple[str, Any]], fingerprint: str) -> Any:
    """The result of a run under way (`rt.inflight[key]` when it was looked at; its failure raised), if
    `fingerprint` matches."""
    fp, result = await asyncio.shield(running)
    if fp != fingerprint:
        raise DomainError("idempotency_conflict", "this client id was already used for a different request")
    return result


def claim(rt: Runtime, key: tuple[Any, ...]) -> asyncio.Future[tuple[str, Any]]:
    """Start the run of `key` (nothing of that key may be running: `once` and batches look first); `release` it
    with its (fingerprint, result) or its error once it ends, whatever happens."""
    fut: asyncio.Future[tuple[str, Any]] = asyncio.get_running_loop().create_future()
    rt.inflight[key] = fut
    return fut


def release(rt: Runtime, key: tuple[Any, ...], fut: asyncio.Future[tuple[str, Any]],
            result: tuple[str, Any] | None = None, error: BaseException | None = None) -> None:
    """End the run of `key` claimed as `fut`: those waiting for it get `result`, or `error`."""
    if rt.inflight.get(key) is fut:
        del rt.inflight[key]
    if error is not None:
        fut.set_exception(error)
        fut.exception()  # retrieved: no "never retrieved" warning when nobody else waits
    else:
        assert result is not None
        fut.set_result(result)


@contextlib.asynccontextmanager
async def serially(rt: Runtime, key: tuple[Any, ...]) -> AsyncIterator[None]:
    """One holder of `key` at a time in this process; the lock is forgotten when nobody holds or waits."""
    lock, users = rt.serial_locks.get(key, (asyncio.Lock(), 0))
    rt.serial_locks[key] = (lock, users + 1)
    try:
        async with lock:
            yield
    finally:
        _, users = rt.serial_locks[key]
        if users == 1:
            del rt.serial_locks[key]
        else:
            rt.serial_locks[key] = (lock, users - 1)
