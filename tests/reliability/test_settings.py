"""Small pieces the campaigns rely on: multi-host URLs for SQLAlchemy, the read-only API."""

from __future__ import annotations

from pathlib import Path

from litestar.testing import TestClient

from api.app import create_app
from exchange.core.database import sqlalchemy_url
from exchange.core.settings import Settings


def test_multi_host_url_becomes_sqlalchemy_hosts() -> None:
    url = "postgresql://envx:pw@10.0.0.1:5432,10.0.0.2:5433/envx?target_session_attrs=read-write"
    assert sqlalchemy_url(url) == ("postgresql+asyncpg://envx:pw@/envx?target_session_attrs=read-write"
                                   "&host=10.0.0.1:5432&host=10.0.0.2:5433")
    assert sqlalchemy_url("postgresql://u@h:1/db") == "postgresql+asyncpg://u@h:1/db"


def test_read_only_process_serves_reads_and_refuses_writes(db_url: str, tmp_path: Path) -> None:
    with TestClient(create_app(Settings(data_dir=tmp_path / "rw", scheduler=False), db_url)):
        pass  # the primary creates the system accounts and the first checkpoint key
    settings = Settings(data_dir=tmp_path / "ro", scheduler=False, read_only=True)
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False) as c:
        assert c.get("/v1/ledger/head").status_code == 200
        assert c.get("/v1/markets").status_code in (200, 401)  # served (or asks for a key), not refused
        r = c.post("/v1/transfers", json={}, headers={"Idempotency-Key": "x"})
        assert r.status_code == 503 and r.json()["code"] == "read_only"
        assert r.headers["content-type"].startswith("application/problem+json")
        assert not c.app.state.rt.writer.running
