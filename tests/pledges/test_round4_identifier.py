"""Red team round 4, F8: naming a participant by id and identifier is no oracle for the identifier.
A wrong identifier is the same 404 as an unknown id, every such miss is a row in the security audit chain
(never the identifier tried), and after ENVX_IDENTIFIER_MISMATCHES_PER_DAY (5) misses in a day a caller's
further identified requests are refused -- the right identifier too, so the refusal tells nothing."""

from __future__ import annotations

from datetime import date, timedelta

from tests.helpers import Api, person, resident_id, ticket
from tests.pledges.helpers import days

ZHANG_SAN = resident_id("11010119900307001")


def filing(pledgor: int, identifier: str, n: int) -> dict:
    return {"pledgor_id": pledgor, "pledgor_identifier": identifier, "instrument": "FCT-SM", "quantity": "1",
            "loan_contract": f"probe-{n}", "secured_amount": "1.00", "term_start": days(0), "term_end": days(365)}


def mismatches(api: Api, actor: str) -> list[dict]:
    return api.ok(api.get("/v1/audit/events", limit=1000, operation="identifier_mismatch", actor=actor))


def test_identifier_guesses_are_audited_and_cut_off_for_the_day(api: Api) -> None:
    api.instrument("FCT-SM")
    issuer = api.participant("三明市林业局", "issuer")
    zhang = api.participant("张三", "enterprise", **person(ZHANG_SAN))
    api.issue(issuer["api"], zhang["id"], "FCT-SM", "10", ticket(1))
    bank = api.participant("成都农商银行", "bank")
    other = api.participant("兴业银行成都分行", "bank")
    guesses = [resident_id(f"110101199003{d:02d}001") for d in range(1, 10)]
    guesses = [g for g in guesses if g != ZHANG_SAN][:3]
    # Wrong guesses: the same 404 as a participant that does not exist; each of them is audited.
    for n, guess in enumerate(guesses):
        r = bank["api"].post("/v1/pledges", filing(zhang["id"], guess, n))
        assert (r.status_code, r.json()["code"]) == (404, "not_found"), r.text
    for n in range(2):
        r = bank["api"].post("/v1/pledges", filing(10**6 + n, guesses[0], n))
        assert (r.status_code, r.json()["code"]) == (404, "not_found"), r.text
    rows = mismatches(api, f"participant:{bank['id']}")
    assert len(rows) == 5
    assert sorted(r["detail"]["participant_id"] for r in rows) == [zhang["id"]] * 3 + [10**6, 10**6 + 1]
    assert all(r["detail"]["operation"] == "filePledge" and r["outcome"] == "refused" for r in rows)
    assert not any(g in str(rows) for g in guesses)  # the identifier tried is never written down
    # Now even the right identifier is refused to this bank for the day: nothing tells which was right.
    right = bank["api"].post("/v1/pledges", filing(zhang["id"], ZHANG_SAN, 99))
    wrong = bank["api"].post("/v1/pledges", filing(zhang["id"], guesses[0], 98))
    assert (right.status_code, right.json()["code"]) == (409, "identifier_attempts_exceeded")
    assert (wrong.status_code, wrong.json()["code"], wrong.json()["detail"]) == (
        409, "identifier_attempts_exceeded", right.json()["detail"])
    assert len(mismatches(api, f"participant:{bank['id']}")) == 5  # refused before any lookup
    # Another bank is not affected, and the right identifier files as before.
    assert other["api"].post("/v1/pledges", filing(zhang["id"], ZHANG_SAN, 1)).status_code == 201
    assert mismatches(api, f"participant:{other['id']}") == []


def test_courts_are_limited_the_same_way_on_freezes_and_restoration_orders(api: Api) -> None:
    api.instrument("FCT-SM")
    issuer = api.participant("三明市林业局", "issuer")
    zhang = api.participant("张三", "enterprise", **person(ZHANG_SAN))
    api.issue(issuer["api"], zhang["id"], "FCT-SM", "10", ticket(1))
    court = api.participant("成都市中级人民法院", "court")
    freeze = {"holder_id": zhang["id"], "instrument": "FCT-SM", "quantity": "1", "case_number": "(2026)川01执1号",
              "notice_number": "协执-1", "term_start": days(0), "term_end": days(365)}
    order = {"case_number": "(2026)川01刑12号", "case_type": "刑事", "defendants": [{"name": "张三"}],
             "payer_id": zhang["id"], "required_quantity": "1", "eligible_kinds": ["forest_ticket"],
             "deadline": (date.today() + timedelta(days=90)).isoformat()}
    for n in range(3):
        r = court["api"].post("/v1/freezes", {**freeze, "holder_identifier": resident_id(f"1101011990030{n}002"),
                                              "notice_number": f"协执-x{n}"})
        assert r.status_code == 404, r.text
    for n in range(2):
        r = court["api"].post("/v1/restoration-orders", {**order, "payer_identifier": resident_id(
            f"1101011990031{n}002"), "case_number": f"(2026)川01刑2{n}号"})
        assert r.status_code == 404, r.text
    rows = mismatches(api, f"participant:{court['id']}")
    assert sorted(r["detail"]["operation"] for r in rows) == ["createFreeze"] * 3 + ["createRestorationOrder"] * 2
    r = court["api"].post("/v1/freezes", {**freeze, "holder_identifier": ZHANG_SAN})
    assert (r.status_code, r.json()["code"]) == (409, "identifier_attempts_exceeded")
    r = court["api"].post("/v1/restoration-orders", {**order, "payer_identifier": ZHANG_SAN})
    assert (r.status_code, r.json()["code"]) == (409, "identifier_attempts_exceeded")
