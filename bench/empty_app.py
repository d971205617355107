"""The peer of bench.e2e: an empty Litestar handler, same server stack (uvicorn), same request shape."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, post


@post("/v1/markets/{market_id:str}/orders", status_code=201)
async def place(market_id: str, data: dict[str, Any]) -> dict[str, Any]:
    return {}


app = Litestar([place])
