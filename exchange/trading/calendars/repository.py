"""The SQL of trading calendars. Every function takes the caller's connection; rows become models here."""

from __future__ import annotations

import json
from datetime import date
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.trading.calendars.models import Assignment, Calendar, CalendarDay, Change


async def calendar(conn: AsyncConnection, calendar_id: str, *, lock: bool = False) -> Calendar | None:
    row = (await conn.execute(text("SELECT id, name, note FROM calendars WHERE id = :c"
                                   + (" FOR UPDATE" if lock else "")), {"c": calendar_id})).first()
    if row is None:
        return None
    days = await conn.execute(text("SELECT day, kind, name, source FROM calendar_days WHERE calendar_id = :c "
                                   "ORDER BY day"), {"c": calendar_id})
    return Calendar.from_row(row._mapping, [CalendarDay.from_row(d._mapping) for d in days])


async def calendars(conn: AsyncConnection) -> list[Calendar]:
    ids = (await conn.execute(text("SELECT id FROM calendars ORDER BY id"))).scalars().all()
    found = [await calendar(conn, i) for i in ids]
    return [c for c in found if c is not None]


async def create_calendar(conn: AsyncConnection, calendar_id: str, name: str, note: str) -> None:
    await conn.execute(text("INSERT INTO calendars (id, name, note) VALUES (:c, :n, :o) ON CONFLICT (id) DO NOTHING"),
                       {"c": calendar_id, "n": name, "o": note})


async def describe(conn: AsyncConnection, calendar_id: str, name: str | None, note: str | None) -> None:
    await conn.execute(text("UPDATE calendars SET name = coalesce(:n, name), note = coalesce(:o, note) WHERE id = :c"),
                       {"c": calendar_id, "n": name, "o": note})


async def set_days(conn: AsyncConnection, calendar_id: str, days: list[CalendarDay]) -> None:
    for d in days:
        await conn.execute(text(
            """INSERT INTO calendar_days (calendar_id, day, kind, name, source) VALUES (:c, :d, :k, :n, :s)
               ON CONFLICT (calendar_id, day) DO UPDATE SET kind = EXCLUDED.kind, name = EXCLUDED.name,
                                                            source = EXCLUDED.source"""),
            {"c": calendar_id, "d": d.day, "k": d.kind, "n": d.name, "s": d.source})


async def remove_days(conn: AsyncConnection, calendar_id: str, days: list[date]) -> None:
    if days:
        await conn.execute(text("DELETE FROM calendar_days WHERE calendar_id = :c AND day = ANY(:d)"),
                           {"c": calendar_id, "d": days})


async def assignment(conn: AsyncConnection, market_id: str, default_calendar: str | None) -> Assignment:
    row = (await conn.execute(text("SELECT calendar_id, trades_on_makeup_days FROM market_calendars "
                                   "WHERE market_id = :m"), {"m": market_id})).first()
    if row is None:
        return Assignment(market_id, default_calendar, False, False)
    return Assignment(market_id, row.calendar_id, bool(row.trades_on_makeup_days), True)


async def assign(conn: AsyncConnection, market_id: str, calendar_id: str | None, trades_on_makeup_days: bool) -> None:
    await conn.execute(text(
        """INSERT INTO market_calendars (market_id, calendar_id, trades_on_makeup_days) VALUES (:m, :c, :t)
           ON CONFLICT (market_id) DO UPDATE SET calendar_id = EXCLUDED.calendar_id,
                                                 trades_on_makeup_days = EXCLUDED.trades_on_makeup_days"""),
        {"m": market_id, "c": calendar_id, "t": trades_on_makeup_days})


async def markets_of(conn: AsyncConnection, calendar_id: str, default_calendar: str | None) -> list[str]:
    """The markets that follow the calendar: assigned to it, or (if it is the default) assigned to none."""
    rows = await conn.execute(text(
        """SELECT m.id FROM markets m LEFT JOIN market_calendars c ON c.market_id = m.id
           WHERE c.calendar_id = :c OR (c.market_id IS NULL AND :c = :dflt) ORDER BY m.id"""),
        {"c": calendar_id, "dflt": default_calendar})
    return [r.id for r in rows]


async def change_by_client(conn: AsyncConnection, actor: str, client_id: str) -> Change | None:
    row = (await conn.execute(text("SELECT * FROM calendar_changes WHERE actor = :a AND client_id = :c"),
                              {"a": actor, "c": client_id})).first()
    return None if row is None else Change.from_row(row._mapping)


async def record_change(conn: AsyncConnection, *, calendar_id: str | None, market_id: str | None,
                        change: dict[str, Any], actor: str, client_id: str, fingerprint: bytes,
                        operator_action: dict[str, Any] | None) -> int:
    return int((await conn.execute(text(
        """INSERT INTO calendar_changes (calendar_id, market_id, change, actor, client_id, fingerprint, operator_action)
           VALUES (:c, :m, CAST(:ch AS jsonb), :a, :cid, :fp, CAST(:oa AS jsonb)) RETURNING id"""),
        {"c": calendar_id, "m": market_id, "ch": json.dumps(change, ensure_ascii=False, sort_keys=True),
         "a": actor, "cid": client_id, "fp": fingerprint,
         "oa": None if operator_action is None else json.dumps(operator_action)})).scalar_one())


async def changes(conn: AsyncConnection, calendar_id: str) -> list[Change]:
    rows = await conn.execute(text("SELECT * FROM calendar_changes WHERE calendar_id = :c ORDER BY id"),
                              {"c": calendar_id})
    return [Change.from_row(r._mapping) for r in rows]
