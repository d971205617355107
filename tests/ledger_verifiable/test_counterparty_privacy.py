"""A trade's receipt does not reveal the counterparty on an anonymous book (ledger/blinding.py, entry version 3):
the buyer and the seller each fetch the trade's receipt through the HTTP API; neither names the other's
participant, accounts, holds, orders or name anywhere; each verifies offline and opens its own legs only;
the operator's audit finds a tampered salt or commitment; a block deal stays disclosed as before."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from exchange.core.database import asyncpg_dsn
from ledger.encoding import DOMAIN_TAG_V2, DOMAIN_TAG_V3, decode_entry
from ledger.receipt import ReceiptError, verify_receipt
from ledger.verify import Report, verify_connection
from tests.helpers import Api
from tests.ledger_verifiable.helpers import log_keys
from tests.trading.test_block_settlement import _desk
from tests.trading.test_continuous import world
from tests.trading.test_excess_release import _entries

ROOT = Path(__file__).resolve().parents[2]


def _ints(value: Any) -> set[int]:
    if isinstance(value, bool):
        return set()
    if isinstance(value, int):
        return {value}
    if isinstance(value, dict):
        return set().union(*(_ints(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(_ints(v) for v in value)) if value else set()
    return set()


def _side(api: Api, db_url: str, who: dict, order_id: int) -> dict[str, Any]:
    (p,) = _entries(api, db_url, "SELECT holding_account, cash_account FROM participants WHERE id = $1", who["id"])
    accounts = {p["holding_account"], p["cash_account"]}
    holds = {r["id"] for r in _entries(api, db_url, "SELECT id FROM ledger_holds WHERE debit = ANY($1::bigint[])",
                                       list(accounts))}
    return {"id": who["id"], "name": who["name"], "accounts": accounts, "holds": holds, "order": order_id,
            "api": who["api"]}


def _trade(api: Api, db_url: str) -> tuple[dict, dict, int]:
    w = world(api, fee_bps=10)
    s, b, m = w["s"], w["b"], w["m"]
    for _ in range(3):  # orders placed and cancelled first: order ids that no small number in an entry repeats
        for who, side, price in ((s, "sell", "340.00"), (b, "buy", "250.00")):
            o = api.ok(who["api"].post(f"/v1/markets/{m}/orders", {"side": side, "price": price, "quantity": "1"}))
            api.ok(who["api"].post(f"/v1/markets/{m}/orders/{o['order']['id']}/cancel", {}))
    ask = api.ok(s["api"].post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "290.00", "quantity": "10"}))
    bid = api.ok(b["api"].post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "300.00", "quantity": "20"}))
    trade = next(e for e in bid["events"] if e["kind"] == "trade")
    (row,) = _entries(api, db_url, "SELECT seq FROM ledger_entries WHERE client_id = $1",
                      f"{m}:trade:{trade['trade_id']}:0")
    (t,) = _entries(api, db_url, "SELECT buyer_id, seller_id, buy_order, sell_order FROM trades")
    assert (t["buyer_id"], t["seller_id"]) == (b["id"], s["id"])  # the private trades table keeps the parties
    assert (t["buy_order"], t["sell_order"]) == (bid["order"]["id"], ask["order"]["id"])
    return (_side(api, db_url, s, ask["order"]["id"]), _side(api, db_url, b, bid["order"]["id"]), row["seq"])


def test_neither_party_s_receipt_names_the_other(api: Api, client: TestClient, db_url: str,
                                                 tmp_path: Path) -> None:
    seller, buyer, seq = _trade(api, db_url)
    url = f"/v1/ledger/entries/{seq}/receipt"
    keys = log_keys(client)
    for me, other in ((seller, buyer), (buyer, seller)):
        r = me["api"].get(url)
        assert r.status_code == 200, r.text
        doc = r.json()
        ok = verify_receipt(doc, keys)
        entry = decode_entry(ok.entry)
        assert ok.entry.startswith(DOMAIN_TAG_V3) and entry["body"]["kind"] == "trade"
        meta = json.loads(doc["metadata"]["meta"])
        # Nothing names the other side: no participant id, name, order, account or hold, anywhere.
        assert set(meta) == {"market", "trade_id", "price", "qty", "legs"}, meta
        text = r.content.decode("utf-8") + ok.entry.decode("utf-8") + doc["metadata"]["meta"]
        assert other["name"] not in text and me["name"] not in text
        assert "buyer" not in text and "seller" not in text and "participant:" not in text
        for leg in entry["body"]["legs"]:
            for f in ("debit", "credit", "hold"):
                if f in leg["body"]:
                    assert isinstance(leg["body"][f], str) and len(leg["body"][f]) == 64  # a commitment
        own = me["accounts"] | me["holds"]
        shown = _ints(entry["body"]) | _ints(meta) | {o["value"] for o in doc["openings"]}
        theirs = other["accounts"] | other["holds"] | {other["id"], other["order"]}
        assert not (shown & theirs), (shown & theirs)
        # Its own legs it can check: every field of its accounts and holds is opened, and only those.
        assert {o["value"] for o in doc["openings"]} <= own
        opened = {(leg, f) for leg, f, _ in ok.opened}
        mine = {(i, f) for i, leg in enumerate(entry["body"]["legs"]) for f in ("debit", "credit")
                if f in leg["body"] and any(o["leg"] == i and o["field"] == f for o in doc["openings"])}
        assert mine and mine <= opened
        assert {v for _, f, v in ok.opened if f in ("debit", "credit")} == me["accounts"]
        # Offline, with the command-line verifier; a changed salt or value is refused.
        path = tmp_path / f"receipt-{me['id']}.json"
        path.write_text(r.text, encoding="utf-8")
        args = [a for k in keys for a in ("--key", k)]
        out = subprocess.run([sys.executable, "-m", "api.cli", "verify-receipt", str(path), *args],
                             capture_output=True, text=True, timeout=120, cwd=ROOT,
                             env={k: v for k, v in os.environ.items() if not k.startswith("ENVX_")})
        assert out.returncode == 0 and out.stdout.startswith("OK") and "opened:" in out.stdout, out.stdout + out.stderr
        for bad in ({"value": doc["openings"][0]["value"] + 1},
                    {"salt": ("0" if doc["openings"][0]["salt"][0] != "0" else "1") + doc["openings"][0]["salt"][1:]}):
            forged = {**doc, "openings": [{**doc["openings"][0], **bad}, *doc["openings"][1:]]}
            with pytest.raises(ReceiptError) as refused:
                verify_receipt(forged, keys)
            assert refused.value.code == "opening_mismatch"
    # The operator's receipt opens every field; an outsider still gets 404.
    everything = api.ok(api.get(url))
    assert {o["value"] for o in everything["openings"]} >= seller["accounts"] | buyer["accounts"]
    outsider = api.participant("无关企业", "enterprise")["api"]
    assert outsider.get(url).json()["code"] == "not_found"
    # The tlog-proof is the same entry bytes: blinded too.
    proof = buyer["api"].get(f"/v1/ledger/entries/{seq}/tlog-proof")
    assert proof.status_code == 200 and seller["name"] not in proof.text
    extra = next(line[len("extra "):] for line in proof.text.splitlines() if line.startswith("extra "))
    assert base64.b64decode(extra).startswith(DOMAIN_TAG_V3)




def _verify(db_url: str) -> subprocess.CompletedProcess[str]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ENVX_")}, "ENVX_DATABASE_URL": db_url}
    return subprocess.run([sys.executable, "-m", "api.cli", "verify"], env=env, capture_output=True, text=True,
                          timeout=300, cwd=ROOT)


@pytest.mark.parametrize("tamper", ["salt", "account"])
def test_the_operator_s_audit_finds_a_tampered_opening(api: Api, db_url: str, tamper: str) -> None:
    seller, buyer, seq = _trade(api, db_url)
    ok = _verify(db_url)
    assert ok.returncode == 0 and "OK: the ledger verifies" in ok.stdout, ok.stdout + ok.stderr
    (row,) = _entries(api, db_url, "SELECT openings FROM ledger_entry_openings WHERE seq = $1", seq)
    openings = json.loads(bytes(row["openings"]))
    leg = next(i for i, x in enumerate(openings["legs"]) if x.get("credit", [0, 0])[1] in buyer["accounts"])
    salt, value = openings["legs"][leg]["credit"]
    if tamper == "salt":
        openings["legs"][leg]["credit"] = [("0" if salt[0] != "0" else "1") + salt[1:], value]
    else:  # the buyer's units said to have gone to the seller's account
        openings["legs"][leg]["credit"] = [salt, next(iter(seller["accounts"]))]
    forged = json.dumps(openings, separators=(",", ":"), sort_keys=True)

    async def swap() -> Report:
        import asyncpg
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            tr = conn.transaction()
            await tr.start()
            await conn.execute("SET LOCAL session_replication_role = replica")  # past the append-only trigger
            await conn.execute("UPDATE ledger_entry_openings SET openings = $1 WHERE seq = $2", forged.encode(), seq)
            report = Report()
            await verify_connection(conn, report)
            await tr.rollback()
            return report
        finally:
            await conn.close()

    report = api.client.blocking_portal.call(swap)
    assert not report.ok and any(f"entry {seq}: leg {leg} credit" in p for p in report.problems), report.render()


def test_a_block_deal_stays_disclosed(api: Api, client: TestClient, db_url: str) -> None:
    m = "CEA25.block"
    seller, buyer = _desk(api)
    q = api.ok(seller["api"].post(f"/v1/markets/{m}/block-quotes",
                                  {"side": "sell", "price": "100.00", "quantity": "150000"}))["seq"]
    deal = api.ok(buyer["api"].post(f"/v1/markets/{m}/block-quotes/{q}/respond",
                                    {"price": "100.00", "quantity": "120000"}))["seq"]
    api.ok(seller["api"].post(f"/v1/markets/{m}/deals/{deal}/confirm", {}))
    (row,) = _entries(api, db_url, "SELECT seq FROM ledger_entries WHERE client_id = $1", f"{m}:trade:1:0")
    r = buyer["api"].get(f"/v1/ledger/entries/{row['seq']}/receipt")
    assert r.status_code == 200, r.text
    ok = verify_receipt(r.json(), log_keys(client))
    assert ok.entry.startswith(DOMAIN_TAG_V2) and r.json()["openings"] == []  # the parties negotiated it
    meta = json.loads(r.json()["metadata"]["meta"])
    assert (meta["buyer"], meta["seller"]) == (buyer["id"], seller["id"])
    (p,) = _entries(api, db_url, "SELECT cash_account FROM participants WHERE id = $1", seller["id"])
    legs = decode_entry(ok.entry)["body"]["legs"]
    assert any(leg["body"].get("credit") == p["cash_account"] for leg in legs)  # the seller's account in clear
