"""Red team round 4, F2: one operator alone neither marks pledged collateral nor sets its haircut. Both are
maker-checker operator actions (a second operator approves; ENVX_MAKER_CHECKER=false acts at once); a
manual mark outside the market's price band around the last close needs a reason; the exchange's own close
of a day replaces an operator's manual mark of that day (no `mark_conflict` lock-in)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from litestar.testing import TestClient

from api.app import create_app
from exchange.core.settings import Settings
from exchange.pledging import valuation
from tests.helpers import Api, bootstrap_operator
from tests.pledges.helpers import days, pledge_body, world

TODAY = datetime.now(ZoneInfo("Asia/Shanghai")).date()  # the registry's today


def pledged(api: Api, w: dict, quantity: str, secured: str, ref: str) -> dict:
    p = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], quantity, secured_amount=secured,
                                                                references=[{"source": "中登网", "reference": ref}])))
    return api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))


def close(api: Api, price_fen: int, day: date) -> dict:
    """The exchange's end-of-day close, as the market's close hook delivers it (pledge worker)."""
    return api.client.blocking_portal.call(valuation.revalue, api.client.app.state.rt, "FCT-SM", price_fen, day)


def test_a_mark_and_a_haircut_need_a_second_operator(api: Api) -> None:
    w = world(api, "1000")
    p = pledged(api, w, "100", "1000.00", "M-1")
    proposal = api.propose("/v1/pledges/revaluations", {"instrument": "FCT-SM", "price": "0.01", "as_of": days(0),
                                                       "reason": "probe"})
    assert proposal.status_code == 202, proposal.text
    action = proposal.json()
    assert (action["kind"], action["status"]) == ("revaluePledges", "pending")
    # Nothing is marked until a second operator approves; the proposer cannot approve its own.
    assert api.ok(api.get(f"/v1/pledges/{p['id']}"))["margin"]["price"] is None
    own = api.post(f"/v1/operator-actions/{action['id']}/approve", {})
    assert own.status_code == 403, own.text
    assert api.ok(api.get(f"/v1/pledges/{p['id']}"))["margin"]["price"] is None
    done = api.approve(proposal)
    assert done.status_code == 201, done.text
    shown = api.ok(api.get(f"/v1/pledges/{p['id']}"))
    assert (shown["margin"]["price"], shown["margin"]["level"]) == ("0.01", "liquidation")
    # The liquidation a mark brings gives the pledgor its cure before the next open.
    r = w["bank"]["api"].post(f"/v1/pledges/{p['id']}/enforcement", {
        "method": "sale", "reason": "ratio", "price": "0.01", "buyer_id": w["buyer"]["id"]})
    assert (r.status_code, r.json()["code"]) == (409, "cure_period_running"), r.text

    put = api.client.put("/v1/pledges/haircuts/FCT-SM", json={"haircut_bps": 9000},
                         headers={"Authorization": f"Bearer {api.token}", "Idempotency-Key": "hc-1"})
    assert put.status_code == 202 and put.json()["kind"] == "setPledgeHaircut", put.text
    assert api.ok(api.get(f"/v1/pledges/{p['id']}"))["haircut_bps"] == 0
    assert api.approve(put).status_code == 201
    assert api.ok(api.get(f"/v1/pledges/{p['id']}"))["haircut_bps"] == 9000


def test_a_manual_mark_outside_the_band_needs_a_reason(api: Api) -> None:
    w = world(api, "1000")
    pledged(api, w, "100", "1000.00", "B-1")
    close(api, 1500, TODAY.fromordinal(TODAY.toordinal() - 1))  # yesterday's close: 15.00
    body = {"instrument": "FCT-SM", "price": "0.01", "as_of": TODAY.isoformat()}
    r = api.propose("/v1/pledges/revaluations", body)
    assert (r.status_code, r.json()["code"]) == (422, "mark_reason_required"), r.text
    assert "15.00" in r.json()["detail"] and "10 %" in r.json()["detail"]
    # Within ±10 % no reason is asked; outside it, a reason makes the proposal (a second operator decides).
    assert api.propose("/v1/pledges/revaluations", {**body, "price": "16.50"}).status_code == 202
    r = api.propose("/v1/pledges/revaluations", {**body, "reason": "交易所停牌，按评估报告 (2026)第7号"})
    assert r.status_code == 202, r.text


def test_the_days_close_replaces_a_manual_mark_of_that_day(api: Api) -> None:
    w = world(api, "1000")
    p = pledged(api, w, "100", "1000.00", "C-1")
    api.ok(api.post("/v1/pledges/revaluations", {"instrument": "FCT-SM", "price": "0.01", "as_of": TODAY.isoformat(),
                                                 "reason": "probe"}))
    assert api.ok(api.get(f"/v1/pledges/{p['id']}"))["margin"]["level"] == "liquidation"
    answer = close(api, 1500, TODAY)  # the market's real close of the same day
    assert [x["level"] for x in answer["pledges"]] == ["ok"]
    shown = api.ok(api.get(f"/v1/pledges/{p['id']}"))
    assert (shown["margin"]["price"], shown["margin"]["level"], shown["margin"]["cure_deadline"]) == (
        "15.00", "ok", None)
    # An operator's second manual mark of the day is still refused: only the close replaces one.
    r = api.propose("/v1/pledges/revaluations", {"reason": "valuation report", "instrument": "FCT-SM", "price": "15.50",
                                                 "as_of": TODAY.isoformat()})
    assert (r.status_code, r.json()["code"]) == (409, "mark_conflict"), r.text


def test_maker_checker_off_marks_at_once(db_url: str, settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"maker_checker": False}), db_url)
    with TestClient(app, raise_server_exceptions=False, timeout=60) as c:
        op = Api(c, bootstrap_operator(c))
        w = world(op, "100")
        pledged(op, w, "10", "10.00", "O-1")
        r = op.propose("/v1/pledges/revaluations", {"reason": "valuation report",
                                                    "instrument": "FCT-SM", "price": "15.00",
                                                    "as_of": TODAY.isoformat()})
        assert r.status_code == 200 and r.json()["price"] == "15.00", r.text
        put = c.put("/v1/pledges/haircuts/FCT-SM", json={"haircut_bps": 500},
                    headers={"Authorization": f"Bearer {op.token}", "Idempotency-Key": "hc"})
        assert put.status_code == 200 and put.json() == {"instrument": "FCT-SM", "haircut_bps": 500}, put.text
