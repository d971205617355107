"""End to end: limit orders over HTTP with journal, holds and settlement durable before the answer.

    python -m bench.e2e [--seconds 20] [--connections 64] [--batch N [--batch-connections 16]]

Starts a real `envx serve` (uvicorn, one process, embedded PostgreSQL unless ENVX_BENCH_DATABASE_URL is
set, synchronous_commit on), sets up 64 traders with units and cash and one continuous market, then
drives it with 64 keep-alive connections of a small asyncio HTTP/1.1 client, each sending its next
order when the previous one is answered. The peer is an empty Litestar handler under the same uvicorn,
driven identically in the same run. Prints requests/s and p50/p99 latency of both, and their ratio,
with how fragmented the traded serial blocks became and how many ledger entries each order wrote.

It scrapes the server's `/metrics` (with the operator's key) before, during (every 2 s) and after the run and
prints the writer's and the market sequencer's figures beside the bench's own counts and the database's:
orders answered 201 vs `envx_http_requests_total` of placeOrder, ledger entries written vs
`envx_ledger_entries_written_total`, journaled commands vs `envx_market_last_seq`.
With `--batch N`, the same server then takes the same order mix in batches of N orders per request
(`POST /v1/markets/{id}/orders/batch`) over `--batch-connections` connections for as long again; it prints
orders/s (accepted orders: slots answered 201), the p50/p99 latency of a whole batch, and the ratio to the
single orders and to the empty handler. The ledger is verified after both runs (`envx verify`).
Per order, for each mode: sequencer steps (journal transactions; distinct journal stamps), transactions that
wrote (transaction ids taken, the HTTP layer's idempotency records included), writer group commits and
requests, ledger entries.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from bench.common import admin_url, fresh_database, pct, read_response
from bench.server import per_order, serve, wait_healthy
from tests.helpers import ticket
from tests.system.server import free_port


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes,
                   headers: str, answers: list[bytes] | None = None) -> int:
    writer.write(f"POST {path} HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n{headers}"
                 f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
    status, answer = await read_response(reader)
    if answers is not None and answer:
        answers.append(answer)
    return status


async def drive(port: int, seconds: float, connections: int, make: object,
                answers: list[bytes] | None = None) -> tuple[int, list[float], dict]:
    """Requests/s, latencies and statuses; with `answers`, every answer's body is kept there."""
    stop = time.perf_counter() + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def conn(k: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = 0
        try:
            while time.perf_counter() < stop:
                path, body, headers = make(k, i)  # type: ignore[operator]
                t0 = time.perf_counter()
                status = await _request(reader, writer, path, body, headers, answers)
                latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1
                i += 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(conn(k) for k in range(connections)))
    elapsed = time.perf_counter() - t0
    return int(len(latencies) / elapsed), latencies, statuses


MARKET = "FCT-SM.continuous"


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text format -> {"name{labels}": value} (comments and the exposition's timestamps dropped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        if "}" in line:
            cut = line.rindex("}") + 1
            name, rest = line[:cut], line[cut:].split()
        else:
            name, *rest = line.split()
        try:
            out[name] = float(rest[0])
        except (ValueError, IndexError):
            continue
    return out


def figures(m: dict[str, float]) -> dict[str, float]:
    """The figures compared: placeOrder answers 201, entries written, the market's last sequence number."""
    placed = sum(v for k, v in m.items() if k.startswith("envx_http_requests_total{") and "/orders" in k
                 and 'status_code="201"' in k and 'method="POST"' in k)
    return {"placed_201": placed,
            "entries_written": m.get("envx_ledger_entries_written_total", 0.0),
            "writer_batches": m.get("envx_ledger_writer_batches", 0.0),
            "writer_requests": m.get("envx_ledger_writer_batch_requests_sum", 0.0),
            "last_seq": m.get(f'envx_market_last_seq{{market="{MARKET}"}}', 0.0)}


def scrape(base: str, token: str) -> dict[str, float]:
    r = httpx.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    r.raise_for_status()
    return figures(parse_metrics(r.text))


def db_counts(url: str) -> dict[str, int]:
    import asyncpg

    from exchange.core.database import asyncpg_dsn

    async def run() -> dict[str, int]:
        c = await asyncpg.connect(asyncpg_dsn(url))
        try:
            return {"entries": int(await c.fetchval("SELECT count(*) FROM ledger_entries")),
                    "journal": int(await c.fetchval("SELECT coalesce(max(seq), 0) FROM market_journal "
                                                    "WHERE market_id = $1", MARKET)),
                    # A sequencer step stamps every command it journals with one ts.
                    "steps": int(await c.fetchval("SELECT count(DISTINCT ts) FROM market_journal "
                                                  "WHERE market_id = $1", MARKET)),
                    # Transactions that wrote (each takes a transaction id; read-only ones take none), this
                    # look-up's own included: the durable commits of the run, whoever made them.
                    "xids": int(await c.fetchval("SELECT pg_current_xact_id()::text::bigint"))}
        finally:
            await c.close()

    return asyncio.run(run())


async def watch(base: str, token: str, seconds: float, every: float = 2.0) -> list[dict[str, float]]:
    """Scrapes during the run: the figures must move while orders flow."""
    samples = []
    async with httpx.AsyncClient(timeout=30) as http:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            await asyncio.sleep(every)
            r = await http.get(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
            if r.status_code == 200:
                samples.append(figures(parse_metrics(r.text)))
    return samples


def print_comparison(before: dict[str, float], during: list[dict[str, float]], after: dict[str, float],
                     db0: dict[str, int], db1: dict[str, int], answered: int) -> bool:
    d = {k: after[k] - before[k] for k in after}
    rows = [("orders answered 201 (bench)", answered, "placeOrder 201 (envx_http_requests_total)", d["placed_201"]),
            ("ledger entries written (database)", db1["entries"] - db0["entries"],
             "envx_ledger_entries_written_total", d["entries_written"]),
            ("commands journaled (database)", db1["journal"] - db0["journal"], f"envx_market_last_seq{{{MARKET}}}",
             d["last_seq"])]
    print("\n/metrics scraped before, during and after the run:")
    ok = True
    for left, a, right, b in rows:
        same = int(a) == int(b)
        ok &= same
        print(f"  {left:<36} {int(a):>9,}   {right:<44} {int(b):>9,}   {'agree' if same else 'DIFFER'}")
    moved = [s["entries_written"] for s in during]
    seqs = [s["last_seq"] for s in during]
    rising = len(moved) >= 2 and moved == sorted(moved) and moved[-1] > moved[0] and seqs[-1] > seqs[0]
    ok &= rising
    print(f"  during the run ({len(during)} scrapes): entries written {[int(x) for x in moved]}, "
          f"last seq {[int(x) for x in seqs]} -> {'moving' if rising else 'NOT MOVING'}")
    batches = max(d["writer_batches"], 1)
    print(f"  writer: {int(d['writer_batches']):,} batches, {d['writer_requests'] / batches:.1f} requests per batch")
    return ok


def print_per_order(label: str, m0: dict[str, float], m1: dict[str, float], db0: dict[str, int],
                    db1: dict[str, int]) -> None:
    """Where an order's work goes, counted: sequencer steps (one journal transaction each), transactions that
    wrote (durable commits, the HTTP layer's included), writer group commits and requests, ledger entries."""
    n = max(db1["journal"] - db0["journal"], 1)
    steps = db1["steps"] - db0["steps"]
    print(f"  {label}: {n:,} orders journaled in {steps:,} sequencer steps ({n / max(steps, 1):.1f} per step); per "
          f"order: {(db1['xids'] - db0['xids'] - 1) / n:.2f} write transactions, "
          f"{(m1['writer_batches'] - m0['writer_batches']) / n:.3f} writer group commits, "
          f"{(m1['writer_requests'] - m0['writer_requests']) / n:.2f} writer requests, "
          f"{(db1['entries'] - db0['entries']) / n:.2f} ledger entries")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--batch", type=int, default=0, help="also send batches of this many orders (1-100)")
    ap.add_argument("--batch-connections", type=int, default=16)
    args = ap.parse_args()
    batched: tuple[float, int, list[float], dict] | None = None
    after_batched: dict[str, float] = {}
    db2: dict[str, int] = {}
    sql2: Counter[str] = Counter()
    cpu2 = cpu3 = 0.0
    db = fresh_database(admin_url(), "envx_bench_e2e")
    tmp = Path(tempfile.mkdtemp(prefix="envx-e2e-"))
    env = {**os.environ, "ENVX_DATABASE_URL": db, "ENVX_DATA_DIR": str(tmp), "ENVX_LOG_LEVEL": "WARNING",
           "ENVX_SCHEDULER": "false", "ENVX_MAKER_CHECKER": "false"}  # setup by one operator, no second approver
    op = json.loads(subprocess.run([sys.executable, "-m", "api.cli", "admin", "create-key"], env=env,
                                   capture_output=True, check=True).stdout)["api_key"]
    srv = serve(env, tmp)
    port, base = srv.port, srv.base
    try:
        tokens = setup(base, op, args.connections)
        rng = random.Random(1)

        def order(k: int, i: int) -> tuple[str, bytes, str]:
            side = "buy" if (k + i) % 2 else "sell"
            price = 100 + rng.randint(-3, 3) * (1 if side == "buy" else -1)
            body = json.dumps({"side": side, "price": f"{price}.00", "quantity": str(rng.randint(1, 10))}).encode()
            return ("/v1/markets/FCT-SM.continuous/orders", body,
                    f"Authorization: Bearer {tokens[k]}\r\nIdempotency-Key: e{k}-{i}-{time.time_ns()}\r\n")

        before, db0, sql0, cpu0 = scrape(base, op), db_counts(db), srv.statements.read(), srv.cpu_seconds()

        async def run_and_watch() -> tuple[tuple[int, list[float], dict], list[dict[str, float]]]:
            driven, seen = await asyncio.gather(drive(port, args.seconds, args.connections, order),
                                                watch(base, op, args.seconds))
            return driven, seen

        (rate, lat, statuses), during = asyncio.run(run_and_watch())
        cpu1 = srv.cpu_seconds()
        after, db1, sql1 = scrape(base, op), db_counts(db), srv.statements.read()
        if args.batch:
            cpu2 = srv.cpu_seconds()
            batched = run_batched(port, tokens, args)
            cpu3 = srv.cpu_seconds()
            after_batched, db2, sql2 = scrape(base, op), db_counts(db), srv.statements.read()
    finally:
        srv.stop()
    trades = verify_after(env)
    port2 = free_port()
    empty = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.empty_app:app", "--port", str(port2),
                              "--log-level", "warning", "--no-access-log"], stdout=subprocess.DEVNULL)
    try:
        wait_healthy(f"http://127.0.0.1:{port2}/", empty)

        def empty_req(k: int, i: int) -> tuple[str, bytes, str]:
            return ("/v1/markets/FCT-SM.continuous/orders", b'{"side":"buy","price":"100.00","quantity":"1"}',
                    "Authorization: Bearer x\r\n")

        erate, elat, _ = asyncio.run(drive(port2, args.seconds, args.connections, empty_req))
    finally:
        empty.send_signal(signal.SIGTERM)
        empty.wait(timeout=30)
    print(f"\n{args.connections} connections, {args.seconds:.0f} s each, one uvicorn process, 2-core machine")
    print(f"envx orders (journal + holds + DvP settlement durable): {rate:>7,} orders/s   "
          f"p50 {pct(lat, 50) * 1000:6.1f} ms  p99 {pct(lat, 99) * 1000:6.1f} ms   statuses {statuses}")
    print(f"empty Litestar handler, same stack           : {erate:>7,} req/s      "
          f"p50 {pct(elat, 50) * 1000:6.1f} ms  p99 {pct(elat, 99) * 1000:6.1f} ms")
    if batched is not None:
        brate, nbatches, blat, bstatuses = batched
        print(f"envx batched, {args.batch} orders per request, {args.batch_connections} connections: "
              f"{brate:>9,.0f} orders/s   p50 {pct(blat, 50) * 1000:6.1f} ms  p99 {pct(blat, 99) * 1000:6.1f} ms "
              f"per batch   {nbatches:,} batches, statuses {bstatuses}")
        print(f"ratio batched/single = {brate / max(rate, 1):.1f}, batched orders/s / empty req/s = "
              f"{brate / erate:.3f}")
    print(f"ratio envx/empty = {rate / erate:.3f}; trades settled during the run: {trades}")
    print("goal: >= 10,000 orders/s with p99 < 50 ms (reference Python engine with an HTTP front: ~900/s)")
    print_comparison(before, during, after, db0, db1, statuses.get(201, 0))
    print("\nper order (counted in the database and the writer's metrics):")
    print_per_order("single ", before, after, db0, db1)
    if batched is not None:
        print_per_order("batched", after, after_batched, db1, db2)
    single_n = max(db1["journal"] - db0["journal"], 1)
    print(f"\nserver process CPU per order (user + system): single {(cpu1 - cpu0) / single_n * 1000:.2f} ms"
          + (f", batched {(cpu3 - cpu2) / max(db2['journal'] - db1['journal'], 1) * 1000:.2f} ms"
             if batched is not None else ""))
    print("\nSQL statements sent by the server (bench/server.py counts them), per order journaled:")
    print("\n".join("  single:  " + line if k == 0 else line
                    for k, line in enumerate(per_order(sql0, sql1, db1["journal"] - db0["journal"]))))
    if batched is not None:
        print("\n".join("  batched: " + line if k == 0 else line
                        for k, line in enumerate(per_order(sql1, sql2, db2["journal"] - db1["journal"]))))


def run_batched(port: int, tokens: list[str], args: argparse.Namespace) -> tuple[float, int, list[float], dict]:
    """The same order mix, `args.batch` orders per request: (accepted orders/s, batches, latencies per batch,
    slot statuses)."""
    rng = random.Random(2)
    n = args.batch

    def batch(k: int, i: int) -> tuple[str, bytes, str]:
        trader = k % len(tokens)
        stamp = time.time_ns()
        orders = []
        for j in range(n):
            side = "buy" if (k + i + j) % 2 else "sell"
            price = 100 + rng.randint(-3, 3) * (1 if side == "buy" else -1)
            orders.append({"client_id": f"b{k}-{i}-{j}-{stamp}", "side": side, "price": f"{price}.00",
                           "quantity": str(rng.randint(1, 10))})
        return ("/v1/markets/FCT-SM.continuous/orders/batch", json.dumps({"orders": orders}).encode(),
                f"Authorization: Bearer {tokens[trader]}\r\n")

    answers: list[bytes] = []
    t0 = time.perf_counter()
    _, lat, statuses = asyncio.run(drive(port, args.seconds, args.batch_connections, batch, answers))
    elapsed = time.perf_counter() - t0
    slots: dict[int, int] = {}
    for a in answers:
        for r in json.loads(a).get("results", []):
            slots[r["status"]] = slots.get(r["status"], 0) + 1
    return slots.get(201, 0) / elapsed, len(lat), lat, {"http": statuses, "orders": slots}


def setup(base: str, op: str, n: int) -> list[str]:
    h = {"Authorization": f"Bearer {op}"}
    with httpx.Client(base_url=base, timeout=60) as c:
        def post(path: str, body: dict, key: str) -> dict:
            r = c.post(path, json=body, headers={**h, "Idempotency-Key": key})
            assert r.status_code in (200, 201), r.text
            out: dict = r.json()
            return out

        def admit(name: str, kind: str, key: str) -> tuple[dict, str]:
            # Maker-checker off: one operator gets both halves of the enrollment code; the participant enrolls.
            p = post("/v1/participants", {"name": name, "kind": kind}, key)
            code = {"first_half": p["enrollment"]["first_half"], "second_half": p["enrollment"]["second_half"]}
            r = c.post("/v1/enrollments", json=code, headers={"Idempotency-Key": f"{key}-enroll"})
            assert r.status_code == 201, r.text
            return p, r.json()["key"]["token"]

        post("/v1/instruments", {"code": "FCT-SM", "name": "t", "kind": "forest_ticket", "decimals": 0}, "i")
        iss, itok = admit("issuer", "issuer", "pi")
        post("/v1/instruments/FCT-SM/issuers", {"participant_id": iss["id"]}, "gi")  # its issuing authority
        tokens = []
        for k in range(n):
            p, token = admit(f"trader{k}", "enterprise", f"p{k}")
            tokens.append(token)
            r = c.post("/v1/issuances", json={"instrument": "FCT-SM", "holder_id": p["id"], "quantity": "10000000",
                                              "attributes": ticket(k + 1)},
                       headers={"Authorization": f"Bearer {itok}", "Idempotency-Key": f"r{k}"}).json()
            post(f"/v1/issuances/{r['id']}/approve", {}, f"a{k}")
            post("/v1/cash/deposits", {"participant_id": p["id"], "amount": "100000000.00", "bank_reference": f"d{k}"},
                 f"d{k}")
        post("/v1/markets", {"instrument": "FCT-SM", "mode": "continuous",
                             "settings": {"sessions": [], "t_plus_1": False, "band_bps": None}}, "m")
        post("/v1/markets/FCT-SM.continuous/session", {"action": "open"}, "s")
    return tokens


def verify_after(env: dict[str, str]) -> str:
    out = subprocess.run([sys.executable, "-m", "api.cli", "verify"], env=env, capture_output=True, text=True)
    print(out.stdout.strip().splitlines()[-1] if out.stdout else out.stderr[-500:])
    import asyncio as aio

    import asyncpg

    from exchange.core.database import asyncpg_dsn

    async def count() -> int:
        c = await asyncpg.connect(asyncpg_dsn(env["ENVX_DATABASE_URL"]))
        try:
            blocks = await c.fetchrow("""SELECT count(*) AS n, max(k) AS top FROM (
                SELECT count(*) AS k FROM ledger_blocks GROUP BY account, instrument) x""")
            print(f"serial blocks after the run: {blocks['n']} pairs, at most {blocks['top']} blocks per pair")
            orders = int(await c.fetchval("SELECT count(*) FROM orders"))
            entries = int(await c.fetchval("SELECT count(*) FROM ledger_entries"))  # includes the set-up's few
            print(f"ledger entries: {entries:,} for {orders:,} orders ({entries / max(orders, 1):.1f} per order)")
            setup = int(await c.fetchval("SELECT count(*) FROM ledger_entries WHERE seq < "
                                         "(SELECT coalesce(min(hold_id), 0) FROM orders)"))
            print(f"  of which the set-up wrote {setup:,}: {(entries - setup) / max(orders, 1):.2f} per order")
            return int(await c.fetchval("SELECT count(*) FROM trades"))
        finally:
            await c.close()

    return str(aio.run(count()))


if __name__ == "__main__":
    main()
