"""A buy's cash hold is what its rest can still cost: the excess of a better fill or of a reduce comes back
at once, in the same ledger event, so `available` is exact while the order rests (issue #16)."""

from __future__ import annotations

from typing import Any

import asyncpg

from exchange.core.database import asyncpg_dsn
from ledger.encoding import decode_entry
from ledger.verify import verify_database
from tests.helpers import Api
from tests.ledger_events import clear
from tests.trading.test_continuous import bal, world


def _entries(api: Api, db_url: str, sql: str, *args: Any) -> list[Any]:
    async def q() -> list[Any]:
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()
    return api.client.blocking_portal.call(q)


def _verified(api: Api, db_url: str) -> None:
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_a_better_fill_gives_back_the_excess_in_the_trades_own_entry(api: Api, db_url: str) -> None:
    w = world(api, fee_bps=10)
    s, b, m = w["s"]["api"], w["b"]["api"], w["m"]
    api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "290.00", "quantity": "100"}))
    bid = api.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "300.00", "quantity": "150"}))
    assert bid["order"]["status"] == "open" and bid["order"]["open_quantity"] == "50.000"
    # Held 45,045.00 (150 t at 300.00 + 0.1 %). Paid 29,029.00 (100 t at 290.00 + 29.00). The 50 t left can
    # cost at most 15,000.00 + the fee they add to the order's cumulative notional (44.00 - 29.00): 15,015.00
    # stays held, the 1,001.00 the better price saved is available at once.
    cash = bal(api, w["b"], "CNY")
    assert (cash["posted"], cash["pending"], cash["available"]) == ("70971.00", "15015.00", "55956.00")
    trade = next(e for e in bid["events"] if e["kind"] == "trade")
    rows = _entries(api, db_url, "SELECT type, leaf FROM ledger_entries WHERE client_id LIKE $1",
                    f"{m}:trade:{trade['trade_id']}:%")
    assert [r["type"] for r in rows] == ["event"]  # the whole DvP is one entry
    legs = [leg["type"] for leg in decode_entry(bytes(rows[0]["leaf"]))["body"]["legs"]]
    # seller's units out of its hold to the buyer, buyer's cash out of its hold, the excess trimmed, the seller
    # paid, the fees, the buyer's T+1 lock
    assert legs == ["hold.post", "transfer", "hold.post", "hold.trim", "transfer", "transfer", "hold.create"]
    # The rest fills at the resting bid's own price (an ask at 295.00 takes it at 300.00): exactly what stays
    # held is paid, and nothing is left for the order's end to release.
    done = api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "295.00", "quantity": "50"}))
    assert done["order"]["status"] == "filled"
    cash = bal(api, w["b"], "CNY")
    assert (cash["available"], cash["pending"]) == ("55956.00", "0.00")  # 100,000 - 29,029.00 - 15,015.00
    # A buy that completes at a better price gives back the rest of its hold in its last trade's entry: 50 t
    # held at 300.00 (15,015.00), bought at 290.00 for 14,514.50; 500.50 released there, no release entry.
    api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "290.00", "quantity": "50"}))
    taker = api.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "300.00", "quantity": "50"}))
    assert taker["order"]["status"] == "filled"
    cash = bal(api, w["b"], "CNY")
    assert (cash["available"], cash["pending"]) == ("41441.50", "0.00")  # 55,956.00 - 14,514.50
    trade = next(e for e in taker["events"] if e["kind"] == "trade")
    (row,) = _entries(api, db_url, "SELECT e.leaf, o.openings FROM ledger_entries e JOIN ledger_entry_openings o "
                      "USING (seq) WHERE e.client_id = $1", f"{m}:trade:{trade['trade_id']}:0")
    # In the clear for the auditor (with the openings); commitments in the bytes both parties' receipts carry.
    buyer_post = clear(bytes(row["leaf"]), bytes(row["openings"]))["body"]["legs"][2]["body"]
    assert (buyer_post["amount"], buyer_post["released"], buyer_post["remaining"]) == (1451450, 50050, 0)
    in_bytes = decode_entry(bytes(row["leaf"]))["body"]["legs"][2]["body"]
    assert all(isinstance(in_bytes[f], str) and len(in_bytes[f]) == 64 for f in ("amount", "released", "remaining"))
    for order in (bid, taker):
        hold = _entries(api, db_url, "SELECT hold_id FROM orders WHERE id = $1", order["order"]["id"])[0]["hold_id"]
        assert _entries(api, db_url, "SELECT seq FROM ledger_entries WHERE client_id = $1",
                        f"{m}:release:hold:{hold}") == []
    _verified(api, db_url)


def test_a_reduce_gives_back_what_the_rest_no_longer_needs(api: Api, db_url: str) -> None:
    w = world(api, fee_bps=10)
    s, b, m = w["s"]["api"], w["b"]["api"], w["m"]
    bid = api.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "300.00", "quantity": "150"}))
    assert bal(api, w["b"], "CNY")["pending"] == "45045.00"
    red = api.ok(b.post(f"/v1/markets/{m}/orders/{bid['order']['id']}/reduce", {"quantity": "40"}))
    assert red["open_quantity"] == "40.000"
    cash = bal(api, w["b"], "CNY")
    assert (cash["pending"], cash["available"]) == ("12012.00", "87988.00")  # 40 t at 300.00 + 12.00
    ask = api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "310.00", "quantity": "100"}))
    api.ok(s.post(f"/v1/markets/{m}/orders/{ask['order']['id']}/reduce", {"quantity": "30"}))
    units = bal(api, w["s"], "CDCER")
    assert (units["pending"], units["available"]) == ("30.000", "4004.000")  # 70 t no longer for sale
    # The reduced buy still trades, and its hold still covers it: 40 t at 300.00 from a new ask.
    fill = api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "300.00", "quantity": "40"}))
    assert fill["order"]["status"] == "filled"
    cash = bal(api, w["b"], "CNY")
    assert (cash["pending"], cash["available"]) == ("0.00", "87988.00")
    _verified(api, db_url)
