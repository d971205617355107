"""Court freezes over pledged and free units, ranked as the law does (issue #14): the free part is deducted,
the rest stays frozen; the pledge was registered first, so the bank enforces under the freeze and the
surplus that would go to the owner goes, for the frozen share, to the court -- which sees it."""

from __future__ import annotations

from typing import Any

from exchange.core.database import asyncpg_dsn
from ledger.verify import verify_database
from tests.helpers import Api
from tests.pledges.helpers import OWNER_USCC, days, pledge_body, world

NOTICE = {"reference": "兴银违通字(2025)第3号", "notice_date": days(0)}


def freeze(court: Api, holder: int, quantity: str, notice: str, **extra: Any) -> dict:
    return court.post("/v1/freezes", {"holder_id": holder, "holder_identifier": OWNER_USCC, "instrument": "FCT-SM",
                                      "quantity": quantity,
                                      "case_number": "(2025)闽04执保88号", "notice_number": notice,
                                      "term_start": days(0), "term_end": days(180), **extra}).json()


def cash(api: Api, who: dict) -> str:
    bal = [b for b in api.ok(who["api"].get("/v1/holdings"))["balances"] if b["instrument"] == "CNY"]
    return bal[0]["posted"] if bal else "0.00"


def public_freezes(api: Api, **q: Any) -> list[dict]:
    return api.client.get("/v1/public/freezes", params=q).json()["certificate"]["results"]


def test_free_part_deducted_rest_frozen_bank_enforces_under_the_freeze_court_gets_its_share(api: Api,
                                                                                          db_url: str) -> None:
    w = world(api, "100")
    owner, bank, court, buyer = w["owner"], w["bank"], w["court"], w["buyer"]
    p = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "60", secured_amount="500.00")))
    p = api.ok(owner["api"].post(f"/v1/pledges/{p['id']}/confirm"))
    pid = p["id"]
    # 70 frozen: the 40 free units (61-100) and 30 pledged ones (1-30).
    f = freeze(court["api"], owner["id"], "70", "协执-1")
    assert f["serials"] == [{"start": 1, "end": 30}, {"start": 61, "end": 100}]

    # The court deducts 20 of the free part; the rest -- free and pledged -- stays frozen.
    d = api.ok(court["api"].post(f"/v1/freezes/{f['id']}/deduction", {"quantity": "20"}))
    assert (d["status"], d["quantity"], d["deducted_quantity"]) == ("active", "50", "20")
    assert d["serials"] == [{"start": 1, "end": 30}, {"start": 81, "end": 100}]
    [row] = public_freezes(api, serial=90, instrument="FCT-SM")
    assert (row["quantity"], row["case_number"]) == ("50", "(2025)闽04执保88号")
    moved = owner["api"].post("/v1/transfers", {"to_participant": buyer["id"], "instrument": "FCT-SM",
                                                "quantity": "10", "serials": [{"start": 81, "end": 90}]})
    assert moved.status_code == 409 and "(2025)闽04执保88号" in moved.json()["detail"], moved.text
    # Deducting more than is free is refused, naming the registration that ranks first.
    r = court["api"].post(f"/v1/freezes/{f['id']}/deduction", {"quantity": "21"})
    assert (r.status_code, r.json()["code"], r.json()["deductible"]) == (409, "pledged", "20")
    assert r.json()["pledges"] == [{"registration_number": p["number"], "pledgee": "兴业银行三明分行",
                                    "quantity": "30"}]

    # The loan defaults: the bank sells the lot under the freeze. 60 t x 10.00 = 600.00: 500.00 to the
    # bank; of the 100.00 surplus, the frozen 30 of 60 t's share (50.00) goes to the court.
    api.ok(api.post("/v1/cash/deposits", {"participant_id": buyer["id"], "amount": "600.00", "bank_reference": "b"}))
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                 "instrument": "FCT-SM", "price": "10.00", "as_of": days(0)}))
    p = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {
        "method": "sale", "buyer_id": buyer["id"], "price": "10.00", "reason": "违约", "default_notice": NOTICE}))
    assert [(x["role"], x["paid"]) for x in p["enforcement"]["expected"]] == [
        ("pledgee", "500.00"), ("court", "50.00"), ("owner", "50.00")]
    api.ok(buyer["api"].post(f"/v1/pledges/{pid}/enforcement/accept", {"price": "10.00"}))
    p = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
    assert p["status"] == "enforced"
    court_line = next(x for x in p["enforcement"]["distribution"] if x["role"] == "court")
    assert (court_line["participant_id"], court_line["paid"]) == (court["id"], "50.00")
    assert (cash(api, bank), cash(api, court), cash(api, owner), cash(api, buyer)) == (
        "500.00", "50.00", "50.00", "0.00")
    bought = api.ok(buyer["api"].get("/v1/holdings"))["blocks"]
    assert [(b["serial_start"], b["serial_end"]) for b in bought] == [(1, 60)]

    # The court sees it on its freeze: the units handed to the senior pledgee, and what was paid to it.
    g = api.ok(court["api"].get(f"/v1/freezes/{f['id']}"))
    assert (g["status"], g["quantity"], g["proceeds_received"]) == ("active", "20", "50.00")
    assert g["serials"] == [{"start": 81, "end": 100}]
    kinds = [e["type"] for e in g["events"]]
    assert kinds == ["frozen", "deducted", "released_to_pledgee", "proceeds_received"]
    released = g["events"][2]["data"]
    assert (released["pledge_number"], released["units"], released["still_frozen"]) == (p["number"], "30", "20")
    assert g["events"][3]["data"]["amount"] == "50.00"
    # Still frozen after the sale, still in the public register; the court deducts the rest in the end.
    [row] = public_freezes(api, name="三明市沙县林业合作社")
    assert row["quantity"] == "20"
    d = api.ok(court["api"].post(f"/v1/freezes/{f['id']}/deduction", {}))
    assert (d["status"], d["quantity"], d["deducted_quantity"]) == ("deducted", "0", "40")
    assert public_freezes(api, name="三明市沙县林业合作社") == []
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_exchange_enforcement_under_a_freeze_and_its_withdrawal_freezes_the_units_again(api: Api,
                                                                                      db_url: str) -> None:
    w = world(api, "100")
    owner, bank, court = w["owner"], w["bank"], w["court"]
    other = api.participant("执行款专户 (示例)", "enterprise")
    p = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "50", secured_amount="300.00")))
    p = api.ok(owner["api"].post(f"/v1/pledges/{p['id']}/confirm"))
    pid = p["id"]
    f = freeze(court["api"], owner["id"], "20", "协执-2", serials=[{"start": 1, "end": 20}], deduct_to_id=other["id"])
    # A junior claim cannot be registered on a lot a court has frozen (it could not be asserted against it).
    cid = api.ok(w["junior"]["api"].post(f"/v1/pledges/{pid}/claims", {
        "loan_contract": "J", "amount": "10.00", "term_end": days(30)}))["id"]
    r = owner["api"].post(f"/v1/pledges/claims/{cid}/confirm")
    assert (r.status_code, r.json()["code"]) == (409, "frozen") and "(2025)闽04执保88号" in r.json()["detail"]

    p = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "违约",
                                                                   "default_notice": NOTICE}))
    assert p["enforcement"]["courts"] == [{"freeze": f["id"], "freeze_id": f["id"], "court_id": court["id"],
                                           "case_number": "(2025)闽04执保88号", "units": "20",
                                           "serials": [[1, 20]], "account": p["enforcement"]["courts"][0]["account"]}]
    g = api.ok(court["api"].get(f"/v1/freezes/{f['id']}"))
    assert (g["status"], g["quantity"], g["hold_id"]) == ("active", "0", None)  # stands over the surplus
    assert public_freezes(api, name="三明市沙县林业合作社") == []  # no units frozen: none in the register
    r = court["api"].post(f"/v1/freezes/{f['id']}/deduction", {})
    assert (r.status_code, r.json()["code"]) == (409, "nothing_frozen")
    # Withdrawn before any sale: the lot is locked again and the court's units frozen again.
    p = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement/cancel", {}))
    assert p["status"] == "active"
    g = api.ok(court["api"].get(f"/v1/freezes/{f['id']}"))
    assert (g["quantity"], g["serials"]) == ("20", [{"start": 1, "end": 20}]) and g["hold_id"] is not None
    assert {b["frozen_by"] for b in p["blocks"] if b["start"] <= 20} == {g["hold_id"]}

    # Enforced again and listed; 50 t at 10.00 = 500.00: 300.00 to the bank; of the 200.00 surplus,
    # 20 of 50 t's share (80.00) to the court's designated account, 120.00 to the owner.
    api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "违约"}))
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "listing",
                                     "settings": {"sessions": [], "reference_price_fen": 1000}}))
    api.ok(api.post("/v1/markets/FCT-SM.listing/session", {"action": "open"}))
    lid = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement/sales", {
        "market_id": "FCT-SM.listing", "price": "10.00"}), 201)["order"]["id"]
    api.ok(api.post("/v1/cash/deposits", {"participant_id": w["buyer"]["id"], "amount": "500.00",
                                           "bank_reference": "b"}))
    api.ok(w["buyer"]["api"].post(f"/v1/markets/FCT-SM.listing/listings/{lid}/take", {"quantity": "50"}))
    p = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
    assert p["status"] == "enforced"
    assert p["enforcement"]["paid"] == {"pledgee/principal": "300.00", f"court:{f['id']}": "80.00",
                                        "owner": "120.00"}
    assert (cash(api, other), cash(api, owner), cash(api, court)) == ("80.00", "120.00", "0.00")
    g = api.ok(court["api"].get(f"/v1/freezes/{f['id']}"))
    assert g["proceeds_received"] == "80.00" and g["events"][-1]["type"] == "proceeds_received"
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()
