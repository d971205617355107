"""A read-only API process (`ENVX_READ_ONLY=true`): for a hot standby or extra read workers.

Mutations are refused before authentication (503, problem code `read_only`), so a client learns at
once that it talks to a replica. The lifespan opens only a database engine and the market followers
of `exchange.trading.replica`: no ledger writer, sequencer, scheduler, checkpoint publisher or pledge worker,
and no migrations (a standby cannot run them; the primary does).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from litestar import Litestar
from litestar.enums import ScopeType
from litestar.types import ASGIApp, HTTPResponseBodyEvent, HTTPResponseStartEvent, Receive, Scope, Send

from api.problems import PROBLEM, TYPE_BASE
from exchange.core.database import asyncpg_dsn, make_engine
from exchange.core.runtime import Runtime
from exchange.core.settings import Settings
from exchange.trading.replica import ReadOnlyHub, load_system
from ledger.writer import LedgerWriter

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def refuse_writes(app: ASGIApp) -> ASGIApp:
    """Middleware: anything but GET/HEAD/OPTIONS answers 503 `read_only`."""
    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == ScopeType.HTTP and scope["method"] not in SAFE_METHODS:
            body = json.dumps({
                "type": TYPE_BASE + "read_only", "title": "Service unavailable", "status": 503,
                "detail": "this envx process serves reads only (a read replica); send changes to the primary",
                "code": "read_only", "instance": scope.get("path", ""),
            }).encode()
            start: HTTPResponseStartEvent = {
                "type": "http.response.start", "status": 503,
                "headers": [(b"content-type", PROBLEM.encode()), (b"content-length", str(len(body)).encode())]}
            await send(start)
            end: HTTPResponseBodyEvent = {"type": "http.response.body", "body": body, "more_body": False}
            await send(end)
            return
        await app(scope, receive, send)

    return middleware


def read_only_lifespan(settings: Settings, url: str) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = make_engine(url, settings.db_pool_size)
        # Never started: anything that would reach it answers 503 ledger_unavailable.
        writer = LedgerWriter(asyncpg_dsn(url))
        rt = Runtime(settings, url, engine, writer)
        app.state.rt = rt
        try:
            await load_system(rt)
            rt.exchange = ReadOnlyHub(rt)
            await rt.exchange.start()
            yield
        finally:
            if rt.exchange is not None:
                await rt.exchange.stop()
            await engine.dispose()

    return lifespan
