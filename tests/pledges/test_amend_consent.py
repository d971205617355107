"""After the pledgor confirmed, the bank alone changes the terms only in the pledgor's favour (red team
round 7, F2: amend7.py, amend7b.py, amend7full.py): a higher haircut or a raised threshold would turn the
next mark into a liquidation, an enforcement ground with no default and no notice. A registration's term and
each extension are at most 30 years (F4, extend7.py)."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from pledges import terms
from tests.helpers import Api
from tests.pledges.helpers import days, pledge_body, world


def _confirmed(api: Api, w: dict[str, Any], **extra: Any) -> dict[str, Any]:
    p = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], "1000", **extra)))
    return api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))


def _refused(r: Any, *terms: str) -> None:
    assert (r.status_code, r.json()["code"]) == (409, "requires_pledgor_consent"), r.text
    for t in terms:
        assert t in r.json()["detail"], (t, r.text)


def _mark(api: Api, price: str) -> None:
    api.ok(api.post("/v1/pledges/revaluations", {"instrument": "FCT-SM", "price": price, "as_of": days(0),
                                                 "reason": "评估报告 (2026)第7号"}))


def test_terms_worse_for_the_pledgor_need_its_consent_after_confirmation(api: Api) -> None:
    w = world(api, "3000")
    bank, owner = w["bank"]["api"], w["owner"]["api"]
    p = _confirmed(api, w, haircut_bps=1000)
    path = f"/v1/pledges/{p['id']}"
    before = api.ok(bank.get(path))
    # amend7.py: the bank alone would set the collateral to nothing, or every level above any value.
    _refused(bank.post(f"{path}/amend", {"haircut_bps": 9999}), "haircut_bps")
    _refused(bank.post(f"{path}/amend", {"warning_bps": 1000000, "margin_call_bps": 999999,
                                         "liquidation_bps": 999998}), "warning_bps", "liquidation_bps")
    _refused(bank.post(f"{path}/amend", {"liquidation_bps": 10500}), "liquidation_bps")
    _refused(bank.post(f"{path}/amend", {"transfer_on_default": True}), "transfer_on_default")
    _refused(bank.post(f"{path}/amend", {"loan_contract": "另一份借款合同"}), "loan_contract")
    _refused(bank.post(f"{path}/amend", {"secured_amount": "6000000.00"}), "secured_amount")
    # A favourable change rides along with a worse one: nothing of it is applied.
    _refused(bank.post(f"{path}/amend", {"secured_amount": "1.00", "haircut_bps": 1001}), "haircut_bps")
    after = api.ok(bank.get(path))
    assert {k: after[k] for k in ("haircut_bps", "thresholds", "secured_amount", "loan_contract",
                                  "transfer_on_default", "version")} == {
        k: before[k] for k in ("haircut_bps", "thresholds", "secured_amount", "loan_contract",
                               "transfer_on_default", "version")}
    assert "amended" not in [e["type"] for e in api.ok(owner.get("/v1/pledges/events")) if e["pledge_id"] == p["id"]]
    # amend7b.py: the next mark (1000 t x 10,000.00 x 90 % = 180 % of 5,000,000.00) is no liquidation.
    _mark(api, "10000.00")
    assert api.ok(bank.get(path))["margin"]["level"] == "ok"
    enforce = bank.post(f"{path}/enforcement", {"method": "sale", "reason": "ratio", "price": "10000.00",
                                                "buyer_id": w["buyer"]["id"]})
    assert (enforce.status_code, enforce.json()["code"]) == (409, "no_default"), enforce.text

    # In the pledgor's favour the bank changes them alone.
    shown = api.ok(bank.post(f"{path}/amend", {"haircut_bps": 500}))
    assert shown["haircut_bps"] == 500
    shown = api.ok(bank.post(f"{path}/amend", {"warning_bps": 12000, "margin_call_bps": 10500,
                                               "liquidation_bps": 9000}))
    assert shown["thresholds"] == {"warning_bps": 12000, "margin_call_bps": 10500, "liquidation_bps": 9000}
    assert api.ok(bank.post(f"{path}/amend", {"secured_amount": "4000000.00"}))["secured_amount"] == "4000000.00"
    assert api.ok(bank.post(f"{path}/amend", {"haircut_bps": 500, "note": "unchanged"}))["haircut_bps"] == 500


def test_the_haircut_in_force_is_the_instruments_when_the_pledge_has_none(api: Api) -> None:
    w = world(api, "3000")
    bank = w["bank"]["api"]
    p = _confirmed(api, w)
    path = f"/v1/pledges/{p['id']}"
    put = api.client.put("/v1/pledges/haircuts/FCT-SM", json={"haircut_bps": 2000},
                         headers={"Authorization": f"Bearer {api.token}", "Idempotency-Key": "hc-consent"})
    assert api.approve(put).status_code == 201
    assert api.ok(bank.get(path))["haircut_bps"] == 2000
    _refused(bank.post(f"{path}/amend", {"haircut_bps": 2500}), "haircut_bps")
    assert api.ok(bank.post(f"{path}/amend", {"haircut_bps": 1500}))["haircut_bps"] == 1500


def test_before_confirmation_the_bank_amends_freely(api: Api) -> None:
    w = world(api, "3000")
    bank, owner = w["bank"]["api"], w["owner"]["api"]
    filed = api.ok(bank.post("/v1/pledges", pledge_body(w["owner"]["id"], "1000")))
    path = f"/v1/pledges/{filed['id']}"
    api.ok(bank.post(f"{path}/amend", {"haircut_bps": 3000, "liquidation_bps": 10500, "secured_amount": "6000000.00",
                                       "transfer_on_default": True}))
    confirmed = api.ok(owner.post(f"{path}/confirm"))  # the pledgor agrees to the terms as they now stand
    assert (confirmed["haircut_bps"], confirmed["thresholds"]["liquidation_bps"], confirmed["secured_amount"],
            confirmed["transfer_on_default"]) == (3000, 10500, "6000000.00", True)
    assert api.ok(bank.post(f"{path}/amend", {"transfer_on_default": False}))["transfer_on_default"] is False


def test_a_registration_and_each_extension_run_at_most_thirty_years(api: Api) -> None:
    """extend7.py: the bank alone extended a confirmed lock to 2199. As at 中登网, a registration's term and
    each extension of it are at most 30 years: beyond, 422 `term_too_long` and the lock stays as it was."""
    w = world(api, "3000")
    bank = w["bank"]["api"]
    start = date.today()
    r = bank.post("/v1/pledges", pledge_body(w["owner"]["id"], "10", term_start=start.isoformat(),
                                             term_end=(terms.latest_end(start) + timedelta(days=1)).isoformat()))
    assert (r.status_code, r.json()["code"]) == (422, "term_too_long"), r.text
    p = _confirmed(api, w)
    path = f"/v1/pledges/{p['id']}"
    r = bank.post(f"{path}/extend", {"term_end": "2199-12-31", "grace_days": 365})
    assert (r.status_code, r.json()["code"]) == (422, "term_too_long"), r.text
    assert api.ok(bank.get(path))["expires_at"] == p["expires_at"]
    end = date.fromisoformat(p["term_end"])
    r = bank.post(f"{path}/extend", {"term_end": (terms.latest_end(end) + timedelta(days=1)).isoformat()})
    assert (r.status_code, r.json()["code"]) == (422, "term_too_long"), r.text
    extended = api.ok(bank.post(f"{path}/extend", {"term_end": terms.latest_end(end).isoformat()}))
    assert extended["term_end"] == terms.latest_end(end).isoformat()
    assert terms.latest_end(date(2028, 2, 29)) == date(2058, 2, 28)


def test_the_pledgor_confirms_the_version_it_read(api: Api) -> None:
    """Red team 8 F1: the bank amended a filing (haircut 9999, thresholds x 100, secured x 10,000) between the
    pledgor's read and its confirm, and the confirm made the new terms active. A confirm naming the version read
    is refused once the filing changed, and nothing is locked."""
    w = world(api, "3000")
    bank, owner = w["bank"]["api"], w["owner"]["api"]
    p = api.ok(bank.post("/v1/pledges", pledge_body(w["owner"]["id"], "1000")))
    path = f"/v1/pledges/{p['id']}"
    read = api.ok(owner.get(path))
    holdings = api.ok(owner.get("/v1/holdings"))["balances"]
    api.ok(bank.post(f"{path}/amend", {"haircut_bps": 9999, "secured_amount": "99999999.00"}))
    r = owner.post(f"{path}/confirm", {"version": read["version"]})
    assert (r.status_code, r.json()["code"]) == (409, "terms_changed"), r.text
    now = api.ok(owner.get(path))
    assert now["status"] == read["status"] and now["version"] == read["version"] + 1
    assert api.ok(owner.get("/v1/holdings"))["balances"] == holdings  # nothing locked
    # What it read now: the pledgor may confirm it (or decline), by its version.
    ok = api.ok(owner.post(f"{path}/confirm", {"version": now["version"]}))
    assert ok["status"] == "active" and ok["haircut_bps"] == 9999
