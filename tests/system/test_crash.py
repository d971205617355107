"""SIGKILL the server during transfer load, restart: every acknowledged transfer is there, the chain links."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from tests.helpers import ticket
from tests.system.server import Server, admit


def _post(client: httpx.Client, token: str, path: str, body: dict, key: str) -> httpx.Response:
    return client.post(path, json=body, headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key})


def test_sigkill_during_transfers_loses_nothing_acknowledged(db_url: str, tmp_path: Path) -> None:
    srv = Server(db_url, tmp_path)
    op = srv.operator_key()
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            def mk(name: str, kind: str) -> tuple[int, str]:
                return admit(http, op, name, kind, f"p-{name.encode().hex()}")

            assert _post(http, op, "/v1/instruments", {"code": "FCT-SM", "name": "三明林业碳票",
                                                       "kind": "forest_ticket", "decimals": 0}, "i").status_code == 201
            issuer_id, issuer = mk("三明市林业局", "issuer")
            assert _post(http, op, "/v1/instruments/FCT-SM/issuers", {"participant_id": issuer_id},
                         "g").status_code == 201
            seller_id, seller = mk("seller", "enterprise")
            buyer_id, _buyer = mk("buyer", "enterprise")
            req = _post(http, issuer, "/v1/issuances", {"instrument": "FCT-SM", "holder_id": seller_id,
                                                        "quantity": "29715", "attributes": ticket(1)}, "r").json()
            assert _post(http, op, f"/v1/issuances/{req['id']}/approve", {}, "a").status_code == 200

        acked: dict[str, int] = {}
        lock = threading.Lock()
        stop = threading.Event()

        def worker(w: int) -> None:
            with httpx.Client(base_url=srv.url, timeout=10) as http:
                i = 0
                while not stop.is_set():
                    key = f"w{w}-{i}"
                    i += 1
                    try:
                        r = _post(http, seller, "/v1/transfers", {"to_participant": buyer_id,
                                                                  "instrument": "FCT-SM", "quantity": "1"}, key)
                    except httpx.HTTPError:
                        return  # the server died under us: this one was not acknowledged
                    if r.status_code == 201:
                        with lock:
                            acked[key] = r.json()["entry_seq"]

        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(worker, w) for w in range(8)]
            while True:
                with lock:
                    if len(acked) >= 300:
                        break
            srv.kill()  # mid-flight: workers are still sending
            stop.set()
            for f in futures:
                f.result()
        assert len(acked) >= 300

        srv.start()
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            h = {"Authorization": f"Bearer {op}"}
            entries: dict[str, dict] = {}
            after = 0
            while True:
                page = http.get("/v1/ledger/entries", params={"after": after, "limit": 1000}, headers=h).json()
                if not page:
                    break
                entries.update({e["client_id"]: e for e in page if e["client_id"]})
                after = page[-1]["seq"]
            for key, seq in acked.items():
                assert key in entries, f"acknowledged transfer {key} lost"
                assert entries[key]["seq"] == seq
            moved = sum(1 for k, e in entries.items() if k.startswith("w") and e["type"] == "transfer")
            hb = http.get("/v1/holdings", params={"participant_id": buyer_id}, headers=h).json()
            assert int(hb["balances"][0]["posted"]) == moved  # nothing half-applied
            # Retrying an acknowledged request after the crash replays it, it does not transfer again.
            key, seq = next(iter(acked.items()))
            r = _post(http, seller, "/v1/transfers", {"to_participant": buyer_id, "instrument": "FCT-SM",
                                                      "quantity": "1"}, key)
            assert r.status_code == 201 and r.json()["entry_seq"] == seq
    finally:
        srv.stop()
    out = srv.cli("verify")
    assert "OK: the ledger verifies" in out, out
