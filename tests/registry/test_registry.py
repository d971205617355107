"""The registry through HTTP against a real PostgreSQL: participants, instruments, issuance, transfers."""

from __future__ import annotations

from tests.helpers import Api, ticket


def _world(api: Api) -> dict:
    api.instrument("FCT-SM")
    issuer = api.participant("三明市林业局", "issuer")
    api.authorise_issuer("FCT-SM", issuer["id"])
    seller = api.participant("三明林票持有人", "enterprise")
    buyer = api.participant("成都市绿色低碳发展协会", "enterprise")
    return {"issuer": issuer, "seller": seller, "buyer": buyer}


def test_health_and_openapi(client) -> None:
    assert client.get("/health").json()["status"] == "ok"
    spec = client.get("/schema/openapi.json").json()
    ops = {o["operationId"] for p in spec["paths"].values() for o in p.values() if isinstance(o, dict)}
    assert {"createTransfer", "createRetirement", "approveIssuance", "getHoldings", "getLedgerEntry"} <= ops


def test_issuance_is_maker_checker_and_credits_the_holder(api: Api) -> None:
    w = _world(api)
    req = api.ok(w["issuer"]["api"].post("/v1/issuances", {
        "instrument": "FCT-SM", "holder_id": w["seller"]["id"], "quantity": "29715", "attributes": ticket(1)}))
    assert req["status"] == "requested" and req["batch_id"] is None
    # The issuer cannot approve (role), and nothing is credited before approval.
    assert w["issuer"]["api"].post(f"/v1/issuances/{req['id']}/approve", {}).status_code == 403
    h = api.ok(w["seller"]["api"].get("/v1/holdings"))
    assert h["blocks"] == []
    done = api.ok(api.post(f"/v1/issuances/{req['id']}/approve", {}))
    assert done["status"] == "approved" and (done["start_serial"], done["end_serial"]) == (1, 29715)
    again = api.ok(api.post(f"/v1/issuances/{req['id']}/approve", {}))
    assert again["batch_id"] == done["batch_id"]  # approving twice issues once
    h = api.ok(w["seller"]["api"].get("/v1/holdings"))
    assert [(b["serial_start"], b["serial_end"], b["state"]) for b in h["blocks"]] == [(1, 29715, "held")]
    assert h["balances"][0]["available"] == "29715"


def test_transfer_appears_in_both_holdings_with_split_blocks(api: Api) -> None:
    w = _world(api)
    api.issue(w["issuer"]["api"], w["seller"]["id"], "FCT-SM", "29715", ticket(1))
    seller, buyer = w["seller"]["api"], w["buyer"]["api"]
    t = api.ok(seller.post("/v1/transfers", {"to_participant": w["buyer"]["id"], "instrument": "FCT-SM",
                                             "quantity": "2723"}, key="sale-1"))
    assert t["serials"] == [{"start": 1, "end": 2723}]
    named = api.ok(seller.post("/v1/transfers", {"to_participant": w["buyer"]["id"], "instrument": "FCT-SM",
                                                 "quantity": "10", "serials": [{"start": 5001, "end": 5010}]}))
    assert named["serials"] == [{"start": 5001, "end": 5010}]
    sb = api.ok(seller.get("/v1/holdings"))["blocks"]
    bb = api.ok(buyer.get("/v1/holdings"))["blocks"]
    assert [(b["serial_start"], b["serial_end"]) for b in sb] == [(2724, 5000), (5011, 29715)]
    assert [(b["serial_start"], b["serial_end"]) for b in bb] == [(1, 2723), (5001, 5010)]
    assert bb[0]["serial"].startswith("FCT-SM-")
    # The same key and body replays the original; the same key with another body is refused.
    assert api.ok(seller.post("/v1/transfers", {"to_participant": w["buyer"]["id"], "instrument": "FCT-SM",
                                                "quantity": "2723"}, key="sale-1"))["entry_seq"] == t["entry_seq"]
    r = seller.post("/v1/transfers", {"to_participant": w["buyer"]["id"], "instrument": "FCT-SM",
                                      "quantity": "2724"}, key="sale-1")
    assert r.status_code == 409 and r.json()["code"] == "idempotency_conflict"
    assert api.ok(seller.get("/v1/holdings"))["balances"][0]["posted"] == "26982"


def test_retirement_is_final(api: Api) -> None:
    w = _world(api)
    api.issue(w["issuer"]["api"], w["seller"]["id"], "FCT-SM", "100", ticket(1))
    seller = w["seller"]["api"]
    r = api.ok(seller.post("/v1/retirements", {"instrument": "FCT-SM", "quantity": "40", "purpose": "voluntary",
                                               "beneficiary": "成都大运会", "note": "碳中和"}))
    assert r["serials"] == [{"start": 1, "end": 40}] and r["purpose"] == "voluntary"
    # Retired serials cannot be named in a transfer: they are not free in any holder account.
    bad = seller.post("/v1/transfers", {"to_participant": w["buyer"]["id"], "instrument": "FCT-SM",
                                        "quantity": "1", "serials": [{"start": 1, "end": 1}]})
    assert bad.status_code == 409 and bad.json()["code"] == "serials_not_available"
    assert api.ok(seller.get("/v1/holdings"))["balances"][0]["posted"] == "60"


def test_bad_input_is_a_problem_never_a_500(api: Api) -> None:
    w = _world(api)
    api.issue(w["issuer"]["api"], w["seller"]["id"], "FCT-SM", "100", ticket(1))
    s = w["seller"]["api"]
    cases = [
        ({"to_participant": w["buyer"]["id"], "instrument": "FCT-SM", "quantity": "1.5"}, 422, "off_grid"),
        ({"to_participant": w["buyer"]["id"], "instrument": "FCT-SM", "quantity": "-1"}, 422, "validation_error"),
        ({"to_participant": w["buyer"]["id"], "instrument": "FCT-SM", "quantity": "0"}, 422, "invalid_number"),
        ({"to_participant": w["buyer"]["id"], "instrument": "FCT-SM", "quantity": "1e3"}, 422, "validation_error"),
        ({"to_participant": w["buyer"]["id"], "instrument": "FCT-SM", "quantity": 5}, 422, "validation_error"),
        ({"to_participant": w["buyer"]["id"], "instrument": "NOPE", "quantity": "1"}, 404, "not_found"),
        ({"to_participant": 99999, "instrument": "FCT-SM", "quantity": "1"}, 404, "not_found"),
        ({"to_participant": w["buyer"]["id"], "instrument": "FCT-SM", "quantity": "101"}, 409,
         "insufficient_available"),
        ({"to_participant": w["seller"]["id"], "instrument": "FCT-SM", "quantity": "1"}, 422, "same_account"),
        ({"to_participant": w["buyer"]["id"], "instrument": "FCT-SM", "quantity": "1", "x": 1}, 422,
         "validation_error"),
        ({"to_participant": w["buyer"]["id"], "instrument": "FCT-SM", "quantity": "2",
          "serials": [{"start": 5, "end": 5}]}, 422, "serials_amount_mismatch"),
    ]
    for body, status, code in cases:
        r = s.post("/v1/transfers", body)
        assert (r.status_code, r.json()["code"]) == (status, code), (body, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    r = s.post("/v1/transfers", {"to_participant": w["buyer"]["id"], "instrument": "FCT-SM", "quantity": "1"},
               key=None)
    assert r.status_code == 422 and r.json()["code"] == "idempotency_key_required"
    r = s.client.post("/v1/transfers", content=b"{not json", headers={"Authorization": f"Bearer {s.token}",
                                                                       "content-type": "application/json"})
    assert r.status_code == 422
    # Nothing above moved a unit.
    assert api.ok(s.get("/v1/holdings"))["balances"][0]["posted"] == "100"


def test_roles_and_object_level_access(api: Api, client) -> None:
    w = _world(api)
    seller, buyer = w["seller"]["api"], w["buyer"]["api"]
    assert client.get("/v1/holdings").status_code == 401
    assert Api(client, "envx_bad_key").get("/v1/whoami").status_code == 401
    assert seller.post("/v1/participants", {"name": "x", "kind": "bank"}).status_code == 403
    assert seller.post("/v1/instruments", {"code": "X", "name": "x", "kind": "ccer", "decimals": 0}).status_code == 403
    assert seller.get("/v1/holdings", participant_id=w["buyer"]["id"]).status_code == 403
    assert seller.get(f"/v1/participants/{w['buyer']['id']}").status_code == 403
    assert seller.get("/v1/ledger/entries").status_code == 403
    assert api.get("/v1/ledger/entries").status_code == 200
    # A revoked key stops working at once.
    key_id = buyer.get("/v1/whoami").json()["key_id"]
    assert api.ok(api.post(f"/v1/participants/{w['buyer']['id']}/keys/{key_id}/revoke", {}))["revoked"]
    assert buyer.get("/v1/whoami").status_code == 401


def test_cash_deposit_and_withdrawal_in_fen(api: Api) -> None:
    bank = api.participant("兴业银行三明分行", "bank")
    r = api.ok(api.post("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "5000000.00",
                                               "bank_reference": "CIB-2021-0001"}))
    assert r["amount"] == "5000000.00"
    assert api.post("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "0.001",
                                          "bank_reference": "x"}).json()["code"] == "off_grid"
    w = bank["api"].post("/v1/cash/withdrawals", {"participant_id": bank["id"], "amount": "1.00",
                                                   "bank_reference": "x"})
    assert w.status_code == 403  # only operators record bank movements
    too_much = api.post("/v1/cash/withdrawals", {"participant_id": bank["id"], "amount": "5000000.01",
                                                 "bank_reference": "W1"})
    assert too_much.status_code == 409 and too_much.json()["code"] == "insufficient_available"
    api.ok(api.post("/v1/cash/withdrawals", {"participant_id": bank["id"], "amount": "1000000.50",
                                             "bank_reference": "W2"}))
    bal = api.ok(bank["api"].get("/v1/holdings"))["balances"]
    assert [(b["instrument"], b["available"]) for b in bal] == [("CNY", "3999999.50")]
