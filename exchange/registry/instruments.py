"""Instruments: the products the registry records, one shared ledger for all of them."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import text

from exchange.core.errors import DomainError, Invalid, NotFound
from exchange.core.idempotency import check_replay, fingerprint
from exchange.core.runtime import Runtime
from exchange.registry import kinds as instrument_kinds
from ledger import commands as c

_COLUMNS = "code, name, kind, decimals, unit, attributes, created_at"


async def define(rt: Runtime, actor: str, client_id: str, *, code: str, name: str, kind: str,
                 decimals: int, unit: str | None, attributes: dict[str, Any]) -> dict[str, Any]:
    attrs = instrument_kinds.instrument_attributes(kind, attributes)
    if not (code.isascii() and code.replace("-", "").isalnum() and 1 <= len(code) <= 32):
        raise Invalid("invalid_instrument_code", "codes are 1-32 ASCII letters, digits and dashes")
    unit = unit or instrument_kinds.KINDS[kind]["unit"]
    fp = fingerprint({"code": code, "name": name, "kind": kind, "decimals": decimals, "unit": unit,
                      "attributes": attrs})
    async with rt.read() as conn:
        row = (await conn.execute(
            text(f"SELECT {_COLUMNS}, fingerprint, created_by, client_id FROM instruments WHERE code = :c"),
            {"c": code})).first()
    if row is not None:
        if row.created_by == actor and row.client_id == client_id:
            check_replay(row.fingerprint, fp)
            return _public(row)
        raise DomainError("instrument_exists", f"instrument {code} already exists")
    await rt.submit(c.Request(actor, c.DefineInstrument(code, kind, decimals), f"instrument:{code}",
                              {"name": name, "unit": unit, "attributes": attrs}))
    async with rt.tx() as conn:
        row = (await conn.execute(
            text(f"""INSERT INTO instruments (code, name, kind, decimals, unit, attributes, created_by, client_id,
                                              fingerprint)
                     VALUES (:code, :name, :kind, :dec, :unit, CAST(:attrs AS jsonb), :a, :cid, :fp)
                     ON CONFLICT (code) DO NOTHING RETURNING {_COLUMNS}"""),
            {"code": code, "name": name, "kind": kind, "dec": decimals, "unit": unit,
             "attrs": json.dumps(attrs, ensure_ascii=False), "a": actor, "cid": client_id, "fp": fp})).first()
    if row is None:
        return await get(rt, code)
    return _public(row)


def _public(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    for k in ("fingerprint", "created_by", "client_id"):
        m.pop(k, None)
    return m


async def get(rt: Runtime, code: str) -> dict[str, Any]:
    async with rt.read() as conn:
        row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM instruments WHERE code = :c"), {"c": code})).first()
    if row is None:
        raise NotFound("instrument", code)
    return _public(row)


async def listing(rt: Runtime, kind: str | None = None) -> list[dict[str, Any]]:
    sql = f"SELECT {_COLUMNS} FROM instruments"
    params: dict[str, Any] = {}
    if kind:
        sql += " WHERE kind = :k"
        params["k"] = kind
    async with rt.read() as conn:
        return [_public(r) for r in await conn.execute(text(sql + " ORDER BY code"), params)]


async def decimals_of(rt: Runtime, code: str) -> int:
    return int((await get(rt, code))["decimals"])
