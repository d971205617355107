"""Scheduled work claimed once in the database, so two processes never run the same job twice."""

from __future__ import annotations

import os
import socket

from exchange.core import store
from exchange.core.runtime import Runtime

WORKER = f"{socket.gethostname()}:{os.getpid()}"


async def claim(rt: Runtime, job: str, run_key: str) -> bool:
    """True for the one process that claims (job, run_key) first."""
    async with rt.tx() as conn:
        return await store.claim_run(conn, job, run_key, WORKER)
