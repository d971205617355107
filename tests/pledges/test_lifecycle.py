"""A registration's life through HTTP: amend, extend, top up, partial release, release with promotion of
the junior claim, over-pledging and appropriation (折价); exchange sales are in test_exchange_sale."""

from __future__ import annotations

from datetime import date, timedelta

from exchange.core.database import asyncpg_dsn
from exchange.pledging import views as pledging
from exchange.registry.kinds import term_end
from ledger.verify import verify_database
from tests.helpers import Api, uscc
from tests.pledges.helpers import days, pledge_body, world


def active(api: Api, w: dict, quantity: str = "1000", **extra: object) -> dict:
    p = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], quantity, **extra)))
    return api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))


def spans(p: dict) -> list[tuple[int, int]]:
    return [(b["start"], b["end"]) for b in p["blocks"]]


def test_amend_extend_top_up_partial_release_keep_priority_and_exact_blocks(api: Api) -> None:
    w = world(api, "3000")
    bank, owner = w["bank"]["api"], w["owner"]["api"]
    first = active(api, w, "1000", references=[{"source": "中登网", "reference": "A-1"}], haircut_bps=1000)
    second = active(api, w, "500", references=[{"source": "中登网", "reference": "A-2"}])
    assert spans(first) == [(1, 1000)] and spans(second) == [(1001, 1500)]
    assert second["priority"]["rank_among_pledgor_registrations"] == 2
    reg = first["registration_no"]

    # Margin call at 5,000.00 per t: 1000 x 5000 x 90 % = 4,500,000.00 < 110 % of 5,000,000.00.
    r = api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                     "instrument": "FCT-SM", "price": "5000.00", "as_of": days(0)}))
    assert {x["pledge_id"]: x["level"] for x in r["pledges"]}[first["id"]] == "liquidation"
    # The pledgor cures by topping up 400 t: 1400 x 4500 = 6,300,000.00 = 126 %: a warning only.
    p = api.ok(owner.post(f"/v1/pledges/{first['id']}/top-up", {"quantity": "400"}))
    assert p["quantity"] == "1400" and spans(p) == [(1, 1000), (1501, 1900)]
    assert p["margin"]["level"] == "warning" and p["registration_no"] == reg
    # The bank lowers the haircut to 0 (its own risk setting): 7,000,000.00 = 140 %: cured.
    p = api.ok(bank.post(f"/v1/pledges/{first['id']}/amend", {"haircut_bps": 0}))
    assert p["margin"]["level"] == "ok"
    # Raising the secured amount after confirmation needs the pledgor: refused.
    r = bank.post(f"/v1/pledges/{first['id']}/amend", {"secured_amount": "6000000.00"})
    assert (r.status_code, r.json()["code"]) == (409, "requires_pledgor_consent")
    p = api.ok(bank.post(f"/v1/pledges/{first['id']}/amend", {
        "secured_amount": "4000000.00", "add_references": [{"source": "bank", "reference": "X9"}]}))
    assert p["secured_amount"] == "4000000.00" and len(p["references"]) == 2

    # Extension: same serials, same priority, a later expiry, a new hold.
    old_hold = p["hold_id"]
    p = api.ok(bank.post(f"/v1/pledges/{first['id']}/extend", {"term_end": days(730)}))
    assert p["term_end"] == days(730) and p["hold_id"] == old_hold and spans(p) == [(1, 1000), (1501, 1900)]
    assert p["registration_no"] == reg
    # Partial release gives back the highest serials; named serials must be inside the lock.
    p = api.ok(bank.post(f"/v1/pledges/{first['id']}/partial-release", {"quantity": "450"}))
    assert p["quantity"] == "950" and spans(p) == [(1, 950)]
    r = bank.post(f"/v1/pledges/{first['id']}/partial-release", {"serials": [{"start": 2000, "end": 2001}]})
    assert r.json()["code"] == "serials_not_pledged"
    r = bank.post(f"/v1/pledges/{first['id']}/partial-release", {"quantity": "950"})
    assert r.json()["code"] == "use_release"
    h = api.ok(owner.get("/v1/holdings"))
    assert h["balances"][0]["available"] == str(3000 - 950 - 500)

    # Over-pledging beyond what is free: the ledger refuses, nothing is locked.
    big = api.ok(bank.post("/v1/pledges", pledge_body(w["owner"]["id"], "1551",
                                                      references=[{"source": "中登网", "reference": "A-3"}])))
    r = owner.post(f"/v1/pledges/{big['id']}/confirm")
    assert (r.status_code, r.json()["code"]) == (409, "insufficient_available")
    assert api.ok(bank.get(f"/v1/pledges/{big['id']}"))["status"] == "filed"

    # Releasing the senior registration promotes the junior one of the same pledgor.
    api.ok(bank.post(f"/v1/pledges/{first['id']}/release"))
    assert api.ok(bank.get(f"/v1/pledges/{second['id']}"))["priority"]["rank_among_pledgor_registrations"] == 1
    for pid in (first["id"], second["id"], big["id"]):
        folded, row = api.client.blocking_portal.call(pledging.projection_check, api.client.app.state.rt, pid)
        assert folded == row


def test_release_promotes_the_first_junior_claim_into_the_lock(api: Api, db_url: str) -> None:
    w = world(api, "1000")
    third = api.participant("福建海峡银行三明分行", "bank")
    p = active(api, w, "600")
    pid = p["id"]
    c1 = api.ok(w["junior"]["api"].post(f"/v1/pledges/{pid}/claims", {
        "loan_contract": "J-1", "amount": "300000.00", "term_end": days(300), "reference": "J1"}))["id"]
    c2 = api.ok(third["api"].post(f"/v1/pledges/{pid}/claims", {
        "loan_contract": "J-2", "amount": "100000.00", "term_end": days(300)}))["id"]
    # Confirmation order sets the priority: the third bank's claim confirmed first ranks first.
    api.ok(w["owner"]["api"].post(f"/v1/pledges/claims/{c2}/confirm"))
    p = api.ok(w["owner"]["api"].post(f"/v1/pledges/claims/{c1}/confirm"))
    assert {c["id"]: c["rank"] for c in p["claims"]} == {c2: 2, c1: 3}
    # A stranger bank sees nothing; claimants see the lot they claim on (not the senior's loan).
    stranger = api.participant("其他银行", "bank")
    assert stranger["api"].get(f"/v1/pledges/{pid}").status_code == 404
    lot = api.ok(third["api"].get(f"/v1/pledges/{pid}"))
    assert lot["id"] == pid and "secured_amount" not in lot and [c["id"] for c in lot["claims"]] == [c2]

    done = api.ok(w["bank"]["api"].post(f"/v1/pledges/{pid}/release"))
    assert done["status"] == "released"
    promoted = next(x for x in api.ok(third["api"].get("/v1/pledges")) if x["promoted_from_claim"] == c2)
    assert promoted["status"] == "active" and promoted["pledgee"]["id"] == third["id"]
    assert promoted["secured_amount"] == "100000.00" and spans(promoted) == [(1, 600)]
    # The promoted lock keeps the claim's registration number; the other claim follows it.
    assert promoted["registration_no"] < next(c for c in promoted["claims"] if c["id"] == c1)["registration_no"]
    assert [c["rank"] for c in promoted["claims"]] == [2]
    # The units never became free in between.
    assert api.ok(w["owner"]["api"].get("/v1/holdings"))["balances"][0]["available"] == "400"
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_transfer_to_the_bank_pays_the_surplus(api: Api, db_url: str) -> None:
    w = world(api, "3000")
    bank = w["bank"]
    # 折价 only where the contract allows it, at no less than the last mark.
    p = active(api, w, "1000", transfer_on_default=True, references=[{"source": "中登网", "reference": "T-1"}])
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                 "instrument": "FCT-SM", "price": "5200.00", "as_of": days(0)}))
    notice = {"reference": "兴银违通字2024-1", "notice_date": days(0)}
    r = bank["api"].post(f"/v1/pledges/{p['id']}/enforcement", {"method": "transfer", "reason": "违约",
                                                                "price": "5000.00", "default_notice": notice})
    assert r.json()["code"] == "price_below_mark"
    api.ok(api.post("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "300000.00",
                                           "bank_reference": "B1"}))
    # 1000 t x 5,200.00 = 5,200,000.00; the bank is owed 4,900,000.00 and pays the 300,000.00 surplus.
    p = api.ok(bank["api"].post(f"/v1/pledges/{p['id']}/enforcement", {
        "method": "transfer", "reason": "违约", "outstanding": "4900000.00", "default_notice": notice}))
    paid = {d["role"]: d["paid"] for d in p["enforcement"]["distribution"]}
    assert paid == {"pledgee": "4900000.00", "owner": "300000.00"} and p["status"] == "enforced"
    units = api.ok(bank["api"].get("/v1/holdings"))["blocks"]
    assert [(b["serial_start"], b["serial_end"]) for b in units] == [(1, 1000)]
    report = api.client.blocking_portal.call(verify_database, asyncpg_dsn(db_url))
    assert report.ok, report.render()


def test_emission_rights_near_their_validity_deadline_warn_the_bank(api: Api) -> None:
    api.instrument("PW-COD-FJ", kind="emission_right", decimals=3,
                   attributes={"pollutant": "COD", "region": "福建", "validity_years": 5})
    issuer = api.participant("福建省生态环境厅", "issuer")
    owner = api.participant("排污企业", "enterprise", uscc=uscc("91350100MA2YY0002"))
    bank = api.participant("兴业银行福州分行", "bank")
    # A five-year grant whose term ends in 40 days (the term is whole years: exchange/registry/kinds.py).
    end = date.fromisoformat(days(40))
    start = next(end - timedelta(days=n) for n in range(1820, 1830) if term_end(end - timedelta(days=n), 5) == end)
    api.issue(issuer["api"], owner["id"], "PW-COD-FJ", "12.500", {"valid_from": start.isoformat(),
                                                                    "valid_until": days(40)})
    p = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "10.000", instrument="PW-COD-FJ",
                                                           secured_amount="100000.00", references=[],
                                                           pledgor_identifier=owner["uscc"])))
    p = api.ok(owner["api"].post(f"/v1/pledges/{p['id']}/confirm"))
    assert p["quantity"] == "10.000"
    # 10 t at 21,000.00 per t/yr = 210,000.00: fine on value, but the rights lapse in 40 days.
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                 "instrument": "PW-COD-FJ", "price": "21000.00", "as_of": days(-1)}))
    events = api.ok(bank["api"].get(f"/v1/pledges/{p['id']}/events"))
    [warn] = [e for e in events if e["type"] == "deadline_warning"]
    assert warn["details"]["deadline"] == days(40) and warn["details"]["before_term_end"] is True
    # Warned once per deadline, not at every close.
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                 "instrument": "PW-COD-FJ", "price": "21000.00", "as_of": days(0)}))
    events = api.ok(bank["api"].get(f"/v1/pledges/{p['id']}/events"))
    assert [e["type"] for e in events].count("deadline_warning") == 1
    # Pledging an instrument the pledgor does not hold: nothing to lock.
    api.instrument("CCER", kind="ccer")
    q = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "1", instrument="CCER", references=[],
                                                           pledgor_identifier=owner["uscc"])))
    r = owner["api"].post(f"/v1/pledges/{q['id']}/confirm")
    assert (r.status_code, r.json()["code"]) == (409, "insufficient_available")
