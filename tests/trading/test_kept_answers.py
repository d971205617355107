"""A keyed order's answer is kept with the order (issue #16): in its market's projection transaction, not in a
round trip of its own after it, so that a reply lost after the commit (a crash, the client gone) loses nothing —
the retry gets the original bytes, events and all — and the HTTP gate neither looks a new order up nor stores
its answer (api/security/replays.py KEPT_BY_HANDLER, exchange.trading.pipeline.Keep).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from litestar.testing import TestClient

from tests.helpers import Api, ticket
from tests.security.helpers import sql

MARKET = "FCT-KEPT.continuous"
ORDERS = f"/v1/markets/{MARKET}/orders"


def _world(api: Api) -> dict[str, Any]:
    api.instrument("FCT-KEPT")
    issuer = api.participant("三明市林业局", "issuer")
    seller = api.participant("沙县林业合作社", "enterprise")
    buyer = api.participant("控排企业甲", "enterprise")
    api.issue(issuer["api"], seller["id"], "FCT-KEPT", "1000", ticket(1))
    api.ok(api.post("/v1/markets", {"instrument": "FCT-KEPT", "mode": "continuous",
                                    "settings": {"sessions": [], "t_plus_1": False}}))
    api.ok(api.post(f"/v1/markets/{MARKET}/session", {"action": "open"}))
    return {"seller": seller, "buyer": buyer}


def _kept(client: TestClient, actor_id: int, key: str) -> list[Any]:
    return sql(client, "SELECT status, body, xmin::text FROM answers_by_request WHERE actor = :a AND client_id = :c",
               {"a": f"participant:{actor_id}", "c": key})


def _post(client: TestClient, token: str, body: dict[str, Any], key: str) -> httpx.Response:
    return client.post(ORDERS, json=body, headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key})


def test_an_orders_answer_is_kept_in_the_transaction_that_projects_it(api: Api, client: TestClient) -> None:
    w = _world(api)
    s = w["seller"]
    resp = _post(client, s["token"], {"side": "sell", "price": "50.00", "quantity": "5"}, "kept-1")
    assert resp.status_code == 201, resp.text
    (status, body, xmin), = _kept(client, s["id"], "kept-1")
    assert (status, bytes(body)) == (201, resp.content)  # the very bytes that were answered
    # The same transaction as the projection's (the one that moved the market's applied_seq past the order).
    projected = sql(client, "SELECT xmin::text FROM markets WHERE id = :m", {"m": MARKET})[0][0]
    assert xmin == projected
    again = _post(client, s["token"], {"side": "sell", "price": "50.00", "quantity": "5"}, "kept-1")
    assert (again.status_code, again.content) == (201, resp.content)
    assert len(sql(client, "SELECT id FROM orders WHERE client_id = 'kept-1'")) == 1


def test_a_reply_lost_after_the_commit_is_answered_byte_for_byte_on_retry(api: Api, client: TestClient) -> None:
    """The request goes away (its task cancelled: the client gone, or the process answering it) once the order is
    with the sequencer: the order is journaled, matched and projected all the same, its answer kept with it. The
    retry gets that answer -- the placement's events, not a replay of the row -- as the first reply would have."""
    w = _world(api)
    s, b = w["seller"], w["buyer"]
    api.ok(api.post("/v1/cash/deposits", {"participant_id": b["id"], "amount": "10000.00", "bank_reference": "k"}))
    api.ok(_post(client, s["token"], {"side": "sell", "price": "50.00", "quantity": "5"}, "ask-1"), 201)
    rt = client.app.state.rt
    body = {"side": "buy", "price": "50.00", "quantity": "3"}

    async def lose_the_reply() -> None:
        transport = httpx.ASGITransport(app=client.app, client=("testclient", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            sent = asyncio.create_task(c.post(ORDERS, json=body, headers={
                "Authorization": f"Bearer {b['token']}", "Idempotency-Key": "lost-1"}))
            while ("order", b["id"], "lost-1") not in rt.inflight:  # queued to the sequencer (no await before)
                await asyncio.sleep(0.001)
            sent.cancel()
            for _ in range(5000):
                async with rt.read() as conn:
                    if _done(await conn.exec_driver_sql(
                            "SELECT count(*) FROM answers_by_request WHERE client_id = 'lost-1'")):
                        return
                await asyncio.sleep(0.002)

    client.blocking_portal.call(lose_the_reply)
    (status, kept, _), = _kept(client, b["id"], "lost-1")
    assert status == 201
    retry = _post(client, b["token"], body, "lost-1")
    assert (retry.status_code, retry.content) == (201, bytes(kept))
    answer = json.loads(retry.content)
    assert "replayed" not in answer and [e["kind"] for e in answer["events"]][:2] == ["accepted", "trade"]
    assert answer["order"]["status"] == "filled"


def _done(result: Any) -> bool:
    return int(result.scalar() or 0) > 0


def test_a_kept_answer_is_given_back_whatever_the_market_does_since(api: Api, client: TestClient) -> None:
    w = _world(api)
    s = w["seller"]
    body = {"side": "sell", "price": "50.00", "quantity": "5"}
    first = _post(client, s["token"], body, "halt-1")
    assert first.status_code == 201
    api.ok(api.post(f"/v1/markets/{MARKET}/halt", {"reason": "test"}))
    again = _post(client, s["token"], body, "halt-1")  # before any state check: the market is halted
    assert (again.status_code, again.content) == (201, first.content)
    # Other bytes under the key (it moved into the body): the service's own replay, from the row.
    moved = client.post(ORDERS, json={**body, "client_id": "halt-1"}, headers={"Authorization": f"Bearer {s['token']}"})
    assert moved.status_code == 201 and moved.json()["replayed"] is True
    assert moved.json()["order"] == first.json()["order"]
    # ... which the gate keeps under those bytes (the handler kept nothing for them): asked again, the same.
    assert client.post(ORDERS, json={**body, "client_id": "halt-1"},
                       headers={"Authorization": f"Bearer {s['token']}"}).content == moved.content
    assert len(_kept(client, s["id"], "halt-1")) == 2


def test_a_refused_order_keeps_nothing_and_is_tried_again(api: Api, client: TestClient) -> None:
    w = _world(api)
    b = w["buyer"]
    body = {"side": "buy", "price": "50.00", "quantity": "5"}
    refused = _post(client, b["token"], body, "poor-1")
    assert refused.status_code == 409 and refused.json()["code"] == "insufficient_available", refused.text
    assert _kept(client, b["id"], "poor-1") == []
    api.ok(api.post("/v1/cash/deposits", {"participant_id": b["id"], "amount": "10000.00", "bank_reference": "p"}))
    placed = _post(client, b["token"], body, "poor-1")
    assert placed.status_code == 201, placed.text
    assert [bytes(r[1]) for r in _kept(client, b["id"], "poor-1")] == [placed.content]


def test_a_batchs_answers_are_kept_with_its_orders(api: Api, client: TestClient) -> None:
    """Batch order entry (exchange/trading/batches.py): each slot's bytes are kept in the projection transaction
    of its orders, and a retry of the batch gets them back."""
    w = _world(api)
    s = w["seller"]
    sent = {"orders": [{"client_id": f"bk{i}", "side": "sell", "price": f"{50 + i}.00", "quantity": "1"}
                       for i in range(3)]}
    h = {"Authorization": f"Bearer {s['token']}"}
    first = client.post(f"{ORDERS}/batch", json=sent, headers=h)
    assert first.status_code == 200, first.text
    projected = sql(client, "SELECT xmin::text FROM markets WHERE id = :m", {"m": MARKET})[0][0]
    kept = sql(client, "SELECT client_id, body, xmin::text FROM answers_by_request WHERE actor = :a ORDER BY client_id",
               {"a": f"participant:{s['id']}"})
    assert [(c, x) for c, _, x in kept] == [(f"bk{i}", projected) for i in range(3)]
    slots = [json.dumps(r, ensure_ascii=False, separators=(",", ":")).encode() for r in first.json()["results"]]
    assert [bytes(b) for _, b, _ in kept] == slots
    again = client.post(f"{ORDERS}/batch", json=sent, headers=h)
    assert again.content == first.content


def test_a_slots_bytes_are_what_the_batchs_json_encoder_writes() -> None:
    """Slot answers are written by msgspec (exchange/trading/batches.py _slot_answer), the rest of a batch's answer
    by `encode` (the stdlib's JSON): both write the same bytes for what an order's answer holds."""
    from datetime import date

    from exchange.trading import batches

    weird = "引号\"反斜杠\\ \x00\x1f\x7f\u2028\u2029 \ud7ff \U0001f600 </script> \t\n\r\b\f"
    for value in ({"client_id": weird, "status": 201, "order": {"id": 2**53 - 1, "price": None, "reason": weird,
                                                              "trading_day": date(2026, 12, 1), "ok": True},
                   "events": [{"kind": "trade", "qty": "1.000", "list": [1, "2", None, False]}], "empty": {}},
                  {"client_id": "", "status": 201, "events": []}):
        assert batches._SLOT_ENCODER.encode(value) == batches.encode(value)


def test_identical_batches_at_once_place_each_order_once_and_answer_alike(api: Api, client: TestClient) -> None:
    """Batches queue their orders without a task each (exchange/trading/batches.py _sequence_all), yet one run per
    client id: an order whose client id is on its way in another request shares that run's answer."""
    w = _world(api)
    s = w["seller"]
    sent = {"orders": [{"client_id": f"tw{i}", "side": "sell", "price": f"{60 + i}.00", "quantity": "2"}
                       for i in range(5)]}

    async def storm() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app, client=("testclient", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            h = {"Authorization": f"Bearer {s['token']}"}
            return list(await asyncio.gather(*(c.post(f"{ORDERS}/batch", json=sent, headers=h) for _ in range(8))))

    out = client.blocking_portal.call(storm)
    assert {r.status_code for r in out} == {200}, [r.text[:500] for r in out if r.status_code != 200]
    assert len({r.content for r in out}) == 1, [r.text[:300] for r in out]
    assert [r["status"] for r in out[0].json()["results"]] == [201] * 5
    ids = sql(client, "SELECT client_id, count(*) FROM orders WHERE client_id LIKE 'tw%' GROUP BY client_id")
    assert sorted(ids) == [(f"tw{i}", 1) for i in range(5)]


def test_an_answer_showing_a_secret_would_not_be_kept_by_the_sequencer() -> None:
    """The sequencer keeps an answer only if `encoded_carries_secret` finds no secret field in it; its shortcut (no
    backslash, no quoted name: not parsed) agrees with `carries_secret` on every JSON body."""
    from exchange.core.idempotency import SECRET_FIELDS, carries_secret, encoded_carries_secret

    bodies = [b'{"order":{"id":1,"reason":null},"events":[]}', b'{"x":"token","y":["secret"]}']
    for name in sorted(SECRET_FIELDS):
        bodies += [b'{"a":[{"%s":1}]}' % name.encode(), b'{"\\u00%x%s":1}' % (ord(name[0]), name[1:].encode()),
                   b'{"a":"\\"%s\\""}' % name.encode()]
    for body in bodies:
        assert encoded_carries_secret(body) == carries_secret(body), body
    assert [encoded_carries_secret(b) for b in bodies[:2]] == [False, False]
    assert encoded_carries_secret(b'{"a":[{"token":1}]}') and encoded_carries_secret(b'{"\\u0074oken":1}')
