"""What the registry holds, in totals per instrument: issued, retired by purpose, pledged, frozen.

Public figures of the register as a whole (the portal's home page): no account, holder or balance of anyone.
Read-only, so it runs on a read replica too.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.runtime import Runtime
from exchange.core.units import to_text

# Serial blocks by state: a retired block rests in the sink with the entry that retired it (its purpose is in
# the entry's body); a pledged block is under a pledge hold; a frozen one is under a court's freeze (a hold of
# its own, or an overlay on a pledged block).
_TOTALS = text("""
    WITH issued AS (SELECT instrument, sum(end_serial - start_serial + 1) AS q FROM ledger_batches GROUP BY 1),
    blocks AS (
        SELECT b.instrument, b.end_serial - b.start_serial + 1 AS q, b.retired_seq, h.kind AS hold_kind,
               b.frozen_by IS NOT NULL AS overlay_frozen
        FROM ledger_blocks b LEFT JOIN ledger_holds h ON h.id = b.hold),
    states AS (
        SELECT instrument,
               sum(q) FILTER (WHERE hold_kind = 'pledge') AS pledged,
               sum(q) FILTER (WHERE hold_kind = 'freeze' OR overlay_frozen) AS frozen
        FROM blocks GROUP BY 1)
    SELECT i.code, i.name, i.kind, i.decimals, COALESCE(iss.q, 0) AS issued, COALESCE(s.pledged, 0) AS pledged,
           COALESCE(s.frozen, 0) AS frozen
    FROM instruments i LEFT JOIN issued iss ON iss.instrument = i.code LEFT JOIN states s ON s.instrument = i.code
    WHERE i.code <> 'CNY' ORDER BY i.kind, i.code""")

_RETIRED = text("""
    SELECT b.instrument, COALESCE(convert_from(substring(e.leaf from 14), 'UTF8')::jsonb #>> '{body,purpose}', '')
           AS purpose, sum(b.end_serial - b.start_serial + 1) AS q
    FROM ledger_blocks b JOIN ledger_entries e ON e.seq = b.retired_seq
    WHERE b.retired_seq IS NOT NULL AND e.type = 'retire' GROUP BY 1, 2 ORDER BY 1, 2""")


@dataclass(frozen=True, slots=True)
class InstrumentTotals:
    """One instrument's totals, as decimal strings in its unit."""

    code: str
    name: str
    kind: str
    issued: str
    retired: str
    retired_by_purpose: dict[str, str]
    pledged: str
    frozen: str


async def totals(conn: AsyncConnection) -> list[InstrumentTotals]:
    rows = (await conn.execute(_TOTALS)).mappings().all()
    retired: dict[str, dict[str, int]] = {}
    for r in (await conn.execute(_RETIRED)).mappings():
        retired.setdefault(r["instrument"], {})[r["purpose"] or "unspecified"] = int(r["q"])
    out = []
    for r in rows:
        d, by = r["decimals"], retired.get(r["code"], {})
        out.append(InstrumentTotals(r["code"], r["name"], r["kind"], to_text(int(r["issued"]), d),
                                    to_text(sum(by.values()), d), {p: to_text(q, d) for p, q in sorted(by.items())},
                                    to_text(int(r["pledged"]), d), to_text(int(r["frozen"]), d)))
    return out


async def registry_totals(rt: Runtime) -> list[InstrumentTotals]:
    async with rt.read() as conn:
        return await totals(conn)
