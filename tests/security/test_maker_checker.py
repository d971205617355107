"""Maker-checker for operator actions that move value or set rules: propose (202), a second operator approves."""

from __future__ import annotations

from litestar.testing import TestClient

from api.app import create_app
from exchange.core.principal import Principal
from exchange.core.settings import Settings
from exchange.registry import cash
from exchange.security import operator_actions
from tests.helpers import Api, bootstrap_operator, checker_token
from tests.security.helpers import sql


def _cash(api: Api, pid: int) -> str:
    bal = api.ok(api.get("/v1/holdings", participant_id=pid))["balances"]
    return next((b["posted"] for b in bal if b["instrument"] == "CNY"), "0.00")


def test_a_deposit_waits_for_a_second_operator_and_executes_once(api: Api, client: TestClient) -> None:
    bank = api.participant("兴业银行三明分行", "bank")
    checker = api.as_(checker_token(client))
    p = api.propose("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "5000.00",
                                          "bank_reference": "CIB-1"}, key="dep-1")
    assert p.status_code == 202, p.text
    action = p.json()
    assert action["status"] == "pending" and action["kind"] == "recordDeposit"
    assert "5000.00 CNY" in action["summary"] and action["approve"] == f"/v1/operator-actions/{action['id']}/approve"
    assert _cash(api, bank["id"]) == "0.00"  # nothing happened yet
    # The same request again is the same proposal; another body under that key is refused.
    assert api.propose("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "5000.00",
                                             "bank_reference": "CIB-1"}, key="dep-1").json()["id"] == action["id"]
    r = api.propose("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "5001.00",
                                          "bank_reference": "CIB-1"}, key="dep-1")
    assert (r.status_code, r.json()["code"]) == (409, "idempotency_conflict")
    # The proposer may not approve; other roles may not either.
    r = api.post(f"/v1/operator-actions/{action['id']}/approve", {})
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = bank["api"].post(f"/v1/operator-actions/{action['id']}/approve", {})
    assert (r.status_code, r.json()["code"]) == (403, "role_forbidden")
    done = checker.ok(checker.post(f"/v1/operator-actions/{action['id']}/approve", {"note": "checked CIB-1"}))
    assert done["status"] == "executed" and done["result"]["amount"] == "5000.00"
    again = checker.ok(checker.post(f"/v1/operator-actions/{action['id']}/approve", {}))
    assert again["result"] == done["result"]
    assert _cash(api, bank["id"]) == "5000.00"  # once
    entry = api.ok(api.get(f"/v1/ledger/entries/{done['result']['entry_seq']}"))
    me = api.get("/v1/whoami").json()["participant_id"]
    them = checker.get("/v1/whoami").json()["participant_id"]
    assert entry["meta"]["operator_action"] == {"id": action["id"], "kind": "recordDeposit",
                                                "proposed_by": f"participant:{me}",
                                                "approved_by": f"participant:{them}"}


def test_rejected_failed_and_expired_actions(api: Api, client: TestClient) -> None:
    bank = api.participant("银行", "bank")
    checker = api.as_(checker_token(client))
    a = api.propose("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "1.00", "bank_reference": "r"})
    assert checker.ok(checker.post(f"/v1/operator-actions/{a.json()['id']}/reject", {"note": "no such transfer"})
                      )["status"] == "rejected"
    r = checker.post(f"/v1/operator-actions/{a.json()['id']}/approve", {})
    assert (r.status_code, r.json()["code"]) == (409, "action_rejected")
    # The proposer may withdraw their own proposal.
    b = api.propose("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "2.00", "bank_reference": "r2"})
    assert api.ok(api.post(f"/v1/operator-actions/{b.json()['id']}/reject", {}))["status"] == "rejected"
    # A withdrawal the balance cannot cover fails at approval, and stays failed.
    w = api.propose("/v1/cash/withdrawals", {"participant_id": bank["id"], "amount": "10.00", "bank_reference": "w"})
    r = checker.post(f"/v1/operator-actions/{w.json()['id']}/approve", {})
    assert (r.status_code, r.json()["code"]) == (409, "insufficient_available")
    assert r.json()["operator_action"] == w.json()["id"]
    failed = api.ok(api.get(f"/v1/operator-actions/{w.json()['id']}"))
    assert failed["status"] == "failed" and failed["error"]["code"] == "insufficient_available"
    r = checker.post(f"/v1/operator-actions/{w.json()['id']}/approve", {})
    assert (r.status_code, r.json()["code"]) == (409, "action_failed")
    # Too old to approve.
    e = api.propose("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "3.00", "bank_reference": "e"})
    sql(client, "UPDATE operator_actions SET expires_at = now() - interval '1 second' WHERE id = :i",
        {"i": e.json()["id"]}, write=True)
    r = checker.post(f"/v1/operator-actions/{e.json()['id']}/approve", {})
    assert (r.status_code, r.json()["code"]) == (409, "action_expired")
    # Early refusals: what could never execute is not proposed.
    r = api.propose("/v1/cash/deposits", {"participant_id": 99999, "amount": "1.00", "bank_reference": "x"})
    assert (r.status_code, r.json()["code"]) == (404, "not_found")
    r = api.propose("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "0.001", "bank_reference": "x"})
    assert (r.status_code, r.json()["code"]) == (422, "off_grid")
    assert _cash(api, bank["id"]) == "0.00"
    listed = api.ok(api.get("/v1/operator-actions", status="rejected"))
    assert {x["id"] for x in listed} == {a.json()["id"], b.json()["id"]}


def test_instrument_and_market_definitions_need_a_checker(api: Api, client: TestClient) -> None:
    checker = api.as_(checker_token(client))
    auditor = api.participant("审计署", "auditor")
    p = api.propose("/v1/instruments", {"code": "FCT-MC", "name": "林票", "kind": "forest_ticket", "decimals": 0})
    assert p.status_code == 202
    assert client.get("/v1/instruments/FCT-MC").status_code == 404
    assert auditor["api"].get(f"/v1/operator-actions/{p.json()['id']}").json()["status"] == "pending"
    checker.ok(checker.post(f"/v1/operator-actions/{p.json()['id']}/approve", {}))
    assert client.get("/v1/instruments/FCT-MC").json()["code"] == "FCT-MC"
    # Proposing a duplicate is refused at once.
    r = api.propose("/v1/instruments", {"code": "FCT-MC", "name": "x", "kind": "forest_ticket", "decimals": 0})
    assert (r.status_code, r.json()["code"]) == (409, "instrument_exists")
    m = api.propose("/v1/markets", {"instrument": "FCT-MC", "mode": "listing", "settings": {"band_bps": 500}})
    assert m.status_code == 202 and "FCT-MC.listing" in m.json()["summary"]
    assert client.get("/v1/markets/FCT-MC.listing").status_code == 404
    checker.ok(checker.post(f"/v1/operator-actions/{m.json()['id']}/approve", {}))
    assert client.get("/v1/markets/FCT-MC.listing").json()["band_pct"] == "5.00"


def test_approval_after_a_crash_between_ledger_and_status_does_not_deposit_twice(api: Api, client: TestClient) -> None:
    bank = api.participant("银行", "bank")
    a = api.propose("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "7.00",
                                          "bank_reference": "crash"}).json()
    me = api.get("/v1/whoami").json()["participant_id"]
    rt = client.app.state.rt

    async def first_attempt() -> None:  # what an approval that died before its status update left behind
        await cash.record(rt, Principal(me, "operator", "", 0, None, None), operator_actions.execution_id(a["id"]),
                          direction="deposit", participant_id=bank["id"], amount="7.00", bank_reference="crash",
                          note=None)

    client.blocking_portal.call(first_attempt)
    checker = api.as_(checker_token(client))
    assert checker.ok(checker.post(f"/v1/operator-actions/{a['id']}/approve", {}))["status"] == "executed"
    assert _cash(api, bank["id"]) == "7.00"


def test_maker_checker_can_be_switched_off(db_url: str, settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"maker_checker": False}), db_url)
    with TestClient(app, raise_server_exceptions=False, timeout=60) as c:
        op = Api(c, bootstrap_operator(c))
        bank = op.participant("银行", "bank")
        r = op.propose("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "9.00", "bank_reference": "d"})
        assert r.status_code == 201 and r.json()["amount"] == "9.00"
