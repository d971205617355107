"""The portal served by a read-replica process (`ENVX_READ_ONLY=true`) beside the demo's primary.

The replica connects as a PostgreSQL role whose every transaction is read-only
(`default_transaction_read_only`), as on a hot standby: a page that wrote anything would fail there. The
pages work on it: inquiry with its downloads verified in the browser, markets following the primary's
trades live, certificate verification by code, the ledger explorer's consistency check."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from playwright.sync_api import expect

from exchange.core.database import asyncpg_dsn
from tests.conftest import _admin_execute
from tests.portal.browser import MARKET, OWNER, OWNER_USCC, PAGES, Page, certificate, off_loop
from tests.system.server import Server

ROLE, PASSWORD = "envx_portal_reader", "portal-reader"


class ReadOnlyServer(Server):
    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "ENVX_READ_ONLY": "true"}


def _as_reader(url: str) -> str:
    """`url` with the read-only role for its user."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, f"{ROLE}:{PASSWORD}@{host}", parts.path, parts.query, parts.fragment))


@pytest.fixture(scope="module")
def replica(server: Server, database: str, pg_admin_url: str,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    name = urlsplit(database).path.lstrip("/")
    off_loop(_admin_execute, pg_admin_url, f"""DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{ROLE}') THEN
          CREATE ROLE {ROLE} LOGIN PASSWORD '{PASSWORD}';
        END IF; END $$;
        ALTER ROLE {ROLE} SET default_transaction_read_only = on;
        GRANT pg_read_all_data TO {ROLE};
        GRANT CONNECT ON DATABASE "{name}" TO {ROLE}""")
    srv = ReadOnlyServer(_as_reader(database), tmp_path_factory.mktemp("replica"))
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_the_replica_s_database_role_cannot_write_and_the_process_refuses_writes(replica: Server) -> None:
    async def attempt() -> str:
        conn = await asyncpg.connect(asyncpg_dsn(replica.db_url))
        try:
            await conn.execute("CREATE TABLE portal_probe (x int)")
        except asyncpg.PostgresError as exc:
            return type(exc).__name__
        finally:
            await conn.close()
        return "written"

    assert off_loop(lambda: asyncio.run(attempt())) == "ReadOnlySQLTransactionError"
    with httpx.Client(base_url=replica.url, timeout=30) as http:
        r = http.post("/v1/markets/FCT-SM.listing/listings", json={"side": "sell", "price": "1.00", "quantity": "1"})
        assert r.status_code == 503 and r.json()["code"] == "read_only"


@pytest.fixture
def on_replica(browser_context: Any, replica: Server) -> Iterator[Page]:
    p = Page(browser_context, replica.url)
    yield p
    p.tab.close()


def test_every_page_answers_on_the_replica(on_replica: Page) -> None:
    for path in PAGES:
        assert on_replica.go(path).status == 200, path
        on_replica.tab.wait_for_load_state("networkidle")
    on_replica.go("/portal")
    on_replica.tab.wait_for_selector("#totals-chart svg rect")
    on_replica.shot("replica-home-desktop")
    assert on_replica.errors == []


def test_the_inquiry_on_the_replica_finds_the_pledge_and_its_certificate_verifies_there(on_replica: Page,
                                                                                       tmp_path: Path) -> None:
    on_replica.go("/portal/inquiry")
    on_replica.tab.check("input[name=by][value=name]")
    on_replica.tab.fill("#q", OWNER)
    on_replica.tab.click("button[type=submit]")
    rows = on_replica.tab.locator("table.results[data-record=pledges] tbody tr")
    assert rows.count() == 1 and OWNER_USCC in rows.first.inner_text()
    with on_replica.tab.expect_download() as d:
        on_replica.tab.locator("a.button", has_text="JSON").first.click()
    f = tmp_path / "search-certificate.json"
    f.write_bytes(Path(d.value.path()).read_bytes())
    assert json.loads(f.read_text("utf-8"))["certificate"]["results"][0]["pledgor"] == OWNER
    with on_replica.tab.expect_download() as d:
        on_replica.tab.locator("a.button", has_text="PDF").click()
    assert Path(d.value.path()).read_bytes().startswith(b"%PDF")
    # The replica signs with a key it publishes (/v1/public/inquiry-key); the browser checks it.
    assert on_replica.verify_file(f) == ("pass", None), on_replica.steps()
    assert on_replica.errors == []


def test_verification_by_code_and_the_consistency_check_run_on_the_replica(on_replica: Page,
                                                                           server: Server) -> None:
    code = hashlib.sha256(certificate(server)["note"].encode()).hexdigest()[:16]
    on_replica.go(f"/portal/verify?code={code}")
    on_replica.tab.wait_for_selector("#verdict[data-state]")
    assert on_replica.tab.get_attribute("#verdict", "data-state") == "pass", on_replica.steps()
    on_replica.go("/portal/ledger")
    options = on_replica.tab.locator("#second option").all_inner_texts()
    assert len(options) >= 2
    on_replica.tab.select_option("#first", options[-1])  # the oldest
    on_replica.tab.select_option("#second", options[0])  # the newest
    on_replica.tab.click("#consistency button[type=submit]")
    on_replica.tab.wait_for_selector("#consistency #verdict[data-state]")
    assert on_replica.tab.get_attribute("#verdict", "data-state") == "pass", on_replica.steps()
    assert on_replica.errors == []


def test_the_market_page_on_the_replica_follows_a_trade_made_on_the_primary(on_replica: Page, server: Server,
                                                                            keys: dict[str, Any]) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        before = http.get(f"/v1/markets/{MARKET}/trades", params={"limit": 50}).json()
    count = len(before["items"] if isinstance(before, dict) else before)
    on_replica.go(f"/portal/markets/{MARKET}")
    rows = on_replica.tab.locator("#trades tbody tr")
    expect(rows).to_have_count(count)
    expect(on_replica.tab.locator("#live")).not_to_contain_text("…")
    seller, buyer = keys["sanming_owner"]["api_key"], keys["lowcarbon_assoc"]["api_key"]
    with httpx.Client(base_url=server.url, timeout=30) as http:
        listed = http.post(f"/v1/markets/{MARKET}/listings", json={"side": "sell", "price": "18.00", "quantity": "5"},
                           headers={"Authorization": f"Bearer {seller}", "Idempotency-Key": "portal-replica-l"})
        assert listed.status_code == 201, listed.text
        took = http.post(f"/v1/markets/{MARKET}/listings/{listed.json()['order']['id']}/take", json={"quantity": "5"},
                         headers={"Authorization": f"Bearer {buyer}", "Idempotency-Key": "portal-replica-t"})
        assert took.status_code in (200, 201), took.text
    expect(rows).to_have_count(count + 1, timeout=20000)
    assert rows.first.locator("td").nth(1).inner_text() == "18.00"
    on_replica.shot("replica-market-desktop")
    assert on_replica.errors == []
