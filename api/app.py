"""The Litestar application: routes, auth, problem details, OpenAPI, and the runtime's lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import ScalarRenderPlugin, SwaggerRenderPlugin

from api.auth import ApiKeyMiddleware
from api.authz import authorize
from api.controllers.cash import CashController
from api.controllers.health import health, whoami
from api.controllers.ledger import LedgerController
from api.controllers.participants import AccountController, ParticipantController
from api.controllers.registry import (
    HoldingController,
    InstrumentController,
    IssuanceController,
    RetirementController,
    TransferController,
)
from api.deps import get_principal, get_rt
from api.problems import EXCEPTION_HANDLERS
from exchange.bootstrap import ensure_system
from exchange.database import asyncpg_dsn, make_engine
from exchange.runtime import Runtime
from exchange.settings import Settings
from ledger.writer import LedgerWriter

log = logging.getLogger("envx")

ROUTES = [health, whoami, ParticipantController, AccountController, InstrumentController, IssuanceController,
          TransferController, RetirementController, HoldingController, LedgerController, CashController]


OnReady = Callable[[Runtime], Awaitable[None]]


def create_app(settings: Settings, url: str, on_ready: Sequence[OnReady] = ()) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = make_engine(url, settings.db_pool_size)
        writer = LedgerWriter(asyncpg_dsn(url), max_batch=settings.writer_max_batch)
        await writer.start()
        rt = Runtime(settings, url, engine, writer)
        app.state.rt = rt
        try:
            await ensure_system(rt)
            for hook in on_ready:
                await hook(rt)
            yield
        finally:
            await writer.stop()
            await engine.dispose()

    return Litestar(
        route_handlers=ROUTES,
        lifespan=[lifespan],
        dependencies={"rt": Provide(get_rt, sync_to_thread=False),
                      "principal": Provide(get_principal, sync_to_thread=False)},
        middleware=[ApiKeyMiddleware()],
        guards=[authorize],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="envx — environmental-rights exchange and registry",
            version="0.1.0",
            description=("REST API of the envx registry. Authenticate with `Authorization: Bearer <key>`. "
                         "Quantities and money are decimal strings in the instrument's unit; every mutation "
                         "takes an `Idempotency-Key` header (or `client_id`). Errors are RFC 9457 problem "
                         "details with a machine `code`."),
            path="/schema",
            render_plugins=[ScalarRenderPlugin(), SwaggerRenderPlugin(path="/swagger")],
        ),
        request_max_body_size=1_000_000,
        debug=False,
    )
