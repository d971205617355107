"""Every answer of the market, session and market-data endpoints is declared: each 2xx response in the OpenAPI
document names a schema whose fields are listed (issue #15: controllers returned bare dicts); a maker-checker
operation declares both its answers, the result (201) and the pending proposal (202)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from litestar.testing import TestClient

from api.app import create_app
from exchange.core.settings import Settings
from exchange.core.units import times_in_iso
from exchange.trading import markets
from tests.helpers import Api, bootstrap_operator
from tests.openapi_answers import objects

OPERATIONS = {
    "defineMarket", "listMarkets", "getMarket", "amendMarket", "listMarketEvents", "setSession", "haltMarket",
    "resumeMarket", "getDepth", "listTrades", "getOhlc", "getDailyStats", "listClosePrices",
}


def _operations(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {op["operationId"]: op for item in doc["paths"].values() for op in item.values()
            if isinstance(op, dict) and "operationId" in op}


def test_every_answer_has_a_schema_with_its_fields(client: TestClient) -> None:
    doc = client.get("/schema/openapi.json").json()
    ops = _operations(doc)
    assert set(ops) >= OPERATIONS, OPERATIONS - set(ops)
    bare = []
    for name in sorted(OPERATIONS):
        answers = {s: r for s, r in ops[name]["responses"].items() if s.startswith("2")}
        assert answers, name
        for status, response in answers.items():
            assert response.get("content"), f"{name} {status}: no content"
            for content in response["content"].values():
                for obj in objects(doc, content["schema"]):
                    if not obj.get("properties"):
                        bare.append(f"{name} {status}: {obj}")
    assert bare == [], "\n".join(bare)


def test_maker_checker_operations_declare_the_result_and_the_proposal(client: TestClient) -> None:
    ops = _operations(client.get("/schema/openapi.json").json())
    for name, result in (("defineMarket", "MarketOut"), ("amendMarket", "AmendedOut")):
        responses = ops[name]["responses"]
        assert responses["202"]["content"]["application/json"]["schema"]["$ref"].endswith("/OperatorActionOut")
        refs = [s.get("$ref", "") for s in _members(responses["201"]["content"]["application/json"]["schema"])]
        assert any(r.endswith(f"/{result}") for r in refs), (name, responses["201"])


def _members(schema: dict[str, Any]) -> list[dict[str, Any]]:
    return schema.get("oneOf") or schema.get("anyOf") or [schema]


def _same(a: Any, b: Any) -> bool:
    """Equal with the same key order (the JSON bytes of an answer, up to whitespace)."""
    return json.dumps(a, ensure_ascii=False) == json.dumps(b, ensure_ascii=False)


def test_a_market_answers_as_its_approval_recorded_it(api: Api) -> None:
    """The approval records the market as the service describes it (MarketView.as_dict, the shape the answer
    had as a dict); the answer, now a schema, has the same fields and values (jsonb keeps no key order: the
    order is checked on the direct answers below)."""
    api.instrument("FCT-SM")
    done = api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "listing",
                                    "settings": {"sessions": [], "holidays": ["2031-01-01"]}})
    assert done.status_code == 201, done.text
    shown = api.ok(api.get("/v1/markets/FCT-SM.listing"))
    assert done.json() == shown
    assert shown["session_open"] is True and shown["trading_day"] is not None  # always open: it came up open
    (listed,) = api.ok(api.get("/v1/markets"))
    assert _same(listed, shown)


def test_direct_answers_of_markets_amendments_and_sessions(db_url: str, settings: Settings) -> None:
    """Maker-checker off: the 201s are the schemas (MarketOut, AmendedOut), a retry answers the same bytes; a
    session's answer names `close` only when it closed."""
    app = create_app(settings.model_copy(update={"maker_checker": False}), db_url)
    with TestClient(app, raise_server_exceptions=False, timeout=60) as c:
        op = Api(c, bootstrap_operator(c))
        op.instrument("FCT-SM")
        body = {"instrument": "FCT-SM", "mode": "continuous", "settings": {"t_plus_1": False}}
        first = op.propose("/v1/markets", body, key="define-1")
        assert first.status_code == 201, first.text
        again = op.propose("/v1/markets", body, key="define-1")
        assert again.status_code == 201 and again.content == first.content
        m = first.json()
        assert _same(m, op.ok(op.get(f"/v1/markets/{m['id']}")))
        # The fields in the order the dict answer had them (MarketView.as_dict is that dict).
        view = c.blocking_portal.call(markets.get, c.app.state.rt, m["id"])
        assert _same(m, json.loads(json.dumps(times_in_iso(view.as_dict()), default=str)))
        paused = op.ok(op.post(f"/v1/markets/{m['id']}/session", {"action": "pause"}))
        assert "close" not in paused and paused["session_open"] is False
        closed = op.ok(op.post(f"/v1/markets/{m['id']}/session", {"action": "close"}))
        assert "close" in closed and closed["close"] is None  # no trade and no previous close: no close price
        day = (dt.date.today() + dt.timedelta(days=30))
        while day.weekday() >= 5:
            day += dt.timedelta(days=1)
        amended = op.propose(f"/v1/markets/{m['id']}/amendments",
                             {"effective_from": day.isoformat(), "settings": {"fee_bps": 7}}, key="amend-1")
        assert amended.status_code == 201, amended.text
        a = amended.json()
        assert list(a) == ["amendment", "market"] and a["amendment"]["changes"] == {"fee_bps": 7}
        assert a["amendment"]["applied"] is False and a["amendment"]["operator_action"] is None
        assert _same(a["market"], op.ok(op.get(f"/v1/markets/{m['id']}")))
        (scheduled,) = a["market"]["scheduled_amendments"]
        assert scheduled["rules"]["fee_bps"] == 7 and a["market"]["fee_bps"] == 0
