"""Every trading answer is what the OpenAPI document says it is, and its bytes did not change when the answers
became schemas (issue #15).

One scenario drives each trading endpoint through HTTP (orders, listings, block negotiation, auctions, a
deposit, a replay of each kind of command). The test checks each 2xx answer against its operation's declared
schema: every field it has is declared, every required one is there, each value has its declared type.

The bytes of each row of `orders` as answered are also compared with the dict the service answered before the
schemas (ShownOrder.as_dict). Set ENVX_RECORD_ANSWERS=<file> to also write the answers' bytes (times masked) to
that file: run it on the code before a change and after, and compare the two files (`cmp`) -- that is how the
schemas were shown to answer the bytes the dicts answered, field order included (the exact-replay store keeps
answered bytes).
"""

from __future__ import annotations

import json
import os
import re
import time
from datetime import datetime
from typing import Any

from exchange.trading import repository
from exchange.trading.models import ShownOrder
from tests.helpers import Api, project_batch

_TIME = re.compile(rb'"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|\+00:00)"')


def _market(api: Api, code: str, mode: str, settings: dict[str, Any]) -> str:
    api.ok(api.post("/v1/markets", {"instrument": code, "mode": mode, "settings": {"sessions": [], **settings}}))
    m = f"{code}.{mode}"
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open"}))
    return m


def _scenario(api: Api) -> list[tuple[str, str, str, Any]]:
    """(operation id, method, path, response) of each trading call, in order."""
    out: list[tuple[str, str, str, Any]] = []

    def call(who: Api, op: str, method: str, path: str, body: dict[str, Any] | None = None,
             key: str | None = "auto") -> Any:
        resp = who.get(path) if method == "GET" else who.post(path, body or {}, key=key)
        out.append((op, method, path, resp))
        assert resp.status_code in (200, 201), (op, path, resp.text)
        return resp.json()

    def again(who: Api, op: str, path: str, body: dict[str, Any], key: str) -> Any:
        """The same request with its key in the body instead of the header: other bytes, so the service's
        own replay answers it (api/security/replays.py), not the edge's store."""
        return call(who, op, "POST", path, {**body, "client_id": key}, key=None)

    api.instrument("CDCER", kind="cdcer", decimals=3)
    api.instrument("CEA25", kind="cea", attributes={"compliance_year": 2025})
    api.instrument("PW-NOX-X", kind="emission_right", decimals=3,
                   attributes={"pollutant": "NOx", "region": "测试县", "validity_years": 2})
    issuer = api.participant("成都市生态环境局", "issuer")
    s = api.participant("成都天投蔚蓝生物科技有限公司", "enterprise")
    b = api.participant("成都市绿色低碳发展协会", "enterprise")
    c = api.participant("控排企业丙", "enterprise")
    api.issue(issuer["api"], s["id"], "CDCER", "4034", project_batch("天府新区厨余垃圾资源化利用"))
    api.issue(issuer["api"], s["id"], "CEA25", "300000", {"allocation": "free"})
    api.issue(issuer["api"], issuer["id"], "PW-NOX-X", "3.000",
              {"valid_from": "2026-01-01", "valid_until": "2027-12-31", "source": "government reserve"})
    for who in (b, c):
        api.ok(api.post("/v1/cash/deposits", {"participant_id": who["id"], "amount": "50000000.00",
                                              "bank_reference": f"d{who['id']}"}))
    S, B, C = s["api"], b["api"], c["api"]

    # The continuous book: rest, trade, replay, list, get, reduce, cancel twice.
    m = _market(api, "CDCER", "continuous", {"fee_bps": 10, "band_bps": 2000, "reference_price_fen": 29200,
                                             "t_plus_1": False})
    ask = call(S, "placeOrder", "POST", f"/v1/markets/{m}/orders", {"side": "sell", "price": "290.00",
                                                                    "quantity": "100"})
    call(B, "placeOrder", "POST", f"/v1/markets/{m}/orders", {"side": "buy", "price": "300.00", "quantity": "150"},
         key="buy-1")
    again(B, "placeOrder", f"/v1/markets/{m}/orders", {"side": "buy", "price": "300.00", "quantity": "150"}, "buy-1")
    call(S, "placeOrder", "POST", f"/v1/markets/{m}/orders", {"side": "sell", "type": "market", "quantity": "10",
                                                              "tif": "ioc"})
    rest = call(S, "placeOrder", "POST", f"/v1/markets/{m}/orders", {"side": "sell", "price": "310.00",
                                                                     "quantity": "20"})
    call(B, "listOrders", "GET", f"/v1/markets/{m}/orders")
    call(api, "listOrders", "GET", f"/v1/markets/{m}/orders?status=open")
    call(S, "getOrder", "GET", f"/v1/markets/{m}/orders/{ask['order']['id']}")
    call(S, "reduceOrder", "POST", f"/v1/markets/{m}/orders/{rest['order']['id']}/reduce", {"quantity": "5"})
    call(S, "cancelOrder", "POST", f"/v1/markets/{m}/orders/{rest['order']['id']}/cancel")
    call(S, "cancelOrder", "POST", f"/v1/markets/{m}/orders/{rest['order']['id']}/cancel")

    # Listings: post, list, take, a replayed take.
    m = _market(api, "CDCER", "listing", {"t_plus_1": False})
    li = call(S, "postListing", "POST", f"/v1/markets/{m}/listings", {"side": "sell", "price": "280.00",
                                                                      "quantity": "30"})
    call(S, "postListing", "POST", f"/v1/markets/{m}/listings", {"side": "sell", "price": "281.00",
                                                                 "quantity": "30"})
    call(B, "listListings", "GET", f"/v1/markets/{m}/listings")
    call(B, "listListings", "GET", f"/v1/markets/{m}/listings?side=sell&limit=1")
    for _ in range(2):
        call(B, "takeListing", "POST", f"/v1/markets/{m}/listings/{li['order']['id']}/take", {"quantity": "10"},
             key="take-1")
    again(B, "takeListing", f"/v1/markets/{m}/listings/{li['order']['id']}/take", {"quantity": "10"}, "take-1")

    # Block negotiation: quote, list, respond, counter, deal, decline; another deal confirmed; a withdrawal.
    m = _market(api, "CEA25", "block", {"reference_price_fen": 10000})
    q = call(S, "createBlockQuote", "POST", f"/v1/markets/{m}/block-quotes", {
        "side": "sell", "price": "100.00", "quantity": "150000", "audience": "group",
        "counterparties": [b["id"], c["id"]]}, key="quote-1")["seq"]
    again(S, "createBlockQuote", f"/v1/markets/{m}/block-quotes", {
        "side": "sell", "price": "100.00", "quantity": "150000", "audience": "group",
        "counterparties": [b["id"], c["id"]]}, "quote-1")
    call(B, "listBlockQuotes", "GET", f"/v1/markets/{m}/block-quotes")
    d1 = call(C, "respondBlockQuote", "POST", f"/v1/markets/{m}/block-quotes/{q}/respond",
              {"price": "95.00", "quantity": "100000"})["seq"]
    call(S, "counterDeal", "POST", f"/v1/markets/{m}/deals/{d1}/counter", {"price": "99.00", "quantity": "100000"})
    call(C, "getDeal", "GET", f"/v1/markets/{m}/deals/{d1}")
    call(C, "declineDeal", "POST", f"/v1/markets/{m}/deals/{d1}/decline")
    d2 = call(B, "respondBlockQuote", "POST", f"/v1/markets/{m}/block-quotes/{q}/respond",
              {"price": "98.00", "quantity": "120000"})["seq"]
    call(S, "getDeal", "GET", f"/v1/markets/{m}/deals/{d2}")
    for _ in range(2):
        call(S, "confirmDeal", "POST", f"/v1/markets/{m}/deals/{d2}/confirm", key="confirm-1")
    again(S, "confirmDeal", f"/v1/markets/{m}/deals/{d2}/confirm", {}, "confirm-1")
    q2 = call(S, "createBlockQuote", "POST", f"/v1/markets/{m}/block-quotes", {
        "side": "sell", "price": "101.00", "quantity": "100000"})["seq"]
    call(S, "withdrawBlockQuote", "POST", f"/v1/markets/{m}/block-quotes/{q2}/withdraw")

    # An auction: announce, register (a deposit), bid, raise, withdraw, allocate.
    m = _market(api, "PW-NOX-X", "auction", {"fee_bps": 3})
    R = issuer["api"]
    terms = {"quantity": "3.000", "min_price": "4000", "increment": "100", "deposit": "2000.00",
             "max_bids_per_bidder": 3, "allocation": "top_percent", "top_percent": 50, "min_bid_quantity": "1.000",
             "cap_per_bidder": "2.000", "irrevocable": False}
    lot = call(R, "announceAuction", "POST", f"/v1/markets/{m}/auctions", terms, key="lot")
    again(R, "announceAuction", f"/v1/markets/{m}/auctions", terms, "lot")
    aid = lot["order"]["id"]
    call(api, "getAuction", "GET", f"/v1/markets/{m}/auctions/{aid}")
    call(R, "stepAuction", "POST", f"/v1/markets/{m}/auctions/{aid}/step", {"action": "registration"})
    for who in (B, C):
        call(who, "registerForAuction", "POST", f"/v1/markets/{m}/auctions/{aid}/register", key="reg")
        again(who, "registerForAuction", f"/v1/markets/{m}/auctions/{aid}/register", {}, "reg")
    call(R, "stepAuction", "POST", f"/v1/markets/{m}/auctions/{aid}/step", {"action": "bidding",
                                                                           "duration_seconds": 3})
    call(B, "placeBid", "POST", f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "4000", "quantity": "1.000"})
    call(B, "placeBid", "POST", f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "4200", "quantity": "2.000"},
         key="raise")
    again(B, "placeBid", f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "4200", "quantity": "2.000"}, "raise")
    wc = call(C, "placeBid", "POST", f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "4100", "quantity": "1.000"})
    call(C, "withdrawBid", "POST", f"/v1/markets/{m}/auctions/{aid}/bids/{wc['order']['id']}/withdraw")
    call(C, "placeBid", "POST", f"/v1/markets/{m}/auctions/{aid}/bids", {"price": "4300", "quantity": "1.000"})
    call(api, "getAuction", "GET", f"/v1/markets/{m}/auctions/{aid}")
    ends = datetime.fromisoformat(api.ok(api.get(f"/v1/markets/{m}/auctions/{aid}"))["ends_at"])
    time.sleep(max(0.0, ends.timestamp() - time.time()) + 0.05)
    call(R, "stepAuction", "POST", f"/v1/markets/{m}/auctions/{aid}/step", {"action": "close"})
    call(R, "stepAuction", "POST", f"/v1/markets/{m}/auctions/{aid}/step", {"action": "allocate"}, key="alloc")
    again(R, "stepAuction", f"/v1/markets/{m}/auctions/{aid}/step", {"action": "allocate"}, "alloc")
    call(api, "getAuction", "GET", f"/v1/markets/{m}/auctions/{aid}")
    return out


# --- the answer against its declared schema -------------------------------------------------------------

_TYPES: dict[str, Any] = {"string": str, "integer": int, "boolean": bool, "array": list, "object": dict,
                          "null": type(None), "number": (int, float)}


def _conforms(doc: dict[str, Any], schema: dict[str, Any], value: Any, where: str) -> list[str]:
    """Where `value` is not what `schema` says (empty: it is)."""
    while "$ref" in schema:
        schema = doc["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    members = schema.get("oneOf") or schema.get("anyOf")
    if members:
        found = [_conforms(doc, m, value, where) for m in members]
        return [] if any(f == [] for f in found) else min(found, key=len)
    if "const" in schema and value != schema["const"]:
        return [f"{where}: {value!r} is not {schema['const']!r}"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{where}: {value!r} not in {schema['enum']}"]
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(isinstance(value, _TYPES[k]) and not (k in ("integer", "number") and isinstance(value, bool))
                   for k in kinds):
            return [f"{where}: {value!r} is not {kind}"]
    errors: list[str] = []
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        errors += [f"{where}.{k}: not declared" for k in value if k not in props]
        errors += [f"{where}.{k}: required, missing" for k in schema.get("required", []) if k not in value]
        for k, v in value.items():
            if k in props:
                errors += _conforms(doc, props[k], v, f"{where}.{k}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errors += _conforms(doc, schema["items"], v, f"{where}[{i}]")
    return errors


def _declared(doc: dict[str, Any], op_id: str, status: int) -> dict[str, Any]:
    for item in doc["paths"].values():
        for op in item.values():
            if isinstance(op, dict) and op.get("operationId") == op_id:
                return op["responses"][str(status)]["content"]["application/json"]["schema"]  # type: ignore[no-any-return]
    raise AssertionError(f"no operation {op_id}")


def test_each_trading_answer_is_what_the_document_declares(api: Api) -> None:
    doc = api.client.get("/schema/openapi.json").json()
    calls = _scenario(api)
    recorded, errors = [], []
    for op, method, path, resp in calls:
        assert resp.status_code in (200, 201), (op, path, resp.text)
        recorded.append(f"{resp.status_code} {method} {path}\n".encode() + _TIME.sub(b'"<time>"', resp.content))
        errors += _conforms(doc, _declared(doc, op, resp.status_code), resp.json(), f"{op} {path}")
    assert {op for op, *_ in calls} >= {
        "placeOrder", "listOrders", "getOrder", "reduceOrder", "cancelOrder", "postListing", "listListings",
        "takeListing", "createBlockQuote", "listBlockQuotes", "respondBlockQuote", "counterDeal", "getDeal",
        "declineDeal", "confirmDeal", "withdrawBlockQuote", "announceAuction", "getAuction", "stepAuction",
        "registerForAuction", "placeBid", "withdrawBid"}
    if os.environ.get("ENVX_RECORD_ANSWERS"):
        with open(os.environ["ENVX_RECORD_ANSWERS"], "wb") as f:
            f.write(b"\n\n".join(recorded) + b"\n")
    assert errors == [], "\n".join(errors)


def test_the_conformance_check_finds_a_stray_a_missing_and_a_mistyped_field() -> None:
    """The check itself (it must be able to fail): each kind of mismatch is reported."""
    doc = {"components": {"schemas": {"X": {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "string"}, "b": {"anyOf": [{"type": "integer"}, {"type": "null"}]}}}}}}
    ref = {"$ref": "#/components/schemas/X"}
    assert _conforms(doc, ref, {"a": "1", "b": None}, "x") == []
    assert _conforms(doc, ref, {"a": "1", "c": 1}, "x") == ["x.c: not declared"]
    assert _conforms(doc, ref, {"b": 1}, "x") == ["x.a: required, missing"]
    assert _conforms(doc, ref, {"a": 1}, "x") == ["x.a: 1 is not string"]
    assert _conforms(doc, ref, {"a": "1", "b": True}, "x") != []


def test_an_order_answers_as_its_dict_did(api: Api) -> None:
    """Each row of `orders` (orders, listings, takes, lots, bids, deposits) as the schema answers it (OrderOut,
    DepositOut) has the bytes of the dict the service answered before (ShownOrder.as_dict, which exchange.pledging
    still reads), field order included."""
    _scenario(api)
    rt = api.client.app.state.rt
    for m, decimals in (("CDCER.continuous", 3), ("CDCER.listing", 3), ("PW-NOX-X.auction", 3)):
        answered = api.get(f"/v1/markets/{m}/orders").content

        async def rows(m: str = m, decimals: int = decimals) -> list[ShownOrder]:
            async with rt.read() as conn:
                return [ShownOrder(o, decimals) for o in await repository.orders(conn, m, after=0, limit=1000,
                                                                                  status=None, participant_id=None)]

        shown = api.client.blocking_portal.call(rows)
        assert {o.row.kind for o in shown} >= ({"deposit", "bid", "auction"} if "auction" in m else {"order"}
                                               if "continuous" in m else {"listing", "take"})
        as_dicts = json.dumps([o.as_dict() for o in shown], ensure_ascii=False, separators=(",", ":"), default=str)
        assert answered.decode() == as_dicts
