"""The demo data (exchange/demo_data.json) loads through the same services users call, twice."""

from __future__ import annotations

from exchange import demo
from tests.helpers import Api


def test_demo_data_loads_and_reloads(api: Api, client) -> None:
    rt = client.app.state.rt
    people = client.blocking_portal.call(demo.load, rt, None)
    client.blocking_portal.call(demo.load, rt, None)  # idempotent: fixed client ids
    requests = api.ok(api.get("/v1/issuances"))
    assert len(requests) == len(demo.demo_data()["issuances"])
    assert all(r["status"] == "approved" and r["flags"] == [] for r in requests)
    tickets = [r["attributes"]["ticket_number"] for r in requests if r["kind"] == "forest_ticket"]
    assert tickets == ["0000001", "0000002", "0000003", "0000004", "0000005"]
    assert api.ok(api.get("/v1/instruments/GDEA24"))["attributes"]["region"] == "guangdong"
    assert people["sanming_owner"]["kind"] == "enterprise"
