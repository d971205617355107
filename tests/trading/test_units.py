"""Every answer, event and message of a full trading scenario speaks the user's units (issues #14, #15).

One scenario runs orders (accepted, reduced, cancelled, traded), a listing take, a block deal, an auction
with deposits, a restoration purchase with its certificate, a pledge with its events, and a refusal of
each kind; every JSON answer, every event (in answers, on the WebSocket stream, in pledge event streams
and webhook bodies) and every problem document is collected and walked:

- no integer where a quantity, price or amount is meant: an integer is allowed only under a key that
  names an id, a sequence number, a serial, a count or a setting in basis points (`COUNTS`);
- no microsecond integer where a time is meant, and every string that reads as a time is ISO 8601 in
  UTC with microseconds and `Z` (exchange/core/units.py);
- no unrendered number mark of a pure core (`{price:...}`), and each planted refusal says its numbers in
  the user's units (the order at "100.01" on a 0.02 tick says "100.01" and "0.02", not 10001 and 2).

Ledger receipts are left out: they carry the ledger's signed entries, integers by design.
"""

from __future__ import annotations

import io
import json
import re
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from pypdf import PdfReader
from sqlalchemy import text

from tests.helpers import Api, fresh_uscc, ticket
from tests.pledges.helpers import pledge_body

ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z")
TIMEISH = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
MARK = re.compile(r"\{(price|qty|cny|ts):-?\d+\}")
# Integers that are not quantities, prices, amounts or times.
COUNTS = {
    "id", "seq", "last_seq", "applied_seq", "hold", "hold_id", "batch", "batch_id", "serial_start", "serial_end",
    "start", "end", "orders", "rank", "best_n", "fee_bps", "term_years", "extensions", "bidders", "registered",
    "bids_placed", "winners", "max_bids_per_bidder", "top_percent", "status", "days_left", "trading_days_left", "fills",
    "round",
    "entry", "entry_seq", "account", "frozen_by", "retired_seq", "version", "ratio_bps", "haircut_bps",
    "warning_bps", "margin_call_bps", "liquidation_bps", "grace_days", "unit_base", "multiplier", "api_key_id",
    "index", "tree_size", "rank_on_lot", "issue_entry_seq", "settlement_seq", "registration_no", "bid_id",
    "by", "ref", "trade_id", "deal_id", "quote_id", "auction_id", "order_id", "listing_id", "maker_id",
    "taker_id", "parent", "attempts", "http_status", "key_id", "parent_key_id", "trades", "serials",
    "rank_among_pledgor_registrations",
    # participant ids, by the role they play (the caller's own, or a negotiation's other named party)
    "participant", "proposer", "responder", "confirmed", "seller", "bidder", "from_participant",
    "to_participant", "counterparties", "pledgee", "pledgor",
}


# Requests echoed back as sent (an operator action's payload, the audit trail): market settings name
# their unit in their key (tick_fen, lot_units, min_base), instruments their decimals and term in years.
SETTINGS = {"decimals", "validity_years", "start_serial", "end_serial", "compliance_year"}


def _int_allowed(key: str) -> bool:
    return key in COUNTS or key in SETTINGS or key.endswith(
        ("_id", "_seq", "_ids", "_seqs", "_account", "_bps", "_count", ".id", "_fen", "_units", "_base"))


def walk(value: Any, where: str, problems: list[str], key: str = "") -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            walk(v, f"{where}.{k}", problems, str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            walk(v, f"{where}[{i}]", problems, key)
    elif isinstance(value, int) and not isinstance(value, bool):
        if value > 10**12:
            problems.append(f"{where} = {value}: a microsecond integer where a time is meant")
        elif not _int_allowed(key):
            problems.append(f"{where} = {value}: an integer where a quantity, price or amount is meant")
    elif isinstance(value, str):
        if MARK.search(value):
            problems.append(f"{where} = {value!r}: an unrendered number mark")
        for found in TIMEISH.finditer(value):
            rest = value[found.start():]
            if not ISO.match(rest):
                problems.append(f"{where} = {value!r}: a time not in ISO 8601 UTC with microseconds and Z")


class Collector:
    """Every answer of every call (success or problem), walked at the end."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self.seen: list[tuple[str, Any]] = []

    def keep(self, where: str, body: Any) -> Any:
        self.seen.append((where, body))
        return body

    def call(self, who: Api, method: str, path: str, body: dict[str, Any] | None = None, status: int | None = None,
             **params: Any) -> Any:
        r = who.post(path, body or {}) if method == "POST" else who.get(path, **params)
        if status is not None:
            assert r.status_code == status, (path, r.text)
        else:
            assert r.status_code in (200, 201), (path, r.text)
        return self.keep(f"{method} {path}", r.json())

    def post(self, who: Api, path: str, body: dict[str, Any] | None = None, status: int | None = None) -> Any:
        return self.call(who, "POST", path, body, status)

    def get(self, who: Api, path: str, **params: Any) -> Any:
        return self.call(who, "GET", path, **params)

    def refused(self, who: Api, path: str, body: dict[str, Any], status: int, code: str) -> str:
        """A planted refusal: its status and code; returns its detail."""
        r = who.post(path, body)
        assert (r.status_code, r.json().get("code")) == (status, code), (path, r.text)
        self.keep(f"refusal {code}", r.json())
        return str(r.json()["detail"])

    def problems(self) -> list[str]:
        out: list[str] = []
        for where, body in self.seen:
            walk(body, where, out)
        return out


def _fund(c: Collector, who: dict[str, Any], amount: str) -> None:
    c.post(c.api, "/v1/cash/deposits", {"participant_id": who["id"], "amount": amount, "bank_reference": "d"})


def _market(c: Collector, instrument: str, mode: str, settings: dict[str, Any]) -> str:
    c.post(c.api, "/v1/markets", {"instrument": instrument, "mode": mode, "settings": {"sessions": [], **settings}})
    m = f"{instrument}.{mode}"
    c.post(c.api, f"/v1/markets/{m}/session", {"action": "open"})
    return m


def test_every_answer_event_and_message_speaks_the_users_units(api: Api) -> None:
    c = Collector(api)
    api.instrument("FCT-SM")  # forest tickets: whole tonnes
    api.instrument("PW-NOX-NX", kind="emission_right", decimals=3,
                   attributes={"pollutant": "NOx", "region": "宁夏回族自治区", "validity_years": 5})
    forestry = api.participant("三明市林业局", "issuer")
    reserve = api.participant("宁夏排污权储备中心", "issuer")
    seller = api.participant("三明市沙县林业合作社", "enterprise", uscc=fresh_uscc())
    buyer = api.participant("成都市绿色低碳发展协会", "enterprise")
    poor = api.participant("无资金企业", "enterprise")
    court = api.participant("南靖县人民法院", "court")
    payer = api.participant("南靖 滥伐林木案 被告人", "enterprise", uscc=fresh_uscc())
    bank = api.participant("兴业银行三明分行", "bank")
    api.issue(forestry["api"], seller["id"], "FCT-SM", "1000", ticket(1))
    start = date.today().replace(day=1)
    api.issue(reserve["api"], reserve["id"], "PW-NOX-NX", "2.000",
              {"valid_from": start.isoformat(), "valid_until": (start.replace(year=start.year + 5)
                                                                - timedelta(days=1)).isoformat()})
    for who, amount in ((buyer, "500000.00"), (payer, "10000.00"), (seller, "1000.00")):
        _fund(c, who, amount)
    s, b, p = seller["api"], buyer["api"], poor["api"]

    # --- the continuous book, on a 0.02 tick --------------------------------------------------------
    book = _market(c, "FCT-SM", "continuous", {"tick_fen": 2, "t_plus_1": False})
    with api.client.websocket_connect(f"/v1/markets/{book}/stream") as ws:
        c.keep("stream", ws.receive_json())
        detail = c.refused(b, f"/v1/markets/{book}/orders", {"side": "buy", "price": "100.01", "quantity": "5"},
                           422, "off_tick")
        assert "100.01" in detail and "0.02" in detail and "10001" not in detail, detail
        sell = c.post(s, f"/v1/markets/{book}/orders", {"side": "sell", "price": "100.00", "quantity": "100"})
        c.keep("stream", ws.receive_json())
        c.post(b, f"/v1/markets/{book}/orders", {"side": "buy", "price": "100.00", "quantity": "40"})
        for _ in range(2):
            c.keep("stream", ws.receive_json())
    oid = sell["order"]["id"]
    assert [e["kind"] for e in sell["events"]] == ["accepted"] and sell["events"][0]["price"] == "100.00"
    reduced = c.post(s, f"/v1/markets/{book}/orders/{oid}/reduce", {"quantity": "50"})
    assert reduced["open_quantity"] == "50"
    detail = c.refused(s, f"/v1/markets/{book}/orders/{oid}/reduce", {"quantity": "70"}, 409, "reduce_not_lower")
    assert "70" in detail and "50" in detail, detail
    c.post(s, f"/v1/markets/{book}/orders/{oid}/cancel")
    # Refusals of the caller's own funding, in its units: cash in CNY, units in the instrument's.
    detail = c.refused(p, f"/v1/markets/{book}/orders", {"side": "buy", "price": "100.00", "quantity": "3"},
                       409, "insufficient_available")
    assert detail == "your account has 0.00 CNY available, needs 300.00 CNY", detail
    detail = c.refused(s, f"/v1/markets/{book}/orders", {"side": "sell", "price": "100.00", "quantity": "5000"},
                       409, "insufficient_available")
    assert detail == "your account has 960 FCT-SM available, needs 5000 FCT-SM", detail
    detail = c.refused(s, "/v1/transfers", {"to_participant": buyer["id"], "instrument": "FCT-SM",
                                            "quantity": "961"}, 409, "insufficient_available")
    assert str(seller["holding_account"]) not in detail and "960 FCT-SM" in detail, detail
    for path in ("orders", "trades", "depth", "ohlc", "events"):
        c.get(s if path == "orders" else api, f"/v1/markets/{book}/{path}")
    c.get(api, f"/v1/markets/{book}")

    # --- a listing and its take ---------------------------------------------------------------------
    lm = _market(c, "FCT-SM", "listing", {"t_plus_1": False})
    listing = c.post(s, f"/v1/markets/{lm}/listings", {"side": "sell", "price": "120.00", "quantity": "50"})
    c.post(b, f"/v1/markets/{lm}/listings/{listing['order']['id']}/take", {"quantity": "10"})
    for path in ("listings", "trades", "depth"):
        c.get(api, f"/v1/markets/{lm}/{path}")

    # --- a block deal, and a counterparty that cannot pay ----------------------------------------------
    bm = _market(c, "FCT-SM", "block", {"min_units": 10, "t_plus_1": False})
    q = c.post(s, f"/v1/markets/{bm}/block-quotes", {"side": "sell", "price": "110.00", "quantity": "20"})["seq"]
    deal = c.post(b, f"/v1/markets/{bm}/block-quotes/{q}/respond", {"price": "110.00", "quantity": "20"})["seq"]
    c.get(b, f"/v1/markets/{bm}/deals/{deal}")
    c.get(b, f"/v1/markets/{bm}/block-quotes")
    c.post(s, f"/v1/markets/{bm}/deals/{deal}/confirm")
    q2 = c.post(s, f"/v1/markets/{bm}/block-quotes", {"side": "sell", "price": "110.00", "quantity": "20"})["seq"]
    deal2 = c.post(p, f"/v1/markets/{bm}/block-quotes/{q2}/respond", {"price": "110.00", "quantity": "20"})["seq"]
    detail = c.refused(s, f"/v1/markets/{bm}/deals/{deal2}/confirm", {}, 409, "counterparty_unfunded")
    assert detail == "the counterparty cannot fund this deal now", detail
    # The seller's own shortfall in its units: it sold or listed everything else meanwhile.
    q3 = c.post(b, f"/v1/markets/{bm}/block-quotes", {"side": "buy", "price": "110.00", "quantity": "900"})["seq"]
    deal3 = c.post(s, f"/v1/markets/{bm}/block-quotes/{q3}/respond", {"price": "110.00", "quantity": "900"})["seq"]
    detail = c.refused(b, f"/v1/markets/{bm}/deals/{deal3}/confirm", {}, 409, "counterparty_unfunded")
    assert detail == "the counterparty cannot deliver these units now", detail

    # --- a one-way auction with deposits --------------------------------------------------------------
    am = _market(c, "PW-NOX-NX", "auction", {})
    ap = f"/v1/markets/{am}/auctions"
    detail = c.refused(reserve["api"], ap, {"quantity": "2.000", "min_price": "21005", "increment": "500"},
                       422, "off_tick")
    assert "21005.00" in detail and "10.00" in detail and "2100500" not in detail, detail
    lot = c.post(reserve["api"], ap, {"quantity": "2.000", "min_price": "21000", "increment": "500",
                                      "deposit": "1000.00", "max_bids_per_bidder": 3})
    aid = lot["order"]["id"]
    c.post(reserve["api"], f"{ap}/{aid}/step", {"action": "registration"})
    deposit = c.post(b, f"{ap}/{aid}/register")
    assert "order" not in deposit and {k: deposit["deposit"][k] for k in ("kind", "auction_id", "amount", "status")} \
        == {"kind": "deposit", "auction_id": aid, "amount": "1000.00", "status": "held"}
    c.refused(reserve["api"], f"{ap}/{aid}/register", {}, 409, "seller_cannot_bid")  # not insufficient_available
    c.post(reserve["api"], f"{ap}/{aid}/step", {"action": "bidding", "duration_seconds": 2})
    detail = c.refused(b, f"{ap}/{aid}/bids", {"price": "21000", "quantity": "3.000"}, 409,
                       "quantity_exceeds_remaining")
    assert "3.000" in detail and "2.000" in detail, detail
    c.post(b, f"{ap}/{aid}/bids", {"price": "21000", "quantity": "1.000"})
    c.post(b, f"{ap}/{aid}/bids", {"price": "21500", "quantity": "1.000"})
    early = c.refused(reserve["api"], f"{ap}/{aid}/step", {"action": "close"}, 409, "auction_still_open")
    assert ISO.search(early), early  # "bidding runs until <ISO time>", not microseconds
    ends = datetime.fromisoformat(c.get(api, f"{ap}/{aid}")["ends_at"])
    time.sleep(max(0.0, (ends - datetime.now(UTC)).total_seconds()) + 0.1)
    c.post(reserve["api"], f"{ap}/{aid}/step", {"action": "close"})
    c.post(reserve["api"], f"{ap}/{aid}/step", {"action": "allocate"})
    c.get(api, f"{ap}/{aid}")
    c.get(b, f"/v1/markets/{am}/orders")
    c.get(api, f"/v1/markets/{am}/trades")

    # --- a court's restoration order, bought and retired, with its certificate ------------------------
    order = c.post(court["api"], "/v1/restoration-orders", {
        "case_number": "(2022)闽0627刑初123号", "case_type": "刑事附带民事公益诉讼",
        "defendants": [{"name": "被告人甲"}], "payer_id": payer["id"], "payer_identifier": payer["uscc"],
        "assessed_loss": "2.5",
        "required_quantity": "5", "eligible_kinds": ["forest_ticket"],
        "deadline": (date.today() + timedelta(days=90)).isoformat()})
    rid = order["id"]
    assert (order["required_quantity"], order["unit"]) == ("5", "tCO2e")  # whole tonnes, as what can fill it
    detail = c.refused(payer["api"], f"/v1/restoration-orders/{rid}/takes",
                       {"market_id": lm, "listing_id": listing["order"]["id"], "quantity": "6"}, 409,
                       "exceeds_requirement")
    assert detail == "6 tCO2e is more than the 5 tCO2e still required", detail
    c.post(s, f"/v1/markets/{book}/orders", {"side": "sell", "price": "99.98", "quantity": "2"})
    c.post(payer["api"], f"/v1/restoration-orders/{rid}/takes",
           {"market_id": lm, "listing_id": listing["order"]["id"], "quantity": "3"})
    c.post(payer["api"], f"/v1/restoration-orders/{rid}/purchases",
           {"market_id": book, "price": "99.98", "quantity": "2"})
    state = c.get(court["api"], f"/v1/restoration-orders/{rid}")
    assert (state["retired_quantity"], state["status"]) == ("5", "fulfilled")
    cert = c.get(court["api"], f"/v1/restoration-orders/{rid}/certificate")
    body = json.loads(cert["note"].split("\n", 1)[1].split("\n", 1)[0])
    c.keep("certificate body", body)
    assert (body["retired_quantity"], body["unit"]) == ("5", "tCO2e")
    for blk in body["blocks"]:  # per block: value + fee = paid, value = price x quantity
        assert Decimal(blk["value"]) + Decimal(blk["fee"]) == Decimal(blk["paid"]), blk
        assert Decimal(blk["value"]) == Decimal(blk["price"]) * Decimal(blk["quantity"]), blk
    total = {k: sum(Decimal(blk[f]) for blk in body["blocks"]) for k, f in (("value", "value"), ("fees", "fee"),
                                                                             ("paid", "paid"))}
    assert {k: Decimal(v) for k, v in body["totals"].items()} == total
    assert Decimal(body["paid"]) == total["value"] + total["fees"] == Decimal(state["paid"])
    assert (state["value"], state["fees"]) == (body["totals"]["value"], body["totals"]["fees"])
    pdf = api.client.get(f"/v1/restoration-orders/{rid}/certificate.pdf")
    words = "".join("".join(page.extract_text().replace("\x00", "").split())
                    for page in PdfReader(io.BytesIO(pdf.content)).pages)
    for line in ("手续费", "成交金额", body["totals"]["fees"], body["totals"]["value"], body["totals"]["paid"]):
        assert line in words, line

    # --- a pledge, its events and the bank's webhooks -------------------------------------------------
    pledge = c.post(bank["api"], "/v1/pledges", pledge_body(seller["id"], "100", secured_amount="5000.00",
                                                             pledgor_identifier=seller["uscc"]))
    c.post(s, f"/v1/pledges/{pledge['id']}/confirm")
    c.get(bank["api"], f"/v1/pledges/{pledge['id']}")
    c.get(bank["api"], f"/v1/pledges/{pledge['id']}/events")
    c.get(s, "/v1/pledges/events")

    # --- a transfer, holdings, the close and the day's data --------------------------------------------
    c.post(s, "/v1/transfers", {"to_participant": buyer["id"], "instrument": "FCT-SM", "quantity": "1"})
    for who in (seller, buyer, payer, reserve):
        c.get(who["api"], "/v1/holdings")
    c.post(api, f"/v1/markets/{book}/session", {"action": "close"})
    c.get(api, "/v1/instruments/FCT-SM/daily")
    c.get(api, "/v1/instruments/FCT-SM/closes")
    c.get(api, "/v1/markets")
    c.get(api, "/v1/participants")
    c.post(api, "/v1/participants", {"name": "新企业", "kind": "enterprise"})
    for path in ("/v1/operator-actions", "/v1/audit/events", "/v1/issuances", "/v1/ledger/checkpoints",
                 f"/v1/participants/{seller['id']}/keys", "/v1/restoration-orders", "/v1/pledges"):
        c.get(api, path)
    c.get(s, f"/v1/participants/{seller['id']}")

    async def outbox() -> list[Any]:
        async with api.client.app.state.rt.read() as conn:
            return [r.body for r in await conn.execute(text("SELECT body FROM pledge_outbox ORDER BY id"))]

    for webhook in api.client.blocking_portal.call(outbox):
        c.keep("webhook", json.loads(bytes(webhook)))

    problems = c.problems()
    assert problems == [], "\n".join(problems[:40])


def test_the_walk_catches_base_units_and_microseconds() -> None:
    """The checker itself: it finds what it is there to find."""
    found: list[str] = []
    walk({"price": 420000, "ts": 1796126323003371, "at": "2026-12-01 11:54:52.322022+00:00",
          "until": "2026-12-02T00:00:00+08:00", "detail": "price {price:10001} is off", "id": 7,
          "fine": "2026-12-01T11:54:52.322022Z"}, "x", found)
    assert len(found) == 5, found


def test_the_openapi_document_states_the_convention(api: Api) -> None:
    doc = api.ok(api.client.get("/schema/openapi.json"))["info"]["description"]
    for said in ("decimal string", "CNY", "ISO 8601 in UTC", "microseconds", "tCO2e", "counterparty_unfunded"):
        assert said in doc, said
