"""Batch order entry through HTTP: answers in order, partial refusal, per-order idempotency (byte for byte),
whole-batch refusals of hostile input that apply nothing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from decimal import Decimal

from exchange.core.units import iso, times_in_iso
from exchange.trading.batches import encode
from tests.helpers import Api
from tests.trading.test_continuous import bal, world

MAX = 100


def _batch(api: Api, m: str, orders: list[dict], key: str | None = None) -> tuple[int, bytes, dict]:
    resp = api.client.post(f"/v1/markets/{m}/orders/batch", json={"orders": orders}, headers=api._h(key))
    return resp.status_code, resp.content, resp.json()


def _slots(raw: bytes) -> list[bytes]:
    """Each slot's bytes as sent (the results array split at its top level)."""
    doc = json.loads(raw)
    start = raw.index(b'"results":[') + len(b'"results":[')
    out, depth, begin, in_str, esc = [], 0, start, False, False
    for i in range(start, len(raw)):
        c = raw[i:i + 1]
        if in_str:
            esc, in_str = (not esc and c == b"\\"), (in_str if esc or c != b'"' else False)
            continue
        if c == b'"':
            in_str = True
        elif c in b"{[":
            depth += 1
        elif c in b"}]":
            if depth == 0:
                break
            depth -= 1
            if depth == 0:
                out.append(raw[begin:i + 1])
                begin = i + 2
    assert len(out) == len(doc["results"])
    return out


def test_answers_in_order_partial_refusal_and_holds(api: Api) -> None:
    w = world(api)
    s, b, m = w["s"]["api"], w["b"]["api"], w["m"]
    before = bal(api, w["s"], "CDCER")["available"]
    orders = [
        {"client_id": "a1", "side": "sell", "price": "290.00", "quantity": "100"},
        {"client_id": "a2", "side": "sell", "price": "400.00", "quantity": "1"},  # outside the ±20 % band
        {"client_id": "a3", "side": "sell", "price": "291.00", "quantity": "999999"},  # more than it holds
        {"client_id": "a4", "side": "sell", "type": "limit", "quantity": "5"},  # no price
        {"client_id": "a5", "side": "sell", "price": "295.00", "quantity": "10"},
    ]
    status, _, doc = _batch(s, m, orders)
    assert status == 200 and doc["market_id"] == m
    res = doc["results"]
    assert [r["client_id"] for r in res] == ["a1", "a2", "a3", "a4", "a5"]
    assert [r["status"] for r in res] == [201, 409, 409, 422, 201]
    assert [r.get("problem", {}).get("code") for r in res] == [None, "price_out_of_band", "insufficient_available",
                                                               "price_required", None]
    # Each refusal is the problem document the order would have got alone.
    alone = s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "400.00", "quantity": "1"})
    assert alone.status_code == 409
    assert {k: v for k, v in alone.json().items() if k != "instance"} == \
        {k: v for k, v in res[1]["problem"].items() if k != "instance"}
    # Journaled in the order sent: ids increase with the slots, and the two accepted orders hold their units.
    # (an order's id is its journal seq: the two were queued back to back, nothing between them)
    assert res[4]["order"]["id"] == res[0]["order"]["id"] + 1
    assert res[0]["order"]["status"] == "open" and res[0]["order"]["client_id"] == "a1"
    assert float(before) - float(bal(api, w["s"], "CDCER")["available"]) == 110
    # A buy in the next batch trades against them in price-time order, and its answer shows the trades.
    status, _, doc = _batch(b, m, [{"client_id": "b1", "side": "buy", "price": "300.00", "quantity": "105"}])
    trades = [e for e in doc["results"][0]["events"] if e["kind"] == "trade"]
    assert [(t["price"], t["qty"]) for t in trades] == [("290.00", "100.000"), ("295.00", "5.000")]


def test_retry_of_the_whole_batch_and_of_one_order_is_byte_for_byte(api: Api) -> None:
    w = world(api)
    s, m = w["s"]["api"], w["m"]
    orders = [{"client_id": f"r{i}", "side": "sell", "price": f"{290 + i}.00", "quantity": "10"} for i in range(5)]
    orders[2] = {"client_id": "r2", "side": "sell", "price": "999.00", "quantity": "10"}  # refused: band
    _, first, _ = _batch(s, m, orders)
    held = bal(api, w["s"], "CDCER")["available"]
    status2, again, _ = _batch(s, m, orders)  # no Idempotency-Key: per-order replays
    assert status2 == 200
    a, b2 = _slots(first), _slots(again)
    # The accepted orders' bytes are the kept ones; the refused order is tried again and refused alike.
    assert a == b2 and json.loads(a[2])["problem"]["code"] == "price_out_of_band"
    assert bal(api, w["s"], "CDCER")["available"] == held  # nothing was placed twice
    # One order alone, in a batch of its own (after its order traded since), gets its first answer's bytes.
    w["b"]["api"].post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "291.00", "quantity": "10"})
    _, one, _ = _batch(s, m, [orders[1]])
    assert _slots(one) == [a[1]]
    # The same client id for another order is refused in its slot, and nothing is placed for it.
    _, _, doc = _batch(s, m, [{**orders[3], "quantity": "11"}])
    assert doc["results"][0]["status"] == 409 and doc["results"][0]["problem"]["code"] == "idempotency_conflict"
    # A keyed batch request again gets the whole answer back as it was, refusal included.
    _, k1, _ = _batch(s, m, [{"client_id": "k1", "side": "sell", "price": "999.00", "quantity": "1"},
                             {"client_id": "k2", "side": "sell", "price": "299.00", "quantity": "1"}], key="batch-1")
    _, k2, _ = _batch(s, m, [{"client_id": "k1", "side": "sell", "price": "999.00", "quantity": "1"},
                             {"client_id": "k2", "side": "sell", "price": "299.00", "quantity": "1"}], key="batch-1")
    assert k1 == k2
    # Another batch under that key places nothing: 409 idempotency_conflict (red team round 5, F8).
    held = bal(api, w["s"], "CDCER")["available"]
    status3, _, other = _batch(s, m, [{"client_id": "k3", "side": "sell", "price": "298.00", "quantity": "1"}],
                               key="batch-1")
    assert (status3, other["code"]) == (409, "idempotency_conflict")
    assert bal(api, w["s"], "CDCER")["available"] == held  # a sell of 1 would have held 1
    # The single-order endpoint knows a batch's order by its client id: the same order, replayed.
    alone = s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "294.00", "quantity": "10"}, key="r4")
    assert alone.status_code == 201 and alone.json()["replayed"] is True
    assert alone.json()["order"]["id"] == json.loads(a[4])["order"]["id"]


def test_hostile_batches_are_422_and_apply_nothing(api: Api) -> None:
    w = world(api)
    s, m = w["s"]["api"], w["m"]
    held = bal(api, w["s"], "CDCER")
    one = {"side": "sell", "price": "290.00", "quantity": "1"}
    bad = [
        [{**one, "client_id": f"t{i}"} for i in range(MAX + 1)],  # too many
        [{**one, "client_id": "d"}, {**one, "client_id": "d"}],  # a client id twice
        [{**one, "client_id": "x1"}, {**one, "client_id": "x2", "quantity": 1}],  # a number, not a decimal string
        [{**one, "client_id": "x3"}, {**one, "client_id": "x4", "price": 290.0}],
        [{**one, "client_id": "x5"}, {**one}],  # no client id
        [{**one, "client_id": "x6"}, {**one, "client_id": "x7", "side": "short"}],
        [{**one, "client_id": "x8"}, {**one, "client_id": "é"}],  # not printable ASCII
        [{**one, "client_id": "x9", "extra": True}],
        [],
    ]
    for orders in bad:
        status, _, doc = _batch(s, m, orders)
        assert status == 422 and doc["code"] == "validation_error", doc
    for body in ({"orders": "all"}, {"orders": [one] * 2, "more": 1}, [one]):
        resp = s.client.post(f"/v1/markets/{m}/orders/batch", json=body, headers=s._h(None))
        assert resp.status_code == 422, resp.text
    assert bal(api, w["s"], "CDCER") == held
    assert api.ok(s.get(f"/v1/markets/{m}/orders")) == []
    # Exactly the maximum is taken.
    status, _, doc = _batch(s, m, [{**one, "client_id": f"ok{i}"} for i in range(MAX)])
    assert status == 200 and all(r["status"] == 201 for r in doc["results"])


def test_who_may_send_a_batch(api: Api) -> None:
    w = world(api)
    m = w["m"]
    one = [{"client_id": "z", "side": "buy", "price": "290.00", "quantity": "1"}]
    auditor = api.participant("某某审计", "auditor")["api"]  # oversight reads; it does not trade
    status, _, doc = _batch(auditor, m, one)
    assert status == 403
    status, _, doc = _batch(w["b"]["api"], "NOPE.continuous", one)
    assert status == 404
    api.ok(api.post("/v1/markets/CDCER.continuous/halt", {"reason": "t"}))
    status, _, doc = _batch(w["b"]["api"], m, one)
    assert status == 200 and doc["results"][0]["problem"]["code"] == "market_halted"
    assert bal(api, w["b"], "CNY")["available"] == "100000.00"


def test_a_slot_is_encoded_once_with_times_and_dates_as_everywhere() -> None:
    at = datetime(2026, 12, 1, 9, 30, 0, 1234, tzinfo=UTC)
    value = {"b": [at, (1, "é", None)], "a": {"day": date(2026, 12, 1), "at": at, "n": 3}, "t": (at,)}
    raw = encode(value)
    # Byte for byte what walking the value with times_in_iso first gives: compact, UTF-8, keys as given.
    walked = json.dumps(times_in_iso(value), ensure_ascii=False, separators=(",", ":"),
                        default=lambda d: d.isoformat()).encode()
    assert raw == walked
    t = iso(at)
    assert raw == f'{{"b":["{t}",[1,"é",null]],"a":{{"day":"2026-12-01","at":"{t}","n":3}},"t":["{t}"]}}'.encode()


def test_a_batch_sent_again_under_a_new_key_places_nothing_again_and_answers_as_first(api: Api) -> None:
    """Red team rounds 5 (F9) and 6 (F7): order a cancelled, the same batch under a new key answers slot a
    `201 open`, while GET says cancelled. That is the retry rule (by client id, the first answer byte for byte,
    as single orders are answered): nothing is placed again, and GET tells how each order stands now."""
    w = world(api)
    s, m = w["s"]["api"], w["m"]
    orders = [{"client_id": f"n{i}", "side": "sell", "price": f"{290 + i}.00", "quantity": "10"} for i in range(2)]
    _, first, doc = _batch(s, m, orders, key="batch-K")
    oid = doc["results"][0]["order"]["id"]
    api.ok(s.post(f"/v1/markets/{m}/orders/{oid}/cancel", {}))
    held = bal(api, w["s"], "CDCER")["available"]
    _, same, _ = _batch(s, m, orders, key="batch-K")
    assert same == first  # the same keyed batch: its whole answer, byte for byte
    status, again, _ = _batch(s, m, orders, key="batch-K2")
    assert status == 200 and _slots(again) == _slots(first)  # each order's first answer, byte for byte
    assert api.ok(s.get(f"/v1/markets/{m}/orders/{oid}"))["status"] == "cancelled"
    assert bal(api, w["s"], "CDCER")["available"] == held  # nothing placed again
    # A new order beside them in a new batch is placed; the others are their first answers again.
    _, mixed, doc3 = _batch(s, m, [*orders, {"client_id": "n9", "side": "sell", "price": "299.00", "quantity": "1"}],
                            key="batch-K3")
    assert _slots(mixed)[:2] == _slots(first) and doc3["results"][2]["status"] == 201
    assert Decimal(bal(api, w["s"], "CDCER")["available"]) == Decimal(held) - 1  # only n9's one unit is new
