"""Test fixtures: a real PostgreSQL started by the suite, the real Litestar app, real keys.

The server is the embedded one envx itself uses (pgserver), in a temporary directory; set
ENVX_TEST_DATABASE_URL to use an existing server instead. Migrations run once into a template
database; each test that needs a database gets a fresh copy of it (CREATE DATABASE ... TEMPLATE).
"""

from __future__ import annotations

import itertools
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import TestClient

from exchange.core.database import start_embedded, stop_embedded, with_database
from exchange.core.migrate import upgrade
from exchange.core.settings import Settings
from tests.helpers import Api, bootstrap_operator

# Auctions in tests run for seconds, not the venue's ten minutes; test_auction_window.py checks the default.
os.environ.setdefault("ENVX_AUCTION_MIN_BIDDING_SECONDS", "1")
# ... and are stepped by the tests themselves; tests/trading/test_auction_clock.py runs the venue's clock.
os.environ.setdefault("ENVX_AUCTION_AUTO_END", "false")
# Every test client is one address ("testclient"): the PDF budget per address is shown by
# tests/api/test_inquiry_pdfs.py with the default; other tests may download as many as they need.
os.environ.setdefault("ENVX_INQUIRY_PDF_RENDERS_PER_ADDRESS", "10000")
# Likewise an enforcement auction's registration period (15 days): tests/pledges/test_round5_auction.py checks it.
os.environ.setdefault("ENVX_ENFORCEMENT_REGISTRATION_SECONDS", "1")

_counter = itertools.count()


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    url = os.environ.get("ENVX_TEST_DATABASE_URL")
    if url:
        yield url
        return
    with tempfile.TemporaryDirectory(prefix="envx-test-") as tmp:
        try:
            yield start_embedded(Path(tmp), database="postgres")
        finally:
            stop_embedded(Path(tmp))  # not left running once its directory is gone


def _admin_execute(admin_url: str, sql: str) -> None:
    import asyncio

    import asyncpg

    from exchange.core.database import asyncpg_dsn

    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(admin_url))
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run())


@pytest.fixture(scope="session")
def template_db(pg_admin_url: str) -> str:
    name = f"envx_template_{os.getpid()}"
    _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}"')
    _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}"')
    upgrade(with_database(pg_admin_url, name))
    return name


@pytest.fixture
def db_url(pg_admin_url: str, template_db: str) -> Iterator[str]:
    name = f"envx_t{os.getpid()}_{next(_counter)}"
    _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    yield with_database(pg_admin_url, name)
    _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # No calendar jobs in tests: sessions are opened and closed explicitly.
    return Settings(data_dir=tmp_path, database_url=None, scheduler=False)


@pytest.fixture
def client(db_url: str, settings: Settings) -> Iterator[TestClient]:
    from api.app import create_app

    app = create_app(settings, db_url)
    with TestClient(app, raise_server_exceptions=False, timeout=60) as c:
        yield c


@pytest.fixture
def api(client: TestClient) -> Api:
    """The HTTP API, authenticated as a bootstrapped operator."""
    return Api(client, bootstrap_operator(client))


# The longest files run first, so that on several workers (pytest-xdist, one file per worker at a time) the
# suite does not end waiting on one of them; the order inside a file is kept.
_LONG_FIRST = (
    "tests/security/test_schemathesis.py", "tests/reliability/", "tests/ops/", "tests/system/",
    "tests/transparency/", "tests/security/test_four_eyes.py", "tests/security/test_public_answers.py",
    "tests/portal/", "tests/test_structure.py",
)


def _rank(item: pytest.Item) -> int:
    path = item.nodeid
    return next((i for i, prefix in enumerate(_LONG_FIRST) if path.startswith(prefix)), len(_LONG_FIRST))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=_rank)  # stable: each file keeps its own order
