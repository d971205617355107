"""Shared bench plumbing: a throwaway PostgreSQL (embedded unless ENVX_BENCH_DATABASE_URL is set)."""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
from pathlib import Path

import asyncpg

from exchange.core.database import asyncpg_dsn, start_embedded, with_database
from exchange.core.migrate import upgrade

_tmp: tempfile.TemporaryDirectory[str] | None = None


def admin_url() -> str:
    global _tmp
    url = os.environ.get("ENVX_BENCH_DATABASE_URL")
    if url:
        return url
    _tmp = tempfile.TemporaryDirectory(prefix="envx-bench-")
    return start_embedded(Path(_tmp.name), database="postgres")


def fresh_database(admin: str, name: str) -> str:
    async def run() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(admin))
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(run())
    url = with_database(admin, name)
    upgrade(url)
    return url


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def pct(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p / 100 * len(s)))]


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One HTTP/1.1 response off a kept-alive connection: its status and body (Content-Length framed)."""
    status_line = await reader.readline()
    length = 0
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    body = await reader.readexactly(length) if length else b""
    return int(status_line.split()[1]), body
