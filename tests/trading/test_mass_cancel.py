"""Mass cancel and the dead-man switch through HTTP: every hold released, only the caller's own orders,
idempotent by client id, fires once, renewals keep it quiet, and its deadline outlives a restart."""

from __future__ import annotations

import time
from typing import Any

from litestar.testing import TestClient

from api.app import create_app
from tests.helpers import Api, bootstrap_operator
from tests.trading.test_auctions import verified
from tests.trading.test_continuous import bal, world

L = "CDCER.listing"


def two_markets(api: Api) -> dict:
    w = world(api)
    api.ok(api.post("/v1/markets", {"instrument": "CDCER", "mode": "listing",
                                     "settings": {"sessions": [], "band_bps": 2000, "reference_price_fen": 29200}}))
    api.ok(api.post(f"/v1/markets/{L}/session", {"action": "open"}))
    return w


def rest(w: dict) -> dict[str, list[int]]:
    """The seller rests 3 sells and a listing, the buyer 2 buys; their ids by owner."""
    s, b, m = w["s"]["api"], w["b"]["api"], w["m"]
    out: dict[str, list[int]] = {"s": [], "b": []}
    for p in ("295.00", "296.00", "297.00"):
        out["s"].append(s.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": p, "quantity": "10"}))
                        ["order"]["id"])
    s.ok(s.post(f"/v1/markets/{L}/listings", {"side": "sell", "price": "300.00", "quantity": "7"}))
    for p in ("280.00", "281.00"):
        out["b"].append(b.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": p, "quantity": "10"}))
                        ["order"]["id"])
    return out


def released(api: Api, who: dict) -> None:
    """Nothing of `who`'s is held any more: available is posted, for units and cash."""
    for inst in ("CDCER", "CNY"):
        b = bal(api, who, inst)
        assert b.get("available") == b.get("posted") and b.get("pending") in (None, "0.00", "0.000"), (inst, b)


def statuses(api: Api, who: dict, m: str) -> list[tuple[str, str | None]]:
    return [(o["status"], o["reason"]) for o in api.ok(who["api"].get(f"/v1/markets/{m}/orders"))]


def test_mass_cancel_in_one_market_then_all_releases_every_hold(api: Api, db_url: str) -> None:
    w = two_markets(api)
    ids = rest(w)
    s, b, m = w["s"]["api"], w["b"]["api"], w["m"]
    buyer_cash = bal(api, w["b"], "CNY")
    one = s.post(f"/v1/markets/{m}/orders/cancel-all", {}, key="mc-1")
    assert one.status_code == 200, one.text
    doc = one.json()
    assert doc["market_id"] == m and doc["reason"] == "mass_cancel" and doc["not_cancelled"] == []
    assert [(c["order_id"], c["quantity"], c["side"]) for c in doc["cancelled"]] == \
        [(i, "10.000", "sell") for i in ids["s"]]
    assert statuses(api, w["s"], m) == [("cancelled", "mass_cancel")] * 3
    # The listing in the other market still rests and holds its 7 t; the buyer's orders are untouched.
    assert bal(api, w["s"], "CDCER")["pending"] == "7.000"
    assert statuses(api, w["b"], m) == [("open", None)] * 2 and bal(api, w["b"], "CNY") == buyer_cash
    # Idempotent: the same request again is the same bytes; the same key for another scope is refused.
    assert s.post(f"/v1/markets/{m}/orders/cancel-all", {}, key="mc-1").content == one.content
    assert s.post("/v1/orders/cancel-all", {"client_id": "mc-1"}, key=None).json()["code"] == "idempotency_conflict"
    again = s.post(f"/v1/markets/{m}/orders/cancel-all", {"client_id": "mc-1"}, key=None)  # other bytes, same key
    assert again.status_code == 200 and again.json() == doc
    # Every market: the listing goes too, and nothing of the seller's is held.
    every = api.ok(s.post("/v1/orders/cancel-all", {}))
    assert every["market_id"] is None and [c["market_id"] for c in every["cancelled"]] == [L]
    released(api, w["s"])
    # The buyer's own mass cancel cancels the buyer's, and gives all its cash back.
    mine = api.ok(b.post("/v1/orders/cancel-all", {}))
    assert sorted(c["order_id"] for c in mine["cancelled"]) == ids["b"]
    released(api, w["b"])
    # Nothing left: a mass cancel cancels nothing and says so.
    assert api.ok(b.post("/v1/orders/cancel-all", {}))["cancelled"] == []
    verified(api, db_url)


def test_mass_cancel_is_the_callers_own_and_bounded(api: Api) -> None:
    w = two_markets(api)
    rest(w)
    m = w["m"]
    auditor = api.participant("某某审计", "auditor")["api"]
    assert auditor.post("/v1/orders/cancel-all", {}).status_code == 403
    assert auditor.post("/v1/orders/dead-man-switch", {"timeout_seconds": 5}).status_code == 403
    other = api.participant("另一家企业", "enterprise")["api"]
    assert api.ok(other.post("/v1/orders/cancel-all", {}))["cancelled"] == []
    assert api.ok(other.post(f"/v1/markets/{m}/orders/cancel-all", {}))["cancelled"] == []
    assert statuses(api, w["s"], m) == [("open", None)] * 3 and statuses(api, w["b"], m) == [("open", None)] * 2
    assert other.post("/v1/markets/NOPE.continuous/orders/cancel-all", {}).json()["code"] == "not_found"
    assert other.post("/v1/orders/cancel-all", {"market_id": "NOPE"}).json()["code"] == "not_found"
    assert other.post(f"/v1/markets/{m}/orders/cancel-all", {"market_id": L}).status_code == 422
    for body in ({"timeout_seconds": -1}, {"timeout_seconds": 86_401}, {"timeout_seconds": "5"},
                 {"timeout_seconds": 5.0}, {"timeout_seconds": True}, {}, {"timeout_seconds": 5, "x": 1}):
        assert other.post("/v1/orders/dead-man-switch", body).status_code == 422, body
    assert other.post("/v1/orders/dead-man-switch", {"timeout_seconds": 5, "market_id": "NOPE"}).status_code == 404


def _wait(cond: Any, seconds: float = 30.0) -> None:
    end = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def _switch(who: Api) -> dict:
    [only] = who.ok(who.get("/v1/orders/dead-man-switch"))
    return only


def test_dead_man_switch_fires_once_and_releases_every_hold(api: Api, db_url: str) -> None:
    w = two_markets(api)
    ids = rest(w)
    s, m = w["s"]["api"], w["m"]
    armed = api.ok(s.post("/v1/orders/dead-man-switch", {"timeout_seconds": 1}))
    assert armed["armed"] and armed["market_id"] is None and armed["timeout_seconds"] == 1
    _wait(lambda: _switch(s)["last_fired_at"] is not None)
    fired = _switch(s)
    assert not fired["armed"] and not fired["firing"] and fired["last_fired_cancelled"] == 4
    assert statuses(api, w["s"], m) == [("cancelled", "dead_man_switch")] * 3
    assert [o["status"] for o in api.ok(s.get(f"/v1/markets/{L}/listings"))] == []
    released(api, w["s"])
    assert statuses(api, w["b"], m) == [("open", None)] * 2  # another's switch cancels nothing of the buyer's
    # Fired once: an order placed after it rests on.
    later = api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "299.00", "quantity": "1"}))
    time.sleep(1.5)
    assert api.ok(s.get(f"/v1/markets/{m}/orders/{later['order']['id']}"))["status"] == "open"
    assert _switch(s)["last_fired_cancelled"] == 4 and ids["s"]
    verified(api, db_url)


def test_renewals_keep_it_quiet_and_zero_disarms(api: Api) -> None:
    w = two_markets(api)
    rest(w)
    s, m = w["s"]["api"], w["m"]
    api.ok(s.post("/v1/orders/dead-man-switch", {"timeout_seconds": 3, "market_id": m}))
    first = _switch(s)["deadline"]
    for _ in range(5):  # renewed about each 0.8 s for 4 s and more: longer than its timeout, never due
        time.sleep(0.8)
        api.ok(s.post("/v1/orders/dead-man-switch", {"timeout_seconds": 3, "market_id": m}))
    assert _switch(s)["deadline"] > first and _switch(s)["last_fired_at"] is None
    # A retry of the last renewal (its client id) does not move the deadline.
    deadline = _switch(s)["deadline"]
    time.sleep(0.2)
    api.ok(s.post("/v1/orders/dead-man-switch", {"timeout_seconds": 3, "market_id": m, "client_id": "same"}, key=None))
    moved = _switch(s)["deadline"]
    assert moved > deadline
    time.sleep(0.2)
    api.ok(s.post("/v1/orders/dead-man-switch", {"timeout_seconds": 3, "market_id": m, "client_id": "same"}, key=None))
    assert _switch(s)["deadline"] == moved
    off = api.ok(s.post("/v1/orders/dead-man-switch", {"timeout_seconds": 0, "market_id": m}))
    assert not off["armed"] and off["deadline"] is None
    time.sleep(3.5)
    assert statuses(api, w["s"], m) == [("open", None)] * 3 and _switch(s)["last_fired_at"] is None


def test_a_deadline_that_passed_while_down_fires_at_start(db_url: str, settings: Any) -> None:
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as first:
        api = Api(first, bootstrap_operator(first))
        w = two_markets(api)
        rest(w)
        tokens = {k: w[k]["api"].token for k in ("s", "b")}
        api.ok(w["s"]["api"].post("/v1/orders/dead-man-switch", {"timeout_seconds": 1}))
        api.ok(w["b"]["api"].post("/v1/orders/dead-man-switch", {"timeout_seconds": 3600}))
    time.sleep(1.5)  # down past the seller's deadline
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as second:
        api = Api(second, tokens["s"])
        s, b = {"api": api}, {"api": api.as_(tokens["b"])}
        _wait(lambda: _switch(api)["last_fired_at"] is not None)
        assert _switch(api)["last_fired_cancelled"] == 4
        released(api, s)
        # The buyer's switch kept its deadline across the restart: armed, not fired, its orders rest.
        assert _switch(b["api"])["armed"] and _switch(b["api"])["last_fired_at"] is None
        assert statuses(api, b, w["m"]) == [("open", None)] * 2
        verified(api, db_url)
