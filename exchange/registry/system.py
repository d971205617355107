"""First start: the registry's system accounts and the CNY cash instrument, created idempotently; and the
trusted bootstrap of operators (`envx admin create-key`), which needs database access, not a key."""

from __future__ import annotations

from exchange.core.principal import SYSTEM_ACTOR
from exchange.core.runtime import Runtime
from exchange.registry import repository as repo
from ledger import commands as c
from ledger import queries

# issuance: debited by every batch (goes negative by exactly the supply);
# retired: the final sink; settlement: the exchange's bank, source and sink of cash;
# fees: the exchange's fee income.
# clearing: where units and cash of a trade meet during delivery-versus-payment (always empty after).
SYSTEM_ACCOUNTS = (("issuance", "issuance"), ("retired", "retired"), ("settlement", "settlement"),
                   ("fees", "fees"), ("clearing", "escrow"))


async def ensure_system(rt: Runtime) -> dict[str, int]:
    async with rt.read() as conn:
        system = await repo.system_accounts(conn)
    missing = [(name, kind) for name, kind in SYSTEM_ACCOUNTS if name not in system]
    if missing:
        entries = await rt.submit_linked([
            c.Request(SYSTEM_ACTOR, c.OpenAccount(f"system:{name}", kind), f"bootstrap:{name}")
            for name, kind in missing
        ])
        async with rt.tx() as conn:
            for (name, _), entry in zip(missing, entries, strict=True):
                await repo.insert_system_account(conn, name, int(entry.body["account"]))
                system[name] = int(entry.body["account"])
    async with rt.read() as conn:
        has_cny = await queries.instrument_defined(conn, "CNY")
    if not has_cny:
        await rt.submit(c.Request(SYSTEM_ACTOR, c.DefineInstrument("CNY", "currency", 2), "bootstrap:CNY"))
    async with rt.tx() as conn:
        await repo.insert_cash_instrument(conn)
    rt.system = system
    return system
