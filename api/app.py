"""The Litestar application: routes, auth, problem details, OpenAPI, and the runtime's lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from litestar import Litestar
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import SwaggerRenderPlugin
from litestar.plugins.pydantic import PydanticPlugin
from litestar.types import ControllerRouterHandler

from api import edge, metrics, portal
from api.auth import ApiKeyMiddleware
from api.authz import authorize
from api.controllers.calendars import CalendarController, MarketCalendarController
from api.controllers.cash import CashController
from api.controllers.health import health, whoami
from api.controllers.ledger import LedgerController
from api.controllers.ledger_proofs import LedgerProofController
from api.controllers.markets import InstrumentStatsController, MarketController, stream
from api.controllers.negotiation import AuctionController, BlockController, auction_clock
from api.controllers.operations import KeyRotationController
from api.controllers.order_batches import OrderBatchController, dead_man_watch
from api.controllers.participants import AccountController, EnrollmentController, ParticipantController
from api.controllers.pledges import FreezeController, PledgeController, pledge_worker
from api.controllers.public import PublicController
from api.controllers.registry import (
    HoldingController,
    InstrumentController,
    IssuanceController,
    RetirementController,
    TransferController,
)
from api.controllers.restoration import CertificateCheckController, RestorationController
from api.controllers.security import AuditController, OperatorActionController, SigningKeyController
from api.controllers.tlog import ROUTES as TLOG_ROUTES
from api.deps import get_principal, get_rt
from api.encoding import Answer
from api.problems import EXCEPTION_HANDLERS
from api.read_only import read_only_lifespan, refuse_writes
from api.security.middleware import SecurityMiddleware
from api.security.openapi import declare_problem_responses, improve_openapi
from exchange.core import suspension
from exchange.core.calendar import SHANGHAI
from exchange.core.database import asyncpg_dsn, make_engine
from exchange.core.runtime import Runtime
from exchange.core.secrets import Credentials
from exchange.core.settings import Settings
from exchange.registry import expiry
from exchange.registry.system import ensure_system
from exchange.trading.hub import MarketHub
from exchange.verifiable.publisher import VerifiableLedger
from exchange.verifiable.witnessing import Witnessing
from ledger.writer import LedgerWriter

log = logging.getLogger("envx")

ROUTES: list[ControllerRouterHandler] = [
          health, whoami, ParticipantController, AccountController, InstrumentController, IssuanceController,
          TransferController, RetirementController, HoldingController, LedgerController, CashController,
          LedgerProofController, MarketController, InstrumentStatsController, stream,
          BlockController, AuctionController, RestorationController, CertificateCheckController]
ROUTES += [OrderBatchController]
ROUTES += [PledgeController, FreezeController, PublicController]
ROUTES += [CalendarController, MarketCalendarController]  # trading calendars (api/controllers/calendars.py)
ROUTES += [KeyRotationController]  # operations against the running registry (api/controllers/operations.py)
ROUTES += [SigningKeyController, OperatorActionController, AuditController, EnrollmentController]
ROUTES += TLOG_ROUTES
ROUTES += portal.ROUTES  # the public web portal (api/portal)


OnReady = Callable[[Runtime], Awaitable[None]]


def create_app(settings: Settings, url: str, on_ready: Sequence[OnReady] = ()) -> Litestar:
    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = make_engine(url, settings.db_pool_size)
        writer = LedgerWriter(asyncpg_dsn(url), max_batch=settings.writer_max_batch,
                              pipeline=settings.writer_pipeline,
                              reconnect_seconds=settings.writer_reconnect_seconds,
                              gates=[suspension.ledger_gate])  # nothing of a suspended participant's is written
        # Merkle tiles in every batch, checkpoints after it, fork check before the first one.
        verifiable = VerifiableLedger(settings, asyncpg_dsn(url))
        verifiable.attach(writer)
        metrics.attach(writer)  # batch sizes, commit latency, entries written
        try:
            await writer.start()
        except BaseException:
            log.critical("the ledger writer did not start", exc_info=True)
            await engine.dispose()
            raise
        rt = Runtime(settings, url, engine, writer, verifiable=verifiable, credentials=Credentials.load(settings))
        app.state.rt = rt
        scheduler: AsyncIOScheduler | None = None
        # Cosignatures of each checkpoint by the configured witnesses; never in the way of a write.
        witnessing = app.state.witnessing = Witnessing(settings, asyncpg_dsn(url), verifiable.publisher)
        try:
            await verifiable.start(writer)
            await witnessing.start()
            await ensure_system(rt)
            if settings.scheduler:  # markets install their calendar jobs as they start (or are defined)
                scheduler = rt.scheduler = AsyncIOScheduler(timezone=SHANGHAI)
            rt.exchange = MarketHub(rt)
            await rt.exchange.start()  # recovers every market: snapshot + journal replay
            for hook in on_ready:
                await hook(rt)
            if scheduler is not None:
                expiry.install_jobs(rt, scheduler)  # the daily emission-right expiry sweep
                scheduler.start()
            yield
        finally:
            # A graceful stop (api/cli.py: SIGTERM or SIGINT, after the server drained its requests): the
            # sequencers finish the batches they hold, then the writer the ones queued to it, each within
            # ENVX_SHUTDOWN_GRACE_SECONDS; then the publisher signs the last checkpoint.
            grace = settings.shutdown_grace_seconds
            if scheduler is not None and scheduler.running:  # a failed start must show its own cause
                scheduler.shutdown(wait=False)
            if rt.exchange is not None:
                await rt.exchange.stop(grace)
            if not await writer.drain(grace):
                log.warning("the ledger writer stopped with requests still queued (grace of %.0fs over)", grace)
            await writer.stop()
            await witnessing.stop()
            await verifiable.stop()  # after the writer: the last durable batch gets its checkpoint
            latest = verifiable.publisher.latest
            log.info("stopped: last checkpoint at tree size %s", latest.size if latest else 0)
            await engine.dispose()

    # A read replica (ENVX_READ_ONLY) runs none of the above and refuses every mutation: api/read_only.py.
    ro = settings.read_only
    declare_problem_responses(ROUTES)  # problem+json responses in the OpenAPI of every operation
    app = Litestar(
        route_handlers=ROUTES,
        # the pledge worker, the dead-man switches' watcher and the auction clock start after the runtime,
        # stop before it
        lifespan=[read_only_lifespan(settings, url)] if ro
        else [lifespan, pledge_worker, dead_man_watch, auction_clock],
        dependencies={"rt": Provide(get_rt, sync_to_thread=False),
                      "principal": Provide(get_principal, sync_to_thread=False)},
        # Requests by operation and status, with latency histograms (api/metrics.py), around everything else.
        middleware=[metrics.http_middleware, refuse_writes, ApiKeyMiddleware(), SecurityMiddleware(settings)]
        if ro else [metrics.http_middleware, ApiKeyMiddleware(), SecurityMiddleware(settings)],
        # security: after the key, before guards
        guards=[authorize],
        # Bodies are decoded once, strictly, by SecurityMiddleware (api/security/json_body.py); the models then
        # validate with strict=True: no coercion of "14", 14.0 or true into an integer (api/schemas/common.py).
        plugins=[PydanticPlugin(validate_strict=True)],
        # Every time in every answer in one convention: UTC, microseconds, Z (exchange/core/units.py).
        response_class=Answer,
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="envx — environmental-rights exchange and registry",
            version="0.1.0",
            description=("REST API of the envx registry. Authenticate with `Authorization: Bearer <key>`. "
                         "Every mutation takes an `Idempotency-Key` header (or `client_id`). Errors are RFC 9457 "
                         "problem details with a machine `code`.\n\n"
                         "**Units**, in every answer, event, stream message, webhook and error message: a "
                         "quantity is a decimal string in the instrument's unit with exactly the instrument's "
                         "decimals (`\"83\"`, `\"12.500\"`); money (prices, amounts, fees, deposits) is a "
                         "decimal string in CNY with two decimals (`\"4200.00\"`); a time is ISO 8601 in UTC "
                         "with microseconds and `Z` (`\"2026-12-01T03:54:52.322022Z\"`); trading days, terms "
                         "and deadlines are dates `YYYY-MM-DD` (Asia/Shanghai); carbon units are spelled "
                         "`tCO2e`. Integers are ids, sequence numbers, serials, counts and settings named "
                         "for their unit (`fee_bps`, `tick_fen`). Ledger entries and receipts are the ledger's "
                         "signed encoding (base units, UTC microseconds). A refusal names only the caller's "
                         "own accounts (`counterparty_unfunded` for the other side of a deal)."),
            path="/schema",
            # Swagger UI served by envx itself (api/portal/static/vendor): no script from a CDN runs on the
            # origin where operators paste their keys.
            render_plugins=[SwaggerRenderPlugin(
                path="/swagger", js_url=f"{portal.STATIC_PATH}/vendor/swagger-ui/swagger-ui-bundle.js",
                standalone_preset_js_url=f"{portal.STATIC_PATH}/vendor/swagger-ui/swagger-ui-standalone-preset.js",
                css_url=f"{portal.STATIC_PATH}/vendor/swagger-ui/swagger-ui.css")],
        ),
        template_config=portal.TEMPLATES,
        request_max_body_size=1_000_000,
        debug=False,
        logging_config=None,  # Litestar's own would add handlers in a second format: exchange/core/logs.py
    )
    improve_openapi(app)  # pydantic's request schemas: unknown fields refused, bounds, maps
    edge.install(app, settings)  # request ids on every request, /metrics (api/edge.py)
    return app
