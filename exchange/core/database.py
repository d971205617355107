"""Where the database is: a server named by ENVX_DATABASE_URL, or an embedded PostgreSQL.

The embedded server comes from the `pgserver` wheel (real PostgreSQL binaries), so a fresh machine
needs nothing installed by hand. It lives in `<data dir>/pg` and is stopped when the process exits.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from exchange.core import store
from exchange.core.archiving import configure_archiving
from ledger.writer import CONNECTION_LOST

log = logging.getLogger("envx.database")

DB_NAME = "envx"
_servers: dict[str, object] = {}


def start_embedded(data_dir: Path, database: str = DB_NAME, wal_archive_dir: Path | None = None) -> str:
    """Start (or reuse) the embedded server; return a plain postgresql:// URL for `database`. With
    `wal_archive_dir`, the server archives its WAL there (exchange/core/backup.py)."""
    import pgserver  # not a cycle: a heavy import (it unpacks PostgreSQL), only when embedding

    pgdata = (data_dir / "pg").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    key = str(pgdata)
    server = _servers.get(key)
    if server is None:
        server = pgserver.get_server(pgdata, cleanup_mode="stop")
        _servers[key] = server
        if wal_archive_dir is not None:
            configure_archiving(server, pgdata, wal_archive_dir)
    if database != "postgres":
        exists = server.psql(f"SELECT 1 FROM pg_database WHERE datname = '{database}';")  # type: ignore[attr-defined]
        if "(1 row)" not in exists:
            server.psql(f'CREATE DATABASE "{database}";')  # type: ignore[attr-defined]
    uri: str = server.get_uri(database)  # type: ignore[attr-defined]
    log.info("embedded PostgreSQL at %s", pgdata)
    return uri


def stop_embedded(data_dir: Path) -> None:
    """Stop the embedded server of `data_dir` if this process started it (before its directory is removed:
    a server whose directory is gone cannot be stopped by its own handle any more)."""
    server = _servers.pop(str((data_dir / "pg").resolve()), None)
    if server is not None:
        server.cleanup()  # type: ignore[attr-defined]


def resolve_url(database_url: str | None, data_dir: Path, wal_archive_dir: Path | None = None) -> str:
    return database_url or start_embedded(data_dir, wal_archive_dir=wal_archive_dir)


def asyncpg_dsn(url: str) -> str:
    """A URL asyncpg accepts (no SQLAlchemy driver suffix)."""
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme.startswith("postgres") else parts.scheme
    return urlunsplit((scheme, parts.netloc, parts.path, parts.query, parts.fragment))


def sqlalchemy_url(url: str) -> str:
    parts = urlsplit(asyncpg_dsn(url))
    netloc, query = parts.netloc, parts.query
    if "," in netloc.rpartition("@")[2]:
        # libpq's multi-host form (h1:p1,h2:p2, for failover) is not a SQLAlchemy URL; its asyncpg
        # dialect takes the same hosts as repeated `host=h:p` query parameters, each with its port.
        userinfo, at, hosts = netloc.rpartition("@")
        extra = "&".join(f"host={h if ':' in h else h + ':5432'}" for h in hosts.split(","))
        netloc = userinfo + at
        query = f"{query}&{extra}" if query else extra
    return urlunsplit(("postgresql+asyncpg", netloc, parts.path, query, parts.fragment))


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + quote(database), parts.query, parts.fragment))


def make_engine(url: str, pool_size: int = 10) -> AsyncEngine:
    # No pre-ping: it costs a round trip on every checkout; a dead connection fails its statement,
    # the request answers 503 and the pool replaces the connection.
    return create_async_engine(sqlalchemy_url(url), pool_size=pool_size, max_overflow=pool_size)


async def ping(engine: AsyncEngine) -> bool:
    async with engine.connect() as conn:
        return await store.alive(conn)


def database_unreachable(exc: BaseException | None) -> bool:
    """A lost, read-only or not-yet-promoted database (outage, failover in progress), not a bug: the
    caller should retry. Walks the chain, since SQLAlchemy wraps the driver's error."""
    retryable = (*CONNECTION_LOST, asyncpg.exceptions.ReadOnlySQLTransactionError,
                 asyncpg.exceptions.CannotConnectNowError, asyncpg.exceptions.TargetServerAttributeNotMatched)
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, retryable) or (isinstance(exc, DBAPIError) and exc.connection_invalidated):
            return True
        exc = exc.__cause__ or getattr(exc, "orig", None) or exc.__context__
    return False
