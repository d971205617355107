"""A lost database answers 503 with Retry-After, not 500; a real bug still answers 500."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from sqlalchemy.exc import IntegrityError

from exchange.core.database import database_unreachable
from tests.system.server import free_port


def test_connection_failures_are_unavailable_and_bugs_are_not() -> None:
    async def refused() -> BaseException:
        try:
            await asyncpg.connect(host="127.0.0.1", port=free_port(), user="x", database="x", timeout=5)
        except Exception as exc:  # nothing listens there: the driver's real error
            return exc
        pytest.fail("connected to a port nobody listens on")

    lost = asyncio.run(refused())
    assert database_unreachable(lost)
    try:  # wrapped, as a service layer would re-raise it
        raise RuntimeError("query failed") from lost
    except RuntimeError as wrapped:
        assert database_unreachable(wrapped)
    assert not database_unreachable(ValueError("a bug"))
    assert not database_unreachable(IntegrityError("INSERT", {}, Exception("duplicate key")))
