"""Instruments: the products the registry records, one shared ledger for all of them.

`define_instrument`, `find`, `instrument`, `catalogue` answer models (exchange/registry/models.py); `find` takes
the caller's connection.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError, Invalid, NotFound
from exchange.core.idempotency import check_replay, fingerprint
from exchange.core.runtime import Runtime
from exchange.registry import kinds as instrument_kinds
from exchange.registry import repository as repo
from exchange.registry.models import Instrument
from ledger import commands as c


async def define_instrument(rt: Runtime, actor: str, client_id: str, *, code: str, name: str, kind: str,
                            decimals: int, unit: str | None, attributes: dict[str, Any]) -> Instrument:
    attrs = instrument_kinds.instrument_attributes(kind, attributes)
    if not (code.isascii() and code.replace("-", "").isalnum() and 1 <= len(code) <= 32):
        raise Invalid("invalid_instrument_code", "codes are 1-32 ASCII letters, digits and dashes")
    unit = unit or instrument_kinds.KINDS[kind]["unit"]
    fp = fingerprint({"code": code, "name": name, "kind": kind, "decimals": decimals, "unit": unit,
                      "attributes": attrs})
    async with rt.read() as conn:
        existing = await repo.instrument(conn, code, with_origin=True)
    if existing is not None:
        if existing.created_by == actor and existing.client_id == client_id:
            check_replay(existing.fingerprint, fp)
            return existing
        raise DomainError("instrument_exists", f"instrument {code} already exists")
    await rt.submit(c.Request(actor, c.DefineInstrument(code, kind, decimals), f"instrument:{code}",
                              {"name": name, "unit": unit, "attributes": attrs}))
    async with rt.tx() as conn:
        made = await repo.insert_instrument(conn, actor, client_id, code=code, name=name, kind=kind,
                                            decimals=decimals, unit=unit, attributes=attrs, fp=fp)
        return made if made is not None else await find(conn, code)


async def find(conn: AsyncConnection, code: str) -> Instrument:
    """The instrument, on the caller's connection; 404 if there is none."""
    inst = await repo.instrument(conn, code)
    if inst is None:
        raise NotFound("instrument", code)
    return inst


async def instrument(rt: Runtime, code: str) -> Instrument:
    async with rt.read() as conn:
        return await find(conn, code)


async def catalogue(rt: Runtime, kind: str | None = None) -> list[Instrument]:
    async with rt.read() as conn:
        return await repo.instruments(conn, kind)


async def decimals_of(rt: Runtime, code: str) -> int:
    return (await instrument(rt, code)).decimals
