"""The market stream over a real WebSocket on the real server process (issue #14: uvicorn had no WebSocket
library, so `GET /v1/markets/{id}/stream` answered every upgrade with 405)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
from websockets.sync.client import connect

from tests.helpers import ticket
from tests.system.server import Server, admit

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")


def _post(c: httpx.Client, token: str, path: str, body: dict, key: str) -> httpx.Response:
    return c.post(path, json=body, headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key})


def test_the_stream_opens_on_the_real_server_and_speaks_decimal_strings(db_url: str, tmp_path: Path) -> None:
    srv = Server(db_url, tmp_path)
    op = srv.operator_key()
    srv.start()
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            assert _post(http, op, "/v1/instruments", {"code": "FCT-SM", "name": "t", "kind": "forest_ticket",
                                                       "decimals": 0}, "i").status_code == 201
            issuer_id, issuer = admit(http, op, "三明市林业局", "issuer", "iss")
            assert _post(http, op, "/v1/instruments/FCT-SM/issuers", {"participant_id": issuer_id},
                         "g").status_code == 201
            seller_id, seller = admit(http, op, "卖方", "enterprise", "s")
            buyer_id, buyer = admit(http, op, "买方", "enterprise", "b")
            r = _post(http, issuer, "/v1/issuances", {"instrument": "FCT-SM", "holder_id": seller_id,
                                                      "quantity": "100", "attributes": ticket(1)}, "r")
            assert _post(http, op, f"/v1/issuances/{r.json()['id']}/approve", {}, "a").status_code == 200
            assert _post(http, op, "/v1/cash/deposits", {"participant_id": buyer_id, "amount": "10000.00",
                                                         "bank_reference": "d"}, "d").status_code == 201
            assert _post(http, op, "/v1/markets", {"instrument": "FCT-SM", "mode": "continuous",
                                                   "settings": {"sessions": []}}, "m").status_code == 201
            m = "FCT-SM.continuous"
            with connect(f"ws://127.0.0.1:{srv.port}/v1/markets/{m}/stream", open_timeout=10) as ws:
                snapshot = json.loads(ws.recv(timeout=10))
                assert snapshot["type"] == "snapshot" and snapshot["bids"] == [] and snapshot["asks"] == []
                assert _post(http, seller, f"/v1/markets/{m}/orders",
                             {"side": "sell", "price": "15.50", "quantity": "40"}, "o1").status_code == 201
                depth = json.loads(ws.recv(timeout=10))
                assert depth["type"] == "depth" and depth["seq"] > snapshot["seq"]
                assert depth["asks"] == [{"price": "15.50", "quantity": "40", "orders": 1}]
                assert _post(http, buyer, f"/v1/markets/{m}/orders",
                             {"side": "buy", "price": "15.50", "quantity": "10"}, "o2").status_code == 201
                trade, after = json.loads(ws.recv(timeout=10)), json.loads(ws.recv(timeout=10))
            assert (trade["type"], trade["price"], trade["quantity"], trade["amount"]) == (
                "trade", "15.50", "10", "155.00")
            assert ISO.match(trade["ts"]), trade
            assert after["asks"] == [{"price": "15.50", "quantity": "30", "orders": 1}]
            # Nobody is named on the public stream: no participant or account ids, no orders of anyone's.
            assert not {"participant_id", "maker_owner", "taker_owner", "buyer_id", "seller_id", "buy_order",
                        "sell_order"} & set(trade)
            listed = http.get(f"/v1/markets/{m}/trades").json()
            assert {"type": "trade", **listed[0], "taker_side": "buy"} == trade
    finally:
        srv.stop()
