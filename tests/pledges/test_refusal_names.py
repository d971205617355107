"""Refusals say why (issue #14): named serials that are pledged, frozen or held by an order are refused
naming the registration, the court's case or the order -- to their holder, who may know them; a stranger
learns nothing more. Retired serials are refused at filing, saying so."""

from __future__ import annotations

from tests.helpers import Api, ticket
from tests.pledges.helpers import OWNER_USCC, days, pledge_body, world


def test_refusals_name_the_encumbrance_to_the_holder_only(api: Api) -> None:
    w = world(api, "200")
    owner, bank, court, buyer = w["owner"], w["bank"], w["court"], w["buyer"]
    p = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "50", serials=[{"start": 1, "end": 50}])))
    p = api.ok(owner["api"].post(f"/v1/pledges/{p['id']}/confirm"))
    api.ok(court["api"].post("/v1/freezes", {
        "holder_id": owner["id"], "holder_identifier": OWNER_USCC, "instrument": "FCT-SM", "quantity": "10",
        "serials": [{"start": 51, "end": 60}],
        "case_number": "(2025)闽0402执12号", "notice_number": "N-12",
        "term_start": days(0), "term_end": days(90)}))
    api.ok(api.post("/v1/markets", {"instrument": "FCT-SM", "mode": "listing",
                                     "settings": {"sessions": [], "reference_price_fen": 10000}}))
    api.ok(api.post("/v1/markets/FCT-SM.listing/session", {"action": "open"}))
    listing = api.ok(owner["api"].post("/v1/markets/FCT-SM.listing/listings", {
        "side": "sell", "price": "100.00", "quantity": "10"}))["order"]["id"]  # holds 61-70, the lowest free

    def move(start: int, end: int) -> dict:
        r = owner["api"].post("/v1/transfers", {"to_participant": buyer["id"], "instrument": "FCT-SM",
                                                "quantity": str(end - start + 1),
                                                "serials": [{"start": start, "end": end}]})
        assert r.status_code == 409, r.text
        return r.json()

    pledged = move(1, 5)
    assert p["number"] in pledged["detail"] and "兴业银行三明分行" in pledged["detail"]
    assert pledged["encumbrances"] == [{"start": 1, "end": 5, "encumbrance": "pledge",
                                        "registration_number": p["number"], "pledgee": "兴业银行三明分行"}]
    frozen = move(51, 55)
    assert "三明市中级人民法院" in frozen["detail"] and "(2025)闽0402执12号" in frozen["detail"]
    assert frozen["encumbrances"][0]["encumbrance"] == "freeze"
    held = move(61, 65)
    assert f"order {listing}" in held["detail"] and "FCT-SM.listing" in held["detail"]
    mixed = move(45, 64)
    assert [x["encumbrance"] for x in mixed["encumbrances"]] == ["pledge", "freeze", "order"]
    # Retirement of named serials is refused the same way; the serials' holder is told, nothing else.
    r = owner["api"].post("/v1/retirements", {"instrument": "FCT-SM", "quantity": "2", "purpose": "voluntary",
                                              "beneficiary": "x", "serials": [{"start": 10, "end": 11}]})
    assert r.status_code == 409 and p["number"] in r.json()["detail"]
    # The pledgor confirming a second pledge over its frozen units is told which case froze them.
    q = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "5", references=[],
                                                           serials=[{"start": 56, "end": 60}])))
    r = owner["api"].post(f"/v1/pledges/{q['id']}/confirm")
    assert r.status_code == 409 and "(2025)闽0402执12号" in r.json()["detail"], r.text
    # Units not in the holder's account are only said to be elsewhere -- not whose they are.
    api.issue(w["issuer"]["api"], buyer["id"], "FCT-SM", "10", ticket(99))
    theirs = move(201, 202)
    assert theirs["encumbrances"] == [{"start": 201, "end": 202, "encumbrance": "elsewhere"}]
    assert "买" not in theirs["detail"] and "成都" not in theirs["detail"]
    # A stranger -- a court freezing named units a pledge and a freeze already hold -- learns nothing more.
    other = api.participant("南靖县人民法院", "court")
    r = other["api"].post("/v1/freezes", {"holder_id": owner["id"], "holder_identifier": OWNER_USCC,
                                          "instrument": "FCT-SM", "quantity": "10",
                                          "serials": [{"start": 51, "end": 60}], "case_number": "(2025)闽0627执1号",
                                          "notice_number": "N-1", "term_start": days(0), "term_end": days(30)})
    assert r.status_code == 409 and "encumbrances" not in r.json()
    assert "(2025)闽0402执12号" not in r.json()["detail"] and p["number"] not in r.json()["detail"]


def test_filing_on_retired_serials_is_refused_at_filing(api: Api) -> None:
    w = world(api, "100")
    owner, bank = w["owner"], w["bank"]
    api.ok(owner["api"].post("/v1/retirements", {"instrument": "FCT-SM", "quantity": "5", "purpose": "voluntary",
                                                 "beneficiary": "三明市碳中和活动",
                                                 "serials": [{"start": 95, "end": 99}]}))
    r = bank["api"].post("/v1/pledges", pledge_body(owner["id"], "10", serials=[{"start": 91, "end": 100}]))
    body = r.json()
    assert (r.status_code, body["code"]) == (409, "serials_retired"), r.text
    assert "95-99" in body["detail"] and "retired" in body["detail"]
    assert [(x["start"], x["end"]) for x in body["retired"]] == [(95, 99)]
    # No registration number was handed out for it.
    assert api.ok(bank["api"].get("/v1/pledges")) == []
