"""Suspension: one operator's emergency brake, effective at once (cached keys included), no credentials for a
suspended participant; reinstatement needs a second operator and restores its keys."""

from __future__ import annotations

from litestar.testing import TestClient

from tests.helpers import Api, checker_token
from tests.security.helpers import sql


def test_suspension_stops_keys_at_once_and_reinstatement_needs_two_operators(api: Api, client: TestClient) -> None:
    ent = api.participant("成都市绿色低碳发展协会", "enterprise")
    child = Api(client, ent["api"].ok(ent["api"].post(f"/v1/participants/{ent['id']}/keys", {}))["token"])
    checker = api.as_(checker_token(client))
    # An unused code issued before, and one still awaiting approval when the brake is pulled.
    spare = api.propose(f"/v1/participants/{ent['id']}/enrollment-codes", {})
    spare_second = checker.post(spare.json()["approve"], {}).json()["enrollment"]["second_half"]
    waiting = api.propose(f"/v1/participants/{ent['id']}/enrollment-codes", {})
    for caller in (ent["api"], child):
        assert caller.get("/v1/whoami").status_code == 200  # verified and cached
    me = api.get("/v1/whoami").json()["participant_id"]

    r = api.post(f"/v1/participants/{ent['id']}/suspend", {"reason": "key leaked on a public forum"}, key="brake")
    assert r.status_code == 200, r.text
    brake = r.json()
    assert (brake["status"], brake["change"], brake["actor"]) == ("suspended", "suspend", f"participant:{me}")
    for caller in (ent["api"], child):  # at once, not after the cache's 5 s
        r = caller.get("/v1/whoami")
        assert (r.status_code, r.json()["code"]) == (401, "unauthenticated")
    again = api.post(f"/v1/participants/{ent['id']}/suspend", {"reason": "key leaked on a public forum"}, key="brake")
    assert again.json() == brake  # the retry gets the original answer
    r = api.post(f"/v1/participants/{ent['id']}/suspend", {"reason": "twice"})
    assert (r.status_code, r.json()["code"]) == (409, "participant_suspended")
    record = api.ok(api.get(f"/v1/participants/{ent['id']}"))
    assert record["status"] == "suspended" and record["suspension_reason"] == "key leaked on a public forum"
    # No credentials for it: no new code, the waiting one cannot be approved, the unused one is cancelled.
    r = api.propose(f"/v1/participants/{ent['id']}/enrollment-codes", {})
    assert (r.status_code, r.json()["code"]) == (409, "participant_suspended")
    r = checker.post(waiting.json()["approve"], {})
    assert (r.status_code, r.json()["code"]) == (409, "participant_suspended")
    r = api.enroll(spare.json()["enrollment"]["first_half"], spare_second)
    assert r.status_code == 409 and r.json()["code"] in ("enrollment_code_cancelled", "participant_suspended")
    r = ent["api"].post(f"/v1/participants/{ent['id']}/keys", {})
    assert r.status_code == 401

    # Reinstatement: proposed by one operator, approved by another.
    p = api.propose(f"/v1/participants/{ent['id']}/reinstate", {"reason": "keys rotated, forum post removed"})
    assert p.status_code == 202 and p.json()["kind"] == "reinstateParticipant"
    assert ent["api"].get("/v1/whoami").status_code == 401  # not before the approval
    r = api.post(f"/v1/operator-actions/{p.json()['id']}/approve", {})
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    done = checker.ok(checker.post(f"/v1/operator-actions/{p.json()['id']}/approve", {}))
    them = checker.get("/v1/whoami").json()["participant_id"]
    assert done["result"]["status"] == "active" and done["result"]["approved_by"] == f"participant:{them}"
    for caller in (ent["api"], child):  # its keys work again (revoke them if they were the problem)
        assert caller.get("/v1/whoami").status_code == 200
    assert api.ok(api.get(f"/v1/participants/{ent['id']}"))["suspended_at"] is None
    history = sql(client, "SELECT change, actor, approved_by FROM participant_status_changes WHERE participant_id = :p "
                          "ORDER BY id", {"p": ent["id"]})
    assert [tuple(h) for h in history] == [("suspend", f"participant:{me}", None),
                                           ("reinstate", f"participant:{me}", f"participant:{them}")]
    r = api.propose(f"/v1/participants/{ent['id']}/reinstate", {"reason": "again"})
    assert (r.status_code, r.json()["code"]) == (409, "participant_active")


def test_the_brake_is_for_others_and_for_operators_only(api: Api, client: TestClient) -> None:
    me = api.get("/v1/whoami").json()["participant_id"]
    r = api.post(f"/v1/participants/{me}/suspend", {"reason": "x"})
    assert (r.status_code, r.json()["code"]) == (409, "cannot_suspend_self")
    bank = api.participant("兴业银行三明分行", "bank")
    r = bank["api"].post(f"/v1/participants/{me}/suspend", {"reason": "x"})
    assert (r.status_code, r.json()["code"]) == (403, "role_forbidden")
    assert api.post("/v1/participants/999999/suspend", {"reason": "x"}).status_code == 404
    assert api.post(f"/v1/participants/{bank['id']}/suspend", {"reason": ""}).status_code == 422
    # A suspended operator neither approves nor has its pending proposals approved.
    checker = api.as_(checker_token(client))
    them = checker.get("/v1/whoami").json()["participant_id"]
    theirs = checker.propose("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "1.00",
                                                   "bank_reference": "t"}).json()
    mine = api.propose("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "2.00",
                                             "bank_reference": "m"}).json()
    api.ok(api.post(f"/v1/participants/{them}/suspend", {"reason": "on leave"}))
    assert checker.post(f"/v1/operator-actions/{mine['id']}/approve", {}).status_code == 401
    r = api.post(f"/v1/operator-actions/{theirs['id']}/approve", {})
    assert (r.status_code, r.json()["code"]) == (409, "proposer_suspended")
    assert api.ok(api.get(f"/v1/operator-actions/{theirs['id']}"))["status"] == "pending"


def test_suspension_and_reinstatement_never_answer_for_each_other(api: Api, client: TestClient) -> None:
    """The execution of an approved action runs under a client id no client can send: a suspension sent
    with the key "operator-action:<N>" (N the next action id, predictable) is not taken for the
    execution of reinstatement N, nor the reverse."""
    ent = api.participant("成都市绿色低碳发展协会", "enterprise")
    checker = api.as_(checker_token(client))

    def status() -> str:
        return str(api.ok(api.get(f"/v1/participants/{ent['id']}"))["status"])

    n = max([a["id"] for a in api.ok(api.get("/v1/operator-actions", limit=1000))], default=0) + 1
    r = api.post(f"/v1/participants/{ent['id']}/suspend", {"reason": "R"}, key=f"operator-action:{n}")
    assert r.status_code == 200 and status() == "suspended"
    p = api.propose(f"/v1/participants/{ent['id']}/reinstate", {"reason": "R"}).json()
    assert p["id"] == n  # the collision the probe used
    done = checker.ok(checker.post(f"/v1/operator-actions/{n}/approve", {}))
    assert done["status"] == "executed" and done["result"]["change"] == "reinstate", done
    assert status() == "active"

    # The reverse: after reinstatement M, a suspension keyed "operator-action:<M>" brakes.
    api.ok(api.post(f"/v1/participants/{ent['id']}/suspend", {"reason": "R2"}))
    m = api.propose(f"/v1/participants/{ent['id']}/reinstate", {"reason": "R2"}).json()["id"]
    checker.ok(checker.post(f"/v1/operator-actions/{m}/approve", {}))
    assert status() == "active"
    r = api.post(f"/v1/participants/{ent['id']}/suspend", {"reason": "R2"}, key=f"operator-action:{m}")
    assert r.status_code == 200 and r.json()["change"] == "suspend" and status() == "suspended"
    assert ent["api"].get("/v1/whoami").status_code == 401
    # A replay only ever answers the same operation: that key again is the same suspension.
    again = api.post(f"/v1/participants/{ent['id']}/suspend", {"reason": "R2"}, key=f"operator-action:{m}")
    assert again.json() == r.json()
    changes = sql(client, "SELECT change, client_id FROM participant_status_changes WHERE participant_id = :p "
                          "ORDER BY id", {"p": ent["id"]})
    assert [c.change for c in changes] == ["suspend", "reinstate", "suspend", "reinstate", "suspend"]
    assert all(c.client_id.startswith("\u00a7") for c in changes if c.change == "reinstate")
