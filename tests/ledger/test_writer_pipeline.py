"""The writer's pipeline (ledger/writer.py `_pipeline`): batch N+1 is applied in memory on N's result while N is
written. When N does not commit, against a real PostgreSQL that refuses it (a deferred constraint trigger firing
at COMMIT, or the writer's backend terminated just before its COMMIT), N+1's effects must vanish with N's: every
caller gets durable success or an error -- never success for a lost entry --, and the store stays what a fresh
replay of the log says (the full audit), with the writer's block cache equal to the database.

The crowd is queued before the writer looks, so the idle writer splits it in two halves: N is the first half, N+1
the second (`PIPELINE_SPLIT`). N+1 spends what N credits, so N+1 kept on a lost N would show as a durable
overdraft or a success for a transfer whose funding is gone."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg

from exchange.core.database import asyncpg_dsn
from ledger import commands as c
from ledger.state import Entry, Head, Rejection
from ledger.verify import verify_database
from ledger.writer import PIPELINE_SPLIT, LedgerWriter, WriterUnavailable
from tests.ledger.test_writer_pg import _blocks_in_database

CROWD = 2 * PIPELINE_SPLIT + 40  # split in two halves of 84


async def _world(w: LedgerWriter) -> dict[str, Any]:
    r = lambda cmd: w.submit(c.Request("t", cmd))  # noqa: E731
    await r(c.DefineInstrument("FCT", "forest_ticket", 0))
    await r(c.DefineInstrument("CNY", "currency", 2))
    ids: dict[str, Any] = {}
    for name, kind in (("iss", "issuance"), ("settle", "settlement"), ("a", "holding"), ("x", "holding"),
                       ("b", "holding"), ("cx", "cash")):
        ids[name] = (await r(c.OpenAccount(name, kind))).body["account"]
    ids["cash"] = [(await r(c.OpenAccount(f"c{i}", "cash"))).body["account"] for i in range(8)]
    await r(c.IssueBatch(ids["iss"], ids["a"], "FCT", 1000, "b1"))
    for acc in ids["cash"]:
        await r(c.Transfer(ids["settle"], acc, "CNY", 10_000))
    return ids


def _crowd(ids: dict[str, Any], tag: str) -> tuple[list[c.Request], int, list[int]]:
    """CROWD requests: cash transfers, with, in the first half, the poisoned one that credits x (10 units) and cx
    (cash), and in the second half transfers spending exactly what the poisoned one credited."""
    cash = ids["cash"]
    reqs = [c.Request("t", c.Transfer(cash[i % 8], cash[(i + 3) % 8], "CNY", 1 + i), f"{tag}-{i}")
            for i in range(CROWD)]
    poison = 5
    reqs[poison] = c.Request("t", c.Transfer(ids["a"], ids["x"], "FCT", 10), f"poison-{tag}")
    reqs[poison + 1] = c.Request("t", c.Transfer(cash[0], ids["cx"], "CNY", 500), f"poison-{tag}-cash")
    spenders = [CROWD - 10, CROWD - 5]
    reqs[spenders[0]] = c.Request("t", c.Transfer(ids["x"], ids["b"], "FCT", 10), f"{tag}-spend-units")
    reqs[spenders[1]] = c.Request("t", c.Transfer(ids["cx"], cash[1], "CNY", 500), f"{tag}-spend-cash")
    return reqs, poison, spenders


async def _durable(dsn: str) -> dict[str, bytes]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch("SELECT client_id, hash FROM ledger_entries WHERE client_id IS NOT NULL")
    finally:
        await conn.close()
    return {r["client_id"]: bytes(r["hash"]) for r in rows}


async def _check_outcomes(dsn: str, reqs: list[c.Request], outcomes: list[Any]) -> dict[str, Any]:
    """Success means durable with the same bytes; an error means not there. Returns outcomes by client id."""
    durable = await _durable(dsn)
    by_id: dict[str, Any] = {}
    for r, out in zip(reqs, outcomes, strict=True):
        assert r.client_id is not None
        by_id[r.client_id] = out
        if isinstance(out, BaseException):
            assert r.client_id not in durable, f"{r.client_id} failed ({out!r}) but its entry is in the ledger"
        else:
            assert durable.get(r.client_id) == out[0].hash, f"{r.client_id} answered, not durable as answered"
    return by_id


async def _check_store(w: LedgerWriter, dsn: str, ids: dict[str, Any]) -> None:
    for key in [(ids[n], "FCT") for n in ("a", "x", "b")]:
        cached = w.blocks.get(key)
        if cached is not None:
            assert {(b.instrument, b.start): (b.end, b.batch, b.hold, b.frozen_by) for b in cached} == \
                await _blocks_in_database(dsn, key)
    report = await verify_database(dsn, jobs=1)  # replay of the log == balances, blocks, holds, chain, tiles
    assert report.ok, report.render()


async def _submit_crowd(w: LedgerWriter, reqs: list[c.Request]) -> list[Any]:
    futures = [w.enqueue([r]) for r in reqs]  # all queued before the writer runs: one crowd
    return list(await asyncio.gather(*futures, return_exceptions=True))


def test_commit_refused_by_the_database_with_a_pipelined_batch_behind_it(db_url: str) -> None:
    async def run() -> None:
        dsn = asyncpg_dsn(db_url)
        w = LedgerWriter(dsn, pipeline=True)
        await w.start()
        ids = await _world(w)
        admin = await asyncpg.connect(dsn)
        # A deferred constraint trigger: the batch holding a poisoned entry is written whole, and refused at
        # its COMMIT.
        await admin.execute("""
            CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'refused at commit: %', NEW.client_id; END $$;
            CREATE CONSTRAINT TRIGGER refuse_poison AFTER INSERT ON ledger_entries
              DEFERRABLE INITIALLY DEFERRED FOR EACH ROW
              WHEN (NEW.client_id LIKE 'poison-%') EXECUTE FUNCTION refuse_poison()""")
        await admin.close()
        reqs, poison, spenders = _crowd(ids, "r1")
        pipelined, discarded = w.pipelined, w.pipeline_discarded
        outcomes = await _submit_crowd(w, reqs)
        assert w.pipelined > pipelined and w.pipeline_discarded > discarded  # N+1 was applied on N, then dropped
        by_id = await _check_outcomes(dsn, reqs, outcomes)
        # The poisoned requests fail alone (the batch is retried one by one); what they credited is not there,
        # so N+1's spenders, applied again on what the database holds, are refused.
        assert isinstance(by_id["poison-r1"], asyncpg.RaiseError)
        assert isinstance(by_id["poison-r1-cash"], asyncpg.RaiseError)
        for i in spenders:
            out = outcomes[i]
            assert isinstance(out, Rejection) and out.code == "insufficient_available", out
        others = [o for i, o in enumerate(outcomes) if i not in (poison, poison + 1, *spenders)]
        assert all(isinstance(o, list) for o in others), [o for o in others if not isinstance(o, list)]
        await _check_store(w, dsn, ids)
        # The writer goes on from what is durable: the same crowd without poison commits whole, pipelined.
        clean, _, _ = _crowd(ids, "r2")
        clean = [r if not (r.client_id or "").startswith("poison") else
                 c.Request(r.actor, r.command, f"r2-clean-{k}") for k, r in enumerate(clean)]
        outcomes = await _submit_crowd(w, clean)
        assert all(isinstance(o, list) for o in outcomes), [o for o in outcomes if not isinstance(o, list)]
        await _check_outcomes(dsn, clean, outcomes)
        await w.stop()
        await _check_store(w, dsn, ids)

    asyncio.run(run())


def test_writer_backend_terminated_before_commit_with_a_pipelined_batch_behind_it(db_url: str) -> None:
    """The connection dies between the batch's rows and its COMMIT (the server kills the backend): N's callers
    get `WriterUnavailable` (they retry with their client ids), nothing of N is there, and N+1 is applied
    again after the writer reconnects, on what the database holds."""
    dsn = asyncpg_dsn(db_url)
    killed: list[int] = []

    async def kill_before_commit(conn: asyncpg.Connection, entries: list[Entry], head: Head) -> None:
        if any((e.client_id or "").startswith("poison-") for e in entries) and not killed:
            pid = conn.get_server_pid()
            killed.append(pid)
            other = await asyncpg.connect(dsn)
            try:
                assert await other.fetchval("SELECT pg_terminate_backend($1)", pid)
            finally:
                await other.close()

    async def run() -> None:
        w = LedgerWriter(dsn, pipeline=True, before_commit=[kill_before_commit], reconnect_seconds=20)
        await w.start()
        ids = await _world(w)
        reqs, _, spenders = _crowd(ids, "k1")
        discarded = w.pipeline_discarded
        outcomes = await _submit_crowd(w, reqs)
        assert killed and w.pipeline_discarded > discarded
        by_id = await _check_outcomes(dsn, reqs, outcomes)
        first_half = reqs[: (CROWD + 1) // 2]
        for r in first_half:  # batch N: lost with its connection, every caller told so
            assert isinstance(by_id[r.client_id], WriterUnavailable), (r.client_id, by_id[r.client_id])
        for i in spenders:  # batch N+1: applied again after the reconnect, its funding gone
            out = outcomes[i]
            assert isinstance(out, Rejection) and out.code == "insufficient_available", out
        second = [o for i, o in enumerate(outcomes) if i >= len(first_half) and i not in spenders]
        assert second and all(isinstance(o, list) for o in second)
        await _check_store(w, dsn, ids)
        # The callers of N retry with their client ids: now they commit (the hook kills only once).
        retried = await _submit_crowd(w, first_half)
        assert all(isinstance(o, list) for o in retried), [o for o in retried if not isinstance(o, list)]
        await _check_outcomes(dsn, first_half, retried)
        await w.stop()
        await _check_store(w, dsn, ids)

    asyncio.run(run())


def test_gate_of_a_pipelined_batch_runs_in_its_transaction_and_a_refusal_reapplies_it(db_url: str) -> None:
    """A pipelined batch is applied before its gates could run (they run in the transaction that writes it, where
    their row locks hold until its commit). A gate refusing one of its requests sends the whole batch back to be
    applied again, gates first: the refused request leaves no trace, not even in what later requests could
    spend."""
    dsn = asyncpg_dsn(db_url)

    async def gate(conn: asyncpg.Connection, requests: list[c.Request]) -> list[Rejection | None]:
        blocked = {r["actor"] for r in await conn.fetch("SELECT actor FROM blocked_actors FOR KEY SHARE")}
        return [Rejection("participant_suspended", f"{r.actor} is suspended") if r.actor in blocked else None
                for r in requests]

    async def run() -> None:
        admin = await asyncpg.connect(dsn)
        await admin.execute("CREATE TABLE blocked_actors (actor text PRIMARY KEY)")
        w = LedgerWriter(dsn, pipeline=True, gates=[gate])
        await w.start()
        ids = await _world(w)
        await admin.execute("INSERT INTO blocked_actors VALUES ('mallory')")
        await admin.close()
        reqs, _, spenders = _crowd(ids, "g1")
        # The second half: a suspended actor's transfer credits x, and a later one spends it.
        half = (CROWD + 1) // 2
        reqs = [r if not (r.client_id or "").startswith("poison") else
                c.Request(r.actor, r.command, f"g1-first-{k}") for k, r in enumerate(reqs)]
        reqs[half + 2] = c.Request("mallory", c.Transfer(ids["a"], ids["x"], "FCT", 10), "g1-mallory")
        reqs[2] = c.Request("mallory", c.Transfer(ids["cash"][2], ids["cash"][3], "CNY", 7), "g1-mallory-first")
        # the first half's a->x (10 units) is the only FCT for x now: the spender of the second half takes it,
        # and a second spender of the same 10 units must be refused
        reqs[spenders[1]] = c.Request("t", c.Transfer(ids["x"], ids["b"], "FCT", 10), "g1-spend-twice")
        discarded = w.pipeline_discarded
        outcomes = await _submit_crowd(w, reqs)
        by_id = await _check_outcomes(dsn, reqs, outcomes)
        for cid in ("g1-mallory", "g1-mallory-first"):
            assert isinstance(by_id[cid], Rejection) and by_id[cid].code == "participant_suspended"
        assert isinstance(by_id["g1-spend-units"], list)  # spends the first half's credit
        refused = by_id["g1-spend-twice"]  # mallory's credit never happened
        assert isinstance(refused, Rejection) and refused.code == "insufficient_available", refused
        rest = [o for r, o in zip(reqs, outcomes, strict=True)
                if r.client_id not in ("g1-mallory", "g1-mallory-first", "g1-spend-twice")]
        assert all(isinstance(o, list) for o in rest), [o for o in rest if not isinstance(o, list)]
        assert w.pipeline_discarded > discarded  # the second half was applied before its gate, then again
        await w.stop()
        await _check_store(w, dsn, ids)

    asyncio.run(run())


def test_retries_across_the_pipeline_get_the_original_answer(db_url: str) -> None:
    """A faithful retry in the batch right behind its original (applied before the original committed) gets the
    original's entry; a client id reused for another request is refused."""
    dsn = asyncpg_dsn(db_url)

    async def run() -> None:
        w = LedgerWriter(dsn, pipeline=True)
        await w.start()
        ids = await _world(w)
        reqs, _, _ = _crowd(ids, "i1")
        half = (CROWD + 1) // 2
        reqs = [r if not (r.client_id or "").startswith("poison") else
                c.Request(r.actor, r.command, f"i1-x-{k}") for k, r in enumerate(reqs)]
        reqs[half + 1] = reqs[3]  # the same request again, in N+1
        other = reqs[4].command
        assert isinstance(other, c.Transfer)
        reqs[half + 4] = c.Request("t", c.Transfer(other.debit, other.credit, "CNY", other.amount + 1),
                                   reqs[4].client_id)  # same id, another amount
        pipelined = w.pipelined
        outcomes = await _submit_crowd(w, reqs)
        assert w.pipelined > pipelined
        assert outcomes[half + 1] == outcomes[3] and isinstance(outcomes[3], list)
        conflict = outcomes[half + 4]
        assert isinstance(conflict, Rejection) and conflict.code == "idempotency_conflict", conflict
        durable = await _durable(dsn)
        assert durable[reqs[3].client_id or ""] == outcomes[3][0].hash
        ok = [o for i, o in enumerate(outcomes) if i != half + 4]
        assert all(isinstance(o, list) for o in ok)
        await w.stop()
        await _check_store(w, dsn, ids)

    asyncio.run(run())
