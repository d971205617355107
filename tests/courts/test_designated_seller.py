"""A restoration order that names its seller is fulfilled from that seller only (red team round 4, F15):
judgments that name the project to buy from are not recorded as fulfilled by anyone's units."""

from __future__ import annotations

from datetime import date, timedelta

from tests.courts.test_restoration import PAYER_ID, _setup
from tests.helpers import Api, project_batch


def test_only_the_designated_sellers_listing_fills_the_order(api: Api) -> None:
    w = _setup(api)
    court, payer, seller = w["court"]["api"], w["payer"]["api"], w["seller"]["api"]
    other = api.participant("另一项目业主", "enterprise")
    issuer = api.participant("生态环境部 (二)", "issuer")
    api.issue(issuer["api"], other["id"], "CCER", "50", project_batch("其他项目"))
    api.ok(api.post("/v1/markets", {"instrument": "CCER", "mode": "listing", "settings": {"sessions": []}}))
    api.ok(api.post("/v1/markets/CCER.listing/session", {"action": "open"}))
    theirs = api.ok(other["api"].post("/v1/markets/CCER.listing/listings", {"side": "sell", "price": "50.00",
                                                                             "quantity": "10"}))["order"]["id"]
    named = api.ok(seller.post("/v1/markets/CCER.listing/listings", {"side": "sell", "price": "60.00",
                                                                      "quantity": "10"}))["order"]["id"]
    oid = api.ok(court.post("/v1/restoration-orders", {
        "case_number": "(2026)闽0627刑初9号", "case_type": "刑事附带民事公益诉讼", "judgment_reference": "判决书",
        "defendants": [{"name": "被告人乙"}], "payer_id": w["payer"]["id"], "payer_identifier": PAYER_ID,
        "assessed_loss": "5", "assessment_method": "林业碳汇损失评估", "assessing_body": "福建省林业调查规划院",
        "multiplier": "2", "required_quantity": "10", "eligible_kinds": ["ccer"],
        "designated_seller_id": w["seller"]["id"],
        "deadline": (date.today() + timedelta(days=30)).isoformat()}))["id"]
    path = f"/v1/restoration-orders/{oid}"
    wrong = payer.post(f"{path}/takes", {"market_id": "CCER.listing", "listing_id": theirs, "quantity": "10"})
    assert (wrong.status_code, wrong.json()["code"]) == (409, "not_designated_seller"), wrong.text
    book = payer.post(f"{path}/purchases", {"market_id": "CCER.listing", "type": "limit", "tif": "day",
                                            "price": "60.00", "quantity": "10"})
    assert book.status_code in (409, 422), book.text  # a bid on a book picks no seller
    before = {b["instrument"]: b for b in api.ok(payer.get("/v1/holdings"))["balances"]}["CNY"]
    assert before["pending"] == "0.00"  # nothing was held for the refused takes
    api.ok(payer.post(f"{path}/takes", {"market_id": "CCER.listing", "listing_id": named, "quantity": "10"}))
    state = api.ok(court.get(path))
    assert (state["retired_quantity"], state["status"], state["paid"]) == ("10", "fulfilled", "600.00")
