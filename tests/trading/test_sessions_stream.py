"""Sessions (close expires day orders and releases their holds; jobs claim once) and the market stream."""

from __future__ import annotations

import time

from exchange.trading import sessions
from tests.helpers import Api, ticket


def _market(api: Api) -> dict:
    api.instrument("FCT-SM")
    issuer = api.participant("三明市林业局", "issuer")
    s = api.participant("卖方", "enterprise")
    b = api.participant("买方", "enterprise")
    api.issue(issuer["api"], s["id"], "FCT-SM", "1000", ticket(1))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": b["id"], "amount": "10000.00", "bank_reference": "d"}))
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "continuous", "settings": {"sessions": []}}))
    api.ok(api.post("/v1/markets/FCT-SM.continuous/session", {"action": "open"}))
    return {"s": s, "b": b, "m": "FCT-SM.continuous"}


def test_close_expires_day_orders_and_releases_their_holds(api: Api) -> None:
    w = _market(api)
    m = w["m"]
    bid = api.ok(w["b"]["api"].post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "10.00", "quantity": "100"}))
    cash = {x["instrument"]: x for x in api.ok(w["b"]["api"].get("/v1/holdings"))["balances"]}["CNY"]
    assert cash["pending"] == "1000.00"
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "close"}))
    assert api.ok(w["b"]["api"].get(f"/v1/markets/{m}/orders/{bid['order']['id']}"))["status"] == "expired"
    cash = {x["instrument"]: x for x in api.ok(w["b"]["api"].get("/v1/holdings"))["balances"]}["CNY"]
    assert (cash["pending"], cash["available"]) == ("0.00", "10000.00")
    late = w["b"]["api"].post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "10.00", "quantity": "1"})
    assert late.status_code == 409 and late.json()["code"] == "outside_session"


def test_scheduled_jobs_claim_their_run_once(api: Api) -> None:
    _market(api)
    rt = api.client.app.state.rt
    portal = api.client.blocking_portal
    assert portal.call(sessions.claim, rt, "session:close", "FCT-SM.continuous:2026-11-23:15:00") is True
    # A second process (or a retry) finds the run taken and does nothing.
    assert portal.call(sessions.claim, rt, "session:close", "FCT-SM.continuous:2026-11-23:15:00") is False
    assert portal.call(sessions.claim, rt, "session:close", "FCT-SM.continuous:2026-11-24:15:00") is True


def test_stream_sends_snapshot_then_trades_and_depth_with_sequence_numbers(api: Api) -> None:
    w = _market(api)
    m = w["m"]
    with api.client.websocket_connect(f"/v1/markets/{m}/stream") as ws:
        snap = ws.receive_json()
        assert snap["type"] == "snapshot" and snap["asks"] == []
        api.ok(w["s"]["api"].post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "10.00", "quantity": "5"}))
        depth1 = ws.receive_json()
        assert depth1["type"] == "depth" and depth1["seq"] > snap["seq"]
        assert depth1["asks"] == [{"price": "10.00", "quantity": "5", "orders": 1}]  # as GET .../depth says it
        api.ok(w["b"]["api"].post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "10.00", "quantity": "5"}))
        trade, depth2 = ws.receive_json(), ws.receive_json()
        assert (trade["type"], trade["price"], trade["quantity"], trade["amount"]) == ("trade", "10.00", "5", "50.00")
        assert trade == {"type": "trade", **api.ok(api.client.get(f"/v1/markets/{m}/trades"))[0],
                         "taker_side": "buy"}  # the stream and the trade list speak alike; neither names anyone
        assert depth2["asks"] == [] and depth2["seq"] == depth1["seq"] + 1  # one command later: no gap


def test_one_address_holds_only_so_many_streams_and_a_closed_one_frees_its_slot(api: Api) -> None:
    """A client cannot multiply the work of every market event by opening streams without end (red team
    round 4, F11): ENVX_STREAMS_PER_ADDRESS (20) per address, the next one is closed with 1013."""
    from contextlib import ExitStack

    from litestar.exceptions import WebSocketDisconnect as Closed

    m = _market(api)["m"]
    with ExitStack() as open_streams:
        for _ in range(20):
            assert open_streams.enter_context(api.client.websocket_connect(f"/v1/markets/{m}/stream")) \
                .receive_json()["type"] == "snapshot"
        with api.client.websocket_connect(f"/v1/markets/{m}/stream") as extra:
            refused = extra.receive_json()
            assert (refused["type"], refused["code"]) == ("error", "rate_limited")
            try:
                extra.receive_json()
                raise AssertionError("the 21st stream stayed open")
            except Closed as exc:
                assert exc.code == 1013
    # The twenty were closed: their slots come back as the server notices (bounded wait).
    for _ in range(50):
        with api.client.websocket_connect(f"/v1/markets/{m}/stream") as again:
            if again.receive_json()["type"] == "snapshot":
                break
        time.sleep(0.1)
    else:
        raise AssertionError("the closed streams' slots never came back")
