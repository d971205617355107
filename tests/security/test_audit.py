"""The audit trail: every administrative action (who, what, when, from where, outcome), append-only,
hash-chained; a changed byte anywhere is found by the verification."""

from __future__ import annotations

import json

import pytest
from litestar.testing import TestClient
from sqlalchemy.exc import DBAPIError

from tests.helpers import Api, checker_token
from tests.security.helpers import sql, trading_world


def _events(api: Api, **q: object) -> list[dict]:
    return api.ok(api.get("/v1/audit/events", limit=1000, **q))


def test_administrative_actions_and_refused_attempts_are_recorded(api: Api, client: TestClient) -> None:
    before = len(_events(api))
    me = api.get("/v1/whoami").json()
    w = trading_world(api)  # instrument (proposal + approval), participants, keys, an issuance approval
    ent = w["seller"]
    # A refused attempt, a failed one, and a non-administrative action (not recorded).
    assert ent["api"].post("/v1/instruments", {"code": "X", "name": "x", "kind": "ccer", "decimals": 0}
                           ).status_code == 403
    assert api.post("/v1/participants", {"name": "", "kind": "bank"}).status_code == 422
    assert ent["api"].post("/v1/transfers", {"to_participant": w["buyer"]["id"], "instrument": "FCT-SEC",
                                             "quantity": "1"}).status_code == 201
    key = api.ok(ent["api"].post(f"/v1/participants/{ent['id']}/keys", {"label": "desk"}))
    api.ok(ent["api"].post(f"/v1/participants/{ent['id']}/keys/{key['id']}/revoke", {}))
    events = _events(api)[before:]
    ops = [e["operation"] for e in events]
    assert "createTransfer" not in ops and "getHoldings" not in ops
    for op in ("defineInstrument", "approveOperatorAction", "createParticipant", "createKey", "approveIssuance",
               "revokeKey"):
        assert op in ops, (op, ops)
    proposal = next(e for e in events if e["operation"] == "defineInstrument" and e["status"] == 202)
    assert proposal["actor"] == f"participant:{me['participant_id']}" and proposal["api_key_id"] == me["key_id"]
    assert proposal["detail"]["request"]["code"] == "FCT-SEC" and proposal["detail"]["operator_action_id"]
    assert proposal["client_ip"] == "testclient" and proposal["outcome"] == "ok" and proposal["ts"].endswith("Z")
    refused = next(e for e in events if e["operation"] == "defineInstrument" and e["status"] == 403)
    assert refused["actor"] == f"participant:{ent['id']}" and refused["participant_kind"] == "enterprise"
    assert refused["outcome"] == "refused" and refused["detail"]["problem_code"] == "role_forbidden"
    failed = next(e for e in events if e["operation"] == "createParticipant" and e["status"] == 422)
    assert failed["outcome"] == "failed" and failed["detail"]["problem_code"] == "validation_error"
    assert key["token"] not in json.dumps(events, ensure_ascii=False)  # answers (secrets) are never stored
    revoke = next(e for e in events if e["operation"] == "revokeKey")
    assert revoke["detail"]["path_params"] == {"participant_id": str(ent["id"]), "key_id": str(key["id"])}
    # Filters; who may read.
    assert {e["operation"] for e in _events(api, operation="revokeKey")} == {"revokeKey"}
    assert all(e["actor"] == f"participant:{ent['id']}" for e in _events(api, actor=f"participant:{ent['id']}"))
    auditor = api.participant("审计署", "auditor")
    assert auditor["api"].get("/v1/audit/events").status_code == 200
    assert auditor["api"].get("/v1/audit/verification").json()["ok"] is True
    r = ent["api"].get("/v1/audit/events")
    assert (r.status_code, r.json()["code"]) == (403, "role_forbidden")
    # Without a key, an administrative attempt is recorded with no actor but its address.
    assert client.post("/v1/participants", json={"name": "x", "kind": "bank"}).status_code == 401
    anon = _events(api, operation="createParticipant")[-1]
    assert anon["actor"] is None and anon["status"] == 401 and anon["client_ip"] == "testclient"


def _tamper(client: TestClient, sql_set: str, seq: int) -> None:
    """Change a row the way only someone around the trigger could (superuser, restored dump)."""
    sql(client, "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only", write=True)
    try:
        sql(client, f"UPDATE audit_log SET {sql_set} WHERE seq = :s", {"s": seq}, write=True)
    finally:
        sql(client, "ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only", write=True)


def test_the_trail_is_append_only_and_any_changed_byte_is_detected(api: Api, client: TestClient) -> None:
    for i in range(5):
        api.participant(f"参与者{i}", "enterprise")
    good = api.ok(api.get("/v1/audit/verification"))
    assert good["ok"] is True and good["head_seq"] >= 10
    head_seq, head_hash = good["head_seq"], good["head_hash"]
    # The database refuses edits, deletions and truncation.
    for stmt in ("UPDATE audit_log SET status = 200 WHERE seq = 3", "DELETE FROM audit_log WHERE seq = 3",
                 "TRUNCATE audit_log"):
        with pytest.raises(DBAPIError, match="append-only"):
            sql(client, stmt, write=True)
    # One byte (or one unit) changed in any column of a middle row is found, at that row.
    changes = {
        "detail": "detail = overlay(detail placing 'X' from 3 for 1)",
        "actor": "actor = actor || ' '",
        "status": "status = status + 1",
        "ts": "ts = ts + 1",
        "client_ip": "client_ip = 'evil'",
        "operation": "operation = 'health'",
        "hash": "hash = set_byte(hash, 0, get_byte(hash, 0) # 1)",
        "prev_hash": "prev_hash = set_byte(prev_hash, 31, get_byte(prev_hash, 31) # 1)",
    }
    for column, change in changes.items():
        original = sql(client, f"SELECT {column} FROM audit_log WHERE seq = 4")[0][0]
        _tamper(client, change, 4)
        v = api.ok(api.get("/v1/audit/verification"))
        assert v["ok"] is False and v["first_bad_seq"] in (4, 5), (column, v)
        sql(client, "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only", write=True)
        sql(client, f"UPDATE audit_log SET {column} = :o WHERE seq = 4", {"o": original}, write=True)
        sql(client, "ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only", write=True)
        assert api.ok(api.get("/v1/audit/verification"))["ok"] is True, column
    # A row removed from the middle breaks the chain; rows removed from the end are caught by a
    # head recorded earlier.
    sql(client, "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only", write=True)
    sql(client, "DELETE FROM audit_log WHERE seq = :s", {"s": head_seq}, write=True)
    sql(client, "ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only", write=True)
    assert api.ok(api.get("/v1/audit/verification"))["ok"] is True  # the chain alone cannot tell
    v = api.ok(api.get("/v1/audit/verification", seq=head_seq, hash=head_hash))
    assert v["ok"] is False and v["first_bad_seq"] == head_seq
    sql(client, "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only", write=True)
    sql(client, "DELETE FROM audit_log WHERE seq = 2", write=True)
    sql(client, "ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only", write=True)
    v = api.ok(api.get("/v1/audit/verification"))
    assert v["ok"] is False and v["first_bad_seq"] == 2 and "missing" in v["problem"]
    assert api.get("/v1/audit/verification", seq=1).status_code == 422  # seq without hash


def test_approvals_are_audited_with_both_operators(api: Api, client: TestClient) -> None:
    bank = api.participant("银行", "bank")
    checker = api.as_(checker_token(client))
    p = api.propose("/v1/cash/deposits", {"participant_id": bank["id"], "amount": "1.00", "bank_reference": "a"})
    checker.ok(checker.post(f"/v1/operator-actions/{p.json()['id']}/approve", {}))
    ev = _events(api)
    proposed = next(e for e in ev if e["operation"] == "recordDeposit")
    approved = [e for e in ev if e["operation"] == "approveOperatorAction"][-1]  # the first admitted the bank
    assert proposed["status"] == 202 and approved["status"] == 200
    assert proposed["actor"] != approved["actor"]
    assert approved["detail"]["path_params"] == {"action_id": str(p.json()["id"])}


def test_anonymous_refusals_speak_iso_minutes_and_page_by_their_cursor(api: Api, client: TestClient) -> None:
    for _ in range(3):  # refused without a valid key: counted per address and minute
        assert client.post("/v1/instruments", json={}, headers={"Authorization": "Bearer nope"}).status_code == 401
    rows = api.ok(api.get("/v1/audit/anonymous-refusals", limit=100))
    assert rows and all(r["minute"].endswith(":00.000000Z") for r in rows), rows
    mine = [r for r in rows if r["client_ip"] == "testclient"]
    assert mine and mine[-1]["refusals"] >= 3
    first = rows[0]
    later = api.ok(api.get("/v1/audit/anonymous-refusals", after_minute=first["cursor"], limit=100))
    assert all(r["cursor"] > first["cursor"] for r in later)  # the cursor pages by minute
    assert later == [r for r in rows if r["cursor"] > first["cursor"]]
