"""Stored answers in groups (exchange/core/idempotency.py `AnswerLog`, `Grouped`): the keyed requests of a
moment share one look-up statement and one commit, yet each gets exactly its own answer, never another
actor's, and its answer is committed before `keep` returns (so before it leaves: api/security/replays.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import text

from exchange.core.idempotency import AnswerLog, Grouped
from exchange.core.store import Answer
from tests.security.helpers import sql

N = 20


def _run(client: TestClient, coro: Any) -> Any:
    return client.blocking_portal.call(lambda: coro)


def test_concurrent_keeps_are_committed_when_they_return_and_found_by_their_own_actor(client: TestClient) -> None:
    rt = client.app.state.rt
    log = AnswerLog(rt.engine)
    digest = bytes(32)

    async def keep_and_read(i: int) -> tuple[bool, int]:
        kept = await log.keep(f"key:{i % 2}", f"same-{i // 2}", digest,
                              Answer(201, "application/json", b'{"id":%d}' % i))
        async with rt.read() as conn:  # another connection sees the row as soon as keep returned
            n = (await conn.execute(text("SELECT count(*) FROM answers_by_request WHERE actor = :a AND "
                                         "client_id = :c"), {"a": f"key:{i % 2}", "c": f"same-{i // 2}"})).scalar()
        return kept, int(n or 0)

    async def storm() -> list[tuple[bool, int]]:
        return list(await asyncio.gather(*(keep_and_read(i) for i in range(N))))

    assert _run(client, storm()) == [(True, 1)] * N
    # Two actors used every client id (and digest): each finds its own answer, byte for byte.
    requests = [(f"key:{i % 2}", f"same-{i // 2}", digest) for i in range(N)]

    async def finds() -> list[Answer | None]:
        return list(await asyncio.gather(*(log.find(r) for r in requests)))

    found = _run(client, finds())
    assert [a.body if a else None for a in found] == [b'{"id":%d}' % i for i in range(N)]
    assert _run(client, log.find(("key:0", "never-used", digest))) is None
    assert _run(client, log.find(("key:9", "same-0", digest))) is None  # another actor's key: nothing
    # An answer that shows a secret is never kept.
    assert _run(client, log.keep("key:0", "minted", digest, Answer(201, "application/json", b'{"token":"x"}'))) is False
    assert sql(client, "SELECT count(*) FROM answers_by_request WHERE client_id = 'minted'")[0][0] == 0


def test_grouped_calls_share_one_run_each_with_its_own_result() -> None:
    runs: list[list[int]] = []

    async def double(items: list[int]) -> list[int]:
        runs.append(items)
        await asyncio.sleep(0.01)
        return [2 * i for i in items]

    async def main() -> list[int]:
        grouped = Grouped[int, int](double)
        first = asyncio.gather(*(grouped(i) for i in range(10)))
        await asyncio.sleep(0.005)  # while those ten run, five more arrive
        later = asyncio.gather(*(grouped(i) for i in range(10, 15)))
        return [*await first, *await later]

    assert asyncio.run(main()) == [2 * i for i in range(15)]
    # Ten callers of one moment share one run; the five that arrived during it share the next.
    assert runs == [list(range(10)), list(range(10, 15))]


def test_a_failed_run_fails_its_callers_only_and_a_caller_gone_stops_nobody() -> None:
    async def refuse_odd(items: list[int]) -> list[int]:
        await asyncio.sleep(0.01)
        if any(i % 2 for i in items):
            raise ValueError("odd")
        return items

    async def main() -> None:
        grouped = Grouped[int, int](refuse_odd)
        assert await grouped(2) == 2
        first = asyncio.ensure_future(grouped(4))
        await asyncio.sleep(0)
        gone = asyncio.ensure_future(grouped(6))
        odd = asyncio.ensure_future(grouped(7))
        await asyncio.sleep(0)
        gone.cancel()
        assert await first == 4
        with pytest.raises(ValueError, match="odd"):
            await odd
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert await grouped(8) == 8  # the next list runs as before

    asyncio.run(main())
