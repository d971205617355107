"""Enrollment codes: split between two operators, both halves needed, single use, expiring, shown only to
their holders and never stored, logged or audited; a new code for an existing participant is four-eyes."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from api.app import create_app
from exchange.core.settings import Settings
from tests.helpers import Api, bootstrap_operator, checker_token
from tests.security.helpers import sql


def _admit(api: Api, client: TestClient, name: str = "成都集农农业科技发展有限公司",
           kind: str = "enterprise") -> dict[str, Any]:
    """Propose (first half, to the proposer) and approve (second half, to the approver); no enrollment."""
    proposal = api.propose("/v1/participants", {"name": name, "kind": kind})
    assert proposal.status_code == 202, proposal.text
    checker = api.as_(checker_token(client))
    approval = checker.post(proposal.json()["approve"], {})
    assert approval.status_code == 200, approval.text
    return {"proposal": proposal, "approval": approval, "id": approval.json()["result"]["id"],
            "first": proposal.json()["enrollment"]["first_half"],
            "second": approval.json()["enrollment"]["second_half"], "checker": checker}


def test_both_halves_are_needed_and_a_wrong_half_is_not_named(api: Api, client: TestClient) -> None:
    a = _admit(api, client)
    b = _admit(api, client, "成都天投蔚蓝生物科技有限公司")
    first, second = a["first"], a["second"]
    assert first.startswith("envxe1_") and second.startswith("envxe2_") and first != second
    assert first.split("_")[1] == second.split("_")[1]  # one code (its public handle), two halves
    wrong_secret = lambda h: h[:-4] + ("aaaa" if not h.endswith("aaaa") else "bbbb")  # noqa: E731
    attempts = {
        "first alone": (first, first),
        "second alone": (second, second),
        "wrong first": (wrong_secret(first), second),
        "wrong second": (first, wrong_secret(second)),
        "halves of two codes": (first, b["second"]),
        "garbage": ("x", "y"),
    }
    answers = {}
    for what, (x, y) in attempts.items():
        r = api.enroll(x, y)
        assert (r.status_code, r.json()["code"]) == (422, "invalid_enrollment_code"), (what, r.text)
        answers[what] = (r.json()["detail"], r.json()["title"])
    assert len(set(answers.values())) == 1  # the same words whichever half is wrong
    # Both, in either order: the participant's own first key.
    r = api.enroll(second, first)
    assert r.status_code == 201, r.text
    key = r.json()["key"]
    assert r.json()["participant_id"] == a["id"] and key["created_by"].startswith("enrollment:")
    assert key["parent_key_id"] is None
    me = Api(client, key["token"]).get("/v1/whoami").json()
    assert (me["participant_id"], me["key_id"]) == (a["id"], key["id"])


def test_a_code_is_single_use_and_a_retry_gets_the_original_answer(api: Api, client: TestClient) -> None:
    a = _admit(api, client)
    first = api.enroll(a["first"], a["second"], key="enroll-1", label="desk")
    assert first.status_code == 201
    again = api.enroll(a["first"], a["second"], key="enroll-1", label="desk")
    assert (again.status_code, again.content) == (201, first.content)  # byte for byte, the same key
    r = api.enroll(a["first"], a["second"], key="enroll-1", label="other desk")
    assert r.status_code == 409 and r.json()["code"] == "enrollment_code_used"
    r = api.enroll(a["first"], a["second"], key="enroll-2")
    assert (r.status_code, r.json()["code"]) == (409, "enrollment_code_used")
    keys = api.ok(api.get(f"/v1/participants/{a['id']}/keys"))
    assert [k["id"] for k in keys] == [first.json()["key"]["id"]]  # one key came of it
    codes = api.ok(api.get(f"/v1/participants/{a['id']}/enrollment-codes"))
    assert [c["status"] for c in codes] == ["used"] and codes[0]["key_id"] == keys[0]["id"]


@pytest.fixture
def short_codes(db_url: str, settings: Settings) -> Iterator[TestClient]:
    app = create_app(settings.model_copy(update={"enrollment_code_ttl_hours": 0.5}), db_url)
    with TestClient(app, raise_server_exceptions=False, timeout=60) as c:
        yield c


def test_a_code_expires_after_its_lifetime(short_codes: TestClient) -> None:
    api = Api(short_codes, bootstrap_operator(short_codes))
    a = _admit(api, short_codes)
    code = api.ok(api.get(f"/v1/participants/{a['id']}/enrollment-codes"))[0]
    row = sql(short_codes, "SELECT expires_at - completed_at AS ttl FROM enrollment_codes WHERE id = :i",
              {"i": code["id"]})[0]
    assert row.ttl.total_seconds() == 1800  # ENVX_ENROLLMENT_CODE_TTL_HOURS=0.5, from the second half
    assert code["status"] == "usable"
    sql(short_codes, "UPDATE enrollment_codes SET expires_at = now() - interval '1 second' WHERE id = :i",
        {"i": code["id"]}, write=True)
    r = api.enroll(a["first"], a["second"])
    assert (r.status_code, r.json()["code"]) == (409, "enrollment_code_expired")
    # Who does not hold both halves is not told that much.
    assert api.enroll(a["first"], a["first"]).json()["code"] == "invalid_enrollment_code"
    assert api.ok(api.get(f"/v1/participants/{a['id']}/enrollment-codes"))[0]["status"] == "expired"


def test_each_half_is_shown_only_to_its_operator(api: Api, client: TestClient) -> None:
    a = _admit(api, client)
    checker, action = a["checker"], a["proposal"].json()["id"]
    # The proposer's retry shows the same first half; the approver's retry the same second half.
    again = api.propose("/v1/participants", {"name": "x", "kind": "enterprise"},
                        key=a["proposal"].request.headers["idempotency-key"])
    assert again.status_code == 409  # another body under that key
    same = api.client.post("/v1/participants", json={"name": "成都集农农业科技发展有限公司", "kind": "enterprise"},
                           headers={"Authorization": f"Bearer {api.token}",
                                    "Idempotency-Key": a["proposal"].request.headers["idempotency-key"]})
    assert same.json()["enrollment"]["first_half"] == a["first"]
    assert checker.post(f"/v1/operator-actions/{action}/approve", {}).json()["enrollment"]["second_half"] == a["second"]
    # Nobody else: not the proposer approving again, not a third operator, not a listing or a GET.
    third = api.as_(bootstrap_operator(client, "第三位操作员"))
    r = api.post(f"/v1/operator-actions/{action}/approve", {})  # the proposer: refused whatever the state
    assert (r.status_code, r.json()["code"]) == (403, "forbidden") and a["second"] not in r.text
    r = third.post(f"/v1/operator-actions/{action}/approve", {})
    assert r.status_code == 200 and "enrollment" not in r.json() and a["second"] not in r.text
    seen = [api.get(f"/v1/operator-actions/{action}").text, api.get("/v1/operator-actions").text,
            api.get(f"/v1/participants/{a['id']}/enrollment-codes").text, api.get(f"/v1/participants/{a['id']}").text]
    for text in seen:
        assert a["first"] not in text and a["second"] not in text
        assert a["first"].split("_", 2)[2] not in text and a["second"].split("_", 2)[2] not in text


def test_codes_are_in_no_audit_row_table_or_log(api: Api, client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    a = _admit(api, client)
    token = api.enroll(a["first"], a["second"]).json()["key"]["token"]
    renewal = api.propose(f"/v1/participants/{a['id']}/enrollment-codes", {})
    approved = a["checker"].post(renewal.json()["approve"], {})
    secrets = [a["first"], a["second"], token, renewal.json()["enrollment"]["first_half"],
               approved.json()["enrollment"]["second_half"]]
    secrets += [s.split("_", 2)[2] for s in secrets]  # the secret parts alone, too (an API key's may hold "_")
    audit = api.ok(api.get("/v1/audit/events", limit=1000))
    enroll = [e for e in audit if e["operation"] == "enroll"]
    assert enroll and enroll[0]["detail"]["request"]["first_half"] == "<redacted>"
    key_id = api.ok(api.get(f"/v1/participants/{a['id']}/keys"))[0]["id"]
    assert enroll[0]["detail"]["answer"] == {"participant_id": a["id"], "key.id": key_id}
    dump = json.dumps(audit, ensure_ascii=False)
    for table in ("operator_actions", "enrollment_codes", "api_keys", "audit_log", "participants"):
        dump += json.dumps([str(tuple(r)) for r in sql(client, f"SELECT * FROM {table}")], ensure_ascii=False)
    dump += caplog.text
    for s in secrets:
        assert s not in dump


def test_a_new_code_for_an_existing_participant_needs_two_operators(api: Api, client: TestClient) -> None:
    ent = api.participant("四川远大蜀阳药业有限责任公司", "enterprise")
    old = api.ok(ent["api"].get("/v1/whoami"))["key_id"]
    api.ok(api.post(f"/v1/participants/{ent['id']}/keys/{old}/revoke", {}))  # lost: everything revoked
    assert ent["api"].get("/v1/whoami").status_code == 401
    p = api.propose(f"/v1/participants/{ent['id']}/enrollment-codes", {})
    assert p.status_code == 202 and p.json()["kind"] == "issueEnrollmentCode"
    first = p.json()["enrollment"]["first_half"]
    r = api.post(f"/v1/operator-actions/{p.json()['id']}/approve", {})
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = ent["api"].post(f"/v1/participants/{ent['id']}/enrollment-codes", {})
    assert r.status_code == 401  # and enterprises are not operators anyway
    checker = api.as_(checker_token(client))
    second = checker.post(p.json()["approve"], {}).json()["enrollment"]["second_half"]
    # A second code, approved later, cancels the first one while it is unused.
    p2 = api.propose(f"/v1/participants/{ent['id']}/enrollment-codes", {})
    second2 = checker.post(p2.json()["approve"], {}).json()["enrollment"]["second_half"]
    r = api.enroll(first, second)
    assert (r.status_code, r.json()["code"]) == (409, "enrollment_code_cancelled")
    new = api.enroll(p2.json()["enrollment"]["first_half"], second2)
    assert new.status_code == 201
    assert Api(client, new.json()["key"]["token"]).get("/v1/whoami").json()["participant_id"] == ent["id"]
    r = api.propose("/v1/participants/999999/enrollment-codes", {})
    assert (r.status_code, r.json()["code"]) == (404, "not_found")


def test_maker_checker_off_gives_one_operator_both_halves(db_url: str, settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"maker_checker": False}), db_url)
    with TestClient(app, raise_server_exceptions=False, timeout=60) as c:
        op = Api(c, bootstrap_operator(c))
        r = op.propose("/v1/participants", {"name": "bench", "kind": "enterprise"}, key="p1")
        assert r.status_code == 201
        code = r.json()["enrollment"]
        assert op.propose("/v1/participants", {"name": "bench", "kind": "enterprise"}, key="p1").content == r.content
        assert op.enroll(code["first_half"], code["second_half"]).status_code == 201
