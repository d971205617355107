"""Red team round 3 (findings against main 9e47522), through the HTTP API."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from litestar.testing import TestClient

from api.security.signatures import generate_key
from tests.helpers import Api, project_batch

# --- 3. registering a signing key: idempotent, and the participant's own key only ---------------------------


def test_a_signing_key_registration_retried_gets_the_original_answer(api: Api, client: TestClient) -> None:
    a = api.participant("甲企业", "enterprise")
    path = f"/v1/participants/{a['id']}/signing-keys"
    headers = {"Authorization": f"Bearer {a['token']}", "Idempotency-Key": "sk-once"}
    body = {"public_key": generate_key()[1], "label": "treasury"}
    first = client.post(path, json=body, headers=headers)
    assert first.status_code == 201, first.text
    again = client.post(path, json=body, headers=headers)
    assert (again.status_code, again.content) == (201, first.content)
    # Twenty concurrent copies of one new request: one registration, twenty identical answers.
    body2 = {"public_key": generate_key()[1]}
    h2 = {**headers, "Idempotency-Key": "sk-twenty"}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: client.post(path, json=body2, headers=h2), range(20)))
    assert {(r.status_code, r.content) for r in answers} == {(201, answers[0].content)}, \
        {(r.status_code, r.text) for r in answers}
    assert len(api.ok(a["api"].get(path))) == 2
    # A registration without a key is refused, as every mutation's is.
    r = client.post(path, json={"public_key": generate_key()[1]}, headers={"Authorization": f"Bearer {a['token']}"})
    assert (r.status_code, r.json()["code"]) == (422, "idempotency_key_required")


def test_an_operator_cannot_lock_another_participant_out(api: Api, client: TestClient) -> None:
    """An operator registering its own key for another participant (op2 or anyone) and requiring signatures
    would lock it out of every mutation: keys and policy are the participant's own key's to set."""
    other_operator = api.participant("第二运营者", "operator")
    ent = api.participant("乙企业", "enterprise")
    for target in (other_operator, ent):
        r = api.post(f"/v1/participants/{target['id']}/signing-keys", {"public_key": generate_key()[1]})
        assert (r.status_code, r.json()["code"]) == (403, "forbidden"), r.text
        r = client.put(f"/v1/participants/{target['id']}/signature-policy", json={"require_signatures": True},
                       headers={"Authorization": f"Bearer {api.token}"})
        assert (r.status_code, r.json()["code"]) == (403, "forbidden"), r.text
        assert api.ok(api.get(f"/v1/participants/{target['id']}/signing-keys")) == []
        assert api.ok(target["api"].get(f"/v1/participants/{target['id']}/signature-policy")) == {
            "participant_id": target["id"], "require_signatures": False}
    # Its own key's revocation too: no one else revokes it.
    key = api.ok(ent["api"].post(f"/v1/participants/{ent['id']}/signing-keys", {"public_key": generate_key()[1]}))
    r = api.post(f"/v1/participants/{ent['id']}/signing-keys/{key['id']}/revoke", {})
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    assert api.ok(ent["api"].get(f"/v1/participants/{ent['id']}/signing-keys"))[0]["revoked_at"] is None


# --- 5. an account's balances in the account's unit ------------------------------------------------------


def test_an_account_answers_in_its_units_not_base_units(api: Api) -> None:
    api.instrument("CDCER", kind="cdcer", decimals=3)
    issuer = api.participant("成都市生态环境局", "issuer")
    ent = api.participant("成都某企业", "enterprise")
    api.issue(issuer["api"], ent["id"], "CDCER", "12.345", project_batch("某项目"))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": ent["id"], "amount": "1000.50", "bank_reference": "d"}))
    holding = api.ok(ent["api"].get(f"/v1/accounts/{ent['holding_account']}"))
    assert holding["balances"] == [{"instrument": "CDCER", "posted": "12.345", "pending": "0.000",
                                    "available": "12.345"}], holding
    cash = api.ok(ent["api"].get(f"/v1/accounts/{ent['cash_account']}"))
    assert cash["balances"] == [{"instrument": "CNY", "posted": "1000.50", "pending": "0.00",
                                 "available": "1000.50"}], cash
    assert "units" not in cash
    # The same figures /v1/holdings gives.
    listed = {b["instrument"]: b for b in api.ok(ent["api"].get("/v1/holdings"))["balances"]}
    assert {k: listed["CNY"][k] for k in ("posted", "pending", "available")} == {
        k: cash["balances"][0][k] for k in ("posted", "pending", "available")}


# --- 10. the proposer approving its own action: refused whatever the action's state ------------------------


def test_the_proposer_approving_its_own_executed_action_is_refused_and_audited_as_refused(api: Api) -> None:
    ent = api.participant("丙企业", "enterprise")
    proposal = api.propose("/v1/cash/deposits", {"participant_id": ent["id"], "amount": "10.00",
                                                 "bank_reference": "rt3-10"})
    assert proposal.status_code == 202, proposal.text
    action = proposal.json()["id"]
    path = f"/v1/operator-actions/{action}/approve"
    own = api.client.post(path, json={}, headers={"Authorization": f"Bearer {api.token}"})
    assert (own.status_code, own.json()["code"]) == (403, "forbidden")  # pending: as before
    assert api.approve(proposal).status_code == 201  # the checker executes it
    for _ in range(2):  # executed now: the proposer still cannot approve it, nor see it "approved" by itself
        r = api.client.post(path, json={}, headers={"Authorization": f"Bearer {api.token}"})
        assert (r.status_code, r.json()["code"]) == (403, "forbidden"), r.text
    me = api.ok(api.get("/v1/whoami"))["participant_id"]
    mine = [e for e in api.ok(api.get("/v1/audit/events", limit=1000, operation="approveOperatorAction"))
            if e["actor"] == f"participant:{me}"]
    assert [e["outcome"] for e in mine] == ["refused"] * 3, mine
    # The checker's own retry is still its answer.
    assert api.ok(api.get(f"/v1/operator-actions/{action}"))["status"] == "executed"
    assert api.approve(proposal).status_code == 201


# --- 8. bodies where the operation takes none -------------------------------------------------------------


def test_a_read_with_a_body_is_refused(api: Api, client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {api.token}", "Content-Type": "application/json"}
    for method, path, headers in (("GET", "/v1/whoami", auth), ("GET", "/v1/audit/events", auth),
                                  ("GET", "/v1/public/pledges?name=x", {})):
        for body in (b'{"x":1}', b"{}", b"\xff\xfe garbage"):
            r = client.request(method, path, content=body, headers=headers)
            assert (r.status_code, r.json()["code"]) == (422, "body_not_allowed"), (path, body, r.text)
        empty = client.request(method, path, content=b"", headers=headers)  # 0 bytes: no body
        assert empty.status_code < 400 or empty.json()["code"] != "body_not_allowed", empty.text
    assert client.request("GET", "/v1/whoami", headers=auth).status_code == 200
    # A bodiless mutation takes none or {}, as before.
    ent = api.participant("丁企业", "enterprise")
    key = api.ok(ent["api"].post(f"/v1/participants/{ent['id']}/keys", {"label": "spare"}))
    r = ent["api"].post(f"/v1/participants/{ent['id']}/keys/{key['id']}/revoke", {"x": 1})
    assert (r.status_code, r.json()["code"]) == (422, "body_not_allowed")


# --- 7. paths that are not UTF-8 --------------------------------------------------------------------------


def test_a_path_that_is_not_utf8_is_422_and_never_echoed_as_u_fffd(api: Api, client: TestClient) -> None:
    auth = {"Authorization": f"Bearer {api.token}"}
    for method, path in (("GET", "/v1/pledges/%FF"), ("GET", "/v1/instruments/%FF"), ("GET", "/v1/markets/%ED%A0%80"),
                         ("GET", "/v1/no-such-thing/%C0%AF"), ("POST", "/v1/pledges/%FF/confirm"),
                         ("GET", "/v1/public/pledges/%FF")):
        for headers in (auth, {}):
            r = client.request(method, path, headers=headers)
            assert (r.status_code, r.json()["code"]) == (422, "invalid_characters"), (method, path, r.text)
            assert "\ufffd" not in r.text and r.json()["instance"].startswith("/v1/"), r.text
    r = client.get("/v1/pledges/%FF", headers=auth)
    assert r.json()["instance"] == "/v1/pledges/%FF"
    # A UTF-8 path that names nothing is still 404, with its path as the instance.
    r = client.get("/v1/instruments/%E7%A2%B3", headers=auth)
    assert (r.status_code, r.json()["instance"]) == (404, "/v1/instruments/碳")


# --- 6. (in part) a proposal's summary writes its amount as answers do -------------------------------------


def test_cash_proposals_summarise_the_amount_in_cny(api: Api) -> None:
    ent = api.participant("戊企业", "enterprise")
    for path, amount, said in (("/v1/cash/deposits", "1", "credit 1.00 CNY"),
                               ("/v1/cash/withdrawals", "0.5", "debit 0.50 CNY")):
        r = api.propose(path, {"participant_id": ent["id"], "amount": amount, "bank_reference": f"s-{amount}"})
        assert r.status_code == 202, r.text
        assert r.json()["summary"].startswith(said), r.json()


def test_the_public_ledger_head_writes_its_time_in_iso(api: Api, client: TestClient) -> None:
    api.participant("己企业", "enterprise")  # something in the log
    head = client.get("/v1/ledger/head").json()
    assert isinstance(head["ts"], str) and head["ts"].endswith("Z") and "T" in head["ts"], head
    assert isinstance(head["seq"], int) and len(head["hash"]) == 64
