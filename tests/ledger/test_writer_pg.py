"""The writer and PostgreSQL's backstops, against a real server."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import asyncpg
import pytest

from exchange.core.database import asyncpg_dsn
from ledger import commands as c
from ledger.state import Rejection
from ledger.verify import verify_database
from ledger.writer import LedgerWriter, SecondWriter
from tests.helpers import Api, ticket


async def _world(w: LedgerWriter) -> dict[str, int]:
    r = lambda cmd, cid=None: w.submit(c.Request("t", cmd, cid))  # noqa: E731
    await r(c.DefineInstrument("FCT", "forest_ticket", 0))
    await r(c.DefineInstrument("CNY", "currency", 2))
    ids = {}
    for name, kind in (("iss", "issuance"), ("sink", "retired"), ("settle", "settlement"), ("a", "holding"),
                       ("b", "holding"), ("ca", "cash"), ("cb", "cash")):
        ids[name] = (await r(c.OpenAccount(name, kind))).body["account"]
    await r(c.IssueBatch(ids["iss"], ids["a"], "FCT", 100, "b1"))
    return ids


def test_backstops_in_postgresql(db_url: str) -> None:
    async def run() -> None:
        dsn = asyncpg_dsn(db_url)
        w = LedgerWriter(dsn)
        await w.start()
        ids = await _world(w)
        await w.submit(c.Request("t", c.Transfer(ids["a"], ids["b"], "FCT", 10)))
        await w.submit(c.Request("t", c.Retire(ids["b"], ids["sink"], "FCT", 5, "voluntary", "x")))
        hold = await w.submit(c.Request("t", c.CreateHold("order", ids["a"], ids["b"], "FCT", 5)))
        await w.submit(c.Request("t", c.VoidHold(hold.seq)))
        await w.stop()
        conn = await asyncpg.connect(dsn)
        try:
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute("UPDATE ledger_entries SET actor = 'x' WHERE seq = 1")
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute("DELETE FROM ledger_entries WHERE seq = 1")
            with pytest.raises(asyncpg.PostgresError, match="append-only"):
                await conn.execute("TRUNCATE ledger_entries CASCADE")
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute("UPDATE ledger_balances SET posted = -1 WHERE account = $1", ids["a"])
            with pytest.raises(asyncpg.CheckViolationError):
                await conn.execute("UPDATE ledger_balances SET pending_out = posted + 1 WHERE account = $1",
                                   ids["a"])
            with pytest.raises(asyncpg.PostgresError, match="retired sink"):
                await conn.execute("UPDATE ledger_balances SET posted = posted - 1 WHERE account = $1", ids["sink"])
            with pytest.raises(asyncpg.PostgresError, match="is final"):
                await conn.execute("UPDATE ledger_blocks SET account = $1 WHERE retired_seq IS NOT NULL", ids["a"])
            with pytest.raises(asyncpg.UniqueViolationError):  # a hold is resolved at most once
                await conn.execute("INSERT INTO ledger_hold_resolutions VALUES ($1, 999, 'posted', 5)", hold.seq)
            with pytest.raises(asyncpg.UniqueViolationError):  # idempotency is an index, not only code
                await conn.execute("""INSERT INTO ledger_entries (seq, ts, type, actor, client_id, leaf, hash, meta)
                                      SELECT 999, ts, type, actor, 'dup', leaf, hash, meta FROM ledger_entries
                                      WHERE seq = 1 UNION ALL SELECT 1000, ts, type, actor, 'dup', leaf, hash, meta
                                      FROM ledger_entries WHERE seq = 1""")
        finally:
            await conn.close()
        assert (await verify_database(dsn)).ok

    asyncio.run(run())


def test_second_writer_is_refused(db_url: str) -> None:
    async def run() -> None:
        w1 = LedgerWriter(asyncpg_dsn(db_url))
        await w1.start()
        with pytest.raises(SecondWriter):
            await LedgerWriter(asyncpg_dsn(db_url)).start()
        await w1.stop()
        w3 = LedgerWriter(asyncpg_dsn(db_url))  # once the first is gone, a new one may start
        await w3.start()
        await w3.stop()

    asyncio.run(run())


def test_group_commit_isolates_refusals_and_duplicates(db_url: str) -> None:
    async def run() -> None:
        w = LedgerWriter(asyncpg_dsn(db_url))
        await w.start()
        ids = await _world(w)
        t = lambda q, cid: c.Request("t", c.Transfer(ids["a"], ids["b"], "FCT", q), cid)  # noqa: E731
        # One batch: good, refused, good, a faithful duplicate and a conflicting reuse of a client id.
        results = await asyncio.gather(
            w.submit(t(10, "x1")), w.submit(t(1000, "x2")), w.submit(t(20, "x3")), w.submit(t(10, "x1")),
            w.submit(t(11, "x3")), return_exceptions=True)
        assert results[0].seq == results[3].seq  # type: ignore[union-attr]
        assert isinstance(results[1], Rejection) and results[1].code == "insufficient_available"
        assert isinstance(results[4], Rejection) and results[4].code == "idempotency_conflict"
        assert w.batches < 12  # the five shared batches (the world itself took 10 submits)
        # A later retry of x1 replays; a linked group that fails leaves nothing.
        assert (await w.submit(t(10, "x1"))).seq == results[0].seq  # type: ignore[union-attr]
        with pytest.raises(Rejection):
            await w.submit_linked([t(5, "l1"), c.Request("t", c.Transfer(ids["ca"], ids["cb"], "CNY", 1), "l2")])
        with pytest.raises(Rejection):
            await w.submit(c.Request("t", c.Transfer(ids["a"], ids["b"], "FCT", 71), "after"))
        await w.stop()
        report = await verify_database(asyncpg_dsn(db_url))
        assert report.ok, report.render()

    asyncio.run(run())


def test_race_200_transfers_on_an_account_that_affords_50(api: Api) -> None:
    api.instrument("FCT-SM")
    issuer = api.participant("issuer", "issuer")["api"]
    seller = api.participant("seller", "enterprise")
    buyers = [api.participant(f"buyer{i}", "enterprise") for i in range(4)]
    api.issue(issuer, seller["id"], "FCT-SM", "50", ticket(1))
    s = seller["api"]

    def one(i: int) -> tuple[int, str]:
        r = s.post("/v1/transfers", {"to_participant": buyers[i % 4]["id"], "instrument": "FCT-SM",
                                     "quantity": "1"}, key=f"race-{i}")
        return r.status_code, r.json().get("code", "")

    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(one, range(200)))
    ok = [o for o in outcomes if o[0] == 201]
    refused = [o for o in outcomes if o[0] == 409]
    assert len(ok) == 50, outcomes
    assert len(refused) == 150 and {code for _, code in refused} == {"insufficient_available"}
    assert api.ok(s.get("/v1/holdings"))["balances"][0]["posted"] == "0"
    got = sum(int(api.ok(b["api"].get("/v1/holdings"))["balances"][0]["posted"]) for b in buyers)
    assert got == 50


def test_a_retry_the_state_would_refuse_still_gets_the_original(db_url: str) -> None:
    """Voiding a hold twice under one client id answers with the first void, not hold_already_resolved."""

    async def run() -> None:
        w = LedgerWriter(asyncpg_dsn(db_url))
        await w.start()
        ids = await _world(w)
        hold = await w.submit(c.Request("t", c.CreateHold("order", ids["a"], ids["b"], "FCT", 5), "h"))
        first = await w.submit(c.Request("t", c.VoidHold(hold.seq), "void-once"))
        again = await w.submit(c.Request("t", c.VoidHold(hold.seq), "void-once"))
        assert again.seq == first.seq
        with pytest.raises(Rejection, match="already voided"):
            await w.submit(c.Request("t", c.VoidHold(hold.seq), "another-id"))
        await w.stop()

    asyncio.run(run())


async def _blocks_in_database(dsn: str, key: tuple[int, str]) -> dict[tuple[str, int], object]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT * FROM ledger_blocks WHERE account = $1 AND instrument = $2", *key)
    finally:
        await conn.close()
    return {(r["instrument"], r["start_serial"]): (r["end_serial"], r["batch"], r["hold"], r["frozen_by"])
            for r in rows}


def test_block_cache_matches_the_database_through_trading_and_a_failed_batch(db_url: str) -> None:
    """The writer keeps committed serial blocks between batches; after fragmenting trades, refusals,
    linked groups that fail and a batch rolled back by a failing hook, every cached pair equals what
    PostgreSQL holds, and the ledger verifies."""
    import random

    fail_next = {"on": False}

    async def flaky(conn: object, entries: object, head: object) -> None:
        if fail_next["on"]:
            fail_next["on"] = False
            raise RuntimeError("injected: the batch must roll back")

    async def run() -> None:
        dsn = asyncpg_dsn(db_url)
        w = LedgerWriter(dsn, before_commit=[flaky])
        await w.start()
        ids = await _world(w)
        holders = [ids["a"], ids["b"]]
        rng = random.Random(7)
        for round_ in range(30):
            ops = []
            for _ in range(12):
                src, dst = rng.sample(holders, 2)
                q = rng.randint(1, 9)
                if rng.random() < 0.3:  # a hold, posted in part or voided, linked with a transfer
                    try:
                        hold = await w.submit(c.Request("t", c.CreateHold("order", src, ids["settle"], "FCT", q)))
                    except Rejection:
                        continue
                    if rng.random() < 0.5:
                        ops.append(w.submit_linked([c.Request("t", c.PostHold(hold.seq, 1, keep_remainder=True)),
                                                    c.Request("t", c.Transfer(ids["settle"], dst, "FCT", 1))]))
                    ops.append(w.submit(c.Request("t", c.VoidHold(hold.seq))))
                else:
                    ops.append(w.submit(c.Request("t", c.Transfer(src, dst, "FCT", q))))
                if rng.random() < 0.1:  # refused: more than anyone has
                    ops.append(w.submit(c.Request("t", c.Transfer(src, dst, "FCT", 10_000))))
            if round_ % 7 == 3:
                fail_next["on"] = True  # this round's first batch is rolled back and retried one by one
            await asyncio.gather(*ops, return_exceptions=True)
        assert w.blocks.hits > 0  # the cache was used, not bypassed
        for key in [(a, "FCT") for a in holders]:
            cached = w.blocks.get(key)
            if cached is not None:
                got = {(b.instrument, b.start): (b.end, b.batch, b.hold, b.frozen_by) for b in cached}
                assert got == await _blocks_in_database(dsn, key)
        await w.stop()
        report = await verify_database(dsn)
        assert report.ok, report.render()

    asyncio.run(run())
