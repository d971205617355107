"""公示查询: the public inquiry of pledges, freezes and retirements, and the key that signs its certificates.

What the register publishes, nothing else: no balances, loan contracts, amounts, notice numbers or
participant ids. Pledges and freezes come from this package's repository; retirements from the ledger
(ledger.queries.retirements), with the names the repository adds.
"""

from __future__ import annotations

import base64
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import Invalid
from exchange.core.runtime import Runtime
from exchange.core.units import to_text
from exchange.pledging import repository as repo
from exchange.pledging.models import PublicFreeze, PublicPledge, PublicRetirement, jsonable
from exchange.pledging.values import (
    now,
    ranges_of,
    today,
)
from exchange.verifiable import proofs, signing
from exchange.verifiable.proofs import CheckpointPending
from ledger import merkle
from ledger import queries as ledger
from ledger.note import Signer, generate_signer_key
from pledges import certificate

# ----------------------------------------------------------------------------------- public inquiry

INQUIRY_KEY_FILE = "inquiry.key"


def get_signer(rt: Runtime) -> Signer:
    """The key that signs inquiry certificates.

    1. the registry's checkpoint key when the runtime runs the publisher (its public key is in the log);
    2. on a read replica (no publisher), the same registry key if this process is configured with it
       (ENVX_SIGNING_KEY, or the key file exists) -- never generated here, so a replica mints no key;
    3. else `<data_dir>/inquiry.key`, generated once with mode 0600 (to be unified with 1 later).
    """
    verifiable = getattr(rt, "verifiable", None)
    signer = getattr(verifiable, "signer", None)
    if isinstance(signer, Signer):
        return signer
    settings = rt.settings
    if settings.signing_key is not None or signing.key_path(settings).exists():
        path = signing.key_path(settings)
        if path not in rt.inquiry_signers:
            rt.inquiry_signers[path] = signing.load_signer(settings)
        return rt.inquiry_signers[path]
    path = Path(settings.data_dir) / INQUIRY_KEY_FILE
    cached = rt.inquiry_signers.get(path)
    if cached is not None:
        return cached
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another worker made it first
        else:
            with os.fdopen(fd, "w", encoding="ascii") as f:
                f.write(generate_signer_key(settings.origin)[0] + "\n")
    signer = Signer.from_key_string(path.read_text(encoding="ascii").strip())
    rt.inquiry_signers[path] = signer
    return signer


def _pledge_row(r: PublicPledge) -> dict[str, Any]:
    """One result of the public inquiry: what the register publishes, nothing else -- no balances, no
    loan contracts or amounts, no notice numbers, no participant ids. A USCC is an organisation's
    public identifier (it is on its business licence) and is shown; a person's ID number never is."""
    junior = r.kind == "junior_claim"
    return {"type": r.kind, "registration_number": f"{r.lot_number}-J{r.claim_id}" if junior else r.lot_number,
            "lot_registration_number": r.lot_number, "rank_on_lot": r.rank_on_lot,
            "registration_no": r.registration_no, "status": r.status,
            "pledgor": r.pledgor_name, "pledgor_uscc": r.pledgor_uscc, "pledgee": r.pledgee_name,
            "instrument": r.instrument, "quantity": to_text(r.quantity, r.decimals), "serials": _spans(r.serials),
            "term_start": r.term_start.isoformat() if r.term_start else None, "term_end": r.term_end.isoformat(),
            "registered_at": jsonable(r.registered_at), "references": r.refs}


def _freeze_row(r: PublicFreeze) -> dict[str, Any]:
    return {"freeze_no": r.freeze_no, "court": r.court_name, "case_number": r.case_number,
            "holder": r.holder_name, "holder_uscc": r.holder_uscc, "instrument": r.instrument,
            "quantity": to_text(r.quantity, r.decimals), "serials": _spans(r.serials),
            "term_start": r.term_start.isoformat(), "term_end": r.term_end.isoformat(),
            "frozen_at": jsonable(r.created_at)}


def _spans(serials: list[list[int]] | None) -> list[dict[str, int]]:
    return [{"start": s, "end": e} for s, e in ranges_of(serials)]


def _retirement_row(r: PublicRetirement) -> dict[str, Any]:
    """A retired block; a judicial retirement names the payer (as the judgment does), the court and the case."""
    b = r.block
    return {"entry_seq": b.seq, "retired_at": datetime.fromtimestamp(b.ts / 1e6, UTC).isoformat(),
            "holder": r.holder_name, "holder_uscc": r.holder_uscc, "instrument": b.instrument,
            "batch": b.batch, "serial_start": b.start_serial, "serial_end": b.end_serial,
            "quantity": to_text(b.end_serial - b.start_serial + 1, r.decimals),
            "serial": f"{b.instrument}-{b.batch}-{b.start_serial}-{b.end_serial}",
            "purpose": b.purpose, "beneficiary": b.beneficiary or None,
            "court": r.court_name, "case_number": r.case_number}


async def _retirements(conn: AsyncConnection, *, name: str | None, uscc: str | None, serial: int | None,
                       instrument: str | None, limit: int) -> list[PublicRetirement]:
    """Retirements by serial and instrument (the ledger's), by the holder or judicial payer named (ours)."""
    accounts = orders = None
    if name is not None or uscc is not None:
        accounts, orders = await repo.named_holders(conn, name=name, uscc=uscc)
    blocks = await ledger.retirements(conn, instrument=instrument, serial=serial, accounts=accounts, orders=orders,
                                      limit=limit)
    return await repo.retirement_names(conn, blocks)


async def public_search(rt: Runtime, kind: str, *, name: str | None, uscc: str | None, serial: int | None,
                        instrument: str | None, limit: int) -> dict[str, Any]:
    """公示查询 by the holder's whole registered name, its unified social credit code, or a serial."""
    name = name.strip() or None if name is not None else None
    uscc = uscc.strip().upper() or None if uscc is not None else None
    if not (name or uscc or serial):
        raise Invalid("query_required", "search by holder name, unified social credit code or serial number")
    if name is not None and len(repo.public_name(name) or "") < 2:
        raise Invalid("query_too_short", "a name search needs the holder's whole name (two characters or more)")
    async with rt.read() as conn:
        at = await ledger.head(conn)
        leaf = await ledger.leaf_entry(conn, at["seq"]) if at["seq"] > 0 else None
        # The entry read at, by its Merkle leaf hash too: the .tlog-proof form proves it in the log.
        head = {"seq": at["seq"], "hash": at["hash"],
                "leaf_hash": base64.b64encode(merkle.leaf_hash(leaf.leaf)).decode("ascii") if leaf else ""}
        if kind == "pledges":
            rows = await repo.public_pledges(conn, name=name, uscc=uscc, serial=serial, instrument=instrument,
                                             limit=limit, today=today())
            results = [_pledge_row(r) for r in rows]
        elif kind == "freezes":
            found = await repo.public_freezes(conn, name=name, uscc=uscc, serial=serial, instrument=instrument,
                                              limit=limit)
            results = [_freeze_row(r) for r in found]
        else:
            results = [_retirement_row(r) for r in await _retirements(conn, name=name, uscc=uscc, serial=serial,
                                                                        instrument=instrument, limit=limit)]
    query = {k: v for k, v in (("name", name), ("uscc", uscc), ("serial", serial), ("instrument", instrument))
             if v is not None}
    cert = {"type": certificate.TYPE, "registry": rt.settings.origin, "record": kind, "query": query,
            "results": results, "result_count": len(results), "truncated": len(results) >= limit,
            "issued_at": now().isoformat(timespec="seconds"), "ledger_head": head}
    return certificate.sign(cert, get_signer(rt))


async def public_search_tlog_proof(rt: Runtime, kind: str, **query: Any) -> str:
    """The signed search certificate as a C2SP tlog-proof (`pledges.certificate.format_tlog_proof`): the
    ledger head it was read at, proven under the log's checkpoint -- with a witness policy, one the quorum
    cosigned (waited for, as receipts are: `exchange.verifiable.proofs.covering`)."""
    answer = await public_search(rt, kind, **query)
    head = answer["certificate"]["ledger_head"]
    if head["seq"] == 0:
        raise CheckpointPending("the ledger is empty: there is no entry to prove yet", 1)
    cp, note, path = await proofs.proven(rt, head["seq"])
    if not merkle.verify_inclusion(base64.b64decode(head["leaf_hash"]), head["seq"] - 1, cp.size, path, cp.root):
        raise RuntimeError(f"inclusion proof of entry {head['seq']} does not match checkpoint {cp.size}")
    return certificate.format_tlog_proof(answer, path, note)
