"""公示查询 without a key: signed, timestamped certificates of pledges, freezes and retirements; no balances."""

from __future__ import annotations

import copy

from pledges import certificate
from tests.helpers import Api
from tests.pledges.helpers import OWNER_USCC, days, pledge_body, world


def test_public_inquiry_is_signed_and_shows_only_encumbrances(api: Api) -> None:
    w = world(api, "1000")
    owner, bank, court = w["owner"], w["bank"], w["court"]
    p = api.ok(bank["api"].post("/v1/pledges", pledge_body(owner["id"], "300")))
    api.ok(owner["api"].post(f"/v1/pledges/{p['id']}/confirm"))
    api.ok(court["api"].post("/v1/freezes", {
        "holder_id": owner["id"], "holder_identifier": OWNER_USCC, "instrument": "FCT-SM", "quantity": "20",
        "serials": [{"start": 901, "end": 920}],
        "case_number": "(2024)闽04执9号", "notice_number": "N-9", "term_start": days(0), "term_end": days(90)}))
    api.ok(owner["api"].post("/v1/retirements", {
        "instrument": "FCT-SM", "quantity": "5", "purpose": "voluntary", "beneficiary": "三明市碳中和活动",
        "serials": [{"start": 995, "end": 999}]}))
    anon = api.client
    key = anon.get("/v1/public/inquiry-key").json()["verifier_key"]

    by_name = anon.get("/v1/public/pledges", params={"name": "三明市沙县林业合作社"}).json()
    cert = by_name["certificate"]
    assert certificate.verify(by_name, key)
    assert cert["query"] == {"name": "三明市沙县林业合作社"} and cert["issued_at"] and cert["ledger_head"]["seq"] > 0
    [row] = cert["results"]
    assert row["pledgee"] == "兴业银行三明分行" and row["quantity"] == "300"
    assert row["serials"] == [{"start": 1, "end": 300}] and row["references"][0]["source"] == "中登网"
    # No balances, loan terms or amounts: only the encumbrance.
    flat = str(by_name)
    assert "secured" not in flat and "5000000" not in flat and "available" not in flat and "loan" not in flat
    # Tampering breaks the signature.
    forged = copy.deepcopy(by_name)
    forged["certificate"]["results"][0]["quantity"] = "3"
    assert not certificate.verify(forged, key)

    by_uscc = anon.get("/v1/public/pledges", params={"uscc": "91350427MA2XY8123J"}).json()
    assert [r["registration_number"] for r in by_uscc["certificate"]["results"]] == [p["number"]]
    by_serial = anon.get("/v1/public/pledges", params={"serial": 150, "instrument": "FCT-SM"}).json()
    assert len(by_serial["certificate"]["results"]) == 1
    assert anon.get("/v1/public/pledges", params={"serial": 301}).json()["certificate"]["results"] == []

    frz = anon.get("/v1/public/freezes", params={"serial": 905}).json()
    assert certificate.verify(frz, key)
    [f] = frz["certificate"]["results"]
    assert (f["court"], f["case_number"], f["quantity"]) == ("三明市中级人民法院", "(2024)闽04执9号", "20")
    assert "notice" not in str(f)

    ret = anon.get("/v1/public/retirements", params={"name": "三明市沙县林业合作社"}).json()
    assert certificate.verify(ret, key)
    [r] = ret["certificate"]["results"]
    assert (r["serial_start"], r["serial_end"], r["beneficiary"], r["purpose"]) == (995, 999, "三明市碳中和活动",
                                                                                    "voluntary")
    assert anon.get("/v1/public/retirements", params={"serial": 997}).json()["certificate"]["result_count"] == 1
    assert anon.get("/v1/public/retirements", params={"name": "无此人"}).json()["certificate"]["results"] == []
    assert anon.get("/v1/public/pledges", params={"name": "x"}).json()["code"] == "query_too_short"
