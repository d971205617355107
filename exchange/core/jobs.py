"""Scheduled work claimed once in the database, so two processes never run the same job twice."""

from __future__ import annotations

import os
import socket

from sqlalchemy import text

from exchange.core.runtime import Runtime

WORKER = f"{socket.gethostname()}:{os.getpid()}"


async def claim(rt: Runtime, job: str, run_key: str) -> bool:
    """True for the one process that claims (job, run_key) first."""
    async with rt.tx() as conn:
        row = (await conn.execute(text(
            """INSERT INTO job_runs (job, run_key, claimed_by) VALUES (:j, :k, :w)
               ON CONFLICT DO NOTHING RETURNING job"""), {"j": job, "k": run_key, "w": WORKER})).first()
    return row is not None
