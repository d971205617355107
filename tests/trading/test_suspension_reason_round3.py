"""Red team round 3, finding 9: orders the registry cancels because their owner was suspended say so
(reason `suspended`), not `requested` as if the owner had cancelled them."""

from __future__ import annotations

from tests.helpers import Api
from tests.trading.test_continuous import world


def test_orders_cancelled_by_a_suspension_say_suspended(api: Api) -> None:
    w = world(api)
    s, m = w["s"], w["m"]
    own = api.ok(s["api"].post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "300.00", "quantity": "5"}))
    api.ok(s["api"].post(f"/v1/markets/{m}/orders/{own['order']['id']}/cancel", {}))
    resting = [api.ok(s["api"].post(f"/v1/markets/{m}/orders", body))["order"]["id"] for body in (
        {"side": "sell", "price": "301.00", "quantity": "5"}, {"side": "buy", "price": "250.00", "quantity": "1"})]
    api.ok(api.post(f"/v1/participants/{s['id']}/suspend", {"reason": "key leaked"}))
    for oid in resting:
        o = api.ok(api.get(f"/v1/markets/{m}/orders/{oid}"))
        assert (o["status"], o["reason"]) == ("cancelled", "suspended"), o
    # Its own cancel still reads as its own.
    o = api.ok(api.get(f"/v1/markets/{m}/orders/{own['order']['id']}"))
    assert (o["status"], o["reason"]) == ("cancelled", "requested"), o
