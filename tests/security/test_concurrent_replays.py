"""Retries under concurrency: 20 identical requests with one key at the same time all get one answer,
byte for byte, and a later retry gets the same bytes; one effect in the registry.

Through HTTP (the edge: api/security/replays.py) and, below it, straight into the services, where a
concurrent twin that commits first must turn a refusal or a unique-index race into the twin's answer
(exchange.core.idempotency.replay_on_refusal), never a 500 or a 409 of the request's own making.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import httpx
import pytest
from litestar.testing import TestClient

from api.app import create_app
from exchange.core.idempotency import carries_secret
from exchange.core.principal import Principal
from exchange.core.settings import Settings
from exchange.courts import freezes as freezing
from exchange.courts import restoration
from exchange.security import keys
from tests.helpers import Api, bootstrap_operator, checker_token, fresh_uscc, ticket
from tests.security.helpers import sql

N = 20


def _storm(client: TestClient, token: str, path: str, body: dict[str, Any], key: str) -> list[httpx.Response]:
    """N identical requests at once, on the app's own event loop."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app, client=("testclient", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": key}
            return list(await asyncio.gather(*(c.post(path, json=body, headers=headers) for _ in range(N))))

    return client.blocking_portal.call(run)


def _same(responses: list[httpx.Response]) -> tuple[int, bytes]:
    answers = {(r.status_code, r.content) for r in responses}
    assert len(answers) == 1, sorted((s, b[:200]) for s, b in answers)
    return answers.pop()


def _count(client: TestClient, table: str) -> int:
    return int(sql(client, f"SELECT count(*) FROM {table}")[0][0])


def _world(api: Api) -> dict[str, Any]:
    api.instrument("FCT-RACE")
    api.instrument("CCER-RACE", kind="ccer")
    issuer = api.participant("三明市林业局", "issuer")
    holder = api.participant("沙县林业合作社", "enterprise", uscc=fresh_uscc())
    payer = api.participant("被告人 (缴纳人)", "enterprise", uscc=fresh_uscc())
    court = api.participant("南靖县人民法院", "court")
    api.issue(issuer["api"], holder["id"], "FCT-RACE", "1000", ticket(1))
    api.ok(api.post("/v1/cash/deposits", {"participant_id": payer["id"], "amount": "10000.00",
                                          "bank_reference": "race"}))
    api.ok(api.post("/v1/markets", {"instrument": "FCT-RACE", "mode": "continuous",
                                    "settings": {"sessions": [], "t_plus_1": False}}))
    api.ok(api.post("/v1/markets/FCT-RACE.continuous/session", {"action": "open"}))
    return {"holder": holder, "payer": payer, "court": court}


def _order_body(w: dict[str, Any]) -> dict[str, Any]:
    return {"case_number": "(2025)闽0627刑初7号", "case_type": "刑事附带民事公益诉讼", "defendants": [{"name": "甲"}],
            "payer_id": w["payer"]["id"], "payer_identifier": w["payer"]["uscc"], "required_quantity": "10",
            "eligible_kinds": ["ccer"],
            "deadline": (date.today() + timedelta(days=30)).isoformat()}


def _freeze_body(w: dict[str, Any], notice: str) -> dict[str, Any]:
    today = date.today()
    return {"holder_id": w["holder"]["id"], "holder_identifier": w["holder"]["uscc"], "instrument": "FCT-RACE",
            "quantity": "10", "case_number": "(2025)闽0402执9号", "notice_number": notice,
            "term_start": today.isoformat(), "term_end": (today + timedelta(days=180)).isoformat()}


def test_concurrent_identical_requests_get_one_answer_byte_for_byte(api: Api, client: TestClient) -> None:
    w = _world(api)
    cases = [
        ("restoration_orders", w["court"]["token"], "/v1/restoration-orders", _order_body(w)),
        ("freezes", w["court"]["token"], "/v1/freezes", _freeze_body(w, "N-race-1")),
        ("operator_actions", api.token, "/v1/cash/deposits",  # maker-checker: a 202 proposal
         {"participant_id": w["payer"]["id"], "amount": "5.00", "bank_reference": "race-deposit"}),
        ("orders", w["holder"]["token"], "/v1/markets/FCT-RACE.continuous/orders",
         {"side": "sell", "price": "50.00", "quantity": "5"}),
    ]
    for table, token, path, body in cases:
        before = _count(client, table)
        status, content = _same(_storm(client, token, path, body, f"race-{table}"))
        assert status in (200, 201, 202), (path, content[:300])
        assert _count(client, table) == before + 1, table  # one effect
        again = client.post(path, json=body, headers={"Authorization": f"Bearer {token}",
                                                      "Idempotency-Key": f"race-{table}"})
        assert (again.status_code, again.content) == (status, content), (path, again.text[:300])
        assert b"fingerprint" not in content
    # The key in the body instead of the header: other bytes, so the service's own replay answers, and it
    # shows the same proposal (without its internal fingerprint column).
    token, path, body = api.token, cases[2][2], cases[2][3]
    first = client.post(path, json=body, headers={"Authorization": f"Bearer {token}",
                                                  "Idempotency-Key": "race-operator_actions"})
    moved = client.post(path, json={**body, "client_id": "race-operator_actions"},
                        headers={"Authorization": f"Bearer {token}"})
    assert moved.status_code == 202 and moved.json() == first.json()
    # The order's answer on replay still names the events of its placement (not "events": []).
    order = client.post(cases[3][2], json=cases[3][3], headers={"Authorization": f"Bearer {cases[3][1]}",
                                                                 "Idempotency-Key": "race-orders"}).json()
    assert order["events"] and "replayed" not in order


def test_a_different_request_under_a_key_in_flight_is_not_given_its_answer(api: Api, client: TestClient) -> None:
    w = _world(api)

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app, client=("testclient", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            h = {"Authorization": f"Bearer {w['court']['token']}", "Idempotency-Key": "same-key"}
            return list(await asyncio.gather(
                *(c.post("/v1/freezes", json=_freeze_body(w, f"N-{i % 2}"), headers=h) for i in range(10))))

    out = client.blocking_portal.call(run)
    codes = sorted({(r.status_code, r.json().get("code")) for r in out})
    ok = [r for r in out if r.status_code in (200, 201)]
    assert {r.json()["notice_number"] for r in ok} == {ok[0].json()["notice_number"]}  # one of the two bodies won
    assert all(r.status_code == 409 and r.json()["code"] == "idempotency_conflict"
               for r in out if r.status_code not in (200, 201)), codes


def test_services_answer_a_concurrent_twin_with_its_result(api: Api, client: TestClient) -> None:
    """Below the edge (a request that reached the service twice at once, e.g. from two processes): the
    UniqueViolation and duplicate_order refusals of the losers become the winner's answer."""
    w = _world(api)
    rt = client.app.state.rt
    court = client.blocking_portal.call(_principal, client, w["court"]["token"])
    body = {**_order_body(w), "deadline": date.today() + timedelta(days=30), "judgment_reference": None,
            "assessed_loss": None, "assessment_method": None, "assessing_body": None, "multiplier": None,
            "designated_seller_id": None, "note": None}

    async def orders() -> list[Any]:
        return list(await asyncio.gather(*(restoration.create(rt, court, "svc-order", body) for _ in range(N)),
                                         return_exceptions=True))

    results = client.blocking_portal.call(orders)
    assert all(isinstance(r, restoration.OrderState) for r in results), \
        [repr(r)[:200] for r in results if not isinstance(r, restoration.OrderState)]
    assert len({r.order.id for r in results}) == 1



def test_a_freeze_that_finds_its_twin_committed_answers_with_it(api: Api, client: TestClient,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The interleaving behind "19 x 409 duplicate_notice": B looks for its client id (nothing yet), A
    then freezes and commits, B checks the notice number and finds A's. B must answer A's freeze."""
    w = _world(api)
    rt = client.app.state.rt
    court = client.blocking_portal.call(_principal, client, w["court"]["token"])
    today = date.today()
    real = freezing.repo.freeze_notice_taken
    calls: list[int] = []

    async def run() -> tuple[Any, Any]:
        a_committed = asyncio.Event()

        async def notice_taken(conn: Any, court_id: int, notice: str) -> Any:
            calls.append(court_id)
            if len(calls) == 1:  # B, after its replay lookup found nothing
                await a_committed.wait()
            return await real(conn, court_id, notice)

        monkeypatch.setattr(freezing.repo, "freeze_notice_taken", notice_taken)

        def create() -> Any:
            return freezing.create(
                rt, court, "svc-freeze", holder_id=w["holder"]["id"], holder_identifier=w["holder"]["uscc"],
                instrument="FCT-RACE", quantity="10",
                serials=None, case_number="(2025)闽0402执9号", notice_number="N-svc", term_start=today,
                term_end=today + timedelta(days=180), deduct_to_id=None)

        b = asyncio.create_task(create())
        while not calls:
            await asyncio.sleep(0.01)
        a = await create()
        a_committed.set()
        return a, await asyncio.gather(b, return_exceptions=True)

    a, (b,) = client.blocking_portal.call(run)
    assert isinstance(b, freezing.FreezeView), repr(b)
    assert b == a
    held = sql(client, "SELECT count(*) FROM ledger_holds WHERE kind = 'freeze' AND state = 'pending'")[0][0]
    assert held == 1


async def _principal(client: TestClient, token: str) -> Principal:
    rt = client.app.state.rt
    async with rt.read() as conn:
        p = await keys.authenticate(conn, rt.key_cache, token)
    assert p is not None
    return p


def test_an_answer_with_a_secret_field_anywhere_is_never_stored() -> None:
    assert not carries_secret(b'{"id": 7, "enrollment": null, "key": {"id": 3, "label": "desk"}}')
    for body in (b'{"token": "envx_a_b"}', b'{"id": 1, "enrollment": {"first_half": "x"}}',
                 b'{"result": {"id": 2}, "enrollment": {"second_half": "y"}}', b'[{"a": [{"secret": "s"}]}]',
                 b"%PDF-1.7 not JSON, so not looked through"):
        assert carries_secret(body), body


@pytest.fixture(params=[True, False], ids=["four-eyes", "one-operator"])
def secrets_client(request: pytest.FixtureRequest, db_url: str, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"maker_checker": request.param,
                                                 "webhook_allowed_hosts": "127.0.0.1"}), db_url)
    with TestClient(app, raise_server_exceptions=False, timeout=60) as c:
        yield c


def test_secrets_shown_once_are_never_kept_for_replays(secrets_client: TestClient) -> None:
    """Admission (a half on the proposal, the other on its approval; both at once without maker-checker),
    enrollment, a key minted, a new enrollment code, a webhook: each retried with its key gets the same
    secret again, and answers_by_request, walked afterwards, holds none of them."""
    client = secrets_client
    api = Api(client, bootstrap_operator(client))
    checker = api.as_(checker_token(client))
    shown: list[str] = []

    def halves(key: str, path: str, body: dict[str, Any]) -> tuple[dict[str, Any], str, str]:
        proposal = api.propose(path, body, key=key)
        again = api.propose(path, body, key=key)
        if proposal.status_code == 201:  # maker-checker off: one operator, both halves at once
            code = proposal.json()["enrollment"]
            assert again.json()["enrollment"] == code
            return proposal.json(), code["first_half"], code["second_half"]
        assert proposal.status_code == 202, proposal.text
        first = proposal.json()["enrollment"]["first_half"]
        assert again.json()["enrollment"]["first_half"] == first
        approve = f"/v1/operator-actions/{proposal.json()['id']}/approve"
        approval = checker.post(approve, {}, key=f"{key}-approval")
        assert approval.status_code == 200, approval.text
        second = approval.json()["enrollment"]["second_half"]
        assert checker.post(approve, {}, key=f"{key}-approval").json()["enrollment"]["second_half"] == second
        return approval.json()["result"], first, second

    admitted, first, second = halves("admit", "/v1/participants", {"name": "兴业银行", "kind": "bank"})
    enrolled = api.enroll(first, second, key="enroll")
    assert enrolled.status_code == 201, enrolled.text
    assert api.enroll(first, second, key="enroll").content == enrolled.content
    bank = api.as_(enrolled.json()["key"]["token"])
    minted = bank.post(f"/v1/participants/{admitted['id']}/keys", {"label": "desk"}, key="mint")
    assert minted.status_code == 201, minted.text
    assert bank.post(f"/v1/participants/{admitted['id']}/keys", {"label": "desk"}, key="mint").json()["token"] \
        == minted.json()["token"]
    _, renewed_first, renewed_second = halves("renew", f"/v1/participants/{admitted['id']}/enrollment-codes", {})
    hook_headers = {"Authorization": f"Bearer {bank.token}", "Idempotency-Key": "hook"}
    hook = client.put("/v1/pledges/webhook", json={"url": "https://127.0.0.1:9/hook"}, headers=hook_headers)
    assert hook.status_code == 200, hook.text
    assert client.put("/v1/pledges/webhook", json={"url": "https://127.0.0.1:9/hook"},
                      headers=hook_headers).json()["secret"] == hook.json()["secret"]
    deposit = api.post("/v1/cash/deposits", {"participant_id": admitted["id"], "amount": "100.00",
                                             "bank_reference": "no secret in this answer"}, key="deposit")
    assert deposit.status_code == 201, deposit.text
    shown += [first, second, enrolled.json()["key"]["token"], minted.json()["token"], renewed_first,
              renewed_second, hook.json()["secret"]]
    # the secret parts alone, too; a base64url secret may itself hold "_", and a tail of a few characters
    # after it is no secret (it matched a "g" in an unrelated answer once)
    shown += [tail for s in shown if len(tail := s.rsplit("_", 1)[1]) >= 12]

    rows = sql(client, "SELECT client_id, body FROM answers_by_request")
    assert "deposit" in {r.client_id for r in rows}  # answers without a secret are kept ...
    stored = b"".join(bytes(r.body) for r in rows)
    for body in (bytes(r.body) for r in rows):  # ... and no kept answer has a secret field, at any depth
        assert not carries_secret(body), body[:300]
    for secret in shown:
        assert secret.encode() not in stored
    assert not {r.client_id for r in rows} & {"admit", "admit-approval", "enroll", "mint", "renew",
                                               "renew-approval", "hook"}
