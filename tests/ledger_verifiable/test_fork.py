"""Fork safety: one writer per database, and no start on a database behind what was published."""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from litestar.testing import TestClient

from api.app import create_app
from exchange.core.database import asyncpg_dsn, with_database
from exchange.core.settings import Settings
from exchange.verifiable.publisher import LATEST_FILE
from ledger import commands as c
from ledger.checkpoints import ForkRefused
from ledger.verify import verify_database
from ledger.writer import LedgerWriter, SecondWriter
from tests.helpers import Api, bootstrap_operator
from tests.ledger_verifiable.helpers import admin_sql, head_seq, world


def _serve(settings: Settings, url: str) -> TestClient:
    return TestClient(create_app(settings, url), raise_server_exceptions=False, timeout=60)


def _refused(settings: Settings, url: str, exc_type: type[BaseException], match: str) -> None:
    """Starting the app fails with ``exc_type`` (the test client wraps lifespan errors in a group)."""
    with pytest.raises(BaseException) as info, _serve(settings, url):
        pass
    exc: BaseException = info.value
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    assert isinstance(exc, exc_type), repr(exc)
    assert re.search(match, str(exc)), str(exc)


def test_a_second_server_on_the_same_database_is_refused(client: TestClient, db_url: str, settings: Settings,
                                                         tmp_path: Path) -> None:
    second = settings.model_copy(update={"data_dir": tmp_path / "second"})
    _refused(second, db_url, SecondWriter, "another envx writer")
    assert client.get("/health").status_code == 200  # the first one is unaffected


def test_a_database_behind_the_last_published_checkpoint_is_refused(pg_admin_url: str, db_url: str,
                                                                     settings: Settings) -> None:
    with _serve(settings, db_url) as client:
        api = Api(client, bootstrap_operator(client))
        w = world(api, transfers=2)
    name = urlsplit(db_url).path.lstrip("/")
    backup = f"{name}_backup"
    admin_sql(pg_admin_url, f'CREATE DATABASE "{backup}" TEMPLATE "{name}"')  # "the backup", taken now
    backup_url = with_database(pg_admin_url, backup)
    try:
        with _serve(settings, db_url) as client:  # business goes on; a newer checkpoint is published
            for i in range(3):
                Api(client, w["seller"]["token"]).ok(Api(client, w["seller"]["token"]).post(
                    "/v1/transfers", {"to_participant": w["buyer"]["id"], "instrument": "FCT-SM", "quantity": "1"},
                    key=f"later-{i}"))
            published = head_seq(client)
        assert (settings.data_dir / LATEST_FILE).read_text().split("\n")[1] == str(published)

        # Restoring the old backup under the same data dir: refused, with a clear reason.
        _refused(settings, backup_url, ForkRefused,
                 r"holds \d+ ledger entries but checkpoint \d+ was already published")

        # The backup grows past the checkpoint with other entries (elsewhere): now it is a fork.
        async def diverge() -> None:
            writer = LedgerWriter(asyncpg_dsn(backup_url))
            await writer.start()
            try:
                while (await writer.submit(c.Request("intruder", c.OpenAccount("x", "holding")))).seq < published:
                    pass
            finally:
                await writer.stop()

        asyncio.run(diverge())
        _refused(settings, backup_url, ForkRefused, "is a fork of the published log")
        # The real database still starts, and verifies.
        with _serve(settings, db_url) as client:
            assert head_seq(client) >= published
        assert asyncio.run(verify_database(asyncpg_dsn(db_url))).ok
    finally:
        admin_sql(pg_admin_url, f'DROP DATABASE IF EXISTS "{backup}" WITH (FORCE)')


def test_a_corrupt_checkpoint_file_stops_the_start(db_url: str, settings: Settings) -> None:
    with _serve(settings, db_url) as client:
        Api(client, bootstrap_operator(client))
    path = settings.data_dir / LATEST_FILE
    text = path.read_text()
    mid = len(text) - 30  # a character inside the signature
    path.write_text(text[:mid] + ("B" if text[mid] != "B" else "C") + text[mid + 1:])
    _refused(settings, db_url, ForkRefused, "does not verify")
    path.write_text(text)
    with _serve(settings, db_url) as client:
        assert client.get("/health").status_code == 200


def test_entries_written_without_the_tree_hook_get_their_tiles_at_start(db_url: str, settings: Settings) -> None:
    async def bare() -> None:
        writer = LedgerWriter(asyncpg_dsn(db_url))  # e.g. an old tool: no tiles, no checkpoints
        await writer.start()
        try:
            for i in range(300):
                await writer.submit(c.Request("tool", c.OpenAccount(f"a{i}", "holding")))
        finally:
            await writer.stop()

    asyncio.run(bare())
    report = asyncio.run(verify_database(asyncpg_dsn(db_url)))
    assert report.ok and any("tiles cover 0 of 300" in w for w in report.warnings), report.render()
    with _serve(settings, db_url) as client:
        n = head_seq(client)
        assert client.get("/v1/ledger/proofs/inclusion", params={"seq": 1, "tree_size": 300}).status_code == 200
    report = asyncio.run(verify_database(asyncpg_dsn(db_url)))
    assert report.ok and not report.warnings and report.entries == n, report.render()
    assert os.stat(settings.data_dir / "signing.key").st_mode & 0o777 == 0o600
