"""What a suspension means for what is in flight and at rest (issue #13, exchange/core/suspension.py): once the
suspension is answered, nothing the participant asked for commits any more, and nothing of it rests on a
book -- its orders, listings and block quotes were cancelled and their holds released before the answer."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import text

from exchange.core.database import asyncpg_dsn
from exchange.core.errors import DomainError
from exchange.core.principal import Principal
from exchange.registry import transfers
from exchange.trading import orders
from ledger.verify import verify_database
from tests.helpers import Api
from tests.security.helpers import sql
from tests.trading.test_continuous import bal, world


def _max(client: TestClient, query: str, params: dict[str, Any]) -> int:
    return int(sql(client, query, params)[0][0] or 0)


def test_nothing_commits_after_the_suspension_is_answered_and_nothing_rests(api: Api, client: TestClient,
                                                                         db_url: str) -> None:
    w = world(api)
    s, b, m = w["s"], w["b"], w["m"]
    actor = f"participant:{s['id']}"
    # At rest before the brake: ten asks; and a block quote in another market.
    for _ in range(10):
        api.ok(s["api"].post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "340.00", "quantity": "1"}))
    api.ok(api.post("/v1/markets", {"instrument": "CDCER", "mode": "block",
                                     "settings": {"sessions": [], "min_units": 1, "reference_price_fen": 29200}}))
    api.ok(api.post("/v1/markets/CDCER.block/session", {"action": "open"}))
    api.ok(s["api"].post("/v1/markets/CDCER.block/block-quotes", {"side": "sell", "price": "300.00", "quantity": "10"}))

    go = threading.Event()

    def sell(i: int) -> int:
        go.wait()
        r = s["api"].post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "341.00", "quantity": "1"},
                          key=f"in-flight-{i}")
        return int(r.status_code)

    def give(i: int) -> int:
        go.wait()
        r = s["api"].post("/v1/transfers", {"to_participant": b["id"], "instrument": "CDCER", "quantity": "0.001"},
                          key=f"gift-{i}")
        return int(r.status_code)

    with ThreadPoolExecutor(16) as pool:
        futures = [pool.submit(sell, i) for i in range(120)] + [pool.submit(give, i) for i in range(40)]
        go.set()
        time.sleep(0.05)  # let the burst begin
        r = api.post(f"/v1/participants/{s['id']}/suspend", {"reason": "suspected wash trading"}, key="brake")
        assert r.status_code == 200, r.text
        # What the registry holds the moment the suspension is answered.
        ledger_at_answer = _max(client, "SELECT max(seq) FROM ledger_entries", {})
        journal_at_answer = _max(client, "SELECT max(seq) FROM market_journal WHERE market_id = :m", {"m": m})
        resting_at_answer = sql(client, "SELECT count(*) FROM orders WHERE participant_id = :p AND status = 'open'",
                                {"p": s["id"]})[0][0]
        statuses = [f.result() for f in futures]

    assert resting_at_answer == 0
    assert set(statuses) <= {201, 401, 409}, statuses
    # Nothing of the participant's was written after the answer: no ledger entry under its actor, no command
    # of its in the market's journal, no order row.
    assert _max(client, "SELECT max(seq) FROM ledger_entries WHERE actor = :a", {"a": actor}) <= ledger_at_answer
    late = sql(client, "SELECT count(*) FROM market_journal WHERE market_id = :m AND seq > :s AND "
                       "(command->'order'->>'participant_id')::bigint = :p",
               {"m": m, "s": journal_at_answer, "p": s["id"]})[0][0]
    assert late == 0
    assert sql(client, "SELECT count(*) FROM orders WHERE participant_id = :p AND status = 'open'",
               {"p": s["id"]})[0][0] == 0
    # Its resting asks were cancelled by the suspension, their holds released: nothing of its is pending.
    reasons = {r.reason for r in sql(client, "SELECT reason FROM orders WHERE participant_id = :p AND status = "
                                             "'cancelled'", {"p": s["id"]})}
    assert reasons and sql(client, "SELECT count(*) FROM orders WHERE participant_id = :p AND status = 'cancelled'",
                           {"p": s["id"]})[0][0] >= 10, reasons
    pending = sql(client, "SELECT count(*) FROM ledger_holds h JOIN participants p ON p.holding_account = h.debit "
                          "WHERE p.id = :p AND h.state = 'pending'", {"p": s["id"]})[0][0]
    assert pending == 0
    # The block quote was withdrawn.
    assert [q for q in api.ok(api.get("/v1/markets/CDCER.block/block-quotes")) if q["participant_id"] == s["id"]] == []
    # Its holdings add up: what it holds is what was issued less what it gave away; nothing is half done.
    gifts = sum(1 for f in statuses[120:] if f == 201)
    assert bal(api, b, "CDCER").get("posted", "0.000") == f"{gifts / 1000:.3f}"
    report = client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()
    # Reinstated by two operators, it trades again (nothing cancelled comes back).
    api.ok(api.post(f"/v1/participants/{s['id']}/reinstate", {"reason": "cleared"}))
    r = s["api"].post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "341.00", "quantity": "1"})
    assert r.status_code == 201 and r.json()["order"]["status"] == "open", r.text


@pytest.mark.parametrize("what", ["transfer", "order"])
def test_a_request_that_got_in_before_the_suspension_cannot_commit_after_it(api: Api, client: TestClient,
                                                                          what: str) -> None:
    """Behind the edge: a request authenticated before the suspension (a principal the key cache held)
    reaching the ledger or a market's journal after it is refused there, in the database's own order."""
    w = world(api)
    s, b, m = w["s"], w["b"], w["m"]
    stale = client.blocking_portal.call(_principal, client, s["id"])
    api.ok(api.post(f"/v1/participants/{s['id']}/suspend", {"reason": "key leaked"}))
    entries = _max(client, "SELECT count(*) FROM ledger_entries", {})

    async def late() -> dict[str, Any]:
        rt = client.app.state.rt
        if what == "transfer":
            return await transfers.transfer(rt, stale, "late-1", to_participant=b["id"], instrument="CDCER",
                                            quantity="1", serials=None, memo=None)
        return await orders.place_order(rt, stale, m, "late-1", side="sell", type_="limit", tif="day",
                                        price="341.00", quantity="1", stp=None)

    with pytest.raises(DomainError) as refused:
        client.blocking_portal.call(late)
    assert (refused.value.code, refused.value.status) == ("participant_suspended", 409)
    assert sql(client, "SELECT count(*) FROM orders WHERE participant_id = :p", {"p": s["id"]})[0][0] == 0
    # Nothing of it stands: at most its order's hold, made and voided again (the void is the exchange's).
    made = sql(client, "SELECT actor, type FROM ledger_entries WHERE seq > :n ORDER BY seq", {"n": entries})
    assert all(e.type in ("hold.create", "hold.void") for e in made), made
    held = {x["instrument"]: x for x in api.ok(api.get("/v1/holdings", participant_id=s["id"]))["balances"]}
    assert held["CDCER"]["available"] == held["CDCER"]["posted"] == "4034.000"


async def _principal(client: TestClient, participant_id: int) -> Principal:
    rt = client.app.state.rt
    async with rt.read() as conn:
        p = (await conn.execute(text(
            "SELECT id, kind, name, holding_account, cash_account FROM participants WHERE id = :i"),
            {"i": participant_id})).one()
    return Principal(p.id, p.kind, p.name, 0, p.holding_account, p.cash_account)
