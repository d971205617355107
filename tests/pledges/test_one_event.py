"""Issue #16: a pledge's relock, the promotion of a junior claim and each enforcement payout are ONE ledger
entry (a version-2 event) whose legs apply all or none. Through HTTP on the real app; what was written is read
from the ledger's tables. A step the ledger refuses part-way (its last leg) leaves nothing of it."""

from __future__ import annotations

from typing import Any

import pytest

from exchange.core.database import asyncpg_dsn
from exchange.core.ledger_events import event_requests
from ledger import commands as c
from ledger.state import Rejection
from ledger.verify import verify_database
from tests.helpers import Api
from tests.ledger_events import entries, head, hold, shape, since, snapshot
from tests.pledges.helpers import OWNER_USCC, days, pledge_body, world
from tests.security.helpers import sql

NOTICE = {"reference": "兴银违通字(2025)第16号", "notice_date": days(0)}


def active(api: Api, w: dict, quantity: str, ref: str, **extra: Any) -> dict:
    p = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(
        w["owner"]["id"], quantity, references=[{"source": "中登网", "reference": ref}], **extra)))
    return api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))


def last_event(api: Api, who: Api, pid: int, type_: str) -> dict:
    return [e for e in api.ok(who.get(f"/v1/pledges/{pid}/events")) if e["type"] == type_][-1]


def freeze(court: Api, holder: int, serials: list[tuple[int, int]], notice: str) -> dict:
    return court.post("/v1/freezes", {
        "holder_id": holder, "holder_identifier": OWNER_USCC, "instrument": "FCT-SM",
        "quantity": str(sum(e - s + 1 for s, e in serials)), "serials": [{"start": s, "end": e} for s, e in serials],
        "case_number": "(2025)闽04执保16号", "notice_number": notice, "term_start": days(0),
        "term_end": days(180)}).json()


def cash(api: Api, who: dict) -> str:
    bal = [b for b in api.ok(who["api"].get("/v1/holdings"))["balances"] if b["instrument"] == "CNY"]
    return bal[0]["posted"] if bal else "0.00"


def verify(api: Api, db_url: str) -> None:
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_top_up_and_partial_release_are_one_event_and_a_refused_relock_leaves_nothing(api: Api,
                                                                                      db_url: str) -> None:
    w = world(api, "3000")
    bank, owner = w["bank"]["api"], w["owner"]["api"]
    p = active(api, w, "1000", "E-1")
    other = active(api, w, "500", "E-2")
    assert [(b["start"], b["end"]) for b in other["blocks"]] == [(1001, 1500)]
    old_hold = p["hold_id"]

    at = head(api)
    p = api.ok(owner.post(f"/v1/pledges/{p['id']}/top-up", {"quantity": "400"}))
    ev = last_event(api, bank, p["id"], "topped_up")
    # Before: a void entry and a lock entry (2); now one event whose new hold is the entry itself.
    assert ev["ledger_seqs"] == [at + 1] and head(api) == at + 1
    [e] = entries(api, ev["ledger_seqs"])
    assert shape(e) == ("event", "relock", ["hold.void", "hold.create"])
    assert e["body"]["legs"][0]["body"] == {"hold": old_hold, "released": 1000}
    assert p["hold_id"] == at + 1 and e["body"]["legs"][1]["body"]["amount"] == 1400
    assert hold(api, old_hold) == ("voided", 1000, 0, at + 1)
    assert hold(api, p["hold_id"]) == ("pending", 1400, 0, None)
    assert [(b["start"], b["end"]) for b in p["blocks"]] == [(1, 1000), (1501, 1900)]

    at = head(api)
    p = api.ok(bank.post(f"/v1/pledges/{p['id']}/partial-release", {"quantity": "900"}))
    ev = last_event(api, bank, p["id"], "partially_released")
    assert ev["ledger_seqs"] == [at + 1] and p["hold_id"] == at + 1
    assert shape(entries(api, ev["ledger_seqs"])[0]) == ("event", "relock", ["hold.void", "hold.create"])
    assert p["quantity"] == "500" and api.ok(owner.get("/v1/holdings"))["balances"][0]["available"] == "2000"

    # A top-up naming units another registration locks: the event's void leg applies, its lock leg is
    # refused -- and the void is undone with it. The head, every balance, block and hold are as they were.
    before = snapshot(api)
    r = owner.post(f"/v1/pledges/{p['id']}/top-up", {"quantity": "10", "serials": [{"start": 1001, "end": 1010}]})
    assert r.status_code == 409, r.text
    assert snapshot(api) == before
    assert hold(api, p["hold_id"])[0] == "pending"
    again = api.ok(bank.get(f"/v1/pledges/{p['id']}"))
    assert (again["quantity"], again["hold_id"]) == ("500", p["hold_id"])
    verify(api, db_url)


def test_promotion_of_the_junior_claim_is_one_event(api: Api, db_url: str) -> None:
    w = world(api, "1000")
    p = active(api, w, "600", "E-3")
    pid, senior_hold = p["id"], p["hold_id"]
    claim = api.ok(w["junior"]["api"].post(f"/v1/pledges/{pid}/claims", {
        "loan_contract": "J-16", "amount": "100000.00", "term_end": days(300)}))["id"]
    api.ok(w["owner"]["api"].post(f"/v1/pledges/claims/{claim}/confirm"))

    # Through the writer, the same event with a lock leg the ledger must refuse (more units than the
    # pledgor has): the senior's hold is not voided, nothing is written.
    rt = api.client.app.state.rt
    [(holding, escrow)] = sql(api.client, "SELECT debit, credit FROM ledger_holds WHERE id = :h", {"h": senior_hold})
    before = snapshot(api)
    bad = event_requests("registry", "promotion", [
        c.VoidHold(senior_hold), c.CreateHold("pledge", holding, escrow, "FCT-SM", 1001)],
        "test:promotion-refused", {})
    with pytest.raises(Rejection):
        api.client.blocking_portal.call(rt.writer.submit_linked, bad)
    assert snapshot(api) == before and hold(api, senior_hold)[0] == "pending"

    at = head(api)
    done = api.ok(w["bank"]["api"].post(f"/v1/pledges/{pid}/release"))
    assert done["status"] == "released"
    ev = last_event(api, w["bank"]["api"], pid, "released")
    # Before: the senior's void and the junior's lock, two entries; now one (after the opening of the junior's
    # escrow account, on its first use).
    assert [shape(x)[0] for x in since(api, at)] == ["account.open", "event"]
    at += 1
    assert ev["ledger_seqs"] == [at + 1] and head(api) == at + 1
    [e] = entries(api, ev["ledger_seqs"])
    assert shape(e) == ("event", "promotion", ["hold.void", "hold.create"])
    promoted = next(x for x in api.ok(w["junior"]["api"].get("/v1/pledges")) if x["promoted_from_claim"] == claim)
    assert promoted["hold_id"] == at + 1 and promoted["status"] == "active"
    assert hold(api, senior_hold) == ("voided", 600, 0, at + 1)
    assert hold(api, at + 1) == ("pending", 600, 0, None)
    # The units were never free: 400 available before and after.
    assert api.ok(w["owner"]["api"].get("/v1/holdings"))["balances"][0]["available"] == "400"
    promoted_events = api.ok(w["junior"]["api"].get(f"/v1/pledges/{promoted['id']}/events"))
    assert promoted_events[0]["ledger_seqs"] == [at + 1]
    verify(api, db_url)


def test_transfer_to_the_bank_is_one_event_and_a_bank_short_of_cash_moves_nothing(api: Api, db_url: str) -> None:
    w = world(api, "3000")
    bank = w["bank"]
    p = active(api, w, "1000", "E-4", transfer_on_default=True)
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report", "instrument": "FCT-SM",
                                                 "price": "5200.00", "as_of": days(0)}))
    body = {"method": "transfer", "reason": "违约", "outstanding": "4900000.00", "default_notice": NOTICE}
    # The bank owes the pledgor a 300,000.00 surplus it does not have: the event's post and delivery legs
    # apply, its payout leg is refused, and nothing of it stays.
    before = snapshot(api)
    r = bank["api"].post(f"/v1/pledges/{p['id']}/enforcement", body)
    assert (r.status_code, r.json()["code"]) == (409, "insufficient_available"), r.text
    assert snapshot(api)[1:] == before[1:]
    assert hold(api, p["hold_id"])[0] == "pending"
    api.ok(api.post("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "300000.00",
                                           "bank_reference": "B16"}))
    at = head(api)
    p = api.ok(bank["api"].post(f"/v1/pledges/{p['id']}/enforcement", body))
    assert p["status"] == "enforced"
    ev = last_event(api, bank["api"], p["id"], "enforced")
    # Before: post, delivery and one entry per payout (3); now one.
    assert ev["ledger_seqs"] == [at + 1] and head(api) == at + 1
    [e] = entries(api, ev["ledger_seqs"])
    assert shape(e) == ("event", "enforcement", ["hold.post", "transfer", "transfer"])
    assert e["body"]["legs"][2]["body"]["amount"] == 30_000_000
    assert (cash(api, bank), cash(api, w["owner"])) == ("0.00", "300000.00")
    assert [(b["serial_start"], b["serial_end"]) for b in api.ok(bank["api"].get("/v1/holdings"))["blocks"]] == [
        (1, 1000)]
    verify(api, db_url)


def test_negotiated_sale_under_a_freeze_is_one_event_and_a_buyer_short_of_cash_moves_nothing(
        api: Api, db_url: str) -> None:
    w = world(api, "100")
    owner, bank, court, buyer = w["owner"], w["bank"], w["court"], w["buyer"]
    p = active(api, w, "60", "E-5", secured_amount="500.00")
    pid = p["id"]
    # 30 pledged (1-30) and 20 free (61-80) units frozen: the sale takes the lot out of the freeze, which
    # stays on 61-80.
    f = freeze(court["api"], w["owner"]["id"], [(1, 30), (61, 80)], "协执-16")
    f_hold = f["hold_id"]
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report", "instrument": "FCT-SM",
                                                 "price": "10.00", "as_of": days(0)}))
    p = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {
        "method": "sale", "buyer_id": buyer["id"], "price": "10.00", "reason": "违约", "default_notice": NOTICE}))
    # 60 t x 10.00 = 600.00: 500.00 to the bank; of the 100.00 surplus the frozen 30 of 60 t's share to the court.
    assert [(x["role"], x["paid"]) for x in p["enforcement"]["expected"]] == [
        ("pledgee", "500.00"), ("court", "50.00"), ("owner", "50.00")]

    api.ok(api.post("/v1/cash/deposits", {"participant_id": buyer["id"], "amount": "599.99", "bank_reference": "b1"}))
    before = snapshot(api)
    r = buyer["api"].post(f"/v1/pledges/{pid}/enforcement/accept", {"price": "10.00"})
    assert (r.status_code, r.json()["code"]) == (409, "insufficient_available"), r.text
    # The freeze's void, its rest frozen again, the post and the delivery all applied before the buyer's
    # payment into the escrow was refused: none of them stays.
    assert snapshot(api) == before
    assert hold(api, f_hold)[0] == "pending" and hold(api, p["hold_id"])[0] == "pending"
    assert api.ok(bank["api"].get(f"/v1/pledges/{pid}"))["status"] == "enforcing"

    api.ok(api.post("/v1/cash/deposits", {"participant_id": buyer["id"], "amount": "0.01", "bank_reference": "b2"}))
    at = head(api)
    api.ok(buyer["api"].post(f"/v1/pledges/{pid}/enforcement/accept", {"price": "10.00"}))
    ev = last_event(api, bank["api"], pid, "enforced")
    # Before: the freeze's void and new hold, post, delivery and three payouts (7 entries); now one. The buyer
    # pays the price into the bank's escrow, the escrow pays the lines (the buyer's receipt opens only its own).
    assert ev["ledger_seqs"] == [at + 1] and head(api) == at + 1
    [e] = entries(api, ev["ledger_seqs"])
    assert shape(e) == ("event", "enforcement", ["hold.void", "hold.create", "hold.post", "transfer", "transfer",
                                                 "transfer", "transfer", "transfer"])
    assert [leg["body"]["amount"] for leg in e["body"]["legs"][4:]] == [60_000, 50_000, 5_000, 5_000]
    assert (cash(api, bank), cash(api, court), cash(api, owner), cash(api, buyer)) == (
        "500.00", "50.00", "50.00", "0.00")
    g = api.ok(court["api"].get(f"/v1/freezes/{f['id']}"))
    assert g["hold_id"] == at + 1 and g["serials"] == [{"start": 61, "end": 80}] and g["quantity"] == "20"
    assert hold(api, f_hold)[0] == "voided" and hold(api, at + 1) == ("pending", 20, 0, None)
    assert [(b["serial_start"], b["serial_end"]) for b in api.ok(buyer["api"].get("/v1/holdings"))["blocks"]] == [
        (1, 60)]
    verify(api, db_url)


def test_exchange_sale_start_payouts_and_withdrawal_are_one_event_each(api: Api, db_url: str) -> None:
    w = world(api, "800")
    bank, owner, junior = w["bank"], w["owner"], w["junior"]
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "listing",
                                     "settings": {"sessions": [], "reference_price_fen": 400_000}}))
    m = "FCT-SM.listing"
    api.ok(api.post(f"/v1/markets/{m}/session", {"action": "open"}))
    t1, t2 = api.participant("买方甲", "enterprise"), api.participant("买方乙", "enterprise")
    for who, amount in ((t1, "900000.00"), (t2, "1300000.00")):
        api.ok(api.post("/v1/cash/deposits", {"participant_id": who["id"], "amount": amount,
                                               "bank_reference": f"d{who['id']}"}))
    p = active(api, w, "500", "E-6", secured_amount="1500000.00")
    pid = p["id"]
    cid = api.ok(junior["api"].post(f"/v1/pledges/{pid}/claims", {
        "loan_contract": "J-6", "amount": "200000.00", "term_end": days(200)}))["id"]
    api.ok(owner["api"].post(f"/v1/pledges/claims/{cid}/confirm"))

    # Started and withdrawn before any sale: one event each way.
    at = head(api)
    api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "违约",
                                                               "default_notice": NOTICE}))
    ev = last_event(api, bank["api"], pid, "exchange_sale_started")
    assert ev["ledger_seqs"] == [at + 1] and shape(entries(api, [at + 1])[0]) == ("event", "enforcement",
                                                                                 ["hold.post"])
    at = head(api)
    p = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement/cancel", {}))
    ev = last_event(api, bank["api"], pid, "exchange_sale_cancelled")
    # Before: the return and the lock again (2); now one event, whose new hold is the lock.
    assert ev["ledger_seqs"] == [at + 1] and p["hold_id"] == at + 1 and p["status"] == "active"
    assert shape(entries(api, [at + 1])[0]) == ("event", "return", ["transfer", "hold.create"])

    api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "违约"}))
    lid = api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement/sales", {"market_id": m, "price": "4000.00"}),
                 201)["order"]["id"]
    api.ok(t1["api"].post(f"/v1/markets/{m}/listings/{lid}/take", {"quantity": "200"}))
    at = head(api)
    api.ok(t2["api"].post(f"/v1/markets/{m}/listings/{lid}/take", {"quantity": "300"}))
    done = api.ok(bank["api"].get(f"/v1/pledges/{pid}"))
    assert done["status"] == "enforced"
    assert done["enforcement"]["paid"] == {"pledgee/principal": "1500000.00", f"claim:{cid}": "200000.00",
                                           "owner": "300000.00"}
    # The second fill, 300 t x 4,000.00 = 1,200,000.00: 700,000.00 to the bank, the junior's 200,000.00, the
    # owner's 300,000.00 -- before: three entries; now one event after the trade's own.
    ev = last_event(api, bank["api"], pid, "proceeds_distributed")
    [payout] = entries(api, ev["ledger_seqs"])
    assert shape(payout) == ("event", "payout", ["transfer", "transfer", "transfer"])
    assert [leg["body"]["amount"] for leg in payout["body"]["legs"]] == [70_000_000, 20_000_000, 30_000_000]
    assert [shape(e)[1] for e in since(api, at) if e["type"] == "event"] == ["trade", "payout"]
    assert (cash(api, bank), cash(api, junior), cash(api, owner)) == ("1500000.00", "200000.00", "300000.00")
    verify(api, db_url)


def test_several_freezes_on_the_lot_one_event_and_one_entry_per_further_freeze(api: Api, db_url: str) -> None:
    w = world(api, "100")
    bank, court = w["bank"], w["court"]
    p = active(api, w, "50", "E-7", secured_amount="300.00")
    pid = p["id"]
    a = freeze(court["api"], w["owner"]["id"], [(41, 60)], "协执-16a")  # 41-50 in the lot, 51-60 not
    b = freeze(court["api"], w["owner"]["id"], [(31, 40), (71, 80)], "协执-16b")  # 31-40 in the lot, 71-80 not
    at = head(api)
    api.ok(bank["api"].post(f"/v1/pledges/{pid}/enforcement", {"method": "exchange", "reason": "违约",
                                                               "default_notice": NOTICE}))
    ev = last_event(api, bank["api"], pid, "exchange_sale_started")
    # Two freezes keep units outside the lot, each frozen again by a new hold: an event creates at most one,
    # so the second is an entry of its own right after it, in the same linked group (before: 5 entries).
    assert ev["ledger_seqs"] == [at + 1, at + 2]
    first, second = entries(api, ev["ledger_seqs"])
    assert shape(first) == ("event", "enforcement", ["hold.void", "hold.create", "hold.void", "hold.post"])
    assert shape(second) == ("hold.create", None, ["hold.create"])
    ga, gb = (api.ok(court["api"].get(f"/v1/freezes/{x['id']}")) for x in (a, b))
    assert (ga["hold_id"], ga["serials"]) == (at + 1, [{"start": 51, "end": 60}])
    assert (gb["hold_id"], gb["serials"]) == (at + 2, [{"start": 71, "end": 80}])
    verify(api, db_url)


def test_freeze_renewal_and_deduction_onward_are_one_event_each(api: Api, db_url: str) -> None:
    w = world(api, "100")
    court, buyer = w["court"], w["buyer"]
    f = freeze(court["api"], w["owner"]["id"], [(1, 40)], "协执-16r")
    at = head(api)
    g = api.ok(court["api"].post(f"/v1/freezes/{f['id']}/renewals", {"term_end": days(700),
                                                                     "notice_number": "协执-16r2"}))
    # Before: the void and the new freeze (2 entries); now one event, whose new hold is the entry itself.
    assert [shape(e) for e in since(api, at)] == [("event", "relock", ["hold.void", "hold.create"])]
    assert g["hold_id"] == at + 1 and hold(api, f["hold_id"]) == ("voided", 40, 0, at + 1)
    at = head(api)
    d = api.ok(court["api"].post(f"/v1/freezes/{g['id']}/deduction", {"quantity": "30",
                                                                      "to_participant": buyer["id"]}))
    # Before: the deduction to the court and the units on to the named account (2); now one.
    assert [shape(e) for e in since(api, at)] == [("event", "deduction", ["hold.post", "transfer"])]
    assert (d["deducted_quantity"], d["quantity"]) == ("30", "10")
    got = api.ok(buyer["api"].get("/v1/holdings"))["blocks"]
    assert [(b["serial_start"], b["serial_end"]) for b in got] == [(1, 30)]
    assert api.ok(court["api"].get("/v1/holdings"))["blocks"] == []
    verify(api, db_url)
