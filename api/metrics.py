"""Prometheus metrics at ``/metrics``: what an operator watches to know the registry is well.

Two kinds of series:

- **Counted as things happen** (process-wide, `prometheus_client`'s default registry): HTTP requests by
  operation, path template and status with latency histograms (`HttpMetrics`, the series Litestar's
  Prometheus middleware kept, cheaper per request);
  the ledger writer's batches -- requests per batch, entries written, transaction seconds (`observe_writer`,
  a batch observer on the writer).
- **Read at scrape time** from the running system (`snapshot`, a fresh registry per scrape, so a series of a
  market that is gone disappears): the writer's queue depth and totals; per market the journal lag (sequence
  numbers journaled but not yet applied), open orders, last sequence number, queued commands and whether it
  stopped; the Merkle tree size, the latest checkpoint's size and age, per witness the entries it has not
  cosigned yet; the pledge webhook outbox (pending, failed, oldest pending age); pledges by status and margin
  level; the database pool.

Who may scrape is decided at the edge (api/edge.py): an operator's or auditor's API key, or a client address
listed in ``ENVX_METRICS_ALLOWED_ADDRESSES``; ``ENVX_METRICS_ENABLED=false`` answers 404. The dashboard for
these series is api/assets/grafana/envx.json.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from litestar.types import ASGIApp, Message, Receive, Send
from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from api.authz import operation_of
from exchange.core import store
from exchange.core.runtime import Runtime
from exchange.trading import running
from ledger.writer import LedgerWriter

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# Requests: 1 ms .. 10 s (a long poll for a checkpoint waits up to its timeout).
HTTP_BUCKETS: list[str | float] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]


# The request series, as Litestar's Prometheus middleware named and labelled them (dashboards and alerts
# read these names): method, path template (not the raw path: ids would explode the series), status code,
# app name, operation.
_HTTP_LABELS = ("method", "path", "status_code", "app_name", "operation")
HTTP_REQUESTS = Counter("envx_http_requests_total", "Total requests", _HTTP_LABELS)
HTTP_SECONDS = Histogram("envx_http_request_duration_seconds", "Request duration, in seconds", _HTTP_LABELS,
                         buckets=HTTP_BUCKETS)
HTTP_IN_PROGRESS = Gauge("envx_http_requests_in_progress", "Total requests currently in progress", _HTTP_LABELS,
                         multiprocess_mode="livesum")
HTTP_ERRORS = Counter("envx_http_requests_error_total", "Total errors in requests", _HTTP_LABELS)
_MAX_SERIES = 10_000  # children remembered per series; beyond, each request looks its own up


class HttpMetrics:
    """Requests by operation and status with their latency, around everything after routing: the series of
    Litestar's Prometheus middleware (same names, labels, buckets and meaning: in progress counted under
    status 200, the duration up to the last body message, errors for status >= 500), each label set's
    children looked up once instead of on every request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._done: dict[tuple[str, str, int, str], tuple[Any, Any, Any | None]] = {}
        self._running: dict[tuple[str, str, str], Any] = {}

    def _finished(self, key: tuple[str, str, int, str]) -> tuple[Any, Any, Any | None]:
        children = self._done.get(key)
        if children is None:
            method, path, status, op = key
            values = (method, path, str(status), "envx", op)
            children = (HTTP_REQUESTS.labels(*values), HTTP_SECONDS.labels(*values),
                        HTTP_ERRORS.labels(*values) if status >= 500 else None)
            if len(self._done) < _MAX_SERIES:
                self._done[key] = children
        return children

    def _in_progress(self, key: tuple[str, str, str]) -> Any:
        child = self._running.get(key)
        if child is None:
            child = HTTP_IN_PROGRESS.labels(key[0], key[1], "200", "envx", key[2])
            if len(self._running) < _MAX_SERIES:
                self._running[key] = child
        return child

    async def __call__(self, scope: Any, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        handler = scope.get("route_handler")
        method = scope["method"] if kind == "http" else kind
        path = scope["path_template"]
        op = (operation_of(handler) if handler is not None else None) or "-"
        started = time.perf_counter()
        span = [200, 0.0]  # status, duration

        async def timed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                span[0] = message["status"]
            elif message["type"] == "http.response.body":
                span[1] = time.perf_counter() - started
            await send(message)

        running = self._in_progress((method, path, op))
        running.inc()
        try:
            await self.app(scope, receive, timed_send)
        finally:
            running.dec()
            count, seconds, errors = self._finished((method, path, int(span[0]), op))
            if errors is not None:
                errors.inc()
            count.inc()
            seconds.observe(span[1])


def http_middleware(app: ASGIApp) -> ASGIApp:
    """The request series (`HttpMetrics`) as the app's outermost middleware."""
    return HttpMetrics(app)


WRITER_BATCH_REQUESTS = Histogram(
    "envx_ledger_writer_batch_requests", "Requests per committed ledger writer batch",
    buckets=[1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096])
WRITER_COMMIT_SECONDS = Histogram(
    "envx_ledger_writer_commit_seconds", "Seconds a ledger writer batch spends in its transaction (to commit)",
    buckets=[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
WRITER_ENTRIES = Counter("envx_ledger_entries_written", "Ledger entries committed by this process's writer")


def observe_writer(requests: int, entries: int, seconds: float) -> None:
    WRITER_BATCH_REQUESTS.observe(requests)
    WRITER_COMMIT_SECONDS.observe(seconds)
    WRITER_ENTRIES.inc(entries)


def attach(writer: LedgerWriter) -> None:
    writer.add_batch_observer(observe_writer)


async def snapshot(rt: Runtime, witnessing: Any = None) -> CollectorRegistry:
    """The system's state now, as gauges in a registry of their own."""
    reg = CollectorRegistry(auto_describe=True)

    def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
        return Gauge(name, doc, labels, registry=reg)

    writer = rt.writer
    if writer is not None:
        gauge("envx_ledger_writer_queue_depth", "Requests waiting for a ledger writer batch").set(writer.queue_depth)
        gauge("envx_ledger_writer_running", "1 if the ledger writer runs in this process").set(int(writer.running))
        gauge("envx_ledger_writer_stopped", "1 if the ledger stopped taking writes (a broken invariant)").set(
            int(writer.stopped is not None))
        gauge("envx_ledger_writer_batches", "Batches committed since the writer started").set(writer.batches)

    sequencers = running.sequencers(rt)  # the primary's (a read replica's followers take no commands)
    if sequencers:
        lag = gauge("envx_market_journal_lag", "Sequence numbers journaled but not yet applied (settled and "
                    "projected)", ("market",))
        open_orders = gauge("envx_market_open_orders", "Open orders and listings resting in the market", ("market",))
        last = gauge("envx_market_last_seq", "Last sequence number journaled", ("market",))
        queued = gauge("envx_market_queue_depth", "Commands waiting for the market's sequencer", ("market",))
        stopped = gauge("envx_market_stopped", "1 if the market stopped taking writes", ("market",))
        for seq in sequencers:
            market_id = seq.market.id
            lag.labels(market_id).set(max(0, seq.last_seq - seq.applied_seq))
            open_orders.labels(market_id).set(len(seq.orders))
            last.labels(market_id).set(seq.last_seq)
            queued.labels(market_id).set(seq.queue.qsize())
            stopped.labels(market_id).set(int(seq.stopped is not None))

    verifiable = rt.verifiable
    if verifiable is not None:
        tree = getattr(verifiable, "tree", None)
        size = tree.head()[0] if tree is not None else 0
        gauge("envx_ledger_tree_size", "Entries in the durable Merkle tree").set(size)
        latest = verifiable.publisher.latest
        if latest is not None:
            gauge("envx_checkpoint_tree_size", "Tree size of the latest signed checkpoint").set(latest.size)
            gauge("envx_checkpoint_lag_entries", "Durable entries not yet covered by a signed checkpoint").set(
                max(0, size - latest.size))
            if latest.created_at is not None:
                age = (datetime.now(UTC) - latest.created_at).total_seconds()
                gauge("envx_checkpoint_age_seconds", "Seconds since the latest checkpoint was signed").set(
                    max(0.0, age))
            if witnessing is not None and witnessing.witnesses:
                w = gauge("envx_witness_lag_entries", "Entries of the latest checkpoint the witness has not "
                          "cosigned", ("witness",))
                ok = gauge("envx_witness_ok", "1 if the witness's last answer was a cosignature", ("witness",))
                refused = gauge("envx_witness_refused", "1 if the witness refuses this log's checkpoint: a rollback "
                                "(restored from an older backup, or another database with this key) or a fork",
                                ("witness", "reason"))
                for status in witnessing.status():
                    name = status["witness"].split("+", 1)[0]
                    w.labels(name).set(max(0, latest.size - status["last_cosigned_size"]))
                    ok.labels(name).set(int(status["state"] == "ok"))
                    for reason in ("rollback", "fork", "other"):
                        state = {"rollback": "rollback_refused", "fork": "fork_refused", "other": "refused"}[reason]
                        refused.labels(name, reason).set(int(status["state"] == state))

    pool = rt.engine.pool
    conns = gauge("envx_db_pool_connections", "Database pool connections by state", ("state",))
    for state, read in (("checked_out", "checkedout"), ("idle", "checkedin"), ("overflow", "overflow")):
        fn = getattr(pool, read, None)
        if fn is not None:
            conns.labels(state).set(max(0, fn()))
    size_fn = getattr(pool, "size", None)
    if size_fn is not None:
        gauge("envx_db_pool_size", "Configured size of the database pool").set(size_fn())

    started = time.perf_counter()
    async with rt.read() as conn:
        outbox = await store.outbox_backlog(conn)
        pledges = await store.pledges_by_state(conn)
    gauge("envx_webhook_outbox_pending", "Pledge webhook deliveries waiting to be sent or retried").set(outbox[0])
    gauge("envx_webhook_outbox_failed", "Pledge webhook deliveries given up after every retry").set(outbox[1])
    gauge("envx_webhook_outbox_oldest_pending_seconds", "Age of the oldest undelivered pledge event").set(
        outbox[2])
    by_state = gauge("envx_pledges", "Pledge registrations by status and margin level", ("status", "margin_level"))
    for status, level, count in pledges:
        by_state.labels(status, level).set(count)
    gauge("envx_metrics_scrape_query_seconds", "Seconds the scrape's database queries took").set(
        time.perf_counter() - started)
    return reg


async def render(rt: Runtime, witnessing: Any = None) -> bytes:
    """The exposition text: what was counted, then the state now."""
    return generate_latest(REGISTRY) + generate_latest(await snapshot(rt, witnessing))
