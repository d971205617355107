"""An approval decides under the action's row lock, then executes with no lock held, then records the outcome
(exchange/security/operator_actions.py `approve`); an action left decided but not executed is completed by
approving it again, and stays its first approver's."""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from litestar.testing import TestClient
from sqlalchemy import text

from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.security import operator_actions
from exchange.security.operator_actions import Kind, Payload
from tests.helpers import Api, bootstrap_operator, checker_token
from tests.security.helpers import sql


def _me(caller: Api) -> int:
    return int(caller.get("/v1/whoami").json()["participant_id"])


async def _nothing_to_check(rt: Runtime, p: Payload) -> None:
    return None


def test_the_action_runs_with_no_lock_on_its_row_and_after_its_decision_committed(
        api: Api, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    async def probe(rt: Runtime, maker: Principal, checker: Principal, cid: str, p: Payload) -> dict[str, Any]:
        # Another connection may lock the row now (an approval that executed inside its row lock would make
        # this NOWAIT fail), and reads the decision as committed.
        async with rt.tx() as conn:
            row = (await conn.execute(text("SELECT status, decided_by FROM operator_actions WHERE id = :i "
                                           "FOR UPDATE NOWAIT"), {"i": int(cid.rsplit(":", 1)[1])})).one()
        seen.update(status=row.status, decided_by=row.decided_by, checker=checker.actor, cid=cid)
        return {"probed": True}

    monkeypatch.setitem(operator_actions.KINDS, "probe", Kind(_nothing_to_check, lambda p: "probe", probe))
    rt = client.app.state.rt
    maker = Principal(_me(api), "operator", "", 0, None, None)

    async def propose() -> int:
        return (await operator_actions.propose(rt, maker, "probe-1", "probe", {"what": "probe"})).action.id

    action = client.blocking_portal.call(propose)
    checker = api.as_(checker_token(client))
    done = checker.post(f"/v1/operator-actions/{action}/approve", {"note": "checked"})
    assert done.status_code == 200, done.text
    body = done.json()
    checker_actor = f"participant:{_me(checker)}"
    assert (body["status"], body["result"], body["decided_by"], body["decision_note"]) == (
        "executed", {"probed": True}, checker_actor, "checked")
    assert seen == {"status": "approved", "decided_by": checker_actor, "checker": checker_actor,
                    "cid": operator_actions.execution_id(action)}


def test_an_action_left_approved_is_completed_by_approving_again_and_its_half_stays_the_approvers(
        api: Api, client: TestClient) -> None:
    proposal = api.propose("/v1/participants", {"name": "福建省三明市某林业合作社", "kind": "enterprise"})
    assert proposal.status_code == 202, proposal.text
    action, first = proposal.json()["id"], proposal.json()["enrollment"]["first_half"]
    checker = api.as_(checker_token(client))
    checker_actor = f"participant:{_me(checker)}"
    # What an approval that died between its decision and its execution leaves behind.
    sql(client, "UPDATE operator_actions SET status = 'approved', decided_by = :d, decided_at = now() WHERE id = :i",
        {"d": checker_actor, "i": action}, write=True)
    left = api.get(f"/v1/operator-actions/{action}").json()
    assert (left["status"], left["approve"]) == ("approved", f"/v1/operator-actions/{action}/approve")
    assert sql(client, "SELECT count(*) FROM participants WHERE name = '福建省三明市某林业合作社'")[0][0] == 0

    # Decided: it can no longer be withdrawn, and its proposer still cannot complete it.
    withdrawn = api.post(f"/v1/operator-actions/{action}/reject", {})
    assert (withdrawn.status_code, withdrawn.json()["code"]) == (409, "action_decided")
    own = api.post(f"/v1/operator-actions/{action}/approve", {})
    assert own.status_code == 403, own.text

    # A third operator completes it; the decision, and the second half, stay the first approver's.
    third = api.as_(bootstrap_operator(client, "第三位操作员 (steps)"))
    completed = third.post(f"/v1/operator-actions/{action}/approve", {})
    assert completed.status_code == 200, completed.text
    assert (completed.json()["status"], completed.json()["decided_by"]) == ("executed", checker_actor)
    assert "enrollment" not in completed.json()
    again = checker.post(f"/v1/operator-actions/{action}/approve", {})
    assert again.status_code == 200, again.text
    second = again.json()["enrollment"]["second_half"]
    assert second and again.json()["result"]["id"] == completed.json()["result"]["id"]
    assert sql(client, "SELECT count(*) FROM participants WHERE name = '福建省三明市某林业合作社'")[0][0] == 1
    enrolled = api.enroll(first, second)
    assert enrolled.status_code == 201, enrolled.text


def test_the_database_refuses_a_decided_action_without_its_approver(api: Api, client: TestClient) -> None:
    bank = api.participant("兴业银行 (steps)", "bank")
    proposal = api.propose("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "1.00",
                                                 "bank_reference": "steps"})
    with pytest.raises(Exception, match="operator_actions_decided"):
        sql(client, "UPDATE operator_actions SET status = 'approved' WHERE id = :i", {"i": proposal.json()["id"]},
            write=True)


def test_a_second_approval_while_the_first_executes_waits_for_it_and_nothing_runs_twice(
        api: Api, client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    async def slow(rt: Runtime, maker: Principal, checker: Principal, cid: str, p: Payload) -> dict[str, Any]:
        runs.append(cid)
        started.set()
        while not release.is_set():  # the first approval is executing: no lock held, the decision committed
            await asyncio.sleep(0.01)
        return {"ran": len(runs)}

    monkeypatch.setitem(operator_actions.KINDS, "slow", Kind(_nothing_to_check, lambda p: "slow", slow))
    rt = client.app.state.rt
    maker = Principal(_me(api), "operator", "", 0, None, None)
    action = client.blocking_portal.call(
        lambda: operator_actions.propose(rt, maker, "slow-1", "slow", {"what": "slow"})).action.id
    checker = api.as_(checker_token(client))
    third = api.as_(bootstrap_operator(client, "第三位操作员 (concurrent)"))
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(checker.post, f"/v1/operator-actions/{action}/approve", {})
        assert started.wait(30)
        second = pool.submit(third.post, f"/v1/operator-actions/{action}/approve", {})
        time.sleep(1.0)  # the second approval is in: it finds the action approved and its execution under way
        release.set()
        answers = [first.result(60), second.result(60)]
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    assert runs == [operator_actions.execution_id(action)]
    assert {(a.json()["status"], a.json()["decided_by"]) for a in answers} == {
        ("executed", f"participant:{_me(checker)}")}
    assert answers[0].json()["result"] == answers[1].json()["result"] == {"ran": 1}
