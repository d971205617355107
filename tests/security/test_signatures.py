"""Signed instructions: verified, recorded with the ledger entry, replays and alterations refused."""

from __future__ import annotations

import base64
import hashlib
import json
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from litestar.testing import TestClient

from api.security.signatures import HEADER, canonical, generate_key, sign_request
from tests.helpers import Api
from tests.security.helpers import signed, signer, sql, trading_world


def _transfer(w: dict, qty: str = "1") -> dict:
    return {"to_participant": w["buyer"]["id"], "instrument": "FCT-SEC", "quantity": qty}


def test_a_signed_transfer_is_recorded_with_its_ledger_entry_and_verifies_later(api: Api, client: TestClient) -> None:
    w = trading_world(api)
    seller = w["seller"]
    private, key_id = signer(seller["api"], seller["id"])
    r = signed(client, seller["token"], "POST", "/v1/transfers", _transfer(w), private, key_id, idem="t-1")
    assert r.status_code == 201, r.text
    entry = api.ok(api.get(f"/v1/ledger/entries/{r.json()['entry_seq']}"))
    si = entry["meta"]["signed_instruction"]
    assert (si["key_id"], si["method"], si["target"]) == (key_id, "POST", "/v1/transfers")
    # Non-repudiation: the stored instruction (body included) verifies with the registered public key, and
    # its digest is the one committed in the ledger entry.
    row = sql(client, "SELECT * FROM signed_instructions WHERE id = :i", {"i": si["record"]})[0]
    assert hashlib.sha256(bytes(row.body)).hexdigest() == si["body_sha256"]
    public = base64.b64decode(api.get(f"/v1/participants/{seller['id']}/signing-keys").json()[0]["public_key"])
    Ed25519PublicKey.from_public_bytes(public).verify(bytes(row.signature), canonical(
        row.method, row.target, si["body_sha256"], row.signed_ts, row.nonce, key_id))
    assert json.loads(bytes(row.body)) == _transfer(w)


def test_replayed_and_altered_requests_are_refused(api: Api, client: TestClient) -> None:
    w = trading_world(api)
    seller = w["seller"]
    private, key_id = signer(seller["api"], seller["id"])
    raw = json.dumps(_transfer(w)).encode()
    headers = {"Authorization": f"Bearer {seller['token']}", "Content-Type": "application/json",
               "Idempotency-Key": "once", **sign_request(private, key_id, "POST", "/v1/transfers", raw)}
    assert client.post("/v1/transfers", content=raw, headers=headers).status_code == 201
    # The very same bytes again: the nonce is spent.
    again = client.post("/v1/transfers", content=raw, headers=headers)
    assert (again.status_code, again.json()["code"]) == (401, "signature_replayed")
    # Altered: one more unit in the body, another path, another method, under a fresh signature's header.
    fresh = sign_request(private, key_id, "POST", "/v1/transfers", raw)
    altered = raw.replace(b'"1"', b'"2"')
    for method, path, body in (("POST", "/v1/transfers", altered), ("POST", "/v1/retirements", raw),
                               ("PUT", "/v1/transfers", raw)):
        r = client.request(method, path, content=body, headers={**headers, **fresh, "Idempotency-Key": "x"})
        assert r.status_code in (401, 405), r.text
        if r.status_code == 401:
            assert r.json()["code"] == "signature_invalid"
    # Stale or future timestamps, malformed headers, someone else's key.
    for ts in (int(time.time()) - 301, int(time.time()) + 301):
        r = signed(client, seller["token"], "POST", "/v1/transfers", _transfer(w), private, key_id, ts=ts)
        assert (r.status_code, r.json()["code"]) == (401, "signature_stale")
    for bad in ("keyid=1", f"keyid={key_id},ts=1,nonce=short,sig=AAAA", "garbage", "a=1,a=2,b=3,c=4"):
        r = client.post("/v1/transfers", content=raw, headers={**headers, HEADER: bad})
        assert (r.status_code, r.json()["code"]) == (401, "signature_malformed"), bad
    buyer_private, buyer_key = signer(w["buyer"]["api"], w["buyer"]["id"])
    r = signed(client, seller["token"], "POST", "/v1/transfers", _transfer(w), buyer_private, buyer_key)
    assert (r.status_code, r.json()["code"]) == (401, "signature_unknown_key")
    # Exactly one unit moved.
    assert api.ok(w["buyer"]["api"].get("/v1/holdings"))["balances"][0]["posted"] == "1"


def test_a_revoked_signing_key_stops_working_at_once(api: Api, client: TestClient) -> None:
    w = trading_world(api)
    seller = w["seller"]
    private, key_id = signer(seller["api"], seller["id"])
    assert signed(client, seller["token"], "POST", "/v1/transfers", _transfer(w), private, key_id,
                  idem="a").status_code == 201
    api.ok(seller["api"].post(f"/v1/participants/{seller['id']}/signing-keys/{key_id}/revoke", {}))
    r = signed(client, seller["token"], "POST", "/v1/transfers", _transfer(w), private, key_id, idem="b")
    assert (r.status_code, r.json()["code"]) == (401, "signature_key_revoked")


def test_a_retry_signed_again_gets_the_original_result(api: Api, client: TestClient) -> None:
    """The signature is provenance, not part of the request: a faithful retry with a fresh nonce replays."""
    w = trading_world(api)
    seller = w["seller"]
    private, key_id = signer(seller["api"], seller["id"])
    first = signed(client, seller["token"], "POST", "/v1/transfers", _transfer(w), private, key_id, idem="r-1")
    second = signed(client, seller["token"], "POST", "/v1/transfers", _transfer(w), private, key_id, idem="r-1")
    assert first.status_code == second.status_code == 201, second.text
    assert first.json()["entry_seq"] == second.json()["entry_seq"]
    assert api.ok(w["buyer"]["api"].get("/v1/holdings"))["balances"][0]["posted"] == "1"


def test_a_participant_can_require_its_own_signatures(api: Api, client: TestClient) -> None:
    w = trading_world(api)
    seller = w["seller"]
    policy = f"/v1/participants/{seller['id']}/signature-policy"
    own = {"Authorization": f"Bearer {seller['token']}"}
    # Not by an operator (red team round 3: it would lock the participant out); not before it has a key.
    r = client.put(policy, json={"require_signatures": False}, headers={"Authorization": f"Bearer {api.token}"})
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    r = client.put(policy, json={"require_signatures": True}, headers=own)
    assert (r.status_code, r.json()["code"]) == (409, "no_signing_key")
    private, key_id = signer(seller["api"], seller["id"])
    r = client.put(policy, json={"require_signatures": True}, headers=own)
    assert r.status_code == 200 and r.json()["require_signatures"] is True
    assert api.ok(seller["api"].get(policy))["require_signatures"] is True
    # Unsigned mutations are refused, reads are not; signed ones pass.
    r = seller["api"].post("/v1/transfers", _transfer(w))
    assert (r.status_code, r.json()["code"]) == (401, "signature_required")
    assert seller["api"].get("/v1/holdings").status_code == 200
    assert signed(client, seller["token"], "POST", "/v1/transfers", _transfer(w), private, key_id,
                  idem="p-1").status_code == 201
    # Registering another key now needs a signature too (a stolen API key alone cannot add one).
    _, public = generate_key()
    r = seller["api"].post(f"/v1/participants/{seller['id']}/signing-keys", {"public_key": public})
    assert (r.status_code, r.json()["code"]) == (401, "signature_required")
    r = signed(client, seller["token"], "POST", f"/v1/participants/{seller['id']}/signing-keys",
               {"public_key": public}, private, key_id, idem="sk-2")
    assert r.status_code == 201, r.text
    # Other participants are unaffected.
    assert w["buyer"]["api"].post("/v1/transfers", {"to_participant": seller["id"], "instrument": "FCT-SEC",
                                                    "quantity": "1"}).status_code == 201


def test_signing_keys_are_managed_by_their_owner_only(api: Api) -> None:
    a = api.participant("甲企业", "enterprise")
    b = api.participant("乙企业", "enterprise")
    _, public = generate_key()
    for other in (b["api"], api):  # another participant, an operator (red team round 3)
        r = other.post(f"/v1/participants/{a['id']}/signing-keys", {"public_key": public})
        assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    key = api.ok(a["api"].post(f"/v1/participants/{a['id']}/signing-keys", {"public_key": public, "label": "own"}))
    assert key["public_key"] == public and key["created_by"] == f"participant:{a['id']}"
    dup = a["api"].post(f"/v1/participants/{a['id']}/signing-keys", {"public_key": public})
    assert (dup.status_code, dup.json()["code"]) == (409, "signing_key_exists")
    for bad in ("A" * 44, "not base64!" * 4, base64.b64encode(b"x" * 31).decode() + "AAAA"):
        r = a["api"].post(f"/v1/participants/{a['id']}/signing-keys", {"public_key": bad})
        assert r.status_code == 422, (bad, r.text)
    assert b["api"].get(f"/v1/participants/{a['id']}/signing-keys").status_code == 403
    assert [k["id"] for k in api.ok(a["api"].get(f"/v1/participants/{a['id']}/signing-keys"))] == [key["id"]]


def test_a_signing_key_registration_retried_after_its_answer_was_lost_gets_that_answer(api: Api,
                                                                                         client: TestClient) -> None:
    """The commit succeeded, the answer was lost (the edge's kept answer gone with a crash, or the retry's
    bytes differ: the key moved into the body's whitespace): the retry got 409 signing_key_exists."""
    a = api.participant("甲企业", "enterprise")
    path = f"/v1/participants/{a['id']}/signing-keys"
    _, public = generate_key()
    headers = {"Authorization": f"Bearer {a['token']}", "Idempotency-Key": "sk-1", "Content-Type": "application/json"}
    body = json.dumps({"public_key": public, "label": "treasury"})
    first = client.post(path, content=body, headers=headers)
    assert first.status_code == 201, first.text
    # The same request with other whitespace: past the edge's exact replay, the service answers it.
    spaced = client.post(path, content=body.replace(", ", ",   "), headers=headers)
    assert spaced.status_code == 201 and spaced.json() == first.json(), spaced.text
    # The edge's kept answer lost (as in a crash between the commit and keeping it): the same bytes again.
    lost = sql(client, "DELETE FROM answers_by_request WHERE client_id = 'sk-1' AND actor = :a AND "
               "media_type = 'application/json' RETURNING body", {"a": f"participant:{a['id']}"}, write=True)
    assert [json.loads(bytes(r.body)) for r in lost] == [first.json()] * 2  # both requests' kept answers, gone
    again = client.post(path, content=body, headers=headers)
    assert again.status_code == 201 and again.json() == first.json(), again.text
    assert [k["id"] for k in api.ok(a["api"].get(path))] == [first.json()["id"]]  # one key registered
    # The same key for another registration is a conflict, and registers nothing.
    _, other = generate_key()
    clash = client.post(path, json={"public_key": other}, headers=headers)
    assert (clash.status_code, clash.json()["code"]) == (409, "idempotency_conflict"), clash.text
    # The same public key under a new key is still refused as registered.
    dup = a["api"].post(path, {"public_key": public})
    assert (dup.status_code, dup.json()["code"]) == (409, "signing_key_exists")
    assert len(api.ok(a["api"].get(path))) == 1
