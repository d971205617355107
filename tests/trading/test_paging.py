"""Cursor paging of market lists (Link: <...>; rel="next") and whole-book depth (issue #14)."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Any

from exchange.trading import sessions
from tests.helpers import Api, ticket

M = "FCT-SM.continuous"
NEXT = re.compile(r'^<([^>]+)>; rel="next"$')


def pages(api: Api, path: str, between: Any = None, **params: Any) -> list[list[dict[str, Any]]]:
    """Follow rel="next" from `path` to the end; `between(n)` runs after page n."""
    out = []
    resp = api.get(path, **params)
    while True:
        assert resp.status_code == 200, resp.text
        out.append(resp.json())
        if between is not None:
            between(len(out))
        link = resp.headers.get("link")
        if link is None:
            return out
        url = NEXT.match(link)
        assert url is not None, link
        resp = api.client.get(url.group(1), headers={"Authorization": f"Bearer {api.token}"})


def _book(api: Api) -> tuple[dict, dict]:
    api.instrument("FCT-SM")
    s, b = api.participant("卖方", "enterprise"), api.participant("买方", "enterprise")
    api.issue(api.participant("三明市林业局", "issuer")["api"], s["id"], "FCT-SM", "100000", ticket(1))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": b["id"], "amount": "100000.00", "bank_reference": "d"}))
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "continuous",
                                     "settings": {"sessions": [], "t_plus_1": False, "band_bps": None}}))
    return s, b


def test_more_than_500_orders_page_completely_while_new_ones_arrive(api: Api) -> None:
    s, _ = _book(api)
    seller = s["api"]
    placed = [api.ok(seller.post(f"/v1/markets/{M}/orders", {"side": "sell", "price": f"{10 + n / 100:.2f}",
                                                              "quantity": "1"}))["order"]["id"] for n in range(620)]
    first = api.get(f"/v1/markets/{M}/orders")
    assert len(first.json()) == 500 and 'rel="next"' in first.headers["link"]  # the old cap, now a page

    arrived: list[int] = []

    def more(n: int) -> None:  # new orders between the pages
        for k in range(15):
            arrived.append(api.ok(seller.post(f"/v1/markets/{M}/orders", {
                "side": "sell", "price": f"{30 + n + k / 100:.2f}", "quantity": "1"}))["order"]["id"])

    got = pages(api, f"/v1/markets/{M}/orders", between=more, limit=200)
    ids = [o["id"] for page in got for o in page]
    assert len(ids) == len(set(ids)), "an order was listed twice"
    assert ids == sorted(ids)  # oldest first
    assert set(placed) <= set(ids), "an order was skipped"
    assert set(ids) <= set(placed) | set(arrived)
    assert set(arrived) - set(ids) == set(arrived[-15:])  # only what arrived after the last page
    assert all(len(page) <= 200 for page in got)
    # The owner pages its own orders the same way; a status filter pages too.
    own = [o["id"] for page in pages(s["api"], f"/v1/markets/{M}/orders", limit=300, status="open") for o in page]
    assert own == sorted(placed + arrived)


def test_depth_whole_book_and_bounds(api: Api) -> None:
    s, _ = _book(api)
    for n in range(60):
        api.ok(s["api"].post(f"/v1/markets/{M}/orders", {"side": "sell", "price": f"{10 + n / 100:.2f}",
                                                          "quantity": "2"}))
    assert len(api.ok(api.client.get(f"/v1/markets/{M}/depth"))["asks"]) == 5
    assert len(api.ok(api.client.get(f"/v1/markets/{M}/depth", params={"levels": 40}))["asks"]) == 40
    whole = api.ok(api.client.get(f"/v1/markets/{M}/depth", params={"levels": "all"}))["asks"]
    assert len(whole) == 60 and whole[0]["price"] == "10.00" and whole[-1]["price"] == "10.59"
    for bad in ("0", "-1", "al", "10000", "1.5"):
        r = api.client.get(f"/v1/markets/{M}/depth", params={"levels": bad})
        assert r.status_code == 422, (bad, r.text)


def test_trades_listings_quotes_closes_and_events_page_with_cursors(api: Api) -> None:
    s, b = _book(api)
    for _ in range(5):
        api.ok(s["api"].post(f"/v1/markets/{M}/orders", {"side": "sell", "price": "10.00", "quantity": "1"}))
        api.ok(b["api"].post(f"/v1/markets/{M}/orders", {"side": "buy", "price": "10.00", "quantity": "1"}))
    trades = pages(api, f"/v1/markets/{M}/trades", limit=2)
    assert [len(p) for p in trades] == [2, 2, 1]
    assert [t["trade_id"] for p in trades for t in p] == [1, 2, 3, 4, 5]
    assert [t["trade_id"] for p in pages(api, f"/v1/markets/{M}/trades", limit=2, after=3) for t in p] == [4, 5]

    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "listing", "settings": {"sessions": []}}))
    lm = "FCT-SM.listing"
    for price in ("10.20", "10.10", "10.30", "10.10", "10.00"):
        api.ok(s["api"].post(f"/v1/markets/{lm}/listings", {"side": "sell", "price": price, "quantity": "1"}))
    api.ok(b["api"].post(f"/v1/markets/{lm}/listings", {"side": "buy", "price": "9.00", "quantity": "1"}))
    listed = [(x["side"], x["price"], x["rank"]) for p in pages(api, f"/v1/markets/{lm}/listings", limit=2)
              for x in p]
    assert listed == [("buy", "9.00", 1), ("sell", "10.00", 1), ("sell", "10.10", 2), ("sell", "10.10", 2),
                      ("sell", "10.20", 3), ("sell", "10.30", 4)]

    rt = api.client.app.state.rt
    day = api.ok(api.client.get(f"/v1/markets/{M}"))["trading_day"]
    for n in range(3):  # three days of closes (the later two carry the first forward)
        api.client.blocking_portal.call(sessions.compute_close, rt, "FCT-SM",
                                        date.fromisoformat(day) + timedelta(days=n))
    closes = pages(api, "/v1/instruments/FCT-SM/closes", limit=1)
    assert [[c["method"] for c in p] for p in closes] == [["previous_close"], ["previous_close"], ["vwap"]]
    daily = pages(api, "/v1/instruments/FCT-SM/daily", limit=1)
    assert [r["mode"] for p in daily for r in p] == ["continuous"]
    candles = pages(api, f"/v1/markets/{M}/ohlc", limit=1, interval="1m")
    assert sum(c["volume"] != "0" for p in candles for c in p) == len(candles) >= 1

    api.instrument("CEA25", kind="cea", attributes={"compliance_year": 2025})
    api.issue(api.participant("生态环境部", "issuer")["api"], s["id"], "CEA25", "500000", {})
    api.ok(api.post("/v1/markets", {"instrument": "CEA25", "mode": "block", "settings": {"sessions": []}}))
    quotes = [api.ok(s["api"].post("/v1/markets/CEA25.block/block-quotes", {
        "side": "sell", "price": "100.00", "quantity": "100000"}))["seq"] for _ in range(3)]
    got = [q["quote_id"] for p in pages(b["api"], "/v1/markets/CEA25.block/block-quotes", limit=2) for q in p]
    assert got == quotes

    assert len(pages(api, "/v1/markets", limit=1)) == 3
    assert [e["kind"] for p in pages(api, f"/v1/markets/{M}/events", limit=1) for e in p] == ["open"]


def test_cursors_are_checked(api: Api) -> None:
    _book(api)
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "listing", "settings": {"sessions": []}}))
    link = api.get("/v1/markets", limit=1).headers["link"]
    cursor = link.split("cursor=")[1].split(">")[0]
    for path in (f"/v1/markets/{M}/orders", f"/v1/markets/{M}/trades", "/v1/instruments/FCT-SM/closes"):
        r = api.get(path, cursor=cursor)  # another list's cursor
        assert r.status_code == 422 and r.json()["code"] == "invalid_cursor", r.text
    for junk in ("%%%", "bm90IGpzb24", "WzEsMiwzXQ", "x" * 600):
        r = api.get(f"/v1/markets/{M}/orders", cursor=junk)
        assert r.status_code == 422, (junk, r.text)
