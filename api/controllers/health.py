from __future__ import annotations

from typing import Any

from litestar import get

from exchange.database import ping
from exchange.keys import Principal
from exchange.runtime import Runtime


@get("/health", operation_id="health", tags=["system"], summary="Liveness and readiness")
async def health(rt: Runtime) -> dict[str, Any]:
    db = await ping(rt.engine)
    return {"status": "ok" if db and rt.writer.running else "degraded", "database": db,
            "ledger_writer": rt.writer.running}


@get("/v1/whoami", operation_id="whoami", tags=["participants"], summary="The participant behind this key")
async def whoami(principal: Principal) -> dict[str, Any]:
    return {"participant_id": principal.participant_id, "kind": principal.kind, "name": principal.name,
            "key_id": principal.key_id, "holding_account": principal.holding_account,
            "cash_account": principal.cash_account}
