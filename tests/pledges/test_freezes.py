"""Judicial freezes through HTTP: on free and pledged units, what they block, renewal, deduction, unfreeze."""

from __future__ import annotations

from exchange.core.database import asyncpg_dsn
from ledger.verify import verify_database
from tests.helpers import Api
from tests.pledges.helpers import OWNER_USCC, Receiver, days, pledge_body, world


def freeze_body(holder: int, quantity: str, notice: str, **extra: object) -> dict:
    return {"holder_id": holder, "holder_identifier": OWNER_USCC, "instrument": "FCT-SM", "quantity": quantity,
            "case_number": "(2024)闽04执123号", "notice_number": notice, "term_start": days(0), "term_end": days(365),
            **extra}


def test_freeze_sits_on_a_pledge_blocks_everything_then_deduction(api: Api, db_url: str) -> None:
    w = world(api, "100")
    owner, bank, court, buyer = w["owner"], w["bank"], w["court"], w["buyer"]
    other_court = api.participant("南靖县人民法院", "court")
    with Receiver() as rx:
        api.ok(bank["api"].client.put("/v1/pledges/webhook", json={"url": rx.url},
                                      headers={"Authorization": f"Bearer {bank['token']}", "Idempotency-Key": "h"}))
        p = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "60")))
        p = api.ok(owner["api"].post(f"/v1/pledges/{p['id']}/confirm"))
        # 70 units frozen: the 40 free ones first, then 30 of the pledged ones.
        f = api.ok(court["api"].post("/v1/freezes", freeze_body(owner["id"], "70", "协执-001")))
        assert f["status"] == "active" and f["serials"] == [{"start": 1, "end": 30}, {"start": 61, "end": 100}]
        headers, _ = rx.wait_for("freeze_noticed")
        assert headers["X-Envx-Event-Type"] == "freeze_noticed"
    p = api.ok(bank["api"].get(f"/v1/pledges/{p['id']}"))
    assert sum(1 for b in p["blocks"] if b["frozen_by"] == f["hold_id"]) >= 1
    # Frozen units cannot move by any path.
    o = owner["api"]
    for path, body in (("/v1/transfers", {"to_participant": buyer["id"], "instrument": "FCT-SM", "quantity": "1"}),
                       ("/v1/retirements", {"instrument": "FCT-SM", "quantity": "1", "purpose": "voluntary",
                                            "beneficiary": "x"})):
        r = o.post(path, body)
        assert (r.status_code, r.json()["code"]) == (409, "insufficient_available"), r.text
    new = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "1", references=[])))
    r = o.post(f"/v1/pledges/{new['id']}/confirm")
    assert r.json()["code"] == "insufficient_available"
    # Without a default there is nothing to enforce -- the freeze is not what stops it (see test_judicial).
    r = bank["api"].post(f"/v1/pledges/{p['id']}/enforcement", {"method": "sale", "buyer_id": buyer["id"],
                                                                "price": "10.00", "reason": "违约"})
    assert (r.status_code, r.json()["code"]) == (409, "no_default")
    # 展期 under a freeze: the same lock gets a later expiry (ledger AmendHold); nothing is released.
    ext = bank["api"].post(f"/v1/pledges/{p['id']}/extend", {"term_end": days(700)})
    assert ext.status_code in (200, 201), ext.text
    assert ext.json()["hold_id"] == p["hold_id"] and ext.json()["term_end"] == days(700)
    # The pledged part cannot be deducted (the pledge ranks first); another court may not touch this
    # freeze; courts see only their own.
    r = court["api"].post(f"/v1/freezes/{f['id']}/deduction", {"quantity": "41"})
    assert (r.status_code, r.json()["code"]) == (409, "pledged")
    assert p["number"] in r.json()["detail"] and r.json()["deductible"] == "40"
    assert other_court["api"].post(f"/v1/freezes/{f['id']}/unfreeze", {}).status_code == 404  # as if none
    assert other_court["api"].get(f"/v1/freezes/{f['id']}").status_code == 404
    assert api.ok(other_court["api"].get("/v1/freezes")) == []
    assert [x["id"] for x in api.ok(owner["api"].get("/v1/freezes"))] == [f["id"]]

    # Renewal before expiry: same serials, same freeze number, a new row continuing the chain.
    g = api.ok(court["api"].post(f"/v1/freezes/{f['id']}/renewals", {"term_end": days(700),
                                                                     "notice_number": "协执-002"}))
    assert g["id"] != f["id"] and g["freeze_no"] == f["freeze_no"] and g["root_id"] == f["id"]
    assert g["serials"] == f["serials"] and g["predecessor_id"] == f["id"]
    assert api.ok(court["api"].get(f"/v1/freezes/{f['id']}"))["status"] == "renewed"
    r = court["api"].post(f"/v1/freezes/{f['id']}/deduction", {})
    assert r.json()["code"] == "freeze_closed"

    # The bank releases its pledge: the units stay frozen; now the court deducts 50 to a named account.
    api.ok(bank["api"].post(f"/v1/pledges/{p['id']}/release"))
    assert api.ok(o.get("/v1/holdings"))["balances"][0]["available"] == "30"
    d = api.ok(court["api"].post(f"/v1/freezes/{g['id']}/deduction", {"quantity": "50",
                                                                      "to_participant": buyer["id"]}))
    assert (d["status"], d["deducted_quantity"], d["quantity"]) == ("active", "50", "20")
    got = api.ok(buyer["api"].get("/v1/holdings"))["blocks"]
    assert [(b["serial_start"], b["serial_end"]) for b in got] == [(1, 30), (61, 80)]  # lowest frozen first
    # A partial deduction keeps the rest frozen (81-100) until the court lifts it or the term ends.
    assert d["serials"] == [{"start": 81, "end": 100}]
    assert api.ok(o.get("/v1/holdings"))["balances"][0]["available"] == "30"
    d = api.ok(court["api"].post(f"/v1/freezes/{g['id']}/deduction", {}))
    assert (d["status"], d["deducted_quantity"], d["quantity"]) == ("deducted", "70", "0")
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_unfreeze_duplicate_notice_and_expired_terms(api: Api) -> None:
    w = world(api, "100")
    owner, court = w["owner"], w["court"]
    f = api.ok(court["api"].post("/v1/freezes", freeze_body(owner["id"], "10", "N-1",
                                                            serials=[{"start": 91, "end": 100}])))
    assert f["serials"] == [{"start": 91, "end": 100}]
    r = court["api"].post("/v1/freezes", freeze_body(owner["id"], "5", "N-1"))
    assert (r.status_code, r.json()["code"]) == (409, "duplicate_notice")
    r = court["api"].post("/v1/freezes", freeze_body(owner["id"], "5", "N-2", term_start=days(-30), term_end=days(-1)))
    assert (r.status_code, r.json()["code"]) == (422, "term_ended")
    r = court["api"].post("/v1/freezes", freeze_body(owner["id"], "91", "N-3"))
    assert (r.status_code, r.json()["code"]) == (409, "insufficient_available")
    r = w["bank"]["api"].post("/v1/freezes", freeze_body(owner["id"], "1", "N-4"))
    assert r.status_code == 403  # only courts freeze
    u = api.ok(court["api"].post(f"/v1/freezes/{f['id']}/unfreeze", {"note": "案件执行完毕"}))
    assert u["status"] == "unfrozen"
    assert api.ok(owner["api"].get("/v1/holdings"))["balances"][0]["available"] == "100"
    r = court["api"].post(f"/v1/freezes/{f['id']}/unfreeze", {})
    assert r.json()["code"] == "freeze_closed"


def test_malformed_freeze_serials_are_a_problem_not_a_500(api: Api) -> None:
    w = world(api, "10")
    r = w["court"]["api"].post("/v1/freezes", freeze_body(w["owner"]["id"], "4", "M-1", serials=[
        {"start": 1, "end": 3}, {"start": 3, "end": 3}]))
    assert (r.status_code, r.json()["code"]) == (422, "invalid_serials")
