"""A revaluation is one use case in one transaction: the day's mark and every pledge's valuation commit
together or not at all; a price that values a pledge beyond 2^53 - 1 fen is refused whole (422), ratios are
capped, and no answer carries an integer a JavaScript client cannot hold exactly (issue #13)."""

from __future__ import annotations

from typing import Any

from litestar.testing import TestClient

from tests.helpers import Api
from tests.pledges.helpers import days, pledge_body, world
from tests.security.helpers import sql, unsafe_integers

MAX_SAFE = 2**53 - 1


def _pledge(api: Api, w: dict[str, Any], quantity: str, secured: str, ref: str) -> dict[str, Any]:
    p = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(
        w["owner"]["id"], quantity, secured_amount=secured, references=[{"source": "中登网", "reference": ref}])))
    return api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))


def test_an_extreme_revaluation_is_refused_whole_and_leaves_nothing_behind(api: Api, client: TestClient) -> None:
    w = world(api, "1000")
    first = _pledge(api, w, "100", "5000000.00", "R-1")
    tiny = _pledge(api, w, "100", "0.01", "R-2")  # valued second: the probe left the first one marked

    before = sql(client, "SELECT count(*) FROM pledge_events")[0][0]
    r = api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                              "instrument": "FCT-SM", "price": "90071992547409.91", "as_of": days(0)})
    assert (r.status_code, r.json()["code"]) == (422, "valuation_out_of_range"), r.text
    # Nothing of it was kept: no mark, no valuation, no event, no webhook.
    assert sql(client, "SELECT count(*) FROM pledge_marks")[0][0] == 0
    assert sql(client, "SELECT count(*) FROM pledge_valuations")[0][0] == 0
    assert sql(client, "SELECT count(*) FROM pledge_events")[0][0] == before
    for p in (first, tiny):
        assert api.ok(api.get(f"/v1/pledges/{p['id']}"))["margin"]["level"] == "ok"

    # A correct close for the same day is taken: the refused one marked nothing.
    r = api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                     "instrument": "FCT-SM", "price": "10.00", "as_of": days(0)}))
    assert {x["pledge_id"] for x in r["pledges"]} == {first["id"], tiny["id"]}


def test_a_ratio_beyond_any_threshold_is_capped_and_answers_stay_exact(api: Api, client: TestClient) -> None:
    w = world(api, "1000")
    tiny = _pledge(api, w, "100", "0.01", "R-3")
    # 100 t at 200 亿 CNY is 2e15 fen before the haircut (within 2^53), against 1 fen: a ratio of ~1e19 bps,
    # beyond PostgreSQL's bigint (the probe's 500).
    r = api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                              "instrument": "FCT-SM", "price": "20000000000.00", "as_of": days(0)})
    assert r.status_code in (200, 201), r.text  # 201: the approval of the proposal (maker-checker)
    answers = [r.json(), api.ok(api.get(f"/v1/pledges/{tiny['id']}")),
               api.ok(api.get(f"/v1/pledges/{tiny['id']}/events")),
               api.ok(api.get("/v1/pledges/events", limit=500)),
               api.ok(w["bank"]["api"].get(f"/v1/pledges/{tiny['id']}"))]
    assert [hit for a in answers for hit in unsafe_integers(a)] == []
    (valued,) = r.json()["pledges"]
    assert valued["ratio_bps"] == 100_000_000 and valued["level"] == "ok"
    stored = sql(client, "SELECT value, ratio_bps FROM pledge_valuations WHERE pledge_id = :p", {"p": tiny["id"]})[0]
    assert stored.ratio_bps == 100_000_000 and 0 < stored.value <= MAX_SAFE
