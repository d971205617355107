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
from ledger import queries as ledger

# The instruments of the register (cash is not one); their units' states are the ledger's (ledger.queries.supply).
_INSTRUMENTS = text("SELECT code, name, kind, decimals FROM instruments WHERE code <> 'CNY' ORDER BY kind, code")


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
    held = await ledger.supply(conn)
    out = []
    for r in (await conn.execute(_INSTRUMENTS)).mappings():
        d, s = r["decimals"], held.get(r["code"], ledger.Supply(0, 0, 0, {}))
        by: dict[str, int] = {}
        for purpose, q in s.retired.items():
            by[purpose or "unspecified"] = q
        out.append(InstrumentTotals(r["code"], r["name"], r["kind"], to_text(s.issued, d),
                                    to_text(sum(by.values()), d), {p: to_text(q, d) for p, q in sorted(by.items())},
                                    to_text(s.pledged, d), to_text(s.frozen, d)))
    return out


async def registry_totals(rt: Runtime) -> list[InstrumentTotals]:
    async with rt.read() as conn:
        return await totals(conn)
