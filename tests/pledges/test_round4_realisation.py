"""Red team round 4, F1: the pledgee alone must not take the collateral cheaply. A negotiated realisation
(a sale to a named buyer, a transfer to the bank, an exchange listing) is at no less than 70 % of the
reference price (the latest mark; 民法典 §436, SPC 2023 Contract Book interpretation art. 42); with no
mark only a public auction may sell; a declared default waits for its notice period unless the pledgor
consents; the bank sets no fee; a court freeze on the lot gets its share of a fair surplus."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from exchange.core.settings import Settings
from tests.helpers import Api
from tests.pledges.helpers import OWNER_USCC, days, pledge_body, world
from tests.pledges.test_exchange_sale import cash, deposit, junior_claim, market


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The production notice period (7 days), unlike the other pledge tests.
    return Settings(data_dir=tmp_path, database_url=None, pledge_webhook_allow_http=True,
                    webhook_allowed_hosts="127.0.0.1", pledge_worker_interval_seconds=0.2, scheduler=False)


def pledged(api: Api, w: dict, quantity: str, ref: str, **extra: Any) -> dict:
    p = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], quantity, references=[
        {"source": "中登网", "reference": ref}], **extra)))
    return api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))


def mark(api: Api, price: str) -> None:
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                 "instrument": "FCT-SM", "price": price, "as_of": days(0)}))


def declare(w: dict, pid: int, notice_date: str) -> None:
    r = w["bank"]["api"].post(f"/v1/pledges/{pid}/default", {"reference": f"DN-{pid}", "notice_date": notice_date})
    assert r.status_code == 200, r.text


def sale(w: dict, pid: int, price: str, **extra: Any):  # type: ignore[no-untyped-def]
    return w["bank"]["api"].post(f"/v1/pledges/{pid}/enforcement", {
        "method": "sale", "reason": "loan default", "price": price, "buyer_id": w["buyer"]["id"], **extra})


def refused(r: Any, status: int, code: str) -> dict:
    assert (r.status_code, r.json().get("code")) == (status, code), r.text
    return r.json()


def test_declared_default_waits_for_its_notice_unless_the_pledgor_consents(api: Api) -> None:
    w = world(api, "1000")
    mark(api, "15.00")
    p = pledged(api, w, "100", "N-1", secured_amount="1000.00")
    # A notice dated today, or backdated a month: the pledgor still has 7 days from the declaration.
    declare(w, p["id"], days(-30))
    body = refused(sale(w, p["id"], "15.00"), 409, "notice_period_running")
    shanghai_today = datetime.now(ZoneInfo("Asia/Shanghai")).date()  # the registry's today
    assert f"may start on {shanghai_today + timedelta(days=7)}" in body["detail"]
    assert refused(w["bank"]["api"].post(f"/v1/pledges/{p['id']}/enforcement", {
        "method": "exchange", "reason": "loan default"}), 409, "notice_period_running")
    # Nobody but the pledgor consents: the bank is refused by role, a stranger sees nothing.
    refused(w["bank"]["api"].post(f"/v1/pledges/{p['id']}/enforcement-consent"), 403, "role_forbidden")
    stranger = api.participant("旁观企业", "enterprise")
    refused(stranger["api"].post(f"/v1/pledges/{p['id']}/enforcement-consent"), 404, "not_found")
    consented = api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/enforcement-consent",
                                              {"note": "同意提前处置"}))
    assert consented["declared_default"]["consent"]["by"] == f"participant:{w['owner']['id']}"
    got = api.ok(sale(w, p["id"], "15.00"))
    assert (got["status"], got["enforcement"]["ground"]["type"]) == ("enforcing", "declared_default")
    # Consent with nothing declared is refused.
    q = pledged(api, w, "100", "N-2", secured_amount="1000.00")
    refused(w["owner"]["api"].post(f"/v1/pledges/{q['id']}/enforcement-consent"), 409, "no_default")


def test_liquidation_gives_the_cure_before_the_next_open(api: Api) -> None:
    w = world(api, "1000")
    p = pledged(api, w, "100", "L-1", secured_amount="1000.00")
    r = api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                     "instrument": "FCT-SM", "price": "8.00", "as_of": days(0)}))
    [row] = r["pledges"]
    assert row["level"] == "liquidation" and row["cure_deadline"] is not None
    refused(sale(w, p["id"], "8.00"), 409, "cure_period_running")


def test_negotiated_price_floor_is_seventy_percent_of_the_latest_mark(api: Api) -> None:
    w = world(api, "1000")
    p = pledged(api, w, "100", "F-1", secured_amount="1000.00", transfer_on_default=True)
    claim = junior_claim(api, w, p["id"], "10.00")
    declare(w, p["id"], days(0))
    api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/enforcement-consent"))
    # No mark at all: nothing to refer a negotiated price to; only a public auction sells.
    refused(sale(w, p["id"], "15.00"), 409, "auction_required")
    refused(w["bank"]["api"].post(f"/v1/pledges/{p['id']}/enforcement", {
        "method": "transfer", "reason": "loan default", "price": "15.00"}), 409, "auction_required")
    mark(api, "15.00")
    # The red team's 0.01 and anything under 10.50 (70 % of 15.00) is refused, the floor named in CNY.
    for price in ("0.01", "10.49"):
        body = refused(sale(w, p["id"], price), 409, "price_below_floor")
        assert "10.50" in body["detail"] and "15.00" in body["detail"]
    # The bank never writes the exchange's fee.
    refused(sale(w, p["id"], "15.00", fee="149.00"), 422, "validation_error")
    # 折价 stays at no less than the mark itself.
    refused(w["bank"]["api"].post(f"/v1/pledges/{p['id']}/enforcement", {
        "method": "transfer", "reason": "loan default", "price": "12.00"}), 409, "price_below_mark")
    # At the floor: 100 x 10.50 = 1,050.00 -> pledgee 1,000.00, junior 10.00, owner 40.00, no fee line paid.
    got = api.ok(sale(w, p["id"], "10.50"))
    assert [(x["role"], x["paid"]) for x in got["enforcement"]["expected"] if x["paid"] != "0.00"] == [
        ("pledgee", "1000.00"), ("junior", "10.00"), ("owner", "40.00")]
    deposit(api, w["buyer"], "1050.00")
    api.ok(w["buyer"]["api"].post(f"/v1/pledges/{p['id']}/enforcement/accept", {"price": "10.50"}))
    assert (cash(api, w["bank"]), cash(api, w["junior"]), cash(api, w["owner"])) == ("1000.00", "10.00", "40.00")
    assert claim


def test_exchange_listing_has_the_floor_and_needs_a_reference(api: Api) -> None:
    w = world(api, "1000")
    listing = market(api, "listing")
    p = pledged(api, w, "50", "X-1", secured_amount="100.00")
    declare(w, p["id"], days(0))
    api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/enforcement-consent"))
    api.ok(w["bank"]["api"].post(f"/v1/pledges/{p['id']}/enforcement", {"method": "exchange", "reason": "default"}))

    def listed(price: str):  # type: ignore[no-untyped-def]
        return w["bank"]["api"].post(f"/v1/pledges/{p['id']}/enforcement/sales", {"market_id": listing,
                                                                                  "price": price})

    refused(listed("15.00"), 409, "auction_required")  # no mark: no listing price can be judged
    mark(api, "15.00")
    body = refused(listed("0.01"), 409, "price_below_floor")
    assert "10.50" in body["detail"]
    placed = listed("10.50")
    assert placed.status_code == 201, placed.text
    assert placed.json()["order"]["price"] == "10.50"


def test_a_court_freeze_on_the_lot_gets_the_surplus_of_a_fair_price(api: Api) -> None:
    w = world(api, "1000")
    mark(api, "15.00")
    p = pledged(api, w, "20", "C-1", secured_amount="10.00")
    f = api.ok(w["court"]["api"].post("/v1/freezes", {
        "holder_id": w["owner"]["id"], "holder_identifier": OWNER_USCC,
        "instrument": "FCT-SM", "quantity": "20", "serials": p["serials"], "case_number": "(2026)闽04执9号",
        "notice_number": "协执-9",
        "term_start": days(0), "term_end": days(365)}))
    declare(w, p["id"], days(0))
    api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/enforcement-consent"))
    refused(sale(w, p["id"], "0.01"), 409, "price_below_floor")  # the surplus cannot be made zero
    got = api.ok(sale(w, p["id"], "10.50"))  # 20 x 10.50 = 210.00: 10.00 to the bank, 200.00 to the court
    assert [(x["role"], x["paid"]) for x in got["enforcement"]["expected"] if x["paid"] != "0.00"] == [
        ("pledgee", "10.00"), ("court", "200.00")]
    deposit(api, w["buyer"], "210.00")
    api.ok(w["buyer"]["api"].post(f"/v1/pledges/{p['id']}/enforcement/accept", {"price": "10.50"}))
    g = api.ok(w["court"]["api"].get(f"/v1/freezes/{f['id']}"))
    assert g["proceeds_received"] == "200.00"
