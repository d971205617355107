"""What a restoration order reads from other packages, through their own functions: its settled trades
(exchange.trading.repository), their retirement entries (ledger.queries), and who may see those entries'
receipts (the order's court and payer, asked of courts by the API: exchange.verifiable.proofs is below courts)."""

from __future__ import annotations

from datetime import date, timedelta

from litestar.testing import TestClient

from exchange.trading import repository as trading
from ledger import queries
from tests.courts.test_restoration import PAYER_ID, _setup
from tests.helpers import Api


def _order_with_a_fill(api: Api) -> dict:
    w = _setup(api)
    court, payer, seller = w["court"]["api"], w["payer"]["api"], w["seller"]["api"]
    api.ok(api.post("/v1/markets", {"instrument": "CCER", "mode": "listing", "settings": {"sessions": []}}))
    api.ok(api.post("/v1/markets/CCER.listing/session", {"action": "open"}))
    listing = api.ok(seller.post("/v1/markets/CCER.listing/listings", {"side": "sell", "price": "60.00",
                                                                        "quantity": "200"}))["order"]["id"]
    # An ordinary buy of the same listing: a trade, but not one for the order.
    api.ok(payer.post(f"/v1/markets/CCER.listing/listings/{listing}/take", {"quantity": "5"}))
    oid = api.ok(court.post("/v1/restoration-orders", {
        "case_number": "(2022)闽0627刑初9号", "case_type": "刑事", "defendants": [{"name": "甲"}],
        "payer_id": w["payer"]["id"], "payer_identifier": PAYER_ID, "required_quantity": "96",
        "eligible_kinds": ["ccer"], "deadline": (date.today() + timedelta(days=30)).isoformat()}))["id"]
    api.ok(payer.post(f"/v1/restoration-orders/{oid}/takes", {"market_id": "CCER.listing", "listing_id": listing,
                                                               "quantity": "40"}))
    return {**w, "order": oid}


def test_the_order_reads_its_trades_and_their_retirements(api: Api, client: TestClient) -> None:
    w = _order_with_a_fill(api)
    rt = client.app.state.rt

    async def read() -> tuple[list[trading.RestorationTrade], list[queries.RequestEntry]]:
        async with rt.read() as conn:
            trades = await trading.restoration_trades(conn, [w["order"], w["order"] + 1])
            return trades, await queries.entries_of_requests(conn, [t.retirement_request() for t in trades])

    trades, entries = client.blocking_portal.call(read)
    assert [(t.restoration_order, t.qty, t.decimals) for t in trades] == [(w["order"], 40, 0)]  # not the own buy
    assert len(entries) == 1 and entries[0].client_id == f"CCER.listing:trade:{trades[0].trade_id}:1"
    state = api.ok(w["court"]["api"].get(f"/v1/restoration-orders/{w['order']}"))
    assert (state["retired_quantity"], state["fills"], state["paid"]) == ("40", 1, "2400.00")
    # The payer's holdings list the judicial retirement it paid for, although no account of its held it.
    held = api.ok(w["payer"]["api"].get("/v1/holdings"))
    assert [b.get("retired_seq") for b in held["blocks"] if b.get("purpose") == "judicial_restoration"] \
        == [entries[0].seq]
    seq = entries[0].seq
    # Its receipt: the court and the payer of the order (and oversight); the seller and anyone else: 404.
    for who, status in ((w["court"]["api"], 200), (w["payer"]["api"], 200), (api, 200),
                        (w["seller"]["api"], 404), (api.participant("另一法院", "court")["api"], 404)):
        r = who.get(f"/v1/ledger/entries/{seq}/receipt")
        assert r.status_code == status, (r.status_code, r.text)
