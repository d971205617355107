from __future__ import annotations

from typing import Any

from litestar import get

from exchange.core.database import ping
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime


@get("/health", operation_id="health", tags=["system"], summary="Liveness and readiness")
async def health(rt: Runtime) -> dict[str, Any]:
    db = await ping(rt.engine)
    read_only = rt.settings.read_only
    writer = rt.writer is not None and rt.writer.running
    # Markets that stopped taking writes on a broken invariant (exchange/trading/sequencer.py), with the reason.
    stopped = rt.exchange.stopped() if hasattr(rt.exchange, "stopped") else {}
    # A read replica has no writer by design: healthy when its database answers.
    return {"status": "ok" if db and (writer or read_only) and not stopped else "degraded", "database": db,
            "ledger_writer": writer, "read_only": read_only, "markets_stopped": stopped}


@get("/v1/whoami", operation_id="whoami", tags=["participants"], summary="The participant behind this key")
async def whoami(principal: Principal) -> dict[str, Any]:
    return {"participant_id": principal.participant_id, "kind": principal.kind, "name": principal.name,
            "key_id": principal.key_id, "holding_account": principal.holding_account,
            "cash_account": principal.cash_account}
