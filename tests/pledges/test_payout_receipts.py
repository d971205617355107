"""An enforcement's payout event is the bank's own realisation of the lot, not a court's distribution plan: it is
blinded (entry version 4), and each payee's receipt opens its own line only -- a junior claimant does not read the
senior loan's principal, a court paid its share does not read the bank's, a negotiated sale's buyer reads the
price it paid and none of the lines. The pledgee and the pledgor (who owes every line) and oversight open every
field. Through HTTP on the real app; every receipt verifies offline (README "Visibility")."""

from __future__ import annotations

import base64
import json
from typing import Any

from litestar.testing import TestClient

from ledger import blinding
from ledger.encoding import DOMAIN_TAG_V4
from ledger.receipt import verify_receipt
from tests.helpers import Api
from tests.ledger_verifiable.helpers import log_keys
from tests.pledges.helpers import days, world
from tests.pledges.test_one_event import NOTICE, active, freeze, last_event


def _receipt(who: Api, seq: int, keys: list[str]) -> tuple[set[int], dict[tuple[int, str], int]]:
    """Every integer a caller's receipt of entry `seq` carries anywhere (entry, metadata, openings), and the
    amounts it opens by (leg, field); the receipt verifies."""
    r = who.get(f"/v1/ledger/entries/{seq}/receipt")
    assert r.status_code == 200, r.text
    doc = r.json()
    ok = verify_receipt(doc, keys)
    assert ok.entry.startswith(DOMAIN_TAG_V4)
    ints: set[int] = set()

    def walk(v: Any) -> None:
        if isinstance(v, bool):
            return
        if isinstance(v, int):
            ints.add(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    entry = json.loads(base64.b64decode(doc["entry"]).split(b"\n", 1)[1])
    for part in (doc, entry, json.loads(doc["metadata"]["meta"])):
        walk(part)
    return ints, {(leg, f): v for leg, f, v in ok.opened if f in blinding.AMOUNT_FIELDS}


def test_each_payee_of_an_exchange_sale_reads_its_own_line(api: Api, client: TestClient) -> None:
    w = world(api, "800")
    bank, owner, junior = w["bank"], w["owner"], w["junior"]
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "listing",
                                     "settings": {"sessions": [], "reference_price_fen": 400_000}}))
    m = "FCT-SM.listing"
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open"}))
    t1 = api.participant("买方甲", "enterprise")
    api.ok(api.post("/v1/cash/deposits", {"participant_id": t1["id"], "amount": "2100000.00", "bank_reference": "d"}))
    pid = active(api, w, "500", "E-6", secured_amount="1500000.00")["id"]
    cid = api.ok(junior["api"].post(f"/v1/pledges/{pid}/claims", {
        "loan_contract": "J-6", "amount": "200000.00", "term_end": days(200)}))["id"]
    api.ok(owner["api"].post(f"/v1/pledges/claims/{cid}/confirm"))
    api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "违约",
                                                               "default_notice": NOTICE}))
    lid = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement/sales", {"market_id": m, "price": "4000.00"}),
                 201)["order"]["id"]
    api.ok(t1["api"].post(f"/v1/markets/{m}/listings/{lid}/take", {"quantity": "500"}))
    # 500 t x 4,000.00 = 2,000,000.00: 1,500,000.00 to the bank, the junior's 200,000.00, the owner's 300,000.00.
    [seq] = last_event(api, bank["api"], pid, "proceeds_distributed")["ledger_seqs"]
    keys = log_keys(client)
    lines = {"bank": 150_000_000, "junior": 20_000_000, "owner": 30_000_000}
    for who in (bank, owner):  # the pledgee and the pledgor: every line
        _, opened = _receipt(who["api"], seq, keys)
        assert sorted(opened.values()) == sorted(lines.values())
    ints, opened = _receipt(junior["api"], seq, keys)
    assert list(opened.values()) == [lines["junior"]]  # its own line, and nothing of the senior loan or the rest
    assert not ints & {lines["bank"], lines["owner"], 200_000_000}
    meta = json.loads(junior["api"].get(f"/v1/ledger/entries/{seq}/receipt").json()["metadata"]["meta"])
    assert "payouts" not in meta  # which lines there are is the pledge's own record, not the entry's
    assert t1["api"].get(f"/v1/ledger/entries/{seq}/receipt").json()["code"] == "not_found"  # the buyer: no payee


def test_a_negotiated_sale_s_buyer_reads_its_price_not_the_waterfall(api: Api, client: TestClient) -> None:
    w = world(api, "100")
    bank, court, buyer, owner = w["bank"], w["court"], w["buyer"], w["owner"]
    pid = active(api, w, "60", "E-5", secured_amount="500.00")["id"]
    freeze(court["api"], owner["id"], [(1, 30), (61, 80)], "协执-16")
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report", "instrument": "FCT-SM",
                                                 "price": "10.00", "as_of": days(0)}))
    api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {
        "method": "sale", "buyer_id": buyer["id"], "price": "10.00", "reason": "违约", "default_notice": NOTICE}))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": buyer["id"], "amount": "600.00", "bank_reference": "b"}))
    api.ok(buyer["api"].post(f"/v1/pledges/{pid}/enforcement/accept", {"price": "10.00"}))
    [seq] = last_event(api, bank["api"], pid, "enforced")["ledger_seqs"]
    keys = log_keys(client)
    # 60 t x 10.00 = 600.00: 500.00 to the bank, of the 100.00 surplus 50.00 to the court, 50.00 to the owner.
    ints, opened = _receipt(buyer["api"], seq, keys)
    assert 60_000 in opened.values() and 60 in opened.values()  # the price it paid, the units it got
    assert not ints & {50_000, 5_000}, ints & {50_000, 5_000}  # no line of the waterfall
    meta = json.loads(buyer["api"].get(f"/v1/ledger/entries/{seq}/receipt").json()["metadata"]["meta"])
    assert "payouts" not in meta and "buyer" not in meta
    ints, opened = _receipt(court["api"], seq, keys)
    assert 5_000 in opened.values() and 50_000 not in ints  # the court: its share, not the bank's line
    for who in (bank, owner):
        _, opened = _receipt(who["api"], seq, keys)
        assert {60_000, 50_000, 5_000} <= set(opened.values())
