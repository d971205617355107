"""Ledger throughput: group-committed transfers through the writer vs raw batched INSERTs, same server, same run.

    python -m bench.ledger [--transfers 40000] [--rounds 3]

Both sides are durable (synchronous_commit on, fsync as configured) and commit once per batch of the same
size. The writer's transfers carry everything a real one does: idempotency key and fingerprint, sorted
row locks, balance projection, hash chain, compare-and-swap on the head, plus any tree/checkpoint hooks
the writer is configured with. Prints transfers/s, raw rows/s and their ratio (goal >= 0.5), and how many
of the writer's batches were applied in its pipeline (while the batch before them was being written).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import time

import asyncpg

from bench.common import admin_url, fresh_database, median
from exchange.core.database import asyncpg_dsn
from ledger import commands as c
from ledger.writer import LedgerWriter

ACCOUNTS = 200


async def writer_round(dsn: str, n: int, concurrency: int, serialised: bool,
                       pipeline: bool = True) -> tuple[float, int, int]:
    w = LedgerWriter(dsn, pipeline=pipeline)
    await w.start()
    try:
        inst = "FCT" if serialised else "CNY"
        kind = "holding" if serialised else "cash"
        if not await w.connection.fetchval("SELECT 1 FROM ledger_instruments WHERE code = $1", inst):  # type: ignore[union-attr]
            await w.submit(c.Request("b", c.DefineInstrument(inst, "forest_ticket" if serialised else "currency", 0)))
        src = (await w.submit(c.Request("b", c.OpenAccount("src", "issuance" if serialised else "settlement")))).seq
        accs = [e.seq for e in await w.submit_linked([c.Request("b", c.OpenAccount(f"a{i}", kind))
                                                        for i in range(ACCOUNTS)])]
        for a in accs:
            fund = c.IssueBatch(src, a, inst, 10**9, f"fund-{a}") if serialised else c.Transfer(src, a, inst, 10**12)
            await w.submit(c.Request("b", fund))
        tag = os.urandom(4).hex()

        async def client(k: int) -> None:
            # One simulated connection: submits, waits for its answer, submits the next.
            for i in range(k, n, concurrency):
                d, cr = accs[i % ACCOUNTS], accs[(i * 7 + 1) % ACCOUNTS]
                if d == cr:
                    cr = accs[(i + 1) % ACCOUNTS]
                await w.submit(c.Request("participant:1", c.Transfer(d, cr, inst, 1 + i % 100), f"{tag}-{i}",
                                         {"memo": "bench"}))

        b0, p0 = w.batches, w.pipelined - w.pipeline_discarded
        t0 = time.perf_counter()
        await asyncio.gather(*(client(k) for k in range(concurrency)))
        dt = time.perf_counter() - t0
        return n / dt, w.batches - b0, w.pipelined - w.pipeline_discarded - p0
    finally:
        await w.stop()


async def raw_round(dsn: str, n: int, batch: int) -> float:
    """Raw batched INSERT of rows shaped like ledger entries (no triggers, no logic), one commit per batch."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("""CREATE TABLE IF NOT EXISTS raw_rows (seq bigint PRIMARY KEY, ts bigint, type text,
                              actor text, client_id text, fingerprint bytea, leaf bytea, hash bytea, meta bytea)""")
        await conn.execute("TRUNCATE raw_rows")
        leaf = b"x" * 330
        h = hashlib.sha256(leaf).digest()
        t0 = time.perf_counter()
        for start in range(0, n, batch):
            seqs = list(range(start, min(n, start + batch)))
            async with conn.transaction():
                await conn.execute(
                    """INSERT INTO raw_rows SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::text[],
                       $5::text[], $6::bytea[], $7::bytea[], $8::bytea[], $9::bytea[])""",
                    seqs, seqs, ["transfer"] * len(seqs), ["participant:1"] * len(seqs),
                    [f"c{s}" for s in seqs], [h] * len(seqs), [leaf] * len(seqs), [h] * len(seqs),
                    [b'{"memo":"bench"}'] * len(seqs))
        return n / (time.perf_counter() - t0)
    finally:
        await conn.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--transfers", type=int, default=40_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=2048)
    args = ap.parse_args()
    dsn = asyncpg_dsn(fresh_database(admin_url(), "envx_bench_ledger"))
    cash, units, raw, batches = [], [], [], []
    cash1, units1, raw1 = [], [], []  # the writer one batch at a time (no pipeline), and raw at its batch size
    for r in range(args.rounds):
        rate, nb, piped = asyncio.run(writer_round(dsn, args.transfers, args.concurrency, serialised=False))
        cash.append(rate)
        batches.append(args.transfers / nb)
        units.append(asyncio.run(writer_round(dsn, args.transfers, args.concurrency, serialised=True))[0])
        raw.append(asyncio.run(raw_round(dsn, args.transfers, batch=int(median(batches)) or 1)))
        rate1, nb1, _ = asyncio.run(writer_round(dsn, args.transfers, args.concurrency, False, pipeline=False))
        cash1.append(rate1)
        units1.append(asyncio.run(writer_round(dsn, args.transfers, args.concurrency, True, pipeline=False))[0])
        raw1.append(asyncio.run(raw_round(dsn, args.transfers, batch=args.transfers // nb1 or 1)))
        print(f"round {r + 1}: cash transfers {cash[-1]:,.0f}/s  unit transfers {units[-1]:,.0f}/s  "
              f"raw INSERT {raw[-1]:,.0f} rows/s  (mean batch {batches[-1]:.0f}, {piped} of {nb} cash batches "
              f"pipelined); one batch at a time: {cash1[-1]:,.0f}/s, {units1[-1]:,.0f}/s, raw {raw1[-1]:,.0f} rows/s "
              f"(batch {args.transfers // nb1})", flush=True)
    print()
    print(f"ledger writer, cash transfers   : {median(cash):>10,.0f} transfers/s (median of {args.rounds})")
    print(f"ledger writer, serial-block xfers: {median(units):>10,.0f} transfers/s")
    print(f"raw batched INSERT, same server : {median(raw):>10,.0f} rows/s (batch = writer's mean batch)")
    print(f"ratio cash/raw  = {median(cash) / median(raw):.2f}   ratio units/raw = {median(units) / median(raw):.2f}"
          "   (goal >= 0.5)")
    print(f"without the pipeline: cash {median(cash1):,.0f}/s, serial blocks {median(units1):,.0f}/s, raw at its "
          f"batch {median(raw1):,.0f} rows/s: ratios {median(cash1) / median(raw1):.2f} and "
          f"{median(units1) / median(raw1):.2f}; pipelined/unpipelined cash {median(cash) / median(cash1):.2f}, "
          f"serial blocks {median(units) / median(units1):.2f}")


if __name__ == "__main__":
    main()
