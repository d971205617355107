"""The four-eyes rule (exchange/security/operator_actions.py): starting from one operator's key alone, no route
executes a maker-checker action — a deposit, an instrument, a market, a participant, a reinstatement.

Two parts. The named attacks from issue #13 and the obvious follow-ups, each with the refusal it must
meet. Then an adversary generated from the OpenAPI document (so a new route is covered the day it
ships): every operation, with every key the lone operator holds, aimed at itself, the other operator and
an enterprise, with bodies built from the request schemas; every secret-looking string in every answer
is harvested (API tokens, enrollment-code halves) and tried — as a key, as an enrollment, as an approver
of every pending proposal. At the end nothing four-eyes has executed and every key that works is still
the lone operator's own.
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from litestar.testing import TestClient

from tests.helpers import Api, checker_token
from tests.security import authz_checker as az
from tests.security.helpers import sql

TOKEN = re.compile(r"envx_[0-9a-f]{12}_[A-Za-z0-9_-]{20,}")
HALF = re.compile(r"envxe[12]_[0-9a-f]{16}_[a-z2-7]{20,}")


def _counts(client: TestClient, enterprise_id: int) -> dict[str, Any]:
    one = lambda q, p=None: sql(client, q, p)[0][0]  # noqa: E731
    return {
        "participants": one("SELECT count(*) FROM participants"),
        "executed_actions": one("SELECT count(*) FROM operator_actions WHERE status = 'executed'"),
        "instruments": one("SELECT count(*) FROM instruments"),
        "markets": one("SELECT count(*) FROM markets"),
        "enterprise_keys_by_others": one(
            "SELECT count(*) FROM api_keys WHERE participant_id = :p AND created_by NOT LIKE 'enrollment:%' "
            "AND created_by NOT IN (SELECT 'key:' || id FROM api_keys WHERE participant_id = :p)",
            {"p": enterprise_id}),
    }


class Adversary:
    """One operator and everything it can get hold of."""

    def __init__(self, client: TestClient, token: str) -> None:
        self.client = client
        self.me = client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()["participant_id"]
        self.tokens: set[str] = {token}
        self.seen_tokens: set[str] = set()
        self.halves: set[str] = set()
        self.actions: set[int] = set()
        self.calls = 0
        self._n = itertools.count()

    def request(self, method: str, path: str, token: str | None, body: Any = None) -> Any:
        headers = {"Idempotency-Key": f"adv-{next(self._n)}"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        kwargs: dict[str, Any] = {"headers": headers}
        if method in ("POST", "PUT", "PATCH"):
            kwargs["json"] = body if body is not None else {}
        resp = self.client.request(method, path, **kwargs)
        self.calls += 1
        self.harvest(resp)
        return resp

    def harvest(self, resp: Any) -> None:
        self.seen_tokens.update(TOKEN.findall(resp.text))
        self.halves.update(HALF.findall(resp.text))
        if resp.status_code == 202:
            self.actions.add(resp.json()["id"])

    def whose(self, token: str) -> int | None:
        r = self.client.get("/v1/whoami", headers={"Authorization": f"Bearer {token}"})
        return r.json()["participant_id"] if r.status_code == 200 else None

    def adopt_tokens(self) -> None:
        """Keep every harvested token that works; the test fails if one acts as anyone else."""
        for t in self.seen_tokens - self.tokens:
            who = self.whose(t)
            assert who in (None, self.me), f"the lone operator obtained a key of participant {who}"
            if who == self.me:
                self.tokens.add(t)

    def try_everything_it_holds(self) -> None:
        self.adopt_tokens()
        for a, b in itertools.product(sorted(self.halves), repeat=2):
            r = self.request("POST", "/v1/enrollments", None, {"first_half": a, "second_half": b})
            assert r.status_code != 201, f"enrolled with halves the lone operator saw: {r.text}"
            assert r.status_code in (409, 422), r.text
        for action, token in itertools.product(sorted(self.actions), sorted(self.tokens)):
            r = self.request("POST", f"/v1/operator-actions/{action}/approve", token, {})
            if r.status_code == 200:  # approving an action someone else approved answers its result, no more
                assert r.json()["decided_by"] != f"participant:{self.me}", f"approved action {action} alone"
                assert "enrollment" not in r.json(), r.text


def _sweep(adv: Adversary, spec: dict[str, Any], world: az.World, targets: list[int], key_ids: list[int],
           action_ids: list[int], mutations_only: bool) -> None:
    """Every operation of the OpenAPI document, with every key the adversary holds."""
    for op in az.operations(spec):
        if mutations_only and op.method == "GET":
            continue
        variants: list[dict[str, Any]] = [{}]
        for p in op.path_params:
            if p == "participant_id":
                values: list[Any] = targets
            elif p == "key_id":
                values = key_ids
            elif p == "action_id":  # sequential ids: the adversary can guess every one
                values = sorted(adv.actions | set(action_ids)) or [1]
            else:
                values = [az.path_values(op, "operator", world)[p]]
            variants = [{**v, p: x} for v in variants for x in values]
        for token in sorted(adv.tokens):
            for v in variants:
                path = op.path
                for k, x in v.items():
                    path = path.replace("{" + k + "}", str(x))
                body = az.sample(op.body_schema, spec, world) if op.body_schema else None
                if isinstance(body, dict):
                    if "kind" in body and op.operation_id == "createParticipant":
                        body["kind"] = "operator"  # the prize: a second operator identity
                    halves = sorted(adv.halves)
                    for i, field in enumerate(("first_half", "second_half")):
                        if field in body and halves:
                            body[field] = halves[i % len(halves)]
                resp = adv.request(op.method, path, token, body)
                assert resp.status_code < 500, f"{op.operation_id} {path}: {resp.status_code} {resp.text[:300]}"


def test_one_operator_alone_completes_no_four_eyes_action(api: Api, client: TestClient) -> None:
    checker = api.as_(checker_token(client))
    me = api.get("/v1/whoami").json()["participant_id"]
    other = checker.get("/v1/whoami").json()["participant_id"]
    ent = api.participant("三明市沙县林业合作社", "enterprise")  # admitted properly, by both operators
    pending_by_other = checker.propose("/v1/cash/deposits", {"participant_id": ent["id"], "amount": "9.00",
                                                             "bank_reference": "by-the-other"}).json()["id"]
    adv = Adversary(client, api.token)
    a = api.token
    # A live, unused code for the enterprise: the lone operator proposed it (so it holds the first half), the
    # other approved it. Should the second half leak to the proposer anywhere, the adversary enrolls as it.
    code = adv.request("POST", f"/v1/participants/{ent['id']}/enrollment-codes", a, {})
    assert code.status_code == 202
    assert checker.post(f"/v1/operator-actions/{code.json()['id']}/approve", {}).status_code == 200
    before = _counts(client, ent["id"])

    # --- the attacks of issue #13, by name -------------------------------------------------------------
    deposit = adv.request("POST", "/v1/cash/deposits", a, {"participant_id": ent["id"], "amount": "1000000.00",
                                                           "bank_reference": "lone"})
    assert deposit.status_code == 202
    for target in (other, ent["id"]):  # a key for the other operator, or for an enterprise
        r = adv.request("POST", f"/v1/participants/{target}/keys", a, {"label": "mine now"})
        assert (r.status_code, r.json()["code"]) == (403, "forbidden"), r.text
    # A new operator participant: a proposal only; the first half of its code is useless alone.
    new_op = adv.request("POST", "/v1/participants", a, {"name": "影子操作员", "kind": "operator"})
    assert new_op.status_code == 202 and new_op.json()["enrollment"]["first_half"]
    first = new_op.json()["enrollment"]["first_half"]
    for b in (first, first.replace("envxe1", "envxe2"), "envxe2_" + first.split("_")[1] + "_" + "a" * 32):
        r = adv.request("POST", "/v1/enrollments", None, {"first_half": first, "second_half": b})
        assert (r.status_code, r.json()["code"]) == (422, "invalid_enrollment_code"), r.text
    # Keys minted by keys are the same operator: none of them approves.
    child = adv.request("POST", f"/v1/participants/{me}/keys", a, {"label": "child"}).json()["token"]
    grandchild = adv.request("POST", f"/v1/participants/{me}/keys", child, {"label": "grandchild"}).json()["token"]
    for token in (a, child, grandchild):
        for action in (deposit.json()["id"], new_op.json()["id"]):
            r = adv.request("POST", f"/v1/operator-actions/{action}/approve", token, {})
            assert (r.status_code, r.json()["code"]) == (403, "forbidden"), r.text
    # Revoke the other operator's keys and "remint": minting is refused; a new code is four-eyes itself.
    for key in api.ok(api.get(f"/v1/participants/{other}/keys")):
        adv.request("POST", f"/v1/participants/{other}/keys/{key['id']}/revoke", a)
    assert checker.get("/v1/whoami").status_code == 401
    r = adv.request("POST", f"/v1/participants/{other}/keys", a, {})
    assert r.status_code == 403
    code = adv.request("POST", f"/v1/participants/{other}/enrollment-codes", a, {})
    assert code.status_code == 202
    r = adv.request("POST", f"/v1/operator-actions/{code.json()['id']}/approve", a, {})
    assert r.status_code == 403
    # Suspend the other operator, then act alone: nothing four-eyes becomes approvable by the one left.
    r = adv.request("POST", f"/v1/participants/{other}/suspend", a, {"reason": "gone rogue?"})
    assert r.status_code == 200 and r.json()["status"] == "suspended"
    r = adv.request("POST", f"/v1/operator-actions/{pending_by_other}/approve", a, {})
    assert (r.status_code, r.json()["code"]) == (409, "proposer_suspended"), r.text
    back = adv.request("POST", f"/v1/participants/{other}/reinstate", a, {"reason": "changed my mind"})
    assert back.status_code == 202
    r = adv.request("POST", f"/v1/operator-actions/{back.json()['id']}/approve", a, {})
    assert r.status_code == 403
    r = adv.request("POST", f"/v1/participants/{me}/suspend", a, {"reason": "to dodge the rule"})
    assert (r.status_code, r.json()["code"]) == (409, "cannot_suspend_self")
    # Signature policy: switching it, on anyone, grants nothing.
    for target in (me, other):
        adv.request("PUT", f"/v1/participants/{target}/signature-policy", a, {"require_signatures": False})
    assert adv.request("POST", f"/v1/operator-actions/{deposit.json()['id']}/approve", a, {}).status_code == 403
    adv.try_everything_it_holds()

    # --- every operation of the API, twice: GETs may leak, mutations may create --------------------------
    spec = client.get("/schema/openapi.json").json()
    world = az.World({}, {"operator": me, "enterprise": ent["id"]},
                     {"operator": 0, "enterprise": ent["holding_account"]})
    key_ids = [r.id for r in sql(client, "SELECT id FROM api_keys ORDER BY id")]
    action_ids = [r.id for r in sql(client, "SELECT id FROM operator_actions ORDER BY id")]
    own_live = {r.id for r in sql(client, "SELECT id FROM api_keys WHERE participant_id = :p", {"p": me})}
    targets = [other, ent["id"], me]
    # Revoking its own keys only hurts the adversary; aim revocations at everyone else's.
    others_keys = [k for k in key_ids if k not in own_live]
    _sweep(adv, spec, world, targets, others_keys, action_ids, mutations_only=False)
    adv.try_everything_it_holds()
    _sweep(adv, spec, world, targets, others_keys, action_ids, mutations_only=True)
    adv.try_everything_it_holds()

    assert adv.calls > 2 * len(az.operations(spec))
    assert len(adv.tokens) >= 3 and len(adv.halves) >= 2 and len(adv.actions) >= 5  # it really had material
    assert all(adv.whose(t) in (None, me) for t in adv.tokens | adv.seen_tokens)
    assert _counts(client, ent["id"]) == before
    balances = api.ok(api.get("/v1/holdings", participant_id=ent["id"]))["balances"]
    assert all(b["instrument"] != "CNY" or b["posted"] in ("0", "0.00") for b in balances), balances


def test_the_generated_adversary_finds_a_key_minted_for_someone_else(api: Api, client: TestClient,
                                                                     monkeypatch: Any) -> None:
    """The sweep is not a formality: with key minting as it was before issue #13 (an operator mints a key
    for anyone), it obtains the other operator's key and the test above would fail."""
    from exchange.security import credentials, keys

    async def as_before(rt: Any, who: Any, participant_id: int, client_id: str, **kw: Any) -> Any:
        if who.kind != "operator" and who.participant_id != participant_id:
            raise AssertionError("not reached in this test")
        async with rt.tx() as conn:
            return await keys.create_key(conn, rt.credentials, participant_id, kw["label"], created_by="pre-#13")

    monkeypatch.setattr(credentials, "mint_key", as_before)
    other = api.as_(checker_token(client)).get("/v1/whoami").json()["participant_id"]
    me = api.get("/v1/whoami").json()["participant_id"]
    adv = Adversary(client, api.token)
    spec = client.get("/schema/openapi.json").json()
    world = az.World({}, {"operator": me, "enterprise": other}, {"operator": 0, "enterprise": 0})
    mint = next(o for o in az.operations(spec) if o.operation_id == "createKey")
    _sweep(adv, {**spec, "paths": {mint.path: spec["paths"][mint.path]}}, world, [other], [], [], False)
    try:
        adv.adopt_tokens()
    except AssertionError as exc:
        assert f"obtained a key of participant {other}" in str(exc)
    else:
        raise AssertionError("the adversary should have obtained the other operator's key")
