"""The HTTP layer alone: cheap authenticated reads over HTTP against an empty Litestar handler (issue #16).

    python -m bench.http_layer [--seconds 10] [--connections 64] [--runs 3]

Starts a real `envx serve` (uvicorn, one process, embedded PostgreSQL unless ENVX_BENCH_DATABASE_URL is set),
enrolls `--connections` participants (one API key each), then drives, each over `--connections` keep-alive
connections of a small asyncio HTTP/1.1 client (each sending its next request when the previous is answered):

- `GET /v1/whoami`: everything a request pays for besides its handler (edge, metrics, API key, rate limit,
  input checks, guard, answer encoding); the handler reads nothing;
- `GET /v1/accounts/{own holding account}`: the same plus a small read of the database;
- the empty peer: a Litestar handler that answers `{}` to a GET, under the same uvicorn, driven identically.

Prints requests/s and p50/p99 of each, and each envx figure's ratio to the empty handler of the same run;
with `--runs N`, every figure N times (interleaved) and the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from litestar import Litestar, get

from bench.common import admin_url, fresh_database, pct, read_response
from bench.server import serve, wait_healthy
from tests.system.server import free_port


@get("/v1/whoami")
async def _empty_get() -> dict[str, str]:
    return {}


empty = Litestar([_empty_get])  # the peer: `uvicorn bench.http_layer:empty`


async def _get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, headers: bytes) -> int:
    writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\nHost: b\r\n" + headers + b"\r\n")
    return (await read_response(reader))[0]


async def drive(port: int, seconds: float, requests: list[tuple[str, bytes]]) -> tuple[int, list[float], dict]:
    """One connection per (path, headers) in `requests`: requests/s, latencies, statuses."""
    stop = time.perf_counter() + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def conn(path: str, headers: bytes) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < stop:
                t0 = time.perf_counter()
                status = await _get(reader, writer, path, headers)
                latencies.append(time.perf_counter() - t0)
                statuses[status] = statuses.get(status, 0) + 1
        finally:
            writer.close()

    t0 = time.perf_counter()
    await asyncio.gather(*(conn(p, h) for p, h in requests))
    return int(len(latencies) / (time.perf_counter() - t0)), latencies, statuses


def enroll(base: str, op: str, n: int) -> list[tuple[str, int]]:
    """n enterprises, each with its first key: [(token, holding account)]."""
    h = {"Authorization": f"Bearer {op}"}
    out = []
    with httpx.Client(base_url=base, timeout=60) as c:
        for k in range(n):
            r = c.post("/v1/participants", json={"name": f"reader{k}", "kind": "enterprise"},
                       headers={**h, "Idempotency-Key": f"p{k}"})
            assert r.status_code == 201, r.text
            e = r.json()["enrollment"]
            r = c.post("/v1/enrollments", json={"first_half": e["first_half"], "second_half": e["second_half"]},
                       headers={"Idempotency-Key": f"p{k}-enroll"})
            assert r.status_code == 201, r.text
            token = r.json()["key"]["token"]
            me = c.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
            out.append((token, int(me["holding_account"])))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--only", choices=("whoami", "account"), help="drive only this envx request (and the peer)")
    args = ap.parse_args()
    for noisy in ("httpx", "pgserver", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    db = fresh_database(admin_url(), "envx_bench_http")
    tmp = Path(tempfile.mkdtemp(prefix="envx-http-"))
    # Default rate limits (per key, far above what one connection sends here): their cost is measured too.
    env = {**os.environ, "ENVX_DATABASE_URL": db, "ENVX_DATA_DIR": str(tmp), "ENVX_LOG_LEVEL": "WARNING",
           "ENVX_SCHEDULER": "false", "ENVX_MAKER_CHECKER": "false"}
    op = json.loads(subprocess.run([sys.executable, "-m", "api.cli", "admin", "create-key"], env=env,
                                   capture_output=True, check=True).stdout)["api_key"]
    port2 = free_port()
    served = serve(env, tmp)
    srv, port = served.proc, served.port
    peer = subprocess.Popen([sys.executable, "-m", "uvicorn", "bench.http_layer:empty", "--port", str(port2),
                             "--log-level", "warning", "--no-access-log"], stdout=subprocess.DEVNULL)
    figures: dict[str, list[tuple[int, float, float, dict]]] = {"whoami": [], "account": [], "empty": []}
    try:
        base = served.base
        wait_healthy(f"http://127.0.0.1:{port2}/", peer)
        readers = enroll(base, op, args.connections)
        who = [("/v1/whoami", f"Authorization: Bearer {t}\r\n".encode()) for t, _ in readers]
        acct = [(f"/v1/accounts/{a}", f"Authorization: Bearer {t}\r\n".encode()) for t, a in readers]
        blank = [("/v1/whoami", b"Authorization: Bearer x\r\n")] * args.connections
        print(f"srv pid {srv.pid}, empty pid {peer.pid}", flush=True)
        for run in range(args.runs):
            for name, p, reqs in (("empty", port2, blank), ("whoami", port, who), ("account", port, acct)):
                if args.only and name not in ("empty", args.only):
                    continue
                rate, lat, statuses = asyncio.run(drive(p, args.seconds, reqs))
                figures[name].append((rate, pct(lat, 50), pct(lat, 99), statuses))
                print(f"run {run + 1} {name:<8} {rate:>7,} req/s  p50 {pct(lat, 50) * 1000:6.1f} ms  "
                      f"p99 {pct(lat, 99) * 1000:6.1f} ms  {statuses}", flush=True)
            e = figures["empty"][-1][0]
            print(f"run {run + 1} ratios: whoami/empty {figures['whoami'][-1][0] / e:.3f}  "
                  f"account/empty {figures['account'][-1][0] / e:.3f}", flush=True)
    finally:
        for proc in (srv, peer):
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    shown = [n for n in ("whoami", "account") if figures[n]]
    ratios = {n: [f[0] / e[0] for f, e in zip(figures[n], figures["empty"], strict=True)] for n in shown}
    print(f"\n{args.connections} connections, {args.seconds:.0f} s each, {args.runs} run(s), one uvicorn process each")
    for name in ("empty", *shown):
        rates = [f[0] for f in figures[name]]
        print(f"{name:<8} median {statistics.median(rates):>8,.0f} req/s  p99 median "
              f"{statistics.median(f[2] for f in figures[name]) * 1000:6.1f} ms")
    for name, rs in ratios.items():
        each = ", ".join(f"{r:.3f}" for r in rs)
        print(f"ratio {name}/empty: median {statistics.median(rs):.3f}  (each run: {each})")


if __name__ == "__main__":
    main()
