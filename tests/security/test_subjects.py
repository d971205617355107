"""Participant subjects: organisations with a GB 32100-checked USCC, natural persons with a private identity
document (GB 11643 check digit for a 居民身份证); non-ASCII look-alikes refused; duplicates refused twice."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st
from litestar.testing import TestClient

from exchange.core.errors import DomainError
from exchange.registry.subjects import (
    USCC_CHARSET,
    check_resident_id,
    check_uscc,
    resident_id_check_character,
    uscc_check_character,
)
from tests.helpers import Api, checker_token, ticket
from tests.security.helpers import sql

# Published examples: GB 32100-2015's own, and the sample number printed in GB 11643-1999.
USCC = "91350100M000100Y43"
RESIDENT_ID = "11010519491231002X"

_body17 = st.tuples(st.sampled_from(USCC_CHARSET[1:]), st.sampled_from(USCC_CHARSET),
                    st.text("0123456789", min_size=6, max_size=6),
                    st.text(USCC_CHARSET, min_size=9, max_size=9)).map("".join)


def _code(exc: pytest.ExceptionInfo[DomainError]) -> tuple[int, str]:
    return exc.value.status, exc.value.code


def test_known_check_characters() -> None:
    assert check_uscc(USCC) == USCC and uscc_check_character(USCC[:17]) == "3"
    assert check_resident_id(RESIDENT_ID) == RESIDENT_ID and resident_id_check_character(RESIDENT_ID[:17]) == "X"


@given(_body17, st.integers(0, 17), st.sampled_from(USCC_CHARSET))
def test_any_single_mistyped_uscc_character_is_caught(body: str, pos: int, other: str) -> None:
    code = body + uscc_check_character(body)
    assert check_uscc(code) == code
    typo = code[:pos] + other + code[pos + 1:]
    if typo != code:  # 31 is prime and no weight is 0 mod 31: every substitution changes the sum
        with pytest.raises(DomainError) as exc:
            check_uscc(typo)
        assert _code(exc)[0] == 422 and _code(exc)[1] in ("uscc_check_failed", "invalid_uscc")


@given(st.dates(date(1900, 1, 1), date(2020, 12, 31)), st.text("0123456789", min_size=9, max_size=9),
       st.integers(0, 16), st.sampled_from("0123456789"))
def test_any_single_mistyped_id_digit_is_caught(born: date, rest: str, pos: int, other: str) -> None:
    body = rest[:6] + born.strftime("%Y%m%d") + rest[6:9]
    number = body + resident_id_check_character(body)
    assert check_resident_id(number) == number
    typo = number[:pos] + other + number[pos + 1:]
    if typo != number:
        with pytest.raises(DomainError) as exc:
            check_resident_id(typo)
        assert exc.value.code in ("id_document_check_failed", "invalid_id_document")


@pytest.mark.parametrize(("uscc", "code"), [
    ("９１３５０１００Ｍ０００１００Ｙ４３", "invalid_uscc"),     # full-width
    ("٩١350100M000100Y43", "invalid_uscc"),                        # Arabic-Indic digits
    ("91350100M000100Y4" + "\u0663", "invalid_uscc"),              # one look-alike at the end
    ("91350100m000100y43", "invalid_uscc"),                         # lower case
    ("91350100M000100Y4", "invalid_uscc"),                          # 17 characters
    ("91350100M0001O0Y43", "invalid_uscc"),                         # O is not in the character set
    ("91350100M000100Y44", "uscc_check_failed"),                    # wrong check character
])
def test_bad_usccs_are_refused_with_a_code_and_nothing_is_stored(api: Api, client: TestClient, uscc: str,
                                                                 code: str) -> None:
    r = api.propose("/v1/participants", {"name": "三明市林业局", "kind": "issuer", "uscc": uscc})
    assert (r.status_code, r.json()["code"]) == (422, code), r.text
    assert sql(client, "SELECT count(*) FROM operator_actions")[0][0] == 0
    assert sql(client, "SELECT count(*) FROM participants WHERE uscc IS NOT NULL")[0][0] == 0


def test_a_duplicate_uscc_is_refused_at_proposal_and_again_at_approval(api: Api, client: TestClient) -> None:
    checker = api.as_(checker_token(client))
    body = {"name": "福建省三明市林业局", "kind": "issuer", "uscc": USCC}
    a = api.propose("/v1/participants", body)
    b = api.propose("/v1/participants", {**body, "name": "同一家, 另一次申请"})  # both pass: neither exists yet
    assert a.status_code == b.status_code == 202
    assert checker.post(a.json()["approve"], {}).status_code == 200
    r = checker.post(b.json()["approve"], {})  # the race: refused at approval
    assert (r.status_code, r.json()["code"]) == (409, "uscc_taken")
    assert api.ok(api.get(f"/v1/operator-actions/{b.json()['id']}"))["status"] == "failed"
    r = api.propose("/v1/participants", body)
    assert (r.status_code, r.json()["code"]) == (409, "uscc_taken")
    assert sql(client, "SELECT count(*) FROM participants WHERE uscc = :u", {"u": USCC})[0][0] == 1
    # The database holds the line too.
    with pytest.raises(Exception, match="participants_uscc_ascii"):
        sql(client, "UPDATE participants SET uscc = :w WHERE uscc = :u",
            {"w": "９１３５０１００Ｍ０００１００Ｙ４３", "u": USCC}, write=True)


FULL_WIDTH_ID = "１１０１０５１９４９１２３１００２Ｘ"
PERSON = {"subject": "person", "id_document": {"type": "resident_id_card", "number": RESIDENT_ID}}


@pytest.mark.parametrize(("body", "code"), [
    ({"subject": "person", "id_document": {"type": "resident_id_card", "number": "110105194912310021"}},
     "id_document_check_failed"),
    ({"subject": "person", "id_document": {"type": "resident_id_card", "number": FULL_WIDTH_ID}},
     "invalid_id_document"),
    ({"subject": "person", "id_document": {"type": "resident_id_card", "number": "11010519491331002X"}},
     "invalid_id_document"),  # month 13
    ({"subject": "person", "id_document": {"type": "resident_id_card", "number": "11010519491231002x"}},
     "invalid_id_document"),
    ({"subject": "person", "id_document": {"type": "passport", "number": "E12345678"}}, "invalid_id_document"),
    ({"subject": "person"}, "invalid_subject"),
    ({**PERSON, "uscc": USCC}, "invalid_subject"),
    ({"subject": "organisation", "id_document": PERSON["id_document"]}, "invalid_subject"),
])
def test_bad_person_documents_are_refused(api: Api, body: dict, code: str) -> None:
    r = api.propose("/v1/participants", {"name": "张三", "kind": "enterprise", **body})
    assert (r.status_code, r.json()["code"]) == (422, code), r.text


def test_a_person_is_an_enterprise_kind_holder_only(api: Api) -> None:
    r = api.propose("/v1/participants", {"name": "张三", "kind": "bank", **PERSON})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_subject")


def test_a_persons_document_is_private_and_unique(api: Api, client: TestClient) -> None:
    person = api.participant("林某某", "enterprise", **PERSON)
    assert "id_document" not in api.propose("/v1/participants", {"name": "x", "kind": "enterprise",
                                                                 **PERSON}).json().get("summary", "")
    # Unique: at proposal, and (race) at approval.
    r = api.propose("/v1/participants", {"name": "林某某 (again)", "kind": "enterprise", **PERSON})
    assert (r.status_code, r.json()["code"]) == (409, "id_document_taken")
    passport = {"subject": "person", "id_document": {"type": "passport", "country": "CHN", "number": "E12345678"}}
    a = api.propose("/v1/participants", {"name": "王某", "kind": "enterprise", **passport})
    b = api.propose("/v1/participants", {"name": "王某某", "kind": "enterprise", **passport})
    checker = api.as_(checker_token(client))
    assert checker.post(a.json()["approve"], {}).status_code == 200
    r = checker.post(b.json()["approve"], {})
    assert (r.status_code, r.json()["code"]) == (409, "id_document_taken")
    same_number_other_state = {"subject": "person", "id_document": {"type": "passport", "country": "FRA",
                                                                    "number": "E12345678"}}
    assert api.propose("/v1/participants", {"name": "Dupont", "kind": "enterprise",
                                            **same_number_other_state}).status_code == 202
    # Visible to operators, auditors and the person itself.
    auditor = api.participant("审计署", "auditor")
    for viewer in (api, auditor["api"], person["api"]):
        record = viewer.ok(viewer.get(f"/v1/participants/{person['id']}"))
        assert record["subject"] == "person" and record["id_document"]["number"] == RESIDENT_ID
        listed = viewer.ok(viewer.get("/v1/participants"))
        assert RESIDENT_ID in str([p.get("id_document") for p in listed if p["id"] == person["id"]])
    # Nowhere else: not to another participant, not in public answers, not in others' listings.
    other = api.participant("别的企业", "enterprise")
    assert other["api"].get(f"/v1/participants/{person['id']}").status_code in (403, 404)
    assert RESIDENT_ID not in other["api"].get("/v1/participants").text
    api.instrument("FCT-P")
    issuer = api.participant("三明市林业局", "issuer")
    api.issue(issuer["api"], person["id"], "FCT-P", "5", ticket(1))
    assert person["api"].post("/v1/retirements", {"instrument": "FCT-P", "quantity": "2", "purpose": "voluntary",
                                                  "beneficiary": "林某某"}).status_code == 201
    public = [client.get("/v1/public/retirements", params={"name": "林某某"}),
              client.get("/v1/public/retirements", params={"serial": 1})]
    assert any("林某某" in r.text for r in public)  # the name is public (judgments name defendants)
    for r in public:
        assert r.status_code == 200 and RESIDENT_ID not in r.text and "id_document" not in r.text
    holdings = issuer["api"].get("/v1/holdings", participant_id=person["id"])
    assert RESIDENT_ID not in holdings.text
