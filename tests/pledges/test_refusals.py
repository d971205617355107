"""Every refusal has a code and a clear message: bad references, wrong roles, expired registrations."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import text

from tests.helpers import Api
from tests.pledges.helpers import days, pledge_body, world


def refused(resp, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    body = resp.json()
    assert (resp.status_code, body.get("code")) == (status, code), resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert body["detail"] and len(body["detail"]) > 10  # a sentence, not just the code
    return body


def test_bad_references_and_inputs_are_refused(api: Api) -> None:
    w = world(api, "100")
    bank, owner = w["bank"]["api"], w["owner"]
    ok = api.ok(bank.post("/v1/pledges", pledge_body(owner["id"], "10")))
    cases = [
        (pledge_body(99999, "10"), 404, "not_found"),  # unknown pledgor
        (pledge_body(owner["id"], "10", instrument="NOPE"), 404, "not_found"),  # unknown instrument
        (pledge_body(owner["id"], "10", instrument="CNY"), 422, "not_pledgeable"),  # wrong instrument: cash
        (pledge_body(owner["id"], "10"), 409, "duplicate_reference"),  # same 中登网 number again
        # One number twice in one request is malformed (422), not a conflict with another registration.
        (pledge_body(owner["id"], "10", references=[{"source": "中登网", "reference": "0778320100029999"}] * 2), 422,
         "reference_named_twice"),
        # A participant that cannot pledge, or named with a wrong identifier: as unknown (no kind, no name).
        (pledge_body(w["court"]["id"], "10", references=[]), 404, "not_found"),
        (pledge_body(owner["id"], "10", references=[], pledgor_identifier="91350427MA2XY81240"), 404, "not_found"),
        (pledge_body(w["bank"]["id"], "10", references=[]), 422, "invalid_pledgor"),  # the bank itself
        (pledge_body(owner["id"], "1.5", references=[]), 422, "off_grid"),
        (pledge_body(owner["id"], "10", references=[], serials=[{"start": 1, "end": 9}]), 422,
         "serials_amount_mismatch"),
        (pledge_body(owner["id"], "10", references=[], secured_amount="0.001"), 422, "off_grid"),
        (pledge_body(owner["id"], "10", references=[], term_start=days(-400), term_end=days(-1)), 422, "term_ended"),
        (pledge_body(owner["id"], "10", references=[], term_end=days(-1)), 422, "invalid_term"),
        (pledge_body(owner["id"], "10", references=[], warning_bps=10000, margin_call_bps=11000), 422,
         "invalid_thresholds"),
        (pledge_body(owner["id"], "10", references=[], surprise=1), 422, "validation_error"),
    ]
    for body, status, code in cases:
        refused(bank.post("/v1/pledges", body), status, code)
    # Roles: only banks file, only the pledgor confirms, only the pledgee releases.
    r = owner["api"].post("/v1/pledges", pledge_body(owner["id"], "1", references=[]))
    assert r.status_code == 403 and r.json()["code"] in ("forbidden", "role_forbidden")  # the role matrix
    # Who may not see the registration is told what an unknown id is told; a party in the wrong role 403.
    refused(w["buyer"]["api"].post(f"/v1/pledges/{ok['id']}/confirm"), 404, "not_found")
    refused(w["junior"]["api"].post(f"/v1/pledges/{ok['id']}/withdraw"), 404, "not_found")
    # The party check comes before the state check: the pledgor is not the buyer (and nothing is on sale).
    refused(owner["api"].post(f"/v1/pledges/{ok['id']}/enforcement/accept", {"price": "1.00"}), 403, "forbidden")
    refused(bank.post(f"/v1/pledges/{ok['id']}/release"), 409, "pledge_not_confirmed")
    refused(bank.post("/v1/pledges/999/release"), 404, "not_found")
    # Idempotency: the same key and body replays; the same key with another body is refused.
    a = api.ok(bank.post("/v1/pledges", pledge_body(owner["id"], "5", references=[]), key="file-1"))
    b = api.ok(bank.post("/v1/pledges", pledge_body(owner["id"], "5", references=[]), key="file-1"))
    assert a["id"] == b["id"]
    refused(bank.post("/v1/pledges", pledge_body(owner["id"], "6", references=[]), key="file-1"), 409,
            "idempotency_conflict")
    refused(bank.post("/v1/pledges", pledge_body(owner["id"], "6", references=[]), key=None), 422,
            "idempotency_key_required")
    # The pledgor confirms once; a second confirmation with a new key is a state refusal, not a second lock.
    c1 = api.ok(owner["api"].post(f"/v1/pledges/{a['id']}/confirm", key="c-1"))
    assert api.ok(owner["api"].post(f"/v1/pledges/{a['id']}/confirm", key="c-1"))["hold_id"] == c1["hold_id"]
    refused(owner["api"].post(f"/v1/pledges/{a['id']}/confirm", key="c-2"), 409, "pledge_not_filed")
    # Enforcement input (each with a declared default, so the input is what is judged).
    notice = {"reference": "违通-1", "notice_date": days(0)}
    refused(bank.post(f"/v1/pledges/{a['id']}/enforcement", {"method": "sale", "reason": "x", "price": "1.00",
                                                              "default_notice": notice}), 422, "sale_terms_required")
    refused(bank.post(f"/v1/pledges/{a['id']}/enforcement", {"method": "transfer", "reason": "x",
                                                              "default_notice": notice}), 409, "transfer_not_agreed")
    refused(bank.post(f"/v1/pledges/{a['id']}/enforcement", {"method": "sale", "reason": "x", "price": "1.00",
                                                              "buyer_id": owner["id"], "default_notice": notice}), 422,
            "invalid_buyer")
    refused(bank.post(f"/v1/pledges/{a['id']}/enforcement", {"method": "exchange", "reason": "x",
                                                              "outstanding": "1.00", "claim": {"principal": "1.00"},
                                                              "default_notice": notice}), 422, "ambiguous_claim")
    refused(bank.post(f"/v1/pledges/{a['id']}/enforcement", {"method": "exchange", "reason": "x", "default_notice": {
        "reference": "违通-2", "notice_date": days(3)}}), 422, "invalid_notice_date")
    # None of the refusals above left a declaration behind (one transaction each).
    assert api.ok(bank.get(f"/v1/pledges/{a['id']}"))["declared_default"] is None
    # Public inquiry needs a query.
    refused(api.client.get("/v1/public/pledges"), 422, "query_required")


def test_expired_registrations_are_refused_and_swept(api: Api) -> None:
    w = world(api, "100")
    bank, owner = w["bank"]["api"], w["owner"]["api"]
    rt = api.client.app.state.rt
    late = api.ok(bank.post("/v1/pledges", pledge_body(w["owner"]["id"], "10", references=[])))
    soon = api.ok(bank.post("/v1/pledges", pledge_body(w["owner"]["id"], "10",
                                                       references=[{"source": "中登网", "reference": "S"}])))

    async def expire_in(pledge_id: int, seconds: float) -> None:
        # Terms are whole days; to see an expiry within a test, move this filing's expiry close.
        async with rt.tx() as conn:
            await conn.execute(text("UPDATE pledges SET expires_at = :t WHERE id = :i"),
                               {"t": datetime.now(UTC) + timedelta(seconds=seconds), "i": pledge_id})

    api.client.blocking_portal.call(expire_in, late["id"], -1)
    refused(owner.post(f"/v1/pledges/{late['id']}/confirm"), 409, "pledge_expired")
    api.client.blocking_portal.call(expire_in, soon["id"], 1.0)
    p = api.ok(owner.post(f"/v1/pledges/{soon['id']}/confirm"))
    assert p["status"] == "active" and api.ok(owner.get("/v1/holdings"))["balances"][0]["available"] == "90"
    # A sale offered but not accepted before the expiry lapses with the registration (at the day's close).
    api.ok(api.post("/v1/pledges/revaluations", {"reason": "valuation report",
                                                 "instrument": "FCT-SM", "price": "1.00", "as_of": days(0)}))
    api.ok(bank.post(f"/v1/pledges/{soon['id']}/enforcement", {"method": "sale", "reason": "x", "price": "1.00",
                                                               "buyer_id": w["buyer"]["id"], "default_notice": {
                                                                   "reference": "违通-S", "notice_date": days(0)}}))
    time.sleep(1.2)
    refused(w["buyer"]["api"].post(f"/v1/pledges/{soon['id']}/enforcement/accept", {"price": "1.00"}), 409,
            "pledge_expired")
    swept = api.ok(api.post("/v1/pledges/expiry-sweeps", {}))
    # The filing never confirmed lapses with its term (nothing was locked); the active one expires.
    assert swept["pledges_expired"] == [late["id"], soon["id"]]
    assert api.ok(bank.get(f"/v1/pledges/{late['id']}"))["status"] == "expired"
    p = api.ok(bank.get(f"/v1/pledges/{soon['id']}"))
    assert p["status"] == "expired" and p["blocks"] == []
    assert api.ok(owner.get("/v1/holdings"))["balances"][0]["available"] == "100"
    refused(bank.post(f"/v1/pledges/{soon['id']}/release"), 409, "pledge_expired")
    refused(bank.post(f"/v1/pledges/{soon['id']}/extend", {"term_end": days(900)}), 409, "pledge_expired")
    assert api.ok(api.post("/v1/pledges/expiry-sweeps", {}))["pledges_expired"] == []
