"""The probe of issue #13, case by case: each hostile input is a 4xx problem with its machine code, moves
nothing, and the audit trail holds (or refuses) every administrative request, whatever its body."""

from __future__ import annotations

import base64
import json
from datetime import date, timedelta
from typing import Any

import pytest
from litestar.testing import TestClient

from api.security import json_body
from tests.helpers import Api, ticket
from tests.security.helpers import sql


def _raw(client: TestClient, token: str | None, method: str, path: str, body: bytes, key: str = "k") -> Any:
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.request(method, path, content=body, headers=headers)


def _problem(r: Any, status: int, code: str) -> None:
    assert (r.status_code, r.headers["content-type"].split(";")[0]) == (status, "application/problem+json"), r.text
    assert r.json()["code"] == code, r.text


def _head(client: TestClient) -> tuple[int, bytes | None]:
    row = sql(client, "SELECT count(*), max(seq) FROM ledger_entries")[0]
    last = sql(client, "SELECT hash FROM ledger_entries ORDER BY seq DESC LIMIT 1")
    return int(row[0]), bytes(last[0][0]) if last else None


def _world(api: Api) -> dict[str, Any]:
    api.instrument("FCT-IN")
    issuer = api.participant("三明市林业局", "issuer")
    a = api.participant("甲企业", "enterprise")
    b = api.participant("乙企业", "enterprise")
    api.issue(issuer["api"], a["id"], "FCT-IN", "100", ticket(1))
    return {"a": a, "b": b}


def test_the_strict_decoder_refuses_what_has_no_single_meaning() -> None:
    refused = {
        b"[" * 5000 + b"]" * 5000: "json_too_deep",
        b"[" * 5000: "json_too_deep",
        b'{"a": ' * 33 + b"1" + b"}" * 33: "json_too_deep",
        b'{"quantity": "1", "quantity": "2"}': "duplicate_key",
        b'{"serials": [{"start": 1, "start": 2}]}': "duplicate_key",
        b'{"name": "\\ud800"}': "invalid_characters",
        b'{"\\udc00": 1}': "invalid_characters",
        b'["x", ["\\udbff"]]': "invalid_characters",
        b'{"name": "\xff"}': "invalid_characters",
        b'{"id": 9007199254740992}': "number_out_of_range",
        b'{"id": -9223372036854775809}': "number_out_of_range",
        b'{"id": ' + b"9" * 5000 + b"}": "number_out_of_range",
        b'{"x": 1e400}': "number_out_of_range",
        b'{"x": NaN}': "malformed_json",
        b'{"x": Infinity}': "malformed_json",
        b"{not json": "malformed_json",
        b'{"a": 1} {"b": 2}': "malformed_json",
    }
    for body, code in refused.items():
        with pytest.raises(json_body.BodyRefused) as exc:
            json_body.decode(body)
        assert exc.value.code == code, body[:40]
    # What is fine stays fine: 32 levels, brackets and quotes inside strings, surrogate pairs, 2^53 - 1.
    assert json_body.decode(b'{"a": ' * 31 + b"[]" + b"}" * 31) is not None
    assert json_body.decode(b'{"t": "[[[{{{\\"]]]", "e": "\\ud83d\\ude00", "n": 9007199254740991}') == {
        "t": '[[[{{{"]]]', "e": "\U0001f600", "n": 2**53 - 1}
    assert json_body.depth('["[", "]]]", {"a": [[]]}]') == 4


def test_nesting_bombs_duplicate_keys_and_lone_surrogates_are_422_and_move_nothing(api: Api,
                                                                                   client: TestClient) -> None:
    w = _world(api)
    a, b = w["a"], w["b"]
    before = _head(client)
    bodies = {
        b'{"to_participant": ' + str(b["id"]).encode() + b', "instrument": "FCT-IN", "quantity": "1", '
        b'"quantity": "2"}': "duplicate_key",
        b'{"to_participant": ' + str(b["id"]).encode() + b', "instrument": "FCT-IN", "quantity": "1", '
        b'"memo": ' + b"[" * 5000 + b"]" * 5000 + b"}": "json_too_deep",
        b'{"to_participant": ' + str(b["id"]).encode() + b', "instrument": "FCT-IN", "quantity": "1", '
        b'"memo": "\\ud800"}': "invalid_characters",
        b'{"to_participant": ' + str(b["id"]).encode() + b', "instrument": "FCT-IN", "quantity": "1", '
        b'"serials": [{"start": 1, "end": 1, "end": 2}]}': "duplicate_key",
    }
    for i, (body, code) in enumerate(bodies.items()):
        _problem(_raw(client, a["token"], "POST", "/v1/transfers", body, key=f"t{i}"), 422, code)
    assert _head(client) == before


def test_no_coercion_a_boolean_is_not_participant_1(api: Api, client: TestClient) -> None:
    w = _world(api)
    a, b = w["a"], w["b"]
    court = api.participant("法院", "court")
    before = _head(client)
    good = {"to_participant": b["id"], "instrument": "FCT-IN", "quantity": "1"}
    for field, value in (("to_participant", True), ("to_participant", f"{b['id']}"), ("to_participant", 14.0),
                         ("to_participant", float(b["id"])), ("instrument", 5), ("quantity", 1),
                         ("quantity", 1.0), ("memo", 7), ("serials", {"start": 1, "end": 1})):
        r = a["api"].post("/v1/transfers", {**good, field: value})
        _problem(r, 422, "validation_error")
    today = date.today()
    for field, value in (("holder_id", True), ("term_start", 20250101), ("term_start", f"{today}T00:00:00Z"),
                         ("term_end", "9999-12-31"), ("term_end", "1999-12-31"), ("term_end", "2025-02-30"),
                         ("term_end", "２０２５-01-01"), ("term_end", f" {today}")):
        r = court["api"].post("/v1/freezes", {
            "holder_id": a["id"], "instrument": "FCT-IN", "quantity": "1", "case_number": "c", "notice_number": "n",
            "term_start": today.isoformat(), "term_end": (today + timedelta(days=9)).isoformat(), field: value})
        _problem(r, 422, "validation_error")
    r = court["api"].post("/v1/restoration-orders", {
        "case_number": "c", "case_type": "t", "defendants": [{"name": "x"}], "payer_id": True,
        "required_quantity": "1", "eligible_kinds": ["ccer"], "deadline": (today + timedelta(days=9)).isoformat()})
    _problem(r, 422, "validation_error")
    for amount in ("1000.0", 1000, 1000.0):
        r = api.propose("/v1/cash/deposits", {"participant_id": True, "amount": "1.00", "bank_reference": "x"})
        _problem(r, 422, "validation_error")
        r = api.propose("/v1/cash/deposits", {"participant_id": a["id"], "amount": amount, "bank_reference": "x"})
        assert r.status_code == 202 if amount == "1000.0" else r.status_code == 422, (amount, r.text)
    assert _head(client) == before
    assert a["api"].post("/v1/transfers", good).status_code == 201  # the well-typed request still works


def test_decimal_strings_are_plain_ascii_digits(api: Api, client: TestClient) -> None:
    w = _world(api)
    a, b = w["a"], w["b"]
    before = _head(client)
    for quantity in (" 1", "1 ", "1\n", "\u30001", "1\u3000", "\uff11", "\u0661", "\u0967", "+1", "-1", "1e0",
                     "01", "1.", ".5", "1,0", "1_0", "0x1", "１"):
        r = a["api"].post("/v1/transfers", {"to_participant": b["id"], "instrument": "FCT-IN", "quantity": quantity})
        _problem(r, 422, "validation_error")
    assert _head(client) == before
    # Other strings are kept as sent: no silent stripping.
    p = api.ok(api.post("/v1/participants", {"name": " 丙企业 ", "kind": "enterprise"}))
    assert p["name"] == " 丙企业 "


def test_integers_in_paths_and_queries_are_bounded_ascii_digits(api: Api, client: TestClient) -> None:
    for path, code in ((f"/v1/participants/{2**63}", "path_parameter_out_of_range"),
                       (f"/v1/participants/{2**53}", "path_parameter_out_of_range"),
                       ("/v1/participants/%201", "invalid_integer"), ("/v1/participants/01", "invalid_integer"),
                       ("/v1/participants/+1", "invalid_integer"), ("/v1/participants/1_0", "invalid_integer"),
                       ("/v1/participants/%D9%A1", "invalid_integer"),
                       ("/v1/participants/%EF%BC%91", "invalid_integer"),
                       (f"/v1/ledger/entries?after={2**63}", "query_parameter_out_of_range"),
                       ("/v1/ledger/entries?after=1e3", "invalid_integer"),
                       ("/v1/ledger/entries?after=14.0", "invalid_integer"),
                       ("/v1/ledger/entries?after=-0", "invalid_integer"),
                       ("/v1/ledger/entries?limit=%2010", "invalid_integer"),
                       ("/v1/ledger/entries?limit=true", "invalid_integer"),
                       (f"/v1/holdings?after_serial={2**53}", "query_parameter_out_of_range")):
        _problem(api.client.get(path, headers={"Authorization": f"Bearer {api.token}"}), 422, code)
    _problem(api.get("/v1/ledger/entries", limit=0), 422, "validation_error")  # the declared bounds
    _problem(api.get("/v1/ledger/entries", limit=1001), 422, "validation_error")
    assert api.get("/v1/ledger/entries", after=0, limit=5).status_code == 200
    spec = client.get("/schema/openapi.json").json()
    entry = spec["paths"]["/v1/participants/{participant_id}"]["get"]["parameters"]
    schema = next(p["schema"] for p in entry if p["name"] == "participant_id")
    assert (schema["minimum"], schema["maximum"]) == (1, 2**53 - 1)


def test_every_administrative_request_gets_its_audit_row_whatever_its_body(api: Api, client: TestClient) -> None:
    before = sql(client, "SELECT count(*) FROM audit_log")[0][0]
    bodies = [b'{"name": "\\ud800", "kind": "bank"}', b"[" * 5000 + b"]" * 5000, b'{"name": "a", "name": "b"}',
              b'{"name": "a\\u0000", "kind": "bank"}', b"\xff\xfe", b'{"kind": "bank", "name": ' + b'"x' * 9000 + b'"}']
    for i, body in enumerate(bodies):
        r = _raw(client, api.token, "POST", "/v1/participants", body, key=f"a{i}")
        assert r.status_code == 422, (body[:30], r.text)
    rows = api.ok(api.get("/v1/audit/events", after=before, limit=100))
    assert [(e["operation"], e["status"]) for e in rows] == [("createParticipant", 422)] * len(bodies)
    codes = [e["detail"]["problem_code"] for e in rows]
    assert codes == ["invalid_characters", "json_too_deep", "duplicate_key", "validation_error",
                     "invalid_characters", "malformed_json"]
    assert all("request" not in e["detail"] and e["detail"]["request_bytes"] > 0 for e in rows[:3])
    assert rows[3]["detail"]["request"]["name"] == "a\x00"  # kept (escaped in the stored text)
    assert api.ok(api.get("/v1/audit/verification"))["ok"] is True
    # A NUL in the path is refused (422) and still recorded.
    r = client.post("/v1/participants/1%00/keys", json={}, headers={"Authorization": f"Bearer {api.token}"})
    assert r.status_code in (404, 422)


def test_without_its_audit_row_an_administrative_request_is_not_answered(api: Api, client: TestClient) -> None:
    sql(client, """CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$
                   BEGIN RAISE EXCEPTION 'audit disk full'; END $$""", write=True)
    sql(client, "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_log FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        write=True)
    r = api.post("/v1/participants", {"name": "丁企业", "kind": "enterprise"}, key="no-audit")
    _problem(r, 503, "audit_unavailable")
    sql(client, "DROP TRIGGER refuse_audit ON audit_log", write=True)
    again = api.post("/v1/participants", {"name": "丁企业", "kind": "enterprise"}, key="no-audit")
    assert again.status_code == 201  # the retry learns the outcome, and this time it is recorded
    ops = [e["operation"] for e in api.ok(api.get("/v1/audit/events", limit=1000))]
    assert ops.count("createParticipant") == 1


def test_anonymous_refusals_cannot_grow_the_trail(api: Api, client: TestClient) -> None:
    before = sql(client, "SELECT count(*) FROM audit_log")[0][0]
    big = json.dumps({"name": "x" * 16_000, "kind": "bank"}).encode()
    for i in range(60):
        r = _raw(client, None if i % 2 else "not-a-key", "POST", "/v1/participants", big, key=f"anon{i}")
        _problem(r, 401, "unauthenticated")
    rows = sql(client, "SELECT detail, actor, status FROM audit_log WHERE seq > :s ORDER BY seq", {"s": before})
    assert 1 <= len(rows) <= 2  # one row for this address and minute (two if the minute turned meanwhile)
    detail = json.loads(rows[0][0])
    assert rows[0][1] is None and rows[0][2] == 401 and "request" not in detail
    assert detail["request_bytes"] == len(big) and len(rows[0][0]) < 1000
    counted = sql(client, "SELECT sum(refusals) FROM audit_anonymous_refusals")[0][0]
    assert counted == 60
    seen = api.ok(api.get("/v1/audit/anonymous-refusals"))
    assert sum(x["refusals"] for x in seen) == 60 and seen[0]["client_ip"] == "testclient"


def test_instrument_and_batch_attributes_are_strict_too(api: Api, client: TestClient) -> None:
    issuer = api.participant("生态环境局", "issuer")
    holder = api.participant("排污单位", "enterprise")
    for attrs in ({"compliance_year": "2025"}, {"compliance_year": 2025.0}, {"compliance_year": True}):
        r = api.propose("/v1/instruments", {"code": "CEA-X", "name": "x", "kind": "cea", "decimals": 0,
                                            "attributes": attrs})
        _problem(r, 422, "invalid_attributes")
    api.instrument("PWQ-IN", kind="emission_right", attributes={"pollutant": "COD", "region": "嘉兴",
                                                                "validity_years": 5})
    api.authorise_issuer("PWQ-IN", issuer["id"])
    before = _head(client)
    for bad in ("2025-02-30", "9999-12-31", "２０２５-01-01", " 2025-01-01"):
        r = issuer["api"].post("/v1/issuances", {"instrument": "PWQ-IN", "holder_id": holder["id"], "quantity": "1",
                                                 "attributes": {"valid_from": "2025-01-01", "valid_until": bad}})
        _problem(r, 422, "invalid_attributes")
    assert _head(client) == before
    ok = issuer["api"].post("/v1/issuances", {"instrument": "PWQ-IN", "holder_id": holder["id"], "quantity": "1",
                                              "attributes": {"valid_from": "2025-01-01", "valid_until": "2029-12-31"}})
    assert ok.status_code == 201, ok.text


def _cursor(*key: Any) -> str:
    raw = json.dumps(list(key), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def test_market_calendars_amendments_cursors_and_depth_are_strict_too(api: Api, client: TestClient) -> None:
    api.instrument("FCT-CAL")
    before = api.ok(api.get("/v1/markets"))
    for settings in ({"sessions": [["09:30Z", "11:30"]]}, {"sessions": [["T09:30", "11:30"]]},
                     {"sessions": [["0930", "1130"]]}, {"sessions": [["０９:30", "11:30"]]},
                     {"sessions": [["09:30:00", "11:30"]]}, {"holidays": ["2025-02-30"]},
                     {"holidays": ["２０２５-01-01"]}, {"holidays": ["2025-01-01T00:00:00"]},
                     {"holidays": ["9999-12-31"]}, {"holidays": [20250101]}):
        r = api.propose("/v1/markets", {"instrument": "FCT-CAL", "mode": "continuous", "settings": settings})
        _problem(r, 422, "validation_error")
    assert api.ok(api.get("/v1/markets")) == before
    api.ok(api.post("/v1/markets", {"instrument": "FCT-CAL", "mode": "continuous", "settings": {"sessions": []}}))
    for day in ("2199-13-01", " 2030-01-07", "2030-1-7", 20300107, "2030-01-07T00:00:00Z"):
        r = api.propose("/v1/markets/FCT-CAL.continuous/amendments", {"effective_from": day,
                                                                     "settings": {"fee_bps": 5}})
        _problem(r, 422, "validation_error")
    # Cursors are opaque, but a forged one is still only a 422 (lone surrogates, NUL, unsafe integers).
    for path, cursor in (("/v1/instruments/FCT-CAL/daily", _cursor("daily:FCT-CAL", ["2025-01-01", "\ud800"])),
                         ("/v1/instruments/FCT-CAL/daily", _cursor("daily:FCT-CAL", ["2025-01-01", "a\x00"])),
                         ("/v1/instruments/FCT-CAL/daily", _cursor("daily:FCT-CAL", ["2025-02-30", "continuous"])),
                         ("/v1/instruments/FCT-CAL/closes", _cursor("closes:FCT-CAL", "２０２５-01-01")),
                         ("/v1/markets/FCT-CAL.continuous/orders", _cursor("orders:FCT-CAL.continuous", 2**53)),
                         ("/v1/markets/FCT-CAL.continuous/trades", _cursor("trades:FCT-CAL.continuous", True)),
                         ("/v1/markets", _cursor("markets", "\ud800")),
                         ("/v1/markets", "not base64 at all!")):
        _problem(api.get(path, cursor=cursor), 422, "invalid_cursor")
    for levels in ("0", "01", "10000", "٣", "all ", "ALL", "1e3"):
        _problem(api.get("/v1/markets/FCT-CAL.continuous/depth", levels=levels), 422, "validation_error")
    assert api.get("/v1/markets/FCT-CAL.continuous/depth", levels="all").status_code == 200
