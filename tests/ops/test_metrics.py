"""/metrics: who may scrape it, and that its series move with the traffic they describe."""

from __future__ import annotations

import re

import pytest
from litestar.testing import TestClient
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from exchange.core.settings import Settings
from tests.helpers import Api
from tests.trading.test_continuous import world


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(scraped: dict, name: str, **labels: str) -> float:
    """The sum over every series of `name` whose labels include `labels`."""
    return sum(v for (n, ls), v in scraped.items()
               if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))


def scrape(api: Api) -> dict:
    r = api.client.get("/metrics", headers={"Authorization": f"Bearer {api.token}"})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return samples(r.text)


def test_the_series_move_with_the_traffic(api: Api) -> None:
    before = scrape(api)
    w = world(api)
    s, b, m = w["s"]["api"], w["b"]["api"], w["m"]
    api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "290.00", "quantity": "100"}))
    api.ok(s.post(f"/v1/markets/{m}/orders", {"side": "sell", "price": "291.00", "quantity": "100"}))
    api.ok(b.post(f"/v1/markets/{m}/orders", {"side": "buy", "price": "290.00", "quantity": "40"}))
    after = scrape(api)

    # requests by operation and status, with a latency histogram
    placed = value(after, "envx_http_requests_total", operation="placeOrder", status_code="200") + value(
        after, "envx_http_requests_total", operation="placeOrder", status_code="201")
    assert placed - (value(before, "envx_http_requests_total", operation="placeOrder", status_code="200")
                     + value(before, "envx_http_requests_total", operation="placeOrder", status_code="201")) == 3
    assert value(after, "envx_http_request_duration_seconds_count", operation="placeOrder") >= 3
    paths = {dict(ls).get("path") for (n, ls) in after if n == "envx_http_requests_total"}
    assert "/v1/markets/{market_id:str}/orders" in paths or any("{" in (p or "") for p in paths)
    assert not any(re.search(r"/orders/\d", p or "") for p in paths)  # templates, not ids

    # the ledger writer: entries, batches, commit latency, queue
    rt = api.client.app.state.rt
    grown = value(after, "envx_ledger_entries_written_total") - value(before, "envx_ledger_entries_written_total")
    assert grown > 0
    assert value(after, "envx_ledger_tree_size") - value(before, "envx_ledger_tree_size") == grown
    assert value(after, "envx_ledger_writer_batches") == rt.writer.batches
    assert value(after, "envx_ledger_writer_batch_requests_count") > value(before,
                                                                           "envx_ledger_writer_batch_requests_count")
    assert value(after, "envx_ledger_writer_commit_seconds_count") > value(before,
                                                                           "envx_ledger_writer_commit_seconds_count")
    assert ("envx_ledger_writer_queue_depth", ()) in after

    # the market: two resting asks (one partly filled), its journal applied up to its last sequence number
    assert value(after, "envx_market_open_orders", market=m) == 2
    assert value(after, "envx_market_last_seq", market=m) >= 3
    assert value(after, "envx_market_journal_lag", market=m) == 0
    assert ("envx_market_open_orders", (("market", m),)) not in before

    # checkpoints and the database pool
    assert value(after, "envx_checkpoint_tree_size") > 0 and value(after, "envx_checkpoint_age_seconds") >= 0
    assert ("envx_db_pool_connections", (("state", "checked_out"),)) in after
    assert ("envx_webhook_outbox_pending", ()) in after


def test_pledges_by_margin_state(api: Api) -> None:
    from tests.pledges.helpers import pledge_body
    from tests.pledges.helpers import world as pledge_world

    w = pledge_world(api)
    assert value(scrape(api), "envx_pledges", status="filed") == 0
    api.ok(w["bank"]["api"].post("/v1/pledges", pledge_body(w["owner"]["id"])), 201)
    assert value(scrape(api), "envx_pledges", status="filed", margin_level="ok") == 1


def test_who_may_scrape(api: Api) -> None:
    c = api.client
    anonymous = c.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "unauthenticated"
    assert c.get("/metrics", headers={"Authorization": "Bearer envx_000000000000_nope"}).status_code == 401
    enterprise = api.participant("成都某企业", "enterprise")
    refused = c.get("/metrics", headers={"Authorization": f"Bearer {enterprise['api'].token}"})
    assert refused.status_code == 403 and refused.json()["code"] == "role_forbidden"
    auditor = api.participant("审计署", "auditor")
    assert c.get("/metrics", headers={"Authorization": f"Bearer {auditor['api'].token}"}).status_code == 200
    assert c.post("/metrics", headers={"Authorization": f"Bearer {api.token}"}).status_code == 405
    # every answer carries a request id; a sane one the client sent is kept
    assert re.fullmatch(r"[0-9a-f]{16}", anonymous.headers["x-request-id"])
    assert c.get("/health", headers={"X-Request-Id": "scrape-1"}).headers["x-request-id"] == "scrape-1"
    assert c.get("/health", headers={"X-Request-Id": "bad id!"}).headers["x-request-id"] != "bad id!"


def test_an_admin_address_must_be_an_address(db_url: str, settings: Settings) -> None:
    with pytest.raises(ValueError):
        Settings(metrics_allowed_addresses="prometheus.internal")
    # The test client's peer is no IP address ("testclient"): not in any allowed network, so a key is needed.
    app = create_app(settings.model_copy(update={"metrics_allowed_addresses": "0.0.0.0/0, ::/0"}), db_url)
    with TestClient(app, raise_server_exceptions=False, timeout=60) as c:
        assert c.get("/metrics").status_code == 401


def test_switched_off(db_url: str, settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"metrics_enabled": False}), db_url)
    with TestClient(app, raise_server_exceptions=False, timeout=60) as c:
        assert c.get("/metrics").status_code == 404


def test_the_dashboard_queries_only_series_that_exist(api: Api) -> None:
    import json
    from pathlib import Path

    import api as api_package

    dashboard = json.loads((Path(api_package.__file__).parent / "assets/grafana/envx.json").read_text())
    api.client.get("/health")  # one routed request, so the request series exist in this process
    scraped = api.client.get("/metrics", headers={"Authorization": f"Bearer {api.token}"}).text
    exposed = {f.name for f in text_string_to_metric_families(scraped)}
    exposed |= {"envx_witness_lag_entries", "envx_market_journal_lag", "envx_market_open_orders",
                "envx_market_last_seq", "envx_market_stopped"}  # per witness / market: none configured here
    names = {n for p in dashboard["panels"] for t in p["targets"] for n in re.findall(r"envx_[a-z_]+", t["expr"])}
    base = {re.sub(r"_(bucket|total|count|sum)$", "", n) for n in names}
    assert base - exposed == set()
