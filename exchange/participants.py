"""Participants: who may hold, trade, lend against or order the retirement of units."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from exchange.errors import DomainError, Forbidden, NotFound
from exchange.idempotency import check_replay, fingerprint
from exchange.keys import Principal
from exchange.runtime import Runtime
from ledger import commands as c

KINDS = ("operator", "issuer", "enterprise", "bank", "court", "auditor")
# Who may hold, trade and retire units (auditors only look).
HOLDER_KINDS = frozenset({"operator", "issuer", "enterprise", "bank", "court"})
# Who sees every participant; the rest see themselves.
SEES_ALL = frozenset({"operator", "auditor"})

_COLUMNS = "id, name, kind, uscc, holding_account, cash_account, status, created_at"


async def create(rt: Runtime, actor: str, client_id: str, *, name: str, kind: str,
                 uscc: str | None) -> dict[str, Any]:
    if kind not in KINDS:
        raise DomainError("invalid_participant_kind", f"kind must be one of {', '.join(KINDS)}", 422)
    fp = fingerprint({"name": name, "kind": kind, "uscc": uscc})
    async with rt.read() as conn:
        row = (await conn.execute(
            text(f"SELECT {_COLUMNS}, fingerprint FROM participants WHERE created_by = :a AND client_id = :c"),
            {"a": actor, "c": client_id})).first()
    if row is not None:
        check_replay(row.fingerprint, fp)
        return _public(row)
    if uscc:
        async with rt.read() as conn:
            taken = (await conn.execute(text("SELECT id FROM participants WHERE uscc = :u"), {"u": uscc})).first()
        if taken:
            raise DomainError("uscc_taken", f"unified social credit code {uscc} is already registered")
    # Ledger first, with derived client ids: a retry after a crash reopens nothing.
    holding, cash = await rt.submit_linked([
        c.Request(actor, c.OpenAccount(f"participant:{client_id}", "holding"), f"{client_id}#holding",
                  {"participant_name": name}),
        c.Request(actor, c.OpenAccount(f"participant:{client_id}", "cash"), f"{client_id}#cash",
                  {"participant_name": name}),
    ])
    async with rt.tx() as conn:
        row = (await conn.execute(
            text(f"""INSERT INTO participants (name, kind, uscc, holding_account, cash_account, created_by,
                                               client_id, fingerprint)
                     VALUES (:n, :k, :u, :h, :c, :a, :cid, :fp)
                     ON CONFLICT (created_by, client_id) WHERE client_id IS NOT NULL DO NOTHING
                     RETURNING {_COLUMNS}"""),
            {"n": name, "k": kind, "u": uscc, "h": holding.body["account"], "c": cash.body["account"],
             "a": actor, "cid": client_id, "fp": fp})).first()
    if row is None:  # a concurrent retry won the insert
        return await create(rt, actor, client_id, name=name, kind=kind, uscc=uscc)
    return _public(row)


def _public(row: Any) -> dict[str, Any]:
    m = dict(row._mapping)
    m.pop("fingerprint", None)
    return m


async def get(rt: Runtime, viewer: Principal, participant_id: int) -> dict[str, Any]:
    if viewer.kind not in SEES_ALL and viewer.participant_id != participant_id:
        raise Forbidden("you may only see your own participant record")
    async with rt.read() as conn:
        row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM participants WHERE id = :i"),
                                  {"i": participant_id})).first()
    if row is None:
        raise NotFound("participant", participant_id)
    return _public(row)


async def lookup(rt: Runtime, participant_id: int) -> dict[str, Any]:
    async with rt.read() as conn:
        row = (await conn.execute(text(f"SELECT {_COLUMNS} FROM participants WHERE id = :i"),
                                  {"i": participant_id})).first()
    if row is None:
        raise NotFound("participant", participant_id)
    return _public(row)


async def listing(rt: Runtime, viewer: Principal, kind: str | None, limit: int, after: int) -> list[dict[str, Any]]:
    sql = f"SELECT {_COLUMNS} FROM participants WHERE id > :after"
    params: dict[str, Any] = {"after": after, "limit": limit}
    if viewer.kind not in SEES_ALL:
        sql += " AND id = :me"
        params["me"] = viewer.participant_id
    if kind:
        sql += " AND kind = :kind"
        params["kind"] = kind
    sql += " ORDER BY id LIMIT :limit"
    async with rt.read() as conn:
        return [_public(r) for r in await conn.execute(text(sql), params)]


async def owner_of_account(rt: Runtime, account: int) -> int | None:
    async with rt.read() as conn:
        row = (await conn.execute(
            text("SELECT id FROM participants WHERE holding_account = :a OR cash_account = :a"), {"a": account}
        )).first()
    return row.id if row else None
