"""API key lifecycle (create, list, revoke, expire; hashed at rest) and per-key rate limits."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator

import pytest
from litestar.testing import TestClient

from api.app import create_app
from api.security.ratelimit import TokenBuckets
from exchange.settings import Settings
from tests.helpers import Api, bootstrap_operator
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
