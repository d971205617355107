"""The request edge against bytes no client should send (issue #13): numbers in headers are ASCII digits,
every header we read is checked, the audit row of an administrative request cannot be skipped by anything
that fails before its handler, query strings are UTF-8, and operations without a body take none."""

from __future__ import annotations

import json
import time

import pytest
from litestar.testing import TestClient

from api.security import middleware
from tests.helpers import Api
from tests.security.helpers import raw_request, sql, trading_world

NONCE = "n" * 24
SIG = "A" * 86 + "=="  # base64 of 64 bytes


def _audit_rows(client: TestClient, operation: str) -> list[tuple[int, str]]:
    rows = sql(client, "SELECT status, detail FROM audit_log WHERE operation = :o ORDER BY seq", {"o": operation})
    return [(r.status, r.detail) for r in rows]


@pytest.mark.parametrize("fields", [
    b"keyid=\xb2,ts=%d," % int(time.time()),        # latin-1 superscript two: str.isdigit() says yes
    b"keyid=1,ts=\xb9\xb2,",                        # superscript one and two
    "keyid=١,ts=%d,".encode() % int(time.time()),   # Arabic-Indic one, as UTF-8
    b"keyid=1,ts=1\xbd,",                            # one and a half
], ids=["superscript-keyid", "superscript-ts", "arabic-indic-keyid", "fraction-ts"])  # fixed: every worker's ids
# must be the same (pytest-xdist), and the timestamps change from one second to the next
def test_a_signature_header_with_other_digits_is_refused_and_audited(api: Api, client: TestClient,
                                                                      fields: bytes) -> None:
    bank = api.participant("兴业银行三明分行", "bank")
    header = fields + f"nonce={NONCE},sig={SIG}".encode()
    before = len(_audit_rows(client, "suspendParticipant"))
    status, answer = raw_request(client, "POST", f"/v1/participants/{bank['id']}/suspend", [
        (b"authorization", f"Bearer {api.token}".encode()), (b"content-type", b"application/json"),
        (b"idempotency-key", b"sig-probe"), (b"x-envx-signature", header)], b'{"reason": "probe"}')
    assert (status, answer["code"]) == (401, "signature_malformed"), answer
    rows = _audit_rows(client, "suspendParticipant")
    assert len(rows) == before + 1 and rows[-1][0] == 401 and '"problem_code":"signature_malformed"' in rows[-1][1]
    assert api.ok(api.get(f"/v1/participants/{bank['id']}"))["status"] == "active"
    # A keyed mutation that is not administrative: the same 401, never a 500.
    status, answer = raw_request(client, "POST", "/v1/transfers", [
        (b"authorization", f"Bearer {bank['token']}".encode()), (b"content-type", b"application/json"),
        (b"idempotency-key", b"t"), (b"x-envx-signature", header)],
        b'{"to_participant": 1, "instrument": "X", "quantity": "1"}')
    assert (status, answer["code"]) == (401, "signature_malformed"), answer


def test_whatever_fails_before_the_handler_still_gets_its_audit_row(api: Api, client: TestClient,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Fault injection in the edge itself (not the database): a bug in the signature check is a 500,
    and the administrative attempt is in the trail with that status."""
    bank = api.participant("兴业银行三明分行", "bank")

    async def broken(*args: object, **kwargs: object) -> dict[str, object]:
        raise ValueError("a bug in a check before the handler")

    monkeypatch.setattr(middleware, "verify_and_record", broken)
    before = len(_audit_rows(client, "suspendParticipant"))
    r = client.post(f"/v1/participants/{bank['id']}/suspend", json={"reason": "probe"},
                    headers={"Authorization": f"Bearer {api.token}", "Idempotency-Key": "bug",
                             "X-Envx-Signature": f"keyid=1,ts=1,nonce={NONCE},sig={SIG}"})
    assert r.status_code == 500
    rows = _audit_rows(client, "suspendParticipant")
    assert len(rows) == before + 1 and rows[-1][0] == 500


def test_headers_in_other_bytes_are_refused(api: Api, client: TestClient) -> None:
    w = trading_world(api)
    seller = w["seller"]
    body = {"to_participant": w["buyer"]["id"], "instrument": "FCT-SEC", "quantity": "1"}
    for key in (b"k\xb2", "键".encode(), b"\xa7operator-action:1", b"tab\tkey"):
        status, answer = raw_request(client, "POST", "/v1/transfers", [
            (b"authorization", f"Bearer {seller['token']}".encode()), (b"content-type", b"application/json"),
            (b"idempotency-key", key)], json.dumps(body).encode())
        assert (status, answer["code"]) == (422, "invalid_idempotency_key"), (key, answer)
    for cid in ("键1", "\u00a7operator-action:1", "tab\there"):  # the same rule for a body's client_id
        r = seller["api"].post("/v1/transfers", {**body, "client_id": cid}, key=None)
        assert (r.status_code, r.json()["code"]) == (422, "invalid_idempotency_key"), (cid, r.text)
    # An administrative request refused for its key is in the trail.
    before = len(_audit_rows(client, "createKey"))
    status, answer = raw_request(client, "POST", f"/v1/participants/{seller['id']}/keys", [
        (b"authorization", f"Bearer {seller['token']}".encode()), (b"idempotency-key", b"\xff\xfe")], b"{}")
    assert (status, answer["code"]) == (422, "invalid_idempotency_key")
    assert [s for s, _ in _audit_rows(client, "createKey")][before:] == [422]
    # A token in other bytes is no token (401, not a look-up); a forwarded-for in other bytes is recorded.
    status, answer = raw_request(client, "GET", "/v1/whoami", [(b"authorization", b"Bearer envx_\xe9\xb2_x")])
    assert (status, answer["code"]) == (401, "unauthenticated")
    status, answer = raw_request(client, "POST", "/v1/participants", [
        (b"authorization", f"Bearer {api.token}".encode()), (b"x-forwarded-for", b"10.0.0.1, \xb2\xff"),
        (b"content-type", b"application/json"), (b"idempotency-key", b"xff")], b'{"name": "", "kind": "bank"}')
    assert status == 422
    row = sql(client, "SELECT forwarded_for FROM audit_log WHERE operation = 'createParticipant' ORDER BY seq DESC "
                      "LIMIT 1")[0]
    assert row.forwarded_for == "10.0.0.1, \u00b2\u00ff"  # recorded as sent (read as latin-1)
    assert api.ok(api.get("/v1/audit/verification"))["ok"] is True


def test_a_query_string_that_is_not_utf8_is_refused(api: Api, client: TestClient) -> None:
    for q in ("name=%ED%A0%80", "name=%FF", "name=abc%C3", "uscc=%C0%AF"):
        r = client.get(f"/v1/public/pledges?{q}")
        assert (r.status_code, r.json()["code"]) == (422, "invalid_characters"), (q, r.text)
    r = client.get("/v1/public/pledges?name=%E6%B2%99%E5%8E%BF")  # 沙县, percent-encoded UTF-8: fine
    assert r.status_code == 200, r.text
    r = client.get("/v1/instruments/%ED%A0%80", headers={"Authorization": f"Bearer {api.token}"})
    assert (r.status_code, r.json()["code"]) == (422, "invalid_characters")


def test_operations_without_a_body_take_none(api: Api, client: TestClient) -> None:
    w = trading_world(api)
    seller = w["seller"]
    key = api.ok(seller["api"].post(f"/v1/participants/{seller['id']}/keys", {"label": "desk"}))
    path = f"/v1/participants/{seller['id']}/keys/{key['id']}/revoke"
    h = {"Authorization": f"Bearer {seller['token']}", "Content-Type": "application/json"}
    for body in (b'{"force": true}', b"[]", b'"x"', b"0", b"null"):
        r = client.post(path, content=body, headers=h)
        assert (r.status_code, r.json()["code"]) == (422, "body_not_allowed"), (body, r.text)
    assert api.ok(seller["api"].get(f"/v1/participants/{seller['id']}/keys"))[-1]["revoked_at"] is None
    assert client.post(path, content=b" {} ", headers=h).status_code == 200  # an empty object is no body
    assert client.post(path, headers={"Authorization": f"Bearer {seller['token']}"}).status_code == 200
