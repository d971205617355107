"""Issue #16: a court restoration order's purchase settles as ONE trade event (version 2: the seller's units and
the payer's cash out of their holds, the seller paid, the fees) and its retirement, an entry of its own linked
right after it -- the entry the public certificate proves, which must not carry the trade's accounts. All or
none: a refused retirement leaves nothing of the trade. Balances to the fen; the certificate still verifies."""

from __future__ import annotations

import json
from datetime import date, timedelta

import pytest

from ledger import certificate
from ledger import commands as c
from ledger.state import Rejection
from tests.courts.test_restoration import PAYER_ID, _keys, _setup
from tests.helpers import Api
from tests.ledger_events import head, hold, shape, since, snapshot
from tests.security.helpers import sql


def cash(api: Api, who: dict) -> str:
    bal = [b for b in api.ok(who["api"].get("/v1/holdings"))["balances"] if b["instrument"] == "CNY"]
    return bal[0]["posted"] if bal else "0.00"


def _order(api: Api, w: dict) -> int:
    return api.ok(w["court"]["api"].post("/v1/restoration-orders", {
        "case_number": "(2022)闽0627刑初16号", "case_type": "刑事附带民事公益诉讼",
        "defendants": [{"name": "被告人乙"}],
        "payer_id": w["payer"]["id"], "payer_identifier": PAYER_ID, "required_quantity": "96",
        "eligible_kinds": ["ccer"], "deadline": (date.today() + timedelta(days=90)).isoformat()}))["id"]


def test_restoration_take_is_one_trade_event_and_its_retirement(api: Api) -> None:
    w = _setup(api)
    payer, seller = w["payer"], w["seller"]
    api.ok(api.post("/v1/markets", {"instrument": "CCER", "mode": "listing",
                                     "settings": {"sessions": [], "fee_bps": 10}}))
    api.ok(api.post("/v1/markets/CCER.listing/session", {"action": "open"}))
    listing = api.ok(seller["api"].post("/v1/markets/CCER.listing/listings", {
        "side": "sell", "price": "60.00", "quantity": "200"}))["order"]["id"]
    oid = _order(api, w)
    at = head(api)
    api.ok(payer["api"].post(f"/v1/restoration-orders/{oid}/takes", {
        "market_id": "CCER.listing", "listing_id": listing, "quantity": "96"}))
    settled = [e for e in since(api, at) if (e["client_id"] or "").startswith("CCER.listing:trade:")]
    # Before: the seller's post, the retirement, the payer's post, the seller's pay and the fees (5 entries);
    # now the trade's event and the retirement.
    assert [shape(e) for e in settled] == [
        ("event", "trade", ["hold.post", "hold.post", "transfer", "transfer"]),
        ("retire", None, ["retire"])]
    trade, retire = settled
    assert retire["seq"] == trade["seq"] + 1 and retire["client_id"] == trade["client_id"][:-1] + "1"
    assert retire["body"]["purpose"] == "judicial_restoration" and retire["body"]["amount"] == 96
    # 96 t x 60.00 = 5,760.00; 0.1 % fee on each side: 5.76.
    legs = trade["body"]["legs"]
    assert [leg["body"]["amount"] for leg in legs] == [96, 576_576, 575_424, 1_152]
    assert (cash(api, payer), cash(api, seller)) == ("4234.24", "5754.24")
    assert [b for b in api.ok(payer["api"].get("/v1/holdings"))["balances"] if b["instrument"] == "CCER"] == []
    [(clearing_ccer, clearing_cny)] = sql(api.client, """
        SELECT coalesce(sum(posted) FILTER (WHERE instrument = 'CCER'), 0),
               coalesce(sum(posted) FILTER (WHERE instrument = 'CNY'), 0)
        FROM ledger_balances b JOIN ledger_accounts a ON a.id = b.account WHERE a.owner = 'system:clearing'""")
    assert (clearing_ccer, clearing_cny) == (0, 0)  # nothing stays between the event and the retirement

    state = api.ok(w["court"]["api"].get(f"/v1/restoration-orders/{oid}"))
    assert (state["retired_quantity"], state["status"], state["paid"]) == ("96", "fulfilled", "5765.76")
    doc = api.ok(api.client.get(f"/v1/restoration-orders/{oid}/certificate"))
    verified = certificate.verify(doc, _keys(api))
    assert verified.retired == 96 and list(verified.entries) == [retire["seq"]]
    body = json.loads(doc["note"][len(certificate.HEADER):].split("\n", 1)[0])
    assert [b["entry_seq"] for b in body["blocks"]] == [retire["seq"]]
    assert api.ok(api.client.get(f"/v1/public/certificates/{verified.code}"))["valid"] is True


def test_a_refused_retirement_leaves_nothing_of_the_trade_event(api: Api) -> None:
    """Through the writer, the group settlement builds for a restoration purchase, with a retirement the ledger
    refuses: the event before it (the seller's units out of its hold into clearing) is undone with it."""
    w = _setup(api)
    api.ok(api.post("/v1/markets", {"instrument": "CCER", "mode": "listing", "settings": {"sessions": []}}))
    api.ok(api.post("/v1/markets/CCER.listing/session", {"action": "open"}))
    listing = api.ok(w["seller"]["api"].post("/v1/markets/CCER.listing/listings", {
        "side": "sell", "price": "60.00", "quantity": "200"}))["order"]["id"]
    [(hold_id,)] = sql(api.client, "SELECT hold_id FROM orders WHERE market_id = 'CCER.listing' AND id = :i",
                       {"i": listing})
    rt = api.client.app.state.rt
    clearing, retired = rt.system["clearing"], rt.system["retired"]
    group = [c.Request("exchange:CCER.listing", c.Event("trade", (c.PostHold(hold_id, 96, keep_remainder=True),)),
                       "test:trade:0", {}),
             c.Request("exchange:CCER.listing", c.Retire(clearing, retired, "CCER", 97, "judicial_restoration", "x"),
                       "test:trade:1", {})]
    before = snapshot(api)
    with pytest.raises(Rejection) as refused:
        api.client.blocking_portal.call(rt.writer.submit_linked, group)
    assert refused.value.code == "insufficient_available"
    assert snapshot(api) == before and hold(api, hold_id) == ("pending", 200, 0, None)
    # The same group, right: both entries, and the listing keeps the rest of its hold.
    group[1] = c.Request("exchange:CCER.listing", c.Retire(clearing, retired, "CCER", 96, "judicial_restoration",
                                                           "x"), "test:trade:1", {})
    entries = api.client.blocking_portal.call(rt.writer.submit_linked, group)
    assert [e.type for e in entries] == ["event", "retire"] and hold(api, hold_id) == ("pending", 200, 96, None)


def test_a_restoration_bid_filled_below_its_limit_gets_the_excess_back_in_the_trade_event(api: Api) -> None:
    """The trim rule of every limit buy holds for a restoration purchase too: its trade's event gives back what
    the rest of the bid can no longer cost (before, the excess waited for the bid's end)."""
    w = _setup(api)
    payer = w["payer"]
    api.ok(api.post("/v1/markets", {"instrument": "CCER", "mode": "continuous", "settings": {"sessions": []}}))
    m = "CCER.continuous"
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open"}))
    api.ok(w["seller"]["api"].post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "60.00", "quantity": "50"}))
    oid = _order(api, w)
    at = head(api)
    bid = api.ok(payer["api"].post(f"/v1/restoration-orders/{oid}/purchases", {
        "market_id": m, "price": "70.00", "quantity": "96"}))["order"]
    assert (bid["status"], bid["filled_quantity"]) == ("open", "50")
    settled = [e for e in since(api, at) if (e["client_id"] or "").startswith(f"{m}:trade:")]
    assert [shape(e) for e in settled] == [
        ("event", "trade", ["hold.post", "hold.post", "hold.trim", "transfer"]), ("retire", None, ["retire"])]
    # 50 t x 60.00 = 3,000.00 paid; the 46 t still bid hold 46 x 70.00 = 3,220.00, no more.
    assert settled[0]["body"]["legs"][2]["body"]["remaining"] == 322_000
    cny = next(b for b in api.ok(payer["api"].get("/v1/holdings"))["balances"] if b["instrument"] == "CNY")
    assert (cny["posted"], cny["available"]) == ("7000.00", "3780.00")
