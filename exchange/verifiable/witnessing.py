"""The registry asks its witnesses to cosign each checkpoint (C2SP tlog-witness), and keeps what they sign.

After each publication, a task sends every configured witness ``add-checkpoint`` with the consistency proof
from the size that witness last cosigned (known from ``ledger_cosignatures``; a witness that answers 409 with
another size gets a proof from that size, once). A valid cosignature is stored; ``/checkpoint`` serves it
after the registry's signature, and the witness policy (``ENVX_WITNESS_QUORUM`` of ``ENVX_WITNESSES``) decides
which checkpoint counts as witnessed (`ledger.tlog_store.latest_witnessed`).

Witness failures never block writes: this task only reads the log, on its own connections, and a witness
that is down, slow or refusing delays only its own cosignature. A refusal that means the log was rolled
back or forked -- the witness has cosigned a larger tree than ours, or ours does not extend what it
cosigned -- is logged at CRITICAL and shown in ``status()`` (``GET /v1/ledger/witnesses``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx

from exchange.core.settings import Settings
from ledger import tlog_store, tree_store
from ledger.checkpoints import CheckpointPublisher, Published
from ledger.cosignature import CosignatureVerifier, WitnessPolicy
from ledger.tlog_store import Cosignature
from ledger.witness_state import format_add_checkpoint

log = logging.getLogger("envx.witnessing")

# How often the latest checkpoint is put again to a witness that could not be reached, when nothing new is
# published meanwhile.
RETRY_SECONDS = 5.0


@dataclass
class WitnessStatus:
    key: str
    url: str
    last_cosigned: int = 0
    state: str = "pending"  # pending | ok | unreachable | rollback_refused | fork_refused | refused
    detail: str = ""
    since: float = 0.0

    def view(self) -> dict[str, Any]:
        return {"witness": self.key, "url": self.url, "last_cosigned_size": self.last_cosigned,
                "state": self.state, "detail": self.detail}


def policy_of(settings: Settings) -> WitnessPolicy:
    return WitnessPolicy.of([k for k, _ in settings.witness_list], settings.witness_quorum)


class Witnessing:
    def __init__(self, settings: Settings, dsn: str, publisher: CheckpointPublisher) -> None:
        self.policy = policy_of(settings)
        self._dsn = dsn
        self._publisher = publisher
        self._timeout = settings.witness_timeout_seconds
        self.witnesses = [(CosignatureVerifier.from_key_string(k), url) for k, url in settings.witness_list]
        self._status = {v.key_string(): WitnessStatus(v.key_string(), url) for v, url in self.witnesses}
        self._pool: asyncpg.Pool | None = None
        self._http: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._done = 0
        self._changed = asyncio.Condition()

    def status(self) -> list[dict[str, Any]]:
        return [s.view() for s in self._status.values()]

    async def start(self) -> None:
        if not self.witnesses:
            return
        self._pool = await asyncpg.create_pool(self._dsn, min_size=1, max_size=2)
        self._http = httpx.AsyncClient(timeout=self._timeout)
        async with self._pool.acquire() as conn:
            for key, size in (await tlog_store.last_cosigned(conn, list(self._status))).items():
                self._status[key].last_cosigned = size
        self._task = asyncio.create_task(self._run(), name="envx-witnessing")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        if self._http is not None:
            await self._http.aclose()
        if self._pool is not None:
            await self._pool.close()

    async def _run(self) -> None:
        while True:
            cp = await self._publisher.wait_covering(self._done + 1, timeout=RETRY_SECONDS)
            if cp is None or cp.size <= self._done:
                if not self._publisher.running:
                    await asyncio.sleep(0.5)
                    continue
                await self._retry_lagging()
                continue
            try:
                await asyncio.gather(*(self._witness(v, url, cp) for v, url in self.witnesses))
            except Exception:  # a bug or the database: loud, and the next checkpoint is tried again
                log.exception("witnessing checkpoint %d failed", cp.size)
                await asyncio.sleep(1.0)
                continue
            self._done = cp.size
            async with self._changed:
                self._changed.notify_all()

    async def _retry_lagging(self) -> None:
        """A quiet log publishes no new checkpoint: put the latest one again to every witness that could not
        be reached (or answered otherwise than with a cosignature or a refusal) when it was sent, so it does
        not stay unwitnessed until the next write. A witness that refused a rollback or a fork is not asked
        again: that needs an operator."""
        cp = self._publisher.latest
        if cp is None or cp.size > self._done:
            return
        lagging = [(v, url) for v, url in self.witnesses
                   if self._status[v.key_string()].state in ("unreachable", "refused")
                   and self._status[v.key_string()].last_cosigned < cp.size]
        if not lagging:
            return
        try:
            await asyncio.gather(*(self._witness(v, url, cp) for v, url in lagging))
        except Exception:
            log.exception("witnessing checkpoint %d again failed", cp.size)
            return
        async with self._changed:
            self._changed.notify_all()

    def _set(self, st: WitnessStatus, state: str, detail: str, level: int = logging.INFO) -> None:
        if (st.state, st.detail) != (state, detail):
            log.log(level, "witness %s: %s %s", st.url, state, detail)
        st.state, st.detail, st.since = state, detail, time.time()

    async def _witness(self, verifier: CosignatureVerifier, url: str, cp: Published) -> None:
        st = self._status[verifier.key_string()]
        assert self._pool is not None and self._http is not None
        old = st.last_cosigned if st.last_cosigned <= cp.size else 0
        for _ in range(2):
            async with self._pool.acquire() as conn:
                proof = await tree_store.consistency_proof(conn, old, cp.size) if old else []
            try:
                body = format_add_checkpoint(old, proof, cp.note)
                resp = await self._http.post(f"{url}/add-checkpoint", content=body)
            except httpx.HTTPError as exc:
                self._set(st, "unreachable", f"{exc.__class__.__name__}: {exc}", logging.WARNING)
                return
            if resp.status_code == 200:
                await self._accept(st, verifier, cp, resp.text)
                return
            if resp.status_code == 409 and resp.headers.get("content-type", "").startswith("text/x.tlog.size"):
                try:
                    known = int(resp.text.strip())
                except ValueError:
                    known = -1
                if known > cp.size:
                    self._set(st, "rollback_refused",
                              f"the witness has cosigned size {known} of this log, but the log's checkpoint is at "
                              f"size {cp.size}: the database is behind what was witnessed (restored from an "
                              f"older backup?) or another database signs with this key", logging.CRITICAL)
                    return
                if known < 0 or known == old:
                    break
                old = known
                continue
            if resp.status_code in (409, 422):
                self._set(st, "fork_refused",
                          f"the witness refused size {cp.size} from size {old} ({resp.status_code}: "
                          f"{resp.text.strip()[:200]}): this log does not extend what the witness cosigned",
                          logging.CRITICAL)
                return
            break
        self._set(st, "refused", f"HTTP {resp.status_code}: {resp.text.strip()[:200]}", logging.ERROR)

    async def _accept(self, st: WitnessStatus, verifier: CosignatureVerifier, cp: Published, body: str) -> None:
        text = cp.note[: cp.note.rfind("\n\n") + 1]
        for line in body.splitlines(keepends=True):
            ts = verifier.verify_line(text, line)
            if ts is not None:
                async with self._pool.acquire() as conn:  # type: ignore[union-attr]
                    await tlog_store.add_cosignature(conn, Cosignature(cp.size, verifier.key_string(), ts, line))
                st.last_cosigned = cp.size
                self._set(st, "ok", f"cosigned size {cp.size}")
                return
        self._set(st, "refused", "the answer holds no valid cosignature by this witness's key", logging.ERROR)

    async def wait_witnessed(self, size: int, timeout: float) -> bool:
        """True once a checkpoint covering ``size`` has been put to every witness (answered or not)."""
        deadline = time.monotonic() + timeout
        async with self._changed:
            while self._done < size:
                left = deadline - time.monotonic()
                if left <= 0 or self._task is None:
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), left)
        return True
