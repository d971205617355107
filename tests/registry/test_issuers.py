"""Issuing authorities (red team round 4, F3): a city's environment bureau does not issue another region's
forest tickets nor the national allowance, and no operator approves units for itself."""

from __future__ import annotations

from tests.helpers import Api, checker_token, ticket


def test_only_an_instruments_issuing_authority_requests_it_and_the_grant_is_four_eyes(api: Api) -> None:
    api.instrument("FCT-SM", attributes={"region": "sanming"})
    api.instrument("CEA25", kind="cea", attributes={"compliance_year": 2025, "scheme": "national"})
    sanming = api.participant("三明市林业局", "issuer")
    chengdu = api.participant("成都市生态环境局", "issuer")
    owner = api.participant("林票持有人", "enterprise")
    body = {"instrument": "FCT-SM", "holder_id": owner["id"], "quantity": "100", "attributes": ticket(1)}
    for who in (sanming, chengdu):
        r = who["api"].post("/v1/issuances", body)
        assert (r.status_code, r.json()["code"]) == (403, "issuer_not_authorised"), r.text
    assert api.ok(api.get("/v1/issuances")) == []  # nothing was requested
    # The grant is an operator action: proposed by one operator, approved by another.
    proposal = api.propose("/v1/instruments/FCT-SM/issuers", {"participant_id": sanming["id"]})
    assert proposal.status_code == 202 and proposal.json()["kind"] == "authoriseIssuer"
    own = api.client.post(f"/v1/operator-actions/{proposal.json()['id']}/approve", json={},
                          headers={"Authorization": f"Bearer {api.token}"})
    assert own.status_code == 403  # not by its proposer
    api.approve(proposal)
    grants = api.ok(api.client.get("/v1/instruments/FCT-SM/issuers"))  # public
    assert [(g["instrument"], g["issuer"]) for g in grants] == [("FCT-SM", "三明市林业局")]  # by name, no ids
    api.ok(sanming["api"].post("/v1/issuances", body))
    r = chengdu["api"].post("/v1/issuances", {**body, "attributes": ticket(2)})
    assert (r.status_code, r.json()["code"]) == (403, "issuer_not_authorised")
    national = chengdu["api"].post("/v1/issuances", {"instrument": "CEA25", "holder_id": owner["id"],
                                                     "quantity": "300000", "attributes": {}})
    assert (national.status_code, national.json()["code"]) == (403, "issuer_not_authorised")
    # Only issuers are issuing authorities (an enterprise is not).
    wrong = api.post("/v1/instruments/FCT-SM/issuers", {"participant_id": owner["id"]})
    assert wrong.status_code == 422 and wrong.json()["code"] == "invalid_counterparty", wrong.text


def test_the_operator_who_approves_an_issuance_is_not_its_holder(api: Api) -> None:
    api.instrument("FCT-SM")
    sanming = api.participant("三明市林业局", "issuer")
    api.authorise_issuer("FCT-SM", sanming["id"])
    me = api.ok(api.get("/v1/whoami"))["participant_id"]
    req = api.ok(sanming["api"].post("/v1/issuances", {"instrument": "FCT-SM", "holder_id": me, "quantity": "1000000",
                                                       "attributes": ticket(9)}))
    mine = api.client.post(f"/v1/issuances/{req['id']}/approve", json={},
                           headers={"Authorization": f"Bearer {api.token}", "Idempotency-Key": "self"})
    assert mine.status_code == 403, mine.text
    assert api.ok(api.get(f"/v1/issuances/{req['id']}"))["status"] == "requested"
    other = Api(api.client, checker_token(api.client))
    assert other.ok(other.post(f"/v1/issuances/{req['id']}/approve", {}))["status"] == "approved"
