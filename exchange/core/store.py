"""The core's SQL: the database's liveness, exact answers kept for replays, claimed job runs, and the
participant status the suspension gates read. Every function takes the caller's connection."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True, slots=True)
class Answer:
    """A keyed request's answer as it was sent: status, media type and the exact bytes."""

    status: int
    media_type: str
    body: bytes


async def alive(conn: AsyncConnection) -> bool:
    return (await conn.execute(text("SELECT 1"))).scalar() == 1


async def stored_answer(conn: AsyncConnection, actor: str, client_id: str, request_sha256: bytes) -> Answer | None:
    row = (await conn.execute(text(
        """SELECT status, media_type, body FROM answers_by_request
           WHERE actor = :a AND client_id = :c AND request_sha256 = :r"""),
        {"a": actor, "c": client_id, "r": request_sha256})).first()
    return None if row is None else Answer(row.status, row.media_type, bytes(row.body))


async def insert_answer(conn: AsyncConnection, actor: str, client_id: str, request_sha256: bytes,
                        answer: Answer) -> None:
    await conn.execute(text(
        """INSERT INTO answers_by_request (actor, client_id, request_sha256, status, media_type, body)
           VALUES (:a, :c, :r, :s, :m, :b) ON CONFLICT DO NOTHING"""),
        {"a": actor, "c": client_id, "r": request_sha256, "s": answer.status, "m": answer.media_type,
         "b": answer.body})


async def stored_answers(conn: AsyncConnection, actor: str,
                         keys: list[tuple[str, bytes]]) -> dict[tuple[str, bytes], Answer]:
    """The kept answers of several requests of one actor at once, by (client id, request digest)."""
    if not keys:
        return {}
    rows = (await conn.execute(text(
        """SELECT a.client_id, a.request_sha256, a.status, a.media_type, a.body
           FROM answers_by_request a JOIN unnest(CAST(:c AS text[]), CAST(:r AS bytea[])) AS k(c, r)
             ON a.client_id = k.c AND a.request_sha256 = k.r
           WHERE a.actor = :a"""),
        {"a": actor, "c": [k[0] for k in keys], "r": [k[1] for k in keys]})).all()
    return {(r.client_id, bytes(r.request_sha256)): Answer(r.status, r.media_type, bytes(r.body)) for r in rows}


async def insert_answers(conn: AsyncConnection, actor: str, answers: list[tuple[str, bytes, Answer]]) -> None:
    """Keep several answers of one actor at once: (client id, request digest, answer) each."""
    if not answers:
        return
    await conn.execute(text(
        """INSERT INTO answers_by_request (actor, client_id, request_sha256, status, media_type, body)
           SELECT :a, c, r, s, m, b
           FROM unnest(CAST(:c AS text[]), CAST(:r AS bytea[]), CAST(:s AS smallint[]), CAST(:m AS text[]),
                       CAST(:b AS bytea[])) AS k(c, r, s, m, b)
           ON CONFLICT DO NOTHING"""),
        {"a": actor, "c": [x[0] for x in answers], "r": [x[1] for x in answers],
         "s": [x[2].status for x in answers], "m": [x[2].media_type for x in answers],
         "b": [x[2].body for x in answers]})


async def stored_answers_of(conn: AsyncConnection,
                            requests: list[tuple[str, str, bytes]]) -> dict[tuple[str, str, bytes], Answer]:
    """The kept answers of several requests, of any actors, at once, by (actor, client id, request digest)."""
    if not requests:
        return {}
    rows = (await conn.execute(text(
        """SELECT a.actor, a.client_id, a.request_sha256, a.status, a.media_type, a.body
           FROM unnest(CAST(:a AS text[]), CAST(:c AS text[]), CAST(:r AS bytea[])) AS k(a, c, r)
           JOIN answers_by_request a ON a.actor = k.a AND a.client_id = k.c AND a.request_sha256 = k.r"""),
        {"a": [r[0] for r in requests], "c": [r[1] for r in requests], "r": [r[2] for r in requests]})).all()
    return {(r.actor, r.client_id, bytes(r.request_sha256)): Answer(r.status, r.media_type, bytes(r.body))
            for r in rows}


async def insert_answers_of(conn: AsyncConnection, rows: list[tuple[str, str, bytes, Answer]]) -> None:
    """Keep the answers of several requests, of any actors, at once: (actor, client id, digest, answer) each."""
    if not rows:
        return
    await conn.execute(text(
        """INSERT INTO answers_by_request (actor, client_id, request_sha256, status, media_type, body)
           SELECT a, c, r, s, m, b
           FROM unnest(CAST(:a AS text[]), CAST(:c AS text[]), CAST(:r AS bytea[]), CAST(:s AS smallint[]),
                       CAST(:m AS text[]), CAST(:b AS bytea[])) AS k(a, c, r, s, m, b)
           ON CONFLICT DO NOTHING"""),
        {"a": [x[0] for x in rows], "c": [x[1] for x in rows], "r": [x[2] for x in rows],
         "s": [x[3].status for x in rows], "m": [x[3].media_type for x in rows], "b": [x[3].body for x in rows]})


# The same two on a raw asyncpg connection: a market's projection transaction keeps its orders' answers with them.
_ANSWERS_OF = """SELECT a.actor, a.client_id, a.request_sha256, a.status, a.media_type, a.body
    FROM unnest($1::text[], $2::text[], $3::bytea[]) AS k(a, c, r)
    JOIN answers_by_request a ON a.actor = k.a AND a.client_id = k.c AND a.request_sha256 = k.r"""
_KEEP_ANSWERS = """INSERT INTO answers_by_request (actor, client_id, request_sha256, status, media_type, body)
    SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::smallint[], $5::text[], $6::bytea[])
    ON CONFLICT DO NOTHING"""


async def kept_answers(conn: asyncpg.Connection,
                       requests: list[tuple[str, str, bytes]]) -> dict[tuple[str, str, bytes], Answer]:
    """`stored_answers_of` on a raw asyncpg connection."""
    if not requests:
        return {}
    rows = await conn.fetch(_ANSWERS_OF, [r[0] for r in requests], [r[1] for r in requests],
                            [r[2] for r in requests])
    return {(r["actor"], r["client_id"], bytes(r["request_sha256"])): Answer(r["status"], r["media_type"],
                                                                              bytes(r["body"])) for r in rows}


async def keep_answers(conn: asyncpg.Connection, rows: list[tuple[str, str, bytes, Answer]]) -> None:
    """`insert_answers_of` on a raw asyncpg connection, inside the caller's transaction."""
    if not rows:
        return
    await conn.execute(_KEEP_ANSWERS, [x[0] for x in rows], [x[1] for x in rows], [x[2] for x in rows],
                       [x[3].status for x in rows], [x[3].media_type for x in rows], [x[3].body for x in rows])


async def claim_run(conn: AsyncConnection, job: str, run_key: str, worker: str) -> bool:
    """True if this call inserted the (job, run_key) claim."""
    row = (await conn.execute(text(
        """INSERT INTO job_runs (job, run_key, claimed_by) VALUES (:j, :k, :w)
           ON CONFLICT DO NOTHING RETURNING job"""), {"j": job, "k": run_key, "w": worker})).first()
    return row is not None


_STATUS = "SELECT id, status FROM participants WHERE id = ANY($1::bigint[]) ORDER BY id FOR KEY SHARE"


async def statuses_for_key_share(conn: asyncpg.Connection, participant_ids: list[int]) -> dict[int, str]:
    """The status of each participant, read FOR KEY SHARE (on the writer's and journals' raw connections)."""
    return {int(r["id"]): str(r["status"]) for r in await conn.fetch(_STATUS, participant_ids)}


# --- operations: the figures /metrics reads at scrape time, the state of a restored server -------------------


async def outbox_backlog(conn: AsyncConnection) -> tuple[int, int, float]:
    """Pledge webhook deliveries pending and failed, and the age in seconds of the oldest pending event."""
    row = (await conn.execute(text(
        "SELECT count(*) FILTER (WHERE o.status = 'pending'), count(*) FILTER (WHERE o.status = 'failed'), "
        "coalesce(extract(epoch FROM now() - min(e.created_at) FILTER (WHERE o.status = 'pending')), 0) "
        "FROM pledge_outbox o JOIN pledge_events e ON e.id = o.event_id"))).one()
    return int(row[0]), int(row[1]), float(row[2] or 0)


async def pledges_by_state(conn: AsyncConnection) -> list[tuple[str, str, int]]:
    rows = (await conn.execute(text(
        "SELECT status, margin_level, count(*) FROM pledges GROUP BY status, margin_level"))).all()
    return [(str(r[0]), str(r[1]), int(r[2])) for r in rows]


async def promote_if_recovering(conn: asyncpg.Connection) -> bool:
    """Ask a server still in recovery (a paused recovery target) to promote; whether it was in recovery."""
    if not await conn.fetchval("SELECT pg_is_in_recovery()"):
        return False
    await conn.execute("SELECT pg_promote(true, 60)")
    return True
