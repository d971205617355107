"""First start: the registry's system accounts and the CNY cash instrument, created idempotently; and the
trusted bootstrap of operators (`envx admin create-key`), which needs database access, not a key."""

from __future__ import annotations

from typing import Any

from sqlalchemy import text

from exchange import keys, participants
from exchange.errors import DomainError
from exchange.runtime import Runtime
from ledger import commands as c

SYSTEM_ACTOR = "system"
# issuance: debited by every batch (goes negative by exactly the supply);
# retired: the final sink; settlement: the exchange's bank, source and sink of cash;
# fees: the exchange's fee income.
# clearing: where units and cash of a trade meet during delivery-versus-payment (always empty after).
SYSTEM_ACCOUNTS = (("issuance", "issuance"), ("retired", "retired"), ("settlement", "settlement"),
                   ("fees", "fees"), ("clearing", "escrow"))


async def ensure_system(rt: Runtime) -> dict[str, int]:
    async with rt.read() as conn:
        rows = (await conn.execute(text("SELECT name, account FROM system_accounts"))).all()
    system = {r.name: r.account for r in rows}
    missing = [(name, kind) for name, kind in SYSTEM_ACCOUNTS if name not in system]
    if missing:
        entries = await rt.submit_linked([
            c.Request(SYSTEM_ACTOR, c.OpenAccount(f"system:{name}", kind), f"bootstrap:{name}")
            for name, kind in missing
        ])
        async with rt.tx() as conn:
            for (name, _), entry in zip(missing, entries, strict=True):
                await conn.execute(
                    text("INSERT INTO system_accounts (name, account) VALUES (:n, :a) ON CONFLICT DO NOTHING"),
                    {"n": name, "a": entry.body["account"]})
                system[name] = entry.body["account"]
    async with rt.read() as conn:
        has_cny = (await conn.execute(text("SELECT 1 FROM ledger_instruments WHERE code = 'CNY'"))).first()
    if not has_cny:
        await rt.submit(c.Request(SYSTEM_ACTOR, c.DefineInstrument("CNY", "currency", 2), "bootstrap:CNY"))
    async with rt.tx() as conn:
        await conn.execute(text(
            """INSERT INTO instruments (code, name, kind, decimals, unit, created_by)
               VALUES ('CNY', '人民币 (cash, in fen)', 'currency', 2, 'CNY', 'system') ON CONFLICT DO NOTHING"""))
    rt.system = system
    return system


BOOTSTRAP_ACTOR = "system:admin"


async def operator_key(rt: Runtime, *, name: str | None = None, participant_id: int | None = None,
                       label: str = "bootstrap") -> dict[str, Any]:
    """An operator (found by name, or created under the system actor) and a new root API key for it.

    This is the one way to the first operators of a registry, and it is outside the four-eyes rule by
    design: whoever runs it has the database. Through the API every later participant is admitted by two
    operators and enrolls itself. Only operators are served here: any other participant gets an
    enrollment code (two operators), so the bootstrap never hands out keys that act as someone else.
    """
    assert rt.credentials is not None
    if participant_id is not None:
        p = await participants.lookup(rt, participant_id)
    else:
        async with rt.read() as conn:
            row = (await conn.execute(text(
                "SELECT id FROM participants WHERE kind = 'operator' AND name = :n ORDER BY id LIMIT 1"),
                {"n": name})).first()
        if row:
            p = await participants.lookup(rt, row.id)
        else:
            p = await participants.create(rt, BOOTSTRAP_ACTOR, f"admin:operator:{name}", name=name or "",
                                          kind="operator")
    if p["kind"] != "operator":
        raise DomainError("not_an_operator", f"participant {p['id']} is a {p['kind']}: it enrolls with an "
                                             "enrollment code (POST /v1/participants/{id}/enrollment-codes)")
    if p["status"] != "active":
        raise DomainError("participant_suspended", f"participant {p['id']} is suspended")
    async with rt.tx() as conn:
        k = await keys.create_key(conn, rt.credentials, p["id"], label, created_by=BOOTSTRAP_ACTOR)
    return {"participant_id": p["id"], "name": p["name"], "kind": p["kind"], "key_id": k["id"],
            "api_key": k["token"]}
