"""The Sanming case end to end through HTTP: 18,294 t of forest tickets pledged to 兴业银行三明分行 for a
5,000,000 CNY credit line; a lower close triggers a margin call (signed webhook); the loan defaults;
the units are sold to a buyer and the proceeds paid by priority, to the fen."""

from __future__ import annotations

import json

from exchange.core.database import asyncpg_dsn
from exchange.pledging import views as pledging
from exchange.pledging import webhooks
from ledger.verify import verify_database
from tests.helpers import Api
from tests.pledges.helpers import Receiver, days, pledge_body, world


def cash(api: Api, who: dict) -> str:
    bal = [b for b in api.ok(who["api"].get("/v1/holdings"))["balances"] if b["instrument"] == "CNY"]
    return bal[0]["available"] if bal else "0.00"


def test_sanming_pledge_margin_call_default_and_sale(api: Api, db_url: str) -> None:
    w = world(api)
    bank, owner, junior, buyer = w["bank"], w["owner"], w["junior"], w["buyer"]
    with Receiver() as rx:
        hook = api.ok(bank["api"].client.put("/v1/pledges/webhook", json={"url": rx.url},
                                             headers={"Authorization": f"Bearer {bank['token']}",
                                                      "Idempotency-Key": "hook-1"}))
        secret = hook["secret"].encode()

        # The bank files; nothing is locked until the pledgor confirms.
        p = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], haircut_bps=2000)))
        assert (p["status"], p["blocks"], p["quantity"]) == ("filed", [], "18294")
        assert api.ok(owner["api"].get("/v1/holdings"))["balances"][0]["available"] == "29715"
        p = api.ok(owner["api"].post(f"/v1/pledges/{p['id']}/confirm"))
        pid = p["id"]
        assert p["status"] == "active" and p["registration_no"] is not None
        assert [(b["start"], b["end"]) for b in p["blocks"]] == [(1, 18294)]
        assert p["priority"]["rank_among_pledgor_registrations"] == 1
        assert api.ok(owner["api"].get("/v1/holdings"))["balances"][0]["available"] == "11421"
        rx.wait_for("confirmed")

        # A second-ranking creditor registers a claim on the same lot (the pledgor confirms it).
        claim = api.ok(junior["api"].post(f"/v1/pledges/{pid}/claims", {
            "loan_contract": "三明农商借字2021-77", "amount": "400000.00", "term_end": days(200)}))["id"]
        p = api.ok(owner["api"].post(f"/v1/pledges/claims/{claim}/confirm"))
        assert p["claims"][0]["status"] == "registered" and p["claims"][0]["rank"] == 2

        # Close at 450.00: 18294 x 450 x 80 % = 6,585,840.00 -> 131.71 %: above the 130 % warning line.
        r = api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                         "instrument": "FCT-SM", "price": "450.00",
                                                         "as_of": days(-1)}))
        assert r["pledges"][0]["value"] == "6585840.00" and r["pledges"][0]["level"] == "ok"
        # A lower close at 360.00: 5,268,672.00 -> 105.37 %: below 110 %: margin call, cure before the open.
        # (20 % below the last close: outside the market's ±10 % band, so the manual mark gives its reason.)
        r = api.ok(api.post("/v1/pledges/revaluations", {"instrument": "FCT-SM", "price": "360.00",
                                                         "as_of": days(0), "reason": "三明林权交易中心当日收盘"}))
        assert (r["pledges"][0]["value"], r["pledges"][0]["ratio_bps"]) == ("5268672.00", 10537)
        assert r["pledges"][0]["level"] == "margin_call"
        headers, body = rx.wait_for("margin_call")
        assert webhooks.verify(secret, headers["X-Envx-Timestamp"], headers["X-Envx-Signature"], body)
        assert not webhooks.verify(b"whsec_wrong", headers["X-Envx-Timestamp"], headers["X-Envx-Signature"], body)
        assert not webhooks.verify(secret, headers["X-Envx-Timestamp"], headers["X-Envx-Signature"], body + b" ")
        event = json.loads(body)
        assert event["pledge_id"] == pid and event["changes"]["margin_level"] == "margin_call"
        assert event["changes"]["cure_deadline"] is not None and event["details"]["ratio_bps"] == 10537
        # Money in CNY and the lot in tonnes, as decimal strings, with the price that judged it.
        assert (event["details"]["value"], event["details"]["secured_amount"]) == ("5268672.00", "5000000.00")
        assert (event["details"]["price"], event["details"]["quantity"]) == ("360.00", "18294")
        # The same close again is a no-op; another price for the same day is refused.
        again = api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                             "instrument": "FCT-SM", "price": "360.00",
                                                             "as_of": days(0)}))
        assert again["pledges"][0]["already_valued"]
        bad = api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                    "instrument": "FCT-SM", "price": "361.00", "as_of": days(0)})
        assert (bad.status_code, bad.json()["code"]) == (409, "mark_conflict")

        # The margin call is no default while its cure period runs: envx set the deadline itself.
        early = bank["api"].post(f"/v1/pledges/{pid}/enforcement", {
            "method": "sale", "buyer_id": buyer["id"], "price": "301.57", "reason": "逾期未还本息"})
        assert (early.status_code, early.json()["code"]) == (409, "cure_period_running"), early.text
        # The loan falls due unpaid: the bank declares the default with its notice; the pledgor is told.
        api.ok(bank["api"].post(f"/v1/pledges/{pid}/default", {
            "reference": "兴银三明违通字(2024)第0518-1号", "notice_date": days(0), "overdue_amount": "5000000.00"}))
        seen = api.ok(owner["api"].get(f"/v1/pledges/{pid}"))
        assert seen["declared_default"]["reference"] == "兴银三明违通字(2024)第0518-1号"
        assert seen["declared_default"]["overdue_amount"] == "5000000.00"
        # Default: the bank sells the lot to a buyer at 301.57 per t (proceeds 5,516,921.58).
        p = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {
            "method": "sale", "buyer_id": buyer["id"], "price": "301.57", "reason": "逾期未还本息"}))
        assert p["status"] == "enforcing" and p["enforcement"]["proceeds"] == "5516921.58"
        assert p["enforcement"]["ground"]["type"] == "declared_default"
        # The buyer lacks the cash: nothing moves (DvP is all or nothing).
        short = buyer["api"].post(f"/v1/pledges/{pid}/enforcement/accept", {"price": "301.57"})
        assert (short.status_code, short.json()["code"]) == (409, "insufficient_available")
        api.ok(api.post("/v1/cash/deposits", {"participant_id": buyer["id"], "amount": "5516921.58",
                                               "bank_reference": "CIB-SM-0001"}))
        wrong = buyer["api"].post(f"/v1/pledges/{pid}/enforcement/accept", {"price": "300.00"})
        assert wrong.json()["code"] == "price_mismatch"
        p = api.ok(buyer["api"].post(f"/v1/pledges/{pid}/enforcement/accept", {"price": "301.57"}))
        assert p["status"] == "enforced" and "distribution" not in p["enforcement"]  # the creditors' business
        p = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
        paid = {d["role"]: d["paid"] for d in p["enforcement"]["distribution"]}
        # Pledgee up to the secured amount, then the junior claim, then the owner: to the fen.
        assert paid == {"pledgee": "5000000.00", "junior": "400000.00", "owner": "116921.58"}
        _, body = rx.wait_for("enforced")
        enforced = json.loads(body)  # decimal strings in CNY, never fen
        assert {d["role"]: d["paid"] for d in enforced["details"]["distribution"]} == paid
        assert enforced["instrument"] == "FCT-SM" and enforced["changes"]["enforcement"]["price"] == "301.57"

    assert cash(api, bank) == "5000000.00"
    assert cash(api, junior) == "400000.00"
    assert cash(api, owner) == "116921.58"
    assert cash(api, buyer) == "0.00"
    bought = api.ok(buyer["api"].get("/v1/holdings"))
    assert [(b["serial_start"], b["serial_end"], b["state"]) for b in bought["blocks"]] == [(1, 18294, "held")]
    left = api.ok(owner["api"].get("/v1/holdings"))
    assert [(b["serial_start"], b["serial_end"]) for b in left["blocks"]] == [(18295, 29715)]

    # The history is queryable and the row is exactly the projection of it.
    types = [e["type"] for e in api.ok(bank["api"].get(f"/v1/pledges/{pid}/events"))]
    assert types == ["filed", "confirmed", "claim_filed", "claim_registered", "revalued", "revalued",
                     "margin_call", "default_declared", "sale_proposed", "enforced"]
    assert "default_declared" in [e["type"] for e in api.ok(owner["api"].get("/v1/pledges/events"))]
    folded, row = api.client.blocking_portal.call(pledging.projection_check, api.client.app.state.rt, pid)
    assert folded == row
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()
