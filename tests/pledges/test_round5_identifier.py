"""Red team round 5, F2: the identifier guess limit (ENVX_IDENTIFIER_MISMATCHES_PER_DAY, 5) holds under
concurrency. 150 parallel wrong guesses got 36 answers, and a right identifier hidden among them was
found: each request counted the day's misses before any of the others had missed. Now counting, matching
and recording a miss are one step per caller (exchange/security/identified.py)."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
from litestar.testing import TestClient

from tests.helpers import Api, person, resident_id, ticket
from tests.pledges.helpers import days

ZHANG_SAN = resident_id("11010119900307001")
N = 60


def filing(pledgor: int, identifier: str, n: int) -> dict[str, Any]:
    return {"pledgor_id": pledgor, "pledgor_identifier": identifier, "instrument": "FCT-SM", "quantity": "1",
            "loan_contract": f"guess-{n}", "secured_amount": "1.00", "term_start": days(0), "term_end": days(365)}


def at_once(client: TestClient, token: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """The filings all at the same time, on the app's own event loop."""

    async def run() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app, client=("testclient", 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver", timeout=120) as c:
            return list(await asyncio.gather(*(
                c.post("/v1/pledges", json=b, headers={"Authorization": f"Bearer {token}",
                                                       "Idempotency-Key": f"guess-{n}"})
                for n, b in enumerate(bodies))))

    return client.blocking_portal.call(run)


def _world(api: Api) -> tuple[dict[str, Any], dict[str, Any]]:
    api.instrument("FCT-SM")
    issuer = api.participant("三明市林业局", "issuer")
    zhang = api.participant("张三", "enterprise", **person(ZHANG_SAN))
    api.issue(issuer["api"], zhang["id"], "FCT-SM", "100", ticket(1))
    return zhang, api.participant("成都农商银行", "bank")


def test_parallel_wrong_guesses_get_exactly_the_limit_of_answers(api: Api, client: TestClient) -> None:
    zhang, bank = _world(api)
    guesses = [resident_id(f"1101011990{m:02d}{d:02d}001") for m in (1, 2, 4) for d in range(1, 29)]
    guesses = [g for g in guesses if g != ZHANG_SAN][:N]
    answers = at_once(client, bank["token"], [filing(zhang["id"], g, n) for n, g in enumerate(guesses)])
    codes = Counter((r.status_code, r.json()["code"]) for r in answers)
    assert codes == {(404, "not_found"): 5, (409, "identifier_attempts_exceeded"): N - 5}, codes
    misses = api.ok(api.get("/v1/audit/events", limit=1000, operation="identifier_mismatch",
                            actor=f"participant:{bank['id']}"))
    assert len(misses) == 5
    # The right identifier after the limit is refused the same way: nothing tells it was right.
    right = bank["api"].post("/v1/pledges", filing(zhang["id"], ZHANG_SAN, 999))
    assert (right.status_code, right.json()["code"]) == (409, "identifier_attempts_exceeded"), right.text


def test_a_right_identifier_hidden_among_parallel_guesses_is_found_only_within_the_limit(
        api: Api, client: TestClient) -> None:
    zhang, bank = _world(api)
    guesses = [resident_id(f"11010119900{m}{d:02d}002") for m in (1, 2, 4) for d in range(1, 29)][:N]
    bodies = [filing(zhang["id"], g, n) for n, g in enumerate(guesses)]
    bodies[20] = filing(zhang["id"], ZHANG_SAN, 20)  # the red team's position
    answers = at_once(client, bank["token"], bodies)
    codes = Counter(r.status_code for r in answers)
    # Five wrong guesses were answered, and the right one only if it came before them; the rest refused.
    assert codes[404] == 5 and codes[201] <= 1 and codes[409] == N - 5 - codes[201], codes


def test_parallel_right_filings_of_one_bank_are_not_refused(api: Api, client: TestClient) -> None:
    zhang, bank = _world(api)
    answers = at_once(client, bank["token"], [filing(zhang["id"], ZHANG_SAN, n) for n in range(20)])
    assert Counter(r.status_code for r in answers) == {201: 20}, [r.text[:200] for r in answers][:3]
