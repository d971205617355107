"""Enforcement needs a default (issue #14), and claims what the contract's secured scope covers (民法典 §389):
refused without one, accepted after a missed cure deadline, at a liquidation level and on a declared
default; the claim by component, capped or left unsecured as the scope says, each line in the distribution."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from pledges import scope as sc
from pledges import waterfall as wf
from pledges.errors import PledgeError
from tests.helpers import Api
from tests.pledges.helpers import days, pledge_body, world


def pledged(api: Api, w: dict, quantity: str, **extra: object) -> dict:
    p = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], quantity, **extra)))
    return api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))


def offer(bank: Api, pid: int, buyer: int, **extra: object):  # type: ignore[no-untyped-def]
    return bank.post(f"/v1/pledges/{pid}/enforcement", {"method": "sale", "buyer_id": buyer, "price": "10.00",
                                                        "reason": "违约", **extra})


def test_enforcement_needs_a_default(api: Api) -> None:
    w = world(api, "1000")
    bank, owner, buyer = w["bank"]["api"], w["owner"], w["buyer"]["id"]
    refs = iter(range(100))

    def another() -> dict:
        return pledged(api, w, "100", secured_amount="1000.00", references=[
            {"source": "中登网", "reference": f"D-{next(refs)}"}])

    # An ok level and no declaration: nothing to enforce.
    a = another()
    r = offer(bank, a["id"], buyer)
    assert (r.status_code, r.json()["code"]) == (409, "no_default") and "default" in r.json()["detail"]
    # A margin call before its cure deadline (set by envx) is no default; after it, it is.
    b = another()
    deadline = datetime.now(UTC) + timedelta(seconds=1)
    # 100 t x 10.50 = 1,050.00 = 105 % of 1,000.00: a margin call (below 110 %), not a liquidation.
    r = api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                     "instrument": "FCT-SM", "price": "10.50", "as_of": days(-9),
                                                     "cure_deadline": deadline.isoformat()}))
    assert {x["pledge_id"]: x["level"] for x in r["pledges"]}[b["id"]] == "margin_call"
    r = offer(bank, b["id"], buyer)
    assert (r.status_code, r.json()["code"]) == (409, "cure_period_running")
    time.sleep(max(0.0, (deadline - datetime.now(UTC)).total_seconds()) + 0.1)
    p = api.ok(offer(bank, b["id"], buyer))
    assert p["enforcement"]["ground"]["type"] == "cure_deadline_missed"
    # A liquidation level is a default at once.
    c = another()
    # Valued days ago: its cure deadline (the next open after the valuation day) has passed whatever the hour
    # (valued yesterday, it would run until this morning's open, 01:30 UTC).
    api.ok(api.post("/v1/pledges/revaluations", {"instrument": "FCT-SM", "price": "9.00", "as_of": days(-8),
                                                 "reason": "评估报告"}))
    assert api.ok(bank.get(f"/v1/pledges/{c['id']}"))["margin"]["level"] == "liquidation"
    p = api.ok(offer(bank, c["id"], buyer))
    assert p["enforcement"]["ground"]["type"] == "liquidation"
    # The bank's declaration, with the notice's number and date: recorded, and the pledgor sees it.
    d = another()
    api.ok(api.post("/v1/pledges/revaluations", {"instrument": "FCT-SM", "price": "20.00", "as_of": days(0),
                                                 "reason": "评估报告"}))
    assert offer(bank, d["id"], buyer).json()["code"] == "no_default"
    r = owner["api"].post(f"/v1/pledges/{d['id']}/default", {"reference": "x", "notice_date": days(0)})
    assert r.status_code == 403  # the role matrix: only banks declare
    stranger = api.participant("旁观银行", "bank")
    assert stranger["api"].post(f"/v1/pledges/{d['id']}/default", {
        "reference": "x", "notice_date": days(0)}).status_code == 404  # not its pledge: as if none
    api.ok(bank.post(f"/v1/pledges/{d['id']}/default", {
        "reference": "兴银违通字(2025)第12号", "notice_date": days(-2), "overdue_amount": "250.00",
        "note": "第3期本息逾期"}))
    seen = api.ok(owner["api"].get(f"/v1/pledges/{d['id']}"))
    assert (seen["declared_default"]["reference"], seen["declared_default"]["notice_date"],
            seen["declared_default"]["overdue_amount"]) == ("兴银违通字(2025)第12号", days(-2), "250.00")
    [ev] = [e for e in api.ok(owner["api"].get("/v1/pledges/events", types="default_declared"))
            if e["pledge_id"] == d["id"]]
    assert ev["details"]["note"] == "第3期本息逾期"
    p = api.ok(offer(bank, d["id"], buyer, price="20.00"))  # at the mark (the floor is 70 % of it)
    assert p["enforcement"]["ground"]["type"] == "declared_default"
    assert p["enforcement"]["ground"]["reference"] == "兴银违通字(2025)第12号"


def test_the_secured_scope_caps_what_is_claimed_by_component(api: Api) -> None:
    w = world(api, "3000")
    bank, buyer = w["bank"], w["buyer"]
    notice = {"reference": "违通-99", "notice_date": days(0)}
    api.ok(api.post("/v1/cash/deposits", {"participant_id": buyer["id"], "amount": "3000000.00",
                                           "bank_reference": "s"}))
    # The contract covers interest (capped at 50,000.00) and realisation costs -- not penalties or damages.
    p = pledged(api, w, "1000", secured_amount="1000000.00", references=[{"source": "中登网", "reference": "S-1"}],
                secured_scope={"covers": ["interest", "realisation_costs"], "caps": {"interest": "50000.00"}})
    assert p["secured_scope"] == {"type": "ordinary", "covers": ["realisation_costs", "interest"],
                                  "caps": {"interest": "50000.00"}}
    # 1000 t x 1,200.00 = 1,200,000.00 of proceeds, at the day's close (a negotiated price refers to it).
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                 "instrument": "FCT-SM", "price": "1200.00", "as_of": days(0)}))
    p = api.ok(bank["api"].post(f"/v1/pledges/{p['id']}/enforcement", {
        "method": "sale", "buyer_id": buyer["id"], "price": "1200.00", "reason": "违约", "default_notice": notice,
        "claim": {"principal": "1020000.00", "interest": "80000.00", "penalty": "10000.00",
                  "realisation_costs": "5000.00"}}))
    assert [(x["component"], x["claimed"], x["secured"], x["unsecured"]) for x in p["enforcement"]["claim"]] == [
        ("realisation_costs", "5000.00", "5000.00", "0.00"),
        ("interest", "80000.00", "50000.00", "30000.00"),        # above its cap: unsecured
        ("penalty", "10000.00", "0.00", "10000.00"),            # not in the scope: unsecured
        ("principal", "1020000.00", "1000000.00", "20000.00")]  # above the secured amount: unsecured
    p = api.ok(buyer["api"].post(f"/v1/pledges/{p['id']}/enforcement/accept", {"price": "1200.00"}))
    p = api.ok(bank["api"].get(f"/v1/pledges/{p['id']}"))
    lines = [(d["role"], d["component"], d["paid"]) for d in p["enforcement"]["distribution"]]
    assert lines == [("pledgee", "realisation_costs", "5000.00"), ("pledgee", "interest", "50000.00"),
                     ("pledgee", "principal", "1000000.00"), ("owner", None, "145000.00")]

    # 最高额质押: everything claimed, in §561's order, up to the maximum amount in total.
    q = pledged(api, w, "1000", secured_amount="1000000.00", references=[{"source": "中登网", "reference": "S-2"}],
                secured_scope={"type": "maximum"})
    r = bank["api"].post(f"/v1/pledges/{q['id']}/enforcement", {"method": "sale", "buyer_id": buyer["id"],
                                                                "price": "1.00", "reason": "违约",
                                                                "default_notice": notice})
    assert (r.status_code, r.json()["code"]) == (422, "claim_required")
    q = api.ok(bank["api"].post(f"/v1/pledges/{q['id']}/enforcement", {
        "method": "sale", "buyer_id": buyer["id"], "price": "1500.00", "reason": "违约", "default_notice": notice,
        "claim": {"principal": "900000.00", "interest": "150000.00"}}))
    assert [(x["component"], x["secured"], x["unsecured"]) for x in q["enforcement"]["claim"]] == [
        ("interest", "150000.00", "0.00"), ("principal", "850000.00", "50000.00")]
    assert [(d["component"], d["paid"]) for d in q["enforcement"]["expected"]] == [
        ("interest", "150000.00"), ("principal", "850000.00"), (None, "500000.00")]
    # A scope must be one the law knows.
    bad = w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], "1", references=[],
                                                           secured_scope={"caps": {"penalty": "1.00"},
                                                                          "covers": ["interest"]}))
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_scope")


def test_scope_rules_pure() -> None:
    default = sc.Scope.of(None)  # §389: everything unless agreed otherwise
    parts = sc.secure(default, 1000, {"principal": 1200, "damages": 7, "custody_costs": 3})
    assert [(x.component, x.secured, x.unsecured) for x in parts] == [
        ("custody_costs", 3, 0), ("damages", 7, 0), ("principal", 1000, 200)]
    top = sc.Scope.of({"type": "maximum", "covers": ["interest"]})
    parts = sc.secure(top, 100, {"interest": 30, "principal": 90, "penalty": 5})
    assert [(x.component, x.secured) for x in parts] == [("interest", 30), ("penalty", 0), ("principal", 70)]
    with pytest.raises(PledgeError):
        sc.secure(default, 100, {"principal": 0})
    # The pledgee's components are paid in order; a short sale stops at the principal.
    out = wf.distribute(100, fee=0, pledgee=[wf.Claim("pledgee", 30, component="interest"),
                                             wf.Claim("pledgee", 90, component="principal")], juniors=[],
                        owner="owner")
    assert [(x.component, x.paid) for x in out] == [("interest", 30), ("principal", 70), (None, 0)]
    # The owner's surplus shared with courts by frozen units, exactly.
    out = wf.distribute(101, fee=0, pledgee=wf.Claim("pledgee", 0), juniors=[], owner="owner",
                        courts=[("court:1", 1), ("court:2", 1)], lot=3)
    assert [(x.party, x.paid) for x in out][1:] == [("court:1", 34), ("court:2", 34), ("owner", 33)]
