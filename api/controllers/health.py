from __future__ import annotations

from typing import Any, Literal

from litestar import Request, get
from pydantic import BaseModel, Field

from exchange.core.database import ping
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime


class HealthOut(BaseModel):
    status: Literal["ok", "degraded"]
    database: bool
    ledger_writer: bool = Field(description="the ledger writer runs in this process")
    ledger_stopped: str | None = Field(description="why the ledger stopped taking writes (a broken invariant)")
    read_only: bool
    markets_stopped: dict[str, str] = Field(description="markets stopped on a broken invariant, with the reason")
    witnessing: Literal["off", "ok", "not_ok"] = Field(
        description="off: no witnesses configured; not_ok: a witness refuses this log's checkpoints (a rollback, "
                    "a fork: restored from an older backup, or another database with this key) or cannot be "
                    "reached. Writes go on either way: it does not make `status` degraded")
    witness_problems: dict[str, str] = Field(description="per witness (key name) not ok: its state "
                                                         "(rollback_refused, fork_refused, refused, unreachable)")


class WhoAmIOut(BaseModel):
    participant_id: int
    kind: str
    name: str
    key_id: int
    holding_account: int | None
    cash_account: int | None


@get("/health", operation_id="health", tags=["system"], summary="Liveness and readiness")
async def health(rt: Runtime, request: Request[Any, Any, Any]) -> HealthOut:
    db = await ping(rt.engine)
    read_only = rt.settings.read_only
    writer = rt.writer is not None and rt.writer.running
    # The ledger writer and the markets that stopped taking writes on a broken invariant, with the reason
    # (the policy: exchange/core/refusals.py).
    ledger_stopped = rt.writer.stopped if rt.writer is not None else None
    stopped = rt.exchange.stopped() if hasattr(rt.exchange, "stopped") else {}
    # A read replica has no writer by design: healthy when its database answers.
    ok = db and (writer or read_only) and ledger_stopped is None and not stopped
    # Witness refusals are loud here, in the log (CRITICAL) and in envx_witness_refused, but never stop writes.
    w = getattr(request.app.state, "witnessing", None)
    states = w.status() if w is not None and w.witnesses else []
    problems = {s["witness"].split("+", 1)[0]: s["state"] for s in states if s["state"] not in ("ok", "pending")}
    witnessing = "off" if not states else "not_ok" if problems else "ok"
    return HealthOut(status="ok" if ok else "degraded", database=db, ledger_writer=writer,
                     ledger_stopped=ledger_stopped, read_only=read_only, markets_stopped=stopped,
                     witnessing=witnessing, witness_problems=problems)


@get("/v1/whoami", operation_id="whoami", tags=["participants"], summary="The participant behind this key")
async def whoami(principal: Principal) -> WhoAmIOut:
    return WhoAmIOut(participant_id=principal.participant_id, kind=principal.kind, name=principal.name,
                     key_id=principal.key_id, holding_account=principal.holding_account,
                     cash_account=principal.cash_account)
