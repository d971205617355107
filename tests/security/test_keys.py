"""API key lifecycle (create, list, revoke, expire; hashed at rest) and per-key rate limits."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient
from sqlalchemy.exc import DBAPIError

from api.app import create_app
from api.security.ratelimit import TokenBuckets
from exchange.core.secrets import CACHE_SECONDS, KeyCache
from exchange.core.settings import Settings
from tests.helpers import Api, bootstrap_operator, checker_token
from tests.security.helpers import sql


def test_keys_are_created_listed_without_secrets_and_revoked_at_once(api: Api, client: TestClient) -> None:
    ent = api.participant("企业", "enterprise")
    other = api.participant("别的企业", "enterprise")
    k = api.ok(ent["api"].post(f"/v1/participants/{ent['id']}/keys", {"label": "trading desk"}))
    desk = Api(client, k["token"])
    assert desk.get("/v1/whoami").json()["key_id"] == k["id"]
    listed = api.ok(ent["api"].get(f"/v1/participants/{ent['id']}/keys"))
    assert {x["id"] for x in listed} == {k["id"], ent["api"].get("/v1/whoami").json()["key_id"]}
    assert all("token" not in x and "secret_hash" not in x for x in listed)
    # Hashed at rest: the database holds SHA-256 of the secret, never the token.
    row = sql(client, "SELECT prefix, secret_hash FROM api_keys WHERE id = :i", {"i": k["id"]})[0]
    secret = k["token"].split("_", 2)[2]
    assert bytes(row.secret_hash) == hashlib.sha256(secret.encode()).digest()
    assert k["token"].encode() not in bytes(row.secret_hash)
    # Nobody else revokes it; its owner does, and it stops at once (it was cached a moment ago).
    r = other["api"].post(f"/v1/participants/{ent['id']}/keys/{k['id']}/revoke", {})
    assert (r.status_code, r.json()["code"]) == (403, "forbidden")
    assert desk.get("/v1/whoami").status_code == 200
    api.ok(ent["api"].post(f"/v1/participants/{ent['id']}/keys/{k['id']}/revoke", {}))
    r = desk.get("/v1/whoami")
    assert (r.status_code, r.json()["code"]) == (401, "unauthenticated")
    assert api.ok(ent["api"].get(f"/v1/participants/{ent['id']}/keys"))[-1]["revoked_at"] is not None
    # Garbage and near-miss tokens are plain 401s.
    for bad in ("x", k["token"][:-1] + ("A" if k["token"][-1] != "A" else "B"), "envx__", "envx_abc_"):
        assert Api(client, bad).get("/v1/whoami").status_code == 401


def test_an_expired_key_stops_working_even_while_cached(api: Api, client: TestClient) -> None:
    ent = api.participant("企业", "enterprise")
    k = api.ok(ent["api"].post(f"/v1/participants/{ent['id']}/keys", {"label": "short", "expires_in_days": 1}))
    assert k["expires_at"] is not None
    sql(client, "UPDATE api_keys SET expires_at = now() + interval '1.5 seconds' WHERE id = :i", {"i": k["id"]},
        write=True)
    short = Api(client, k["token"])
    assert short.get("/v1/whoami").status_code == 200  # verified and cached (the cache lives 5 s)
    time.sleep(1.7)
    assert short.get("/v1/whoami").status_code == 401
    r = ent["api"].post(f"/v1/participants/{ent['id']}/keys", {"expires_in_days": 0})
    assert r.status_code == 422


@pytest.fixture
def limited(db_url: str, settings: Settings) -> Iterator[TestClient]:
    s = settings.model_copy(update={"rate_limit_per_second": 2.0, "rate_limit_burst": 5,
                                    "anonymous_rate_limit_per_second": 1.0, "anonymous_rate_limit_burst": 3})
    with TestClient(create_app(s, db_url), raise_server_exceptions=False, timeout=60) as c:
        yield c


def test_per_key_rate_limits_answer_429_with_retry_after(limited: TestClient) -> None:
    a = Api(limited, bootstrap_operator(limited))
    b = Api(limited, bootstrap_operator(limited, "second operator"))
    statuses = [a.get("/v1/whoami").status_code for _ in range(7)]
    assert statuses[:5] == [200] * 5 and statuses[5:] == [429, 429]
    r = a.get("/v1/whoami")
    assert r.headers["content-type"].startswith("application/problem+json")
    assert (r.status_code, r.json()["code"]) == (429, "rate_limited") and int(r.headers["retry-after"]) >= 1
    assert b.get("/v1/whoami").status_code == 200  # buckets are per key
    time.sleep(0.6)  # 2 tokens a second: one is back
    assert a.get("/v1/whoami").status_code == 200
    # Without a key: per client address.
    anon = [limited.get("/v1/instruments").status_code for _ in range(4)]
    assert anon == [200, 200, 200, 429]


def test_token_bucket_arithmetic() -> None:
    tb = TokenBuckets(rate=10, burst=3)
    assert [tb.take("k", now=0.0) for _ in range(3)] == [0, 0, 0]
    assert tb.take("k", now=0.0) == pytest.approx(0.1)
    assert tb.take("k", now=0.05) == pytest.approx(0.05)  # half a token back, not enough; not spent
    assert tb.take("k", now=0.1) == 0
    assert TokenBuckets(rate=0, burst=1).take("k") == 0  # disabled


# --- lineage: keys minted by keys ---------------------------------------------------------------------------


def _mint(caller: Api, pid: int, body: dict | None = None, key: str | None = "auto") -> dict:
    return caller.ok(caller.post(f"/v1/participants/{pid}/keys", body or {}, key=key))


def test_a_minted_key_never_outlives_the_key_that_minted_it(api: Api, client: TestClient) -> None:
    ent = api.participant("企业", "enterprise")
    root = ent["api"].get("/v1/whoami").json()["key_id"]
    child = _mint(ent["api"], ent["id"], {"label": "ten days", "expires_in_days": 10})
    assert child["parent_key_id"] == root and child["created_by"] == f"key:{root}"
    assert child["expires_at"] is not None
    as_child = Api(client, child["token"])
    for body in ({"expires_in_days": 30}, {}):  # longer than the parent, or no expiry at all: capped
        g = _mint(as_child, ent["id"], body)
        assert g["expires_at"] == child["expires_at"] and g["parent_key_id"] == child["id"]
    shorter = _mint(as_child, ent["id"], {"expires_in_days": 1})
    assert shorter["expires_at"] < child["expires_at"]
    # The database refuses a key that would outlive its parent, or a parent of another participant.
    with pytest.raises(DBAPIError, match="never outlives"):
        sql(client, "INSERT INTO api_keys (participant_id, prefix, secret_hash, parent_key_id, created_by) "
                    "VALUES (:p, 'ffffffffffff', '\\x00', :k, 'sql')", {"p": ent["id"], "k": child["id"]}, write=True)
    me = api.get("/v1/whoami").json()
    with pytest.raises(DBAPIError, match="own participant"):
        sql(client, "INSERT INTO api_keys (participant_id, prefix, secret_hash, parent_key_id, created_by) "
                    "VALUES (:p, 'eeeeeeeeeeee', '\\x00', :k, 'sql')", {"p": me["participant_id"], "k": root},
            write=True)


def test_minting_is_idempotent_and_only_for_yourself(api: Api, client: TestClient) -> None:
    ent = api.participant("企业", "enterprise")
    other = api.participant("别的企业", "enterprise")
    first = ent["api"].post(f"/v1/participants/{ent['id']}/keys", {"label": "desk"}, key="mint-1")
    again = ent["api"].post(f"/v1/participants/{ent['id']}/keys", {"label": "desk"}, key="mint-1")
    assert first.status_code == 201 and again.content == first.content  # the same key, the same token
    r = ent["api"].post(f"/v1/participants/{ent['id']}/keys", {"label": "till"}, key="mint-1")
    assert (r.status_code, r.json()["code"]) == (409, "idempotency_conflict")
    # Under another key of the same participant the same client id is another request (its own lineage).
    sibling = Api(client, first.json()["token"]).post(f"/v1/participants/{ent['id']}/keys", {"label": "desk"},
                                                      key="mint-1")
    assert sibling.status_code == 201 and sibling.json()["parent_key_id"] == first.json()["id"]
    for caller, target in ((api, ent["id"]), (other["api"], ent["id"]), (ent["api"], other["id"])):
        r = caller.post(f"/v1/participants/{target}/keys", {})
        assert (r.status_code, r.json()["code"]) == (403, "forbidden"), r.text
    assert Api(client, "envx_nope_nope").post(f"/v1/participants/{ent['id']}/keys", {}).status_code == 401


def test_revoking_a_key_revokes_everything_minted_under_it_at_once(api: Api, client: TestClient) -> None:
    ent = api.participant("企业", "enterprise")
    root = Api(client, ent["token"])
    child = _mint(root, ent["id"], {"label": "child"})
    sibling = _mint(root, ent["id"], {"label": "sibling"})
    grandchild = _mint(Api(client, child["token"]), ent["id"], {"label": "grandchild"})
    great = _mint(Api(client, grandchild["token"]), ent["id"], {"label": "great-grandchild"})
    callers = {k["label"]: Api(client, k["token"]) for k in (child, sibling, grandchild, great)}
    for c in callers.values():
        assert c.get("/v1/whoami").status_code == 200  # verified, so cached for 5 s
    r = root.ok(root.post(f"/v1/participants/{ent['id']}/keys/{child['id']}/revoke", {}))
    assert r["revoked_keys"] == sorted([child["id"], grandchild["id"], great["id"]])
    for label in ("child", "grandchild", "great-grandchild"):
        r = callers[label].get("/v1/whoami")
        assert (r.status_code, r.json()["code"]) == (401, "unauthenticated"), label
    assert callers["sibling"].get("/v1/whoami").status_code == 200
    assert root.get("/v1/whoami").status_code == 200
    listed = {k["id"]: k for k in root.ok(root.get(f"/v1/participants/{ent['id']}/keys"))}
    assert {i for i, k in listed.items() if k["revoked_at"]} == {child["id"], grandchild["id"], great["id"]}
    assert all("token" not in k for k in listed.values())
    # Revocation is final, in the database too.
    with pytest.raises(DBAPIError, match="final"):
        sql(client, "UPDATE api_keys SET revoked_at = NULL WHERE id = :i", {"i": child["id"]}, write=True)
    # Revoking the root takes the rest; the revoked cannot mint.
    root.ok(root.post(f"/v1/participants/{ent['id']}/keys/{listed[min(listed)]['id']}/revoke", {}))
    assert callers["sibling"].get("/v1/whoami").status_code == 401
    assert callers["grandchild"].post(f"/v1/participants/{ent['id']}/keys", {}).status_code == 401


def test_minting_and_approving_check_the_database_not_the_cache(api: Api, client: TestClient) -> None:
    """A key revoked by another process stays in this process's cache for up to 5 s; what makes credentials
    or completes four-eyes actions re-reads the key and participant first."""
    ent = api.participant("企业", "enterprise")
    child = _mint(ent["api"], ent["id"], {"label": "child"})
    as_child = Api(client, child["token"])
    assert as_child.get("/v1/whoami").status_code == 200  # cached
    checker = api.as_(checker_token(client))
    assert checker.get("/v1/whoami").status_code == 200  # cached
    sql(client, "UPDATE api_keys SET revoked_at = now() WHERE id = :i OR participant_id = :p",
        {"i": child["id"], "p": checker.get("/v1/whoami").json()["participant_id"]}, write=True)
    assert as_child.get("/v1/whoami").status_code == 200  # still in the cache: what a replica would see
    r = as_child.post(f"/v1/participants/{ent['id']}/keys", {})
    assert (r.status_code, r.json()["code"]) == (401, "unauthenticated")
    p = api.propose("/v1/cash/deposits", {"participant_id": ent["id"], "amount": "1.00", "bank_reference": "c"})
    r = checker.post(f"/v1/operator-actions/{p.json()['id']}/approve", {})
    assert (r.status_code, r.json()["code"]) == (401, "unauthenticated")
    assert api.ok(api.get(f"/v1/operator-actions/{p.json()['id']}"))["status"] == "pending"


def test_a_participant_mints_only_so_many_working_keys_even_at_once(api: Api) -> None:
    """Each key has its own rate limit, so unlimited keys were an unlimited rate (red team round 4, F13):
    ENVX_MAX_API_KEYS_PER_PARTICIPANT (20) working keys, counted under a lock, so a race does not pass it."""
    from concurrent.futures import ThreadPoolExecutor

    ent = api.participant("某企业", "enterprise")
    path = f"/v1/participants/{ent['id']}/keys"
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: ent["api"].post(path, {"label": f"k{i}"}).status_code, range(30)))
    assert codes.count(201) == 19 and codes.count(409) == 11  # its enrollment key is the 20th
    refused = ent["api"].post(path, {"label": "one more"})
    assert (refused.status_code, refused.json()["code"]) == (409, "key_limit")
    spare = next(k for k in api.ok(ent["api"].get(path)) if k["label"].startswith("k"))
    api.ok(ent["api"].post(f"{path}/{spare['id']}/revoke", {}))
    api.ok(ent["api"].post(path, {"label": "after a revocation"}))


def test_a_key_revoked_or_suspended_elsewhere_is_refused_within_the_cache_bound(api: Api, client: TestClient) -> None:
    """The documented bound (exchange/core/secrets.py CACHE_SECONDS, README "API keys"): a key verified once is
    served from this process's cache for at most that long. Revoked in the database by another process (a
    replica, an operator's console) — so this process's cache is not told — it is refused once the bound has
    passed; likewise a participant suspended elsewhere. Here the runtime's cache lives 1 s, not 5 s."""
    assert KeyCache().seconds == CACHE_SECONDS == 5.0  # what README promises
    rt = client.app.state.rt
    rt.key_cache = KeyCache(seconds=1.0)
    ent = api.participant("企业", "enterprise")
    other = api.participant("别的企业", "enterprise")
    k = api.ok(ent["api"].post(f"/v1/participants/{ent['id']}/keys", {"label": "desk"}))
    desk, peer = Api(client, k["token"]), Api(client, other["token"])
    assert desk.get("/v1/whoami").status_code == 200 and peer.get("/v1/whoami").status_code == 200  # cached now
    sql(client, "UPDATE api_keys SET revoked_at = now() WHERE id = :i", {"i": k["id"]}, write=True)
    sql(client, "UPDATE participants SET status = 'suspended', suspended_at = now() WHERE id = :i",
        {"i": other["id"]}, write=True)
    assert desk.get("/v1/whoami").status_code == 200  # within the bound the cache still answers (it is real)
    time.sleep(1.2)
    for caller in (desk, peer):
        r = caller.get("/v1/whoami")
        assert (r.status_code, r.json()["code"]) == (401, "unauthenticated")
    assert ent["api"].get("/v1/whoami").status_code == 200  # the participant's other key is untouched
