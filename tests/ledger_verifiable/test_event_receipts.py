"""A trade's one event entry (version 4 on an anonymous book: ledger/blinding.py) has a receipt like any
entry: its parties (through any leg) may fetch it, it verifies offline against the signed checkpoint, and
anyone else is told there is no such entry."""

from __future__ import annotations

import os
import subprocess
import sys

from litestar.testing import TestClient

from exchange.demo import loader as demo
from ledger.encoding import DOMAIN_TAG_V4, decode_entry
from ledger.receipt import verify_receipt
from tests.helpers import Api
from tests.ledger_verifiable.helpers import log_keys
from tests.trading.test_continuous import world
from tests.trading.test_excess_release import _entries


def test_a_trade_event_has_a_receipt_for_both_parties_and_no_one_else(api: Api, client: TestClient,
                                                                      db_url: str) -> None:
    w = world(api, fee_bps=10)
    s, b, m = w["s"]["api"], w["b"]["api"], w["m"]
    api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "290.00", "quantity": "10"}))
    bid = api.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "300.00", "quantity": "20"}))
    trade = next(e for e in bid["events"] if e["kind"] == "trade")
    (row,) = _entries(api, db_url, "SELECT seq FROM ledger_entries WHERE client_id = $1",
                      f"{m}:trade:{trade['trade_id']}:0")
    url = f"/v1/ledger/entries/{row['seq']}/receipt"
    keys = log_keys(client)
    for who in (s, b, api):  # the seller (its hold, its cash), the buyer (its hold, its units), the operator
        r = who.get(url)
        assert r.status_code == 200, r.text
        ok = verify_receipt(r.json(), keys)
        assert ok.index == row["seq"] - 1 and ok.entry.startswith(DOMAIN_TAG_V4)
        assert decode_entry(ok.entry)["body"]["kind"] == "trade"
    outsider = api.participant("无关企业", "enterprise")["api"]
    assert outsider.get(url).json()["code"] == "not_found"  # as if there were none
    assert client.get(url).status_code == 401


def test_envx_verify_passes_on_the_demo_log_of_mixed_versions(api: Api, client: TestClient, db_url: str) -> None:
    # The demo's market sales settle as version-2 events among the version-1 entries of the rest.
    client.blocking_portal.call(demo.load, client.app.state.rt, None)
    kinds = {r["type"] for r in _entries(api, db_url, "SELECT DISTINCT type FROM ledger_entries")}
    assert "event" in kinds and "transfer" in kinds
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ENVX_")}, "ENVX_DATABASE_URL": db_url}
    out = subprocess.run([sys.executable, "-m", "api.cli", "verify"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0 and "OK: the ledger verifies" in out.stdout, out.stdout + out.stderr
