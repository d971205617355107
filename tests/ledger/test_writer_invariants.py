"""The invariant policy in the ledger writer (exchange/core/refusals.py): a broken invariant is a bug. The
writer stops taking writes, says why, commits nothing of the batch, and never answers it as a refusal.

The bug is real, not a mock: a corrupted projection row (a balance that no longer matches its serial
blocks, as a faulty migration or a hand edit would leave it) makes the state machine meet its own
invariant (`InvariantViolation`) on the next request that touches it."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
import pytest

from exchange.core.database import asyncpg_dsn
from ledger import commands as c
from ledger.state import Rejection
from ledger.writer import LedgerWriter, WriterStopped, WriterUnavailable, broken_invariant
from tests.ledger.test_writer_pg import _world


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def _head(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT max(seq) FROM ledger_entries"))
    finally:
        await conn.close()


async def _corrupt_posted(dsn: str, account: int, by: int) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("UPDATE ledger_balances SET posted = posted + $2 WHERE account = $1 AND instrument = 'FCT'",
                           account, by)
    finally:
        await conn.close()


def test_an_invariant_violation_stops_the_writer_and_commits_nothing_of_its_batch(db_url: str) -> None:
    async def run() -> None:
        dsn = asyncpg_dsn(db_url)
        w = LedgerWriter(dsn)
        await w.start()
        ids = await _world(w)  # account a holds serials 1-100 of FCT
        await _corrupt_posted(dsn, ids["a"], 10)  # posted 110, blocks still 100
        head = await _head(dsn)
        logs = _Records()
        logging.getLogger("envx.ledger.writer").addHandler(logs)
        t = lambda q, cid: c.Request("t", c.Transfer(ids["a"], ids["b"], "FCT", q), cid)  # noqa: E731
        # One batch: an innocent transfer, the one that meets the bug, and another after it.
        futures = [w.enqueue([t(1, "innocent")]), w.enqueue([t(105, "meets-the-bug")]), w.enqueue([t(2, "after")])]
        outcomes = await asyncio.gather(*futures, return_exceptions=True)
        logging.getLogger("envx.ledger.writer").removeHandler(logs)
        for out in outcomes:  # never a refusal: the batch is not answered as if the state said no
            assert isinstance(out, WriterStopped) and not isinstance(out, Rejection), outcomes
            assert "InvariantViolation" in str(out) and "disagree with its balance" in str(out)
        assert await _head(dsn) == head  # nothing of the batch committed
        assert w.stopped is not None and "disagree with its balance" in w.stopped
        for _ in range(100):
            if not w.running:
                break
            await asyncio.sleep(0.01)
        assert not w.running
        with pytest.raises(WriterStopped):  # later callers learn why at once
            w.enqueue([t(1, "later")])
        said = [(r.levelname, r.getMessage()) for r in logs.records]
        assert len([m for lv, m in said if lv == "CRITICAL" and "stops taking writes" in m]) == 1, said
        await w.stop()
        # A restart takes writes again; what does not touch the corrupted row goes through.
        w2 = LedgerWriter(dsn)
        await w2.start()
        assert w2.stopped is None
        assert (await w2.submit(c.Request("t", c.OpenAccount("c", "holding"), "after-restart"))).seq == head + 1
        await w2.stop()

    asyncio.run(run())


def test_which_failures_are_bugs(db_url: str) -> None:
    """The classification the writer stops on, against real PostgreSQL errors: the backstops are bugs
    (the state machine should have refused first), a lost connection is an outage, a reused client id
    is the idempotency path."""
    async def run() -> None:
        dsn = asyncpg_dsn(db_url)
        w = LedgerWriter(dsn)
        await w.start()
        ids = await _world(w)
        hold = await w.submit(c.Request("t", c.CreateHold("order", ids["a"], ids["b"], "FCT", 5)))
        await w.submit(c.Request("t", c.VoidHold(hold.seq)))
        await w.stop()
        conn = await asyncpg.connect(dsn)
        seen: list[BaseException] = []
        try:
            for sql in (f"UPDATE ledger_balances SET posted = -1 WHERE account = {ids['a']}",  # CHECK
                        "DELETE FROM ledger_entries WHERE seq = 1",  # append-only trigger
                        f"INSERT INTO ledger_hold_resolutions VALUES ({hold.seq}, 999, 'posted', 5)",
                        "INSERT INTO ledger_entries (seq, ts, type, actor, client_id, leaf, hash, meta) SELECT 999, "
                        "ts, type, actor, 'dup', leaf, hash, meta FROM ledger_entries WHERE seq = 1 UNION ALL "
                        "SELECT 1000, ts, type, actor, 'dup', leaf, hash, meta FROM ledger_entries WHERE seq = 1"):
                try:
                    await conn.execute(sql)
                except asyncpg.PostgresError as exc:
                    seen.append(exc)
        finally:
            await conn.close()
        assert [broken_invariant(e) for e in seen] == [True, True, True, False], seen
        assert not broken_invariant(WriterUnavailable("away")) and not broken_invariant(ConnectionResetError())
        assert not broken_invariant(Rejection("insufficient_available", "short"))

    asyncio.run(run())
