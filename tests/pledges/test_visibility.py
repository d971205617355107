"""Who sees what of a pledge (issues #13, #14): a filed claim grants nothing, a confirmed junior sees the
lot and not the senior's loan, refusals of what one may not see are 404 before any state check, and the
public inquiry matches whole names and lists every registration ranking on a lot."""

from __future__ import annotations

import json
import re
import time

from tests.helpers import Api, ticket, uscc
from tests.pledges.helpers import Receiver, days, pledge_body, world
from tests.security.helpers import sql

SENIOR_CONTRACT = "兴银三明授字(2021)第0518号"  # pledge_body's loan contract
SENIOR_AMOUNT = "5000000.00"


def _active(api: Api, w: dict, quantity: str = "600", **extra: object) -> dict:
    p = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], quantity, **extra)))
    return api.ok(w["owner"]["api"].post(f"/v1/pledges/{p['id']}/confirm"))


def _flat(resp: object) -> str:
    return json.dumps(resp.json(), ensure_ascii=False)  # type: ignore[attr-defined]


def _same_as_unknown(real: object, unknown: object, real_id: int, unknown_id: int) -> None:
    """Status, code and body exactly as for an id that does not exist (the id named in it aside)."""
    a, b = real.json(), unknown.json()  # type: ignore[attr-defined]
    assert (real.status_code, a["code"]) == (unknown.status_code, b["code"]) == (404, "not_found"), (a, b)  # type: ignore[attr-defined]
    strip = lambda d, i: re.sub(rf"(?<!\w){i}(?!\w)", "<id>", json.dumps(d, ensure_ascii=False))  # noqa: E731
    assert strip(a, real_id) == strip(b, unknown_id)


def test_a_filed_claim_grants_no_visibility_and_its_answer_is_the_claim_alone(api: Api) -> None:
    w = world(api, "1000")
    rival = w["junior"]
    p = _active(api, w)
    pid = p["id"]
    # The rival bank could not read the pledge; filing a 0.01 CNY claim must not change that.
    assert rival["api"].get(f"/v1/pledges/{pid}").status_code == 404
    r = rival["api"].post(f"/v1/pledges/{pid}/claims", {"loan_contract": "探查-1", "amount": "0.01",
                                                       "term_end": days(30)})
    assert r.status_code == 201, r.text
    claim = r.json()
    assert claim["status"] == "filed" and claim["pledge_id"] == pid and claim["loan_contract"] == "探查-1"
    assert SENIOR_CONTRACT not in _flat(r) and SENIOR_AMOUNT not in _flat(r) and "claims" not in claim
    assert "secured_amount" not in claim and "blocks" not in claim and "margin" not in claim
    for path in ("/v1/pledges/{}", "/v1/pledges/{}/events"):
        _same_as_unknown(rival["api"].get(path.format(pid)), rival["api"].get(path.format(99999)), pid, 99999)
    assert api.ok(rival["api"].get("/v1/pledges")) == []
    assert api.ok(rival["api"].get("/v1/pledges/events")) == []
    # A retry gets the same claim, nothing more.
    again = rival["api"].post(f"/v1/pledges/{pid}/claims", {"loan_contract": "探查-1", "amount": "0.01",
                                                           "term_end": days(30)}, key=None)
    assert again.status_code == 422  # an idempotency key is required; with the same key:
    k = "probe-claim"
    first = api.ok(rival["api"].post(f"/v1/pledges/{pid}/claims", {"loan_contract": "探查-2", "amount": "0.01",
                                                                   "term_end": days(30)}, key=k))
    assert api.ok(rival["api"].post(f"/v1/pledges/{pid}/claims", {"loan_contract": "探查-2", "amount": "0.01",
                                                                  "term_end": days(30)}, key=k)) == first
    # Its own claim's fate is its business: it may release it, and the answer is the claim again.
    released = api.ok(rival["api"].post(f"/v1/pledges/claims/{first['id']}/release"))
    assert released["status"] == "released" and SENIOR_CONTRACT not in json.dumps(released, ensure_ascii=False)
    # The pledgee sees the filings on its collateral.
    assert {c["loan_contract"] for c in api.ok(w["bank"]["api"].get(f"/v1/pledges/{pid}"))["claims"]} == {
        "探查-1", "探查-2"}


def test_a_confirmed_junior_sees_the_lot_not_the_seniors_loan(api: Api) -> None:
    w = world(api, "1000")
    junior, third = w["junior"], api.participant("福建海峡银行三明分行", "bank")
    with Receiver() as rx:
        for bank in (junior, third):  # both juniors listen to webhooks; what they receive is checked below
            api.ok(bank["api"].client.put("/v1/pledges/webhook", json={"url": rx.url}, headers={
                "Authorization": f"Bearer {bank['token']}", "Idempotency-Key": f"hook-{bank['id']}"}))
        p = _active(api, w, haircut_bps=1000)
        pid = p["id"]
        mine = api.ok(junior["api"].post(f"/v1/pledges/{pid}/claims", {
            "loan_contract": "三明农商借字2021-77", "amount": "400000.00", "term_end": days(200)}))["id"]
        api.ok(third["api"].post(f"/v1/pledges/{pid}/claims", {
            "loan_contract": "海峡借字-9", "amount": "123456.00", "term_end": days(200)}))
        api.ok(w["owner"]["api"].post(f"/v1/pledges/claims/{mine}/confirm"))
        api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                     "instrument": "FCT-SM", "price": "4000.00", "as_of": days(0)}))
        api.ok(w["bank"]["api"].post(f"/v1/pledges/{pid}/amend", {"secured_amount": "4900000.00"}))
        api.ok(w["bank"]["api"].post(f"/v1/pledges/{pid}/extend", {"term_end": days(400)}))
        rx.wait_for("claim_registered")

        lot = api.ok(junior["api"].get(f"/v1/pledges/{pid}"))
        # What due diligence needs: that it exists, its rank, quantity and serials, status, term.
        assert (lot["status"], lot["quantity"], lot["priority"]["rank_on_lot"]) == ("active", "600", 1)
        assert [(b["start"], b["end"]) for b in lot["blocks"]] == [(1, 600)] and lot["term_end"] == days(400)
        assert lot["pledgee"]["name"] == "兴业银行三明分行" and lot["number"] == p["number"]
        # Not the senior's loan, valuation or thresholds, nor the other bank's claim; its own claim and rank.
        flat = json.dumps(lot, ensure_ascii=False)
        for secret in (SENIOR_CONTRACT, "4900000.00", SENIOR_AMOUNT, "海峡借字-9", "123456.00"):
            assert secret not in flat, secret
        assert not {"loan_contract", "secured_amount", "margin", "thresholds", "haircut_bps"} & lot.keys()
        assert [(c["id"], c["rank"], c["amount"]) for c in lot["claims"]] == [(mine, 2, "400000.00")]
        assert [x["id"] for x in api.ok(junior["api"].get("/v1/pledges"))] == [pid]
        # Its history: the lot's changes and its own claim, nothing of the loan or the valuation.
        history = api.ok(junior["api"].get(f"/v1/pledges/{pid}/events"))
        assert [e["type"] for e in history] == ["confirmed", "claim_filed", "claim_registered", "extended"]
        assert history[-1]["changes"] == {"term_end": days(400), "expires_at": history[-1]["changes"]["expires_at"]}
        assert [e["type"] for e in api.ok(junior["api"].get("/v1/pledges/events"))] == [e["type"] for e in history]
        flat = json.dumps(history, ensure_ascii=False)
        assert SENIOR_CONTRACT not in flat and "4900000" not in flat and "490000000" not in flat
        # The stream pages past what it may not see: one event per page still reaches the end.
        paged, after = [], 0
        while page := api.ok(junior["api"].get("/v1/pledges/events", after=after, limit=1)):
            paged += page
            after = page[-1]["id"]
        assert [e["id"] for e in paged] == [e["id"] for e in history]
        # The unconfirmed third bank still sees nothing.
        assert third["api"].get(f"/v1/pledges/{pid}").status_code == 404
        assert api.ok(third["api"].get("/v1/pledges/events")) == []

        # Default: a sale to a buyer; the distribution names what the senior was owed -- not for the junior.
        buyer = w["buyer"]
        api.ok(api.post("/v1/cash/deposits", {"participant_id": buyer["id"], "amount": "3000000.00",
                                               "bank_reference": "b"}))
        api.ok(w["bank"]["api"].post(f"/v1/pledges/{pid}/enforcement", {
            "method": "sale", "buyer_id": buyer["id"], "price": "5000.00", "reason": "违约",
            "default_notice": {"reference": "兴银三明违通字2024第7号", "notice_date": days(0)}}))
        offered = api.ok(buyer["api"].get(f"/v1/pledges/{pid}"))  # the buyer sees the lot and the sale terms
        assert offered["enforcement"] == {"method": "sale", "price": "5000.00", "proceeds": "3000000.00",
                                          "buyer_id": buyer["id"], "declared_at": offered["enforcement"]["declared_at"],
                                          "completed_at": None}
        flat = json.dumps(offered, ensure_ascii=False)
        assert "4900000" not in flat and "违通字" not in flat and offered["claims"] == []
        api.ok(buyer["api"].post(f"/v1/pledges/{pid}/enforcement/accept", {"price": "5000.00"}))
        rx.wait_for("enforced")
        lot = api.ok(junior["api"].get(f"/v1/pledges/{pid}"))
        assert lot["enforcement"]["distribution"] == [d for d in api.ok(w["bank"]["api"].get(
            f"/v1/pledges/{pid}"))["enforcement"]["distribution"] if d["party"] == f"claim:{mine}"]
        time.sleep(0.5)

    # Webhooks carry what each recipient may see (the outbox keeps every body sent).
    rows = sql(api.client, "SELECT participant_id, event_type, body FROM pledge_outbox ORDER BY id")
    to_junior = [(r.event_type, bytes(r.body).decode()) for r in rows if r.participant_id == junior["id"]]
    to_third = [(r.event_type, bytes(r.body).decode()) for r in rows if r.participant_id == third["id"]]
    assert [t for t, _ in to_junior] == ["claim_filed", "claim_registered", "enforced"]
    for _, b in to_junior:
        assert SENIOR_CONTRACT not in b and "490000000" not in b and "500000000" not in b and "123456" not in b, b
        assert "4900000.00" not in b and SENIOR_AMOUNT not in b and "违通字" not in b, b
    enforced = json.loads(to_junior[-1][1])
    assert [d["party"] for d in enforced["details"]["distribution"]] == [f"claim:{mine}"]
    # The third bank's claim was never confirmed: it hears of its own filing only.
    assert [t for t, _ in to_third] == ["claim_filed"]


def test_refusals_of_what_one_may_not_see_are_404_before_any_state_check(api: Api) -> None:
    w = world(api, "1000")
    stranger = api.participant("其他银行", "bank")
    other_owner = api.participant("另一家企业", "enterprise")
    filed = api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"], "10", references=[])))
    done = _active(api, w, "10", references=[{"source": "中登网", "reference": "D-1"}])
    api.ok(w["bank"]["api"].post(f"/v1/pledges/{done['id']}/release"))  # released: terminal
    for pid, path, body in (
            (filed["id"], "release", {}),          # a state refusal for the bank would be pledge_not_confirmed
            (done["id"], "release", {}),           # ... and pledge_closed
            (done["id"], "extend", {"term_end": days(900)}),
            (done["id"], "claims", {"loan_contract": "x", "amount": "1.00", "term_end": days(9)}),
            (filed["id"], "enforcement/cancel", {})):
        _same_as_unknown(stranger["api"].post(f"/v1/pledges/{pid}/{path}", body),
                         stranger["api"].post(f"/v1/pledges/99999/{path}", body), pid, 99999)
    for pid, path in ((filed["id"], "confirm"), (done["id"], "decline"), (done["id"], "top-up")):
        body = {"quantity": "1"} if path == "top-up" else {}
        _same_as_unknown(other_owner["api"].post(f"/v1/pledges/{pid}/{path}", body),
                         other_owner["api"].post(f"/v1/pledges/99999/{path}", body), pid, 99999)
    # A claim: its claimant and the lot's parties see it; another bank is told it does not exist.
    p = _active(api, w, "10", references=[{"source": "中登网", "reference": "D-2"}])
    cid = api.ok(w["junior"]["api"].post(f"/v1/pledges/{p['id']}/claims", {
        "loan_contract": "J", "amount": "1.00", "term_end": days(9)}))["id"]
    _same_as_unknown(stranger["api"].post(f"/v1/pledges/claims/{cid}/release"),
                     stranger["api"].post("/v1/pledges/claims/99999/release"), cid, 99999)
    _same_as_unknown(other_owner["api"].post(f"/v1/pledges/claims/{cid}/confirm"),
                     other_owner["api"].post("/v1/pledges/claims/99999/confirm"), cid, 99999)
    # The pledgee may see the claim but not confirm it: a party in the wrong role is 403.
    r = w["bank"]["api"].post(f"/v1/pledges/claims/{cid}/release")
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")


def test_public_search_matches_whole_names_and_lists_junior_registrations(api: Api) -> None:
    w = world(api, "1000")
    court = w["court"]
    names = ["成都市锦江区环保科技有限公司", "成都市青羊区林业合作社", "成都绿色 Carbon 有限公司"]
    holders = [api.participant(n, "enterprise", uscc=uscc(f"91510100MA6C{i:05d}")) for i, n in enumerate(names)]
    for i, h in enumerate(holders):
        api.issue(w["issuer"]["api"], h["id"], "FCT-SM", "10", ticket(i + 10))
        api.ok(court["api"].post("/v1/freezes", {
            "holder_id": h["id"], "holder_identifier": h["uscc"], "instrument": "FCT-SM", "quantity": "1",
            "case_number": f"(2025)川01执{i}号",
            "notice_number": f"N-{i}", "term_start": days(0), "term_end": days(30)}))
    anon = api.client

    def hits(kind: str, **q: object) -> list[dict]:
        r = anon.get(f"/v1/public/{kind}", params=q)
        assert r.status_code == 200, r.text
        return r.json()["certificate"]["results"]

    assert hits("freezes", name="成都") == []  # two characters of a name match nothing
    assert hits("freezes", name="成都市") == [] and hits("freezes", name="林业合作社") == []
    assert [f["holder"] for f in hits("freezes", name="成都市青羊区林业合作社")] == ["成都市青羊区林业合作社"]
    # The same whole name, typed with full-width letters, extra spaces or another case, still matches.
    assert len(hits("freezes", name="  成都绿色   ｃａｒｂｏｎ 有限公司 ")) == 1
    assert len(hits("freezes", uscc="91510100ma6c00001q")) == 1
    assert hits("freezes", name="成都绿色 Carbon") == []

    # A confirmed junior registration ranks on the lot and is listed with it (no amounts).
    p = _active(api, w, "300")
    cid = api.ok(w["junior"]["api"].post(f"/v1/pledges/{p['id']}/claims", {
        "loan_contract": "三明农商借字2021-77", "amount": "400000.00", "term_end": days(200),
        "reference": "07783201000299999999"}))["id"]
    filed_only = api.participant("未确认的银行", "bank")
    api.ok(filed_only["api"].post(f"/v1/pledges/{p['id']}/claims", {
        "loan_contract": "x", "amount": "1.00", "term_end": days(200)}))
    assert len(hits("pledges", name="三明市沙县林业合作社")) == 1  # not yet confirmed: not registered
    api.ok(w["owner"]["api"].post(f"/v1/pledges/claims/{cid}/confirm"))
    for q in ({"name": "三明市沙县林业合作社"}, {"serial": 150, "instrument": "FCT-SM"}):
        rows = hits("pledges", **q)
        assert [(r["type"], r["rank_on_lot"], r["pledgee"]) for r in rows] == [
            ("pledge", 1, "兴业银行三明分行"), ("junior_claim", 2, "三明农村商业银行")], rows
        junior = rows[1]
        assert junior["lot_registration_number"] == p["number"] and junior["quantity"] == "300"
        assert junior["serials"] == [{"start": 1, "end": 300}] and junior["term_end"] == days(200)
        assert junior["references"] == [{"source": "claim", "reference": "07783201000299999999"}]
        flat = json.dumps(rows, ensure_ascii=False)
        assert "400000" not in flat and "三明农商借字" not in flat and "5000000" not in flat


def test_webhook_failures_are_reported_without_transport_text(api: Api) -> None:
    import socket

    w = world(api, "100")
    bank, owner = w["bank"], w["owner"]
    with socket.socket() as s:  # a port with nobody listening (allowed host 127.0.0.1 in these tests)
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    api.ok(bank["api"].client.put("/v1/pledges/webhook", json={"url": f"http://127.0.0.1:{closed}/x"},
                                  headers={"Authorization": f"Bearer {bank['token']}", "Idempotency-Key": "h"}))
    p = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "10")))
    api.ok(owner["api"].post(f"/v1/pledges/{p['id']}/confirm"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        d = api.ok(bank["api"].get("/v1/pledges/webhook"))["deliveries"]
        if d and d[0]["attempts"] >= 1 and d[0]["last_error"]:
            break
        time.sleep(0.1)
    assert d[0]["last_error"] == "connect_failed", d
    stored = sql(api.client, "SELECT last_error FROM pledge_outbox")
    assert {r.last_error for r in stored} == {"connect_failed"}  # no "Connection refused", no errno
    with Receiver(fail=100) as rx:  # the receiver answers 503
        api.ok(bank["api"].client.put("/v1/pledges/webhook", json={"url": rx.url},
                                      headers={"Authorization": f"Bearer {bank['token']}", "Idempotency-Key": "h2"}))
        api.ok(bank["api"].post(f"/v1/pledges/{p['id']}/extend", {"term_end": days(500)}))
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and rx.hits == 0:
            time.sleep(0.05)
        time.sleep(0.3)
    reasons = {x["event_type"]: x["last_error"] for x in api.ok(bank["api"].get("/v1/pledges/webhook"))["deliveries"]}
    assert reasons["extended"] == "http_status:503"
