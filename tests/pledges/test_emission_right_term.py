"""Pledged emission rights are worth what the market pays for them: price per t·yr × t/yr × the term's
years (exchange/trading/pricing.py), in the bank's valuation, in a negotiated sale's proceeds and in an exchange
sale's proceeds; and the lot of an enforcement waiting in the bank's escrow does not expire under it."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from exchange.core.calendar import trading_day
from exchange.registry import expiry
from exchange.trading import sessions
from tests.helpers import Api, uscc
from tests.pledges.helpers import TODAY, days, pledge_body
from tests.trading.test_auctions import emission_right, fund, verified

NOTICE = {"reference": "兴银福州违通字(2025)第0011号", "notice_date": days(0)}


def test_emission_right_pledge_is_valued_and_sold_by_its_term(api: Api, db_url: str) -> None:
    emission_right(api, "PW-COD-FJ", 5, "福建省", "COD")
    issuer = api.participant("福建省生态环境厅 (示例)", "issuer")
    owner = api.participant("排污企业 (示例)", "enterprise", uscc=uscc("91350100MA2YY0001"))
    buyer = api.participant("受让企业 (示例)", "enterprise")
    bank = api.participant("兴业银行福州分行 (示例)", "bank")
    api.issue(issuer["api"], owner["id"], "PW-COD-FJ", "12.000", {"valid_from": "2025-01-01",
                                                                   "valid_until": "2029-12-31"})
    fund(api, buyer, "200000.00")

    def pledged(quantity: str, ref: str) -> dict:
        p = api.ok(bank["api"].post("/v1/pledges", pledge_body(
            owner["id"], quantity, instrument="PW-COD-FJ", secured_amount="150000.00", pledgor_identifier=owner["uscc"],
            references=[{"source": "中登网", "reference": ref}])))
        return api.ok(owner["api"].post(f"/v1/pledges/{p['id']}/confirm"))

    p, q = pledged("10.000", "ER-1"), pledged("2.000", "ER-2")
    # A close of 4,000.00 per t·yr: 10 t/yr for 5 years is worth 200,000.00 -- 133 % of the loan, all
    # well (valued per t/yr alone it would be 40,000.00, a liquidation).
    out = api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                       "instrument": "PW-COD-FJ", "price": "4000.00",
                                                       "as_of": TODAY.isoformat()}))
    assert {r["pledge_id"]: (r["value"], r["level"]) for r in out["pledges"]} == {
        p["id"]: ("200000.00", "ok"), q["id"]: ("40000.00", "liquidation")}
    margin = api.ok(bank["api"].get(f"/v1/pledges/{p['id']}"))["margin"]
    assert (margin["value"], margin["ratio_bps"], margin["level"]) == ("200000.00", 13333, "ok")

    # A negotiated sale of 2 t/yr at 4,100.00 fetches 4,100.00 x 2 x 5 = 41,000.00.
    sale = api.ok(bank["api"].post(f"/v1/pledges/{q['id']}/enforcement", {
        "method": "sale", "buyer_id": buyer["id"], "price": "4100.00", "reason": "违约", "default_notice": NOTICE}))
    assert sale["enforcement"]["proceeds"] == "41000.00"

    # An exchange sale: 4 t/yr taken at 4,000.00 settle at 80,000.00, paid to the bank.
    api.ok(api.post("/v1/markets", {"instrument": "PW-COD-FJ", "mode": "listing", "settings": {"sessions": []}}))
    m = "PW-COD-FJ.listing"
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open"}))
    p = api.ok(bank["api"].post(f"/v1/pledges/{p['id']}/enforcement", {
        "method": "exchange", "reason": "到期未还", "default_notice": NOTICE}))
    listed = api.ok(bank["api"].post(f"/v1/pledges/{p['id']}/enforcement/sales",
                                     {"market_id": m, "price": "4000.00", "quantity": "4.000"}), 201)
    took = api.ok(buyer["api"].post(f"/v1/markets/{m}/listings/{listed['order']['id']}/take", {"quantity": "4.000"}))
    assert took["order"]["filled_amount"] == "80000.00"
    e = api.ok(bank["api"].get(f"/v1/pledges/{p['id']}"))["enforcement"]
    assert (e["received"], e["sold"], e["unsold"], e["paid"]) == (
        "80000.00", "4.000", "6.000", {"pledgee/principal": "80000.00"})

    # After the term: the buyer's units expire; the rest of the lot in the bank's escrow waits for the
    # end of the enforcement, and so do the units still pledged (the negotiated sale is not accepted).
    rt = api.client.app.state.rt
    api.client.blocking_portal.call(sessions.release_t1, rt, "PW-COD-FJ",
                                    trading_day(datetime.now(UTC)) + timedelta(days=1))
    sweep = api.client.blocking_portal.call(expiry.expire_due, rt, date(2030, 1, 1))
    assert [(x["account"], x["quantity"]) for x in sweep["expired"]] == [(buyer["holding_account"], "4.000")]
    assert sorted((x["account"], x["quantity"], x["encumbrance"]) for x in sweep["blocked"]) == sorted([
        (owner["holding_account"], "2.000", "pledged"),
        (int(e["escrow_account"]), "6.000", "pledge_enforcement")])
    # The lot is whole in escrow: the bank lists the rest.
    again = api.ok(bank["api"].post(f"/v1/pledges/{p['id']}/enforcement/sales",
                                    {"market_id": m, "price": "3900.00"}), 201)
    assert (again["order"]["status"], again["order"]["quantity"]) == ("open", "6.000")
    verified(api, db_url)
