"""Stopping `envx serve` (issue #19): SIGTERM drains the requests in flight, the sequencers and the writer finish
their batches and the last checkpoint is signed; the drain is bounded (ENVX_SHUTDOWN_GRACE_SECONDS); a second
signal stops at once, and the embedded PostgreSQL still stops."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import asyncpg
import httpx

from exchange.core.database import asyncpg_dsn
from tests.helpers import ticket
from tests.system.server import Server, admit, free_port


class Stopping(Server):
    def __init__(self, db_url: str, data_dir: Path, **env: str) -> None:
        super().__init__(db_url, data_dir)
        self.extra = env

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "ENVX_LOG_LEVEL": "INFO", **self.extra}


def _post(http: httpx.Client, token: str, path: str, body: dict, key: str) -> httpx.Response:
    return http.post(path, json=body, headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key})


def _stuck_request(port: int) -> socket.socket:
    """A request whose body never arrives: in flight until the server gives up on it."""
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"POST /v1/enrollments HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
              b"Content-Length: 1000\r\n\r\n{")
    time.sleep(0.5)
    return s


def _head_and_latest(db_url: str, data_dir: Path) -> tuple[int, int]:
    async def head() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            return int(await conn.fetchval("SELECT coalesce(max(seq), 0) FROM ledger_entries"))
        finally:
            await conn.close()

    text = (data_dir / "checkpoint-latest.txt").read_text()
    return asyncio.run(head()), int(text.splitlines()[1])  # C2SP checkpoint: origin, tree size, root


def test_sigterm_under_load_drains_finishes_and_signs_the_last_checkpoint(db_url: str, tmp_path: Path) -> None:
    srv = Stopping(db_url, tmp_path, ENVX_CHECKPOINT_INTERVAL_SECONDS="3600")
    op = srv.operator_key()
    srv.start()
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        assert _post(http, op, "/v1/instruments", {"code": "FCT-SM", "name": "三明林业碳票", "kind": "forest_ticket",
                                                   "decimals": 0}, "i").status_code == 201
        issuer_id, issuer = admit(http, op, "三明市林业局", "issuer", "p-issuer")
        assert _post(http, op, "/v1/instruments/FCT-SM/issuers", {"participant_id": issuer_id},
                     "g").status_code == 201  # its issuing authority
        seller_id, seller = admit(http, op, "seller", "enterprise", "p-seller")
        buyer_id, buyer = admit(http, op, "buyer", "enterprise", "p-buyer")
        req = _post(http, issuer, "/v1/issuances", {"instrument": "FCT-SM", "holder_id": seller_id,
                                                    "quantity": "29715", "attributes": ticket(1)}, "r").json()
        assert _post(http, op, f"/v1/issuances/{req['id']}/approve", {}, "a").status_code == 200
        assert _post(http, op, "/v1/cash/deposits", {"participant_id": buyer_id, "amount": "1000000.00",
                                                     "bank_reference": "d"}, "d").status_code == 201
        assert _post(http, op, "/v1/markets", {"instrument": "FCT-SM", "mode": "continuous",
                                               "settings": {"sessions": [], "t_plus_1": False}}, "m").status_code == 201
    market = "/v1/markets/FCT-SM.continuous/orders"
    acked: dict[str, int] = {}
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        token, path, body = [
            (seller, "/v1/transfers", {"to_participant": buyer_id, "instrument": "FCT-SM", "quantity": "1"}),
            (seller, market, {"side": "sell", "price": "10.00", "quantity": "1"}),
            (buyer, market, {"side": "buy", "price": "10.00", "quantity": "1"}),
        ][w % 3]
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            for i in range(100_000):
                key = f"w{w}-{i}"
                try:
                    r = _post(http, token, path, body, key)
                except httpx.HTTPError:
                    return  # the server no longer takes connections
                with lock:
                    statuses.append(r.status_code)
                    if r.status_code == 201:
                        acked[key] = r.json().get("entry_seq") or r.json()["order"]["id"]
                if r.status_code != 201:
                    return

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(worker, w) for w in range(6)]
        while len(acked) < 150:
            time.sleep(0.01)
        assert srv.proc is not None
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        for f in futures:
            f.result()
        rc = srv.proc.wait(timeout=120)
    took = time.monotonic() - t0
    assert rc == 0, srv.log.read_text()[-3000:]
    # Every request that reached the app was answered as if no stop was coming: no 503 of a stopped writer or
    # sequencer, no 500.
    assert set(statuses) == {201}, sorted(set(statuses))
    log_text = srv.log.read_text()
    assert "stopping gracefully" in log_text and "stopped: last checkpoint at tree size" in log_text
    head, latest = _head_and_latest(db_url, tmp_path)
    assert latest == head  # the last checkpoint covers every entry (the interval alone would have left it behind)
    assert took < 60

    srv.start()  # nothing acknowledged is lost; the log verifies
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            h = {"Authorization": f"Bearer {op}"}
            seen, after = set(), 0
            while page := http.get("/v1/ledger/entries", params={"after": after, "limit": 1000}, headers=h).json():
                seen |= {e["client_id"] for e in page}
                after = page[-1]["seq"]
            transfers = [k for k in acked if int(k.split("-")[0][1:]) % 3 == 0]
            assert transfers and all(k in seen for k in transfers)
            orders = http.get("/v1/markets/FCT-SM.continuous/orders", params={"limit": 1000},
                              headers={"Authorization": f"Bearer {seller}"})
            assert orders.status_code == 200
    finally:
        srv.stop()
    out = subprocess.run([sys.executable, "-m", "api.cli", "verify"], env=srv.env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_drain_is_bounded_by_the_grace_period(db_url: str, tmp_path: Path) -> None:
    srv = Stopping(db_url, tmp_path, ENVX_SHUTDOWN_GRACE_SECONDS="3")
    op = srv.operator_key()
    srv.start()
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        assert _post(http, op, "/v1/instruments", {"code": "FCT-SM", "name": "x", "kind": "forest_ticket",
                                                   "decimals": 0}, "i").status_code == 201
    stuck = _stuck_request(srv.port)
    try:
        assert srv.proc is not None
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        time.sleep(1.5)
        assert srv.proc.poll() is None  # it waits for the request in flight...
        rc = srv.proc.wait(timeout=60)  # ...for the grace period, then stops as gracefully as without it
        assert rc == 0 and time.monotonic() - t0 < 30
    finally:
        stuck.close()
    head, latest = _head_and_latest(db_url, tmp_path)
    assert latest == head
    assert "stopped: last checkpoint at tree size" in srv.log.read_text()


def test_a_second_signal_stops_at_once_and_the_embedded_postgresql_stops(own_tmp: Path) -> None:
    port = free_port()
    env = {**os.environ, "ENVX_DATA_DIR": str(own_tmp / "data"), "ENVX_LOG_LEVEL": "INFO", "ENVX_SCHEDULER": "false",
           "ENVX_SHUTDOWN_GRACE_SECONDS": "600"}
    env.pop("ENVX_DATABASE_URL", None)  # the embedded PostgreSQL
    made = subprocess.run([sys.executable, "-m", "api.cli", "admin", "create-key", "--name", "op"], env=env,
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["api_key"]
    log = own_tmp / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port)], env=env,
                                stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.2)
        stuck = _stuck_request(port)
        proc.send_signal(signal.SIGTERM)
        time.sleep(3)
        assert proc.poll() is None  # draining: it waits for the request in flight (up to 600 s)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=60)
        assert time.monotonic() - t0 < 30
        stuck.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert rc == 1, log.read_text()[-3000:]
    assert "second signal (SIGTERM): stopping at once" in log.read_text()
    deadline = time.monotonic() + 30  # the exit handler stops the embedded PostgreSQL
    while (own_tmp / "data" / "pg" / "postmaster.pid").exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not (own_tmp / "data" / "pg" / "postmaster.pid").exists()
