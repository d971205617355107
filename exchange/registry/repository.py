"""The registry's SQL (more of it moves here as the package is reshaped)."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


async def encumbrances(conn: AsyncConnection, account: int, instrument: str, serials: list[tuple[int, int]]
                       ) -> list[dict[str, Any]]:
    """What stands on each named serial of `account`: a pledge (registration number, pledgee), a freeze
    (court, case), an order hold (market, order), another hold, retirement -- or that the serials are not
    in the account at all. For the account's holder only (exchange.registry.encumbrances decides who asks)."""
    ranges = json.dumps([list(r) for r in serials])
    rows = await conn.execute(text("""
        WITH x AS (SELECT (r->>0)::bigint AS s, (r->>1)::bigint AS e FROM jsonb_array_elements(CAST(:r AS jsonb)) r),
        b AS (
            SELECT GREATEST(b.start_serial, x.s) AS start_serial, LEAST(b.end_serial, x.e) AS end_serial,
                   b.account = :a AS mine, b.hold, b.frozen_by, b.retired_seq, h.kind AS hold_kind
            FROM ledger_blocks b JOIN x ON b.start_serial <= x.e AND b.end_serial >= x.s
            LEFT JOIN ledger_holds h ON h.id = b.hold
            WHERE b.instrument = :i)
        SELECT b.*, p.number AS pledge_number, pe.name AS pledgee_name, f.case_number, c.name AS court_name,
               o.market_id, o.id AS order_id
        FROM b LEFT JOIN pledges p ON p.hold_id = b.hold AND b.hold_kind = 'pledge'
        LEFT JOIN participants pe ON pe.id = p.pledgee_id
        LEFT JOIN freezes f ON f.hold_id = b.frozen_by
        LEFT JOIN participants c ON c.id = f.court_id
        LEFT JOIN orders o ON o.hold_id = b.hold AND b.hold_kind = 'order'
        ORDER BY b.start_serial"""), {"a": account, "i": instrument, "r": ranges})
    return [dict(r._mapping) for r in rows]
