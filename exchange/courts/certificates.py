"""Restoration certificates: assembled from the ledger, signed by the registry key, served as JSON and PDF.

The JSON certificate (format in `ledger.certificate`) names the retired serial blocks, what was paid for
each -- price, quantity, value (price x quantity), the exchange's fee, paid (value + fee) -- and the
totals, the ledger entries and their receipts (inclusion proofs under a signed checkpoint), so anyone can verify
it offline with `envx verify-receipt FILE --key <registry key>`. The PDF prints the same facts in
Chinese with an embedded Noto Sans CJK font, and the verification code for the public endpoint.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import text

from exchange.core.errors import DomainError, NotFound
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import CARBON_UNIT, cny, iso, to_text
from exchange.courts import restoration
from exchange.verifiable import proofs
from ledger import certificate as cert_format

# Receipts are fetched with oversight rights: the certificate is a public document by design.
_REGISTRY = Principal(0, "operator", "registry", 0, None, None)


async def issue(rt: Runtime, order_id: int) -> dict[str, Any]:
    """The current certificate of an order (a new one whenever more units have been retired). Readers that
    come while it is being made wait for that one: one state, one certificate, one code."""
    key = ("certificate", order_id)
    running = rt.inflight.get(key)
    if running is not None:
        return await asyncio.shield(running)  # type: ignore[no-any-return]
    made: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    rt.inflight[key] = made
    try:
        doc = await _issue(rt, order_id)
        made.set_result(doc)
        return doc
    except BaseException as exc:
        made.set_exception(exc)
        made.exception()
        raise
    finally:
        del rt.inflight[key]


async def _issue(rt: Runtime, order_id: int) -> dict[str, Any]:
    try:
        state = await restoration.get(rt, None, order_id)
    except NotFound:
        state = None
    done = [f for f in await restoration.fills(rt, order_id) if f["retire_seq"] is not None] if state else []
    if state is None or not done:
        # The certificate is public; an order without retirements has none, and answers exactly as an
        # order that does not exist (the order itself is only for its court, payer and seller).
        raise NotFound("certificate of restoration order", order_id)
    retired_kg = sum(restoration.to_kg(f["qty"], f["decimals"]) for f in done)
    async with rt.read() as conn:
        row = (await conn.execute(text(
            """SELECT certificate FROM restoration_certificates WHERE order_id = :o AND retired_kg = :k
               ORDER BY issued_at DESC LIMIT 1"""), {"o": order_id, "k": retired_kg})).first()
    if row is not None and not _names_id_numbers(row.certificate):
        return dict(row.certificate)
    blocks = []
    for f in done:
        ranges = [(int(a), int(b)) for a, b in json.loads(bytes(f["retire_meta"])).get("serials", [])]
        sizes = [e - s + 1 for s, e in ranges]
        # A fill is one trade: its value and fee are the trade's, shared over its blocks by quantity.
        values, fees = spread(f["notional"], sizes), spread(f["buyer_fee"], sizes)
        for (start, end), value, fee in zip(ranges, values, fees, strict=True):
            blocks.append({"instrument": f["instrument"], "serial_start": start, "serial_end": end,
                           "quantity": to_text(end - start + 1, f["decimals"]), "entry_seq": f["retire_seq"],
                           "price": cny(f["price"]), "value": cny(value), "fee": cny(fee),
                           "paid": cny(value + fee), "market": f["market_id"], "trade_id": f["trade_id"]})
    value, fees = sum(f["notional"] for f in done), sum(f["buyer_fee"] for f in done)
    receipts = [await proofs.receipt(rt, _REGISTRY, seq) for seq in sorted({f["retire_seq"] for f in done})]
    body = {
        "title": "购买碳减排量用于替代性生态修复见证",
        "registry": rt.settings.origin,
        "order": {k: state[k] for k in ("id", "court", "case_number", "case_type", "judgment_reference",
                                        "defendants", "payer", "assessed_loss", "assessment_method",
                                        "assessing_body", "multiplier", "required_quantity", "deadline")},
        "retired_quantity": state["retired_quantity"],
        "unit": CARBON_UNIT,
        "status": "fulfilled" if retired_kg >= await _required(rt, order_id) else "partially_fulfilled",
        "paid": cny(value + fees),
        "totals": {"value": cny(value), "fees": cny(fees), "paid": cny(value + fees)},
        "blocks": blocks,
        "issued_at": iso(datetime.now(UTC).replace(microsecond=0)),  # concurrent issues of one state agree
    }
    body["order"]["deadline"] = str(body["order"]["deadline"])
    body["order"]["defendants"] = restoration.public_defendants(state["defendants"])  # names, no ID numbers
    signer = rt.verifiable.signer if rt.verifiable is not None else None
    if signer is None:
        raise DomainError("registry_key_missing", "this process has no registry signing key", 503)
    doc = cert_format.build(body, receipts, signer)
    code = cert_format.verification_code(doc["note"])
    async with rt.tx() as conn:
        await conn.execute(text(
            """INSERT INTO restoration_certificates (code, order_id, retired_kg, certificate)
               VALUES (:c, :o, :k, CAST(:doc AS jsonb)) ON CONFLICT DO NOTHING"""),
            {"c": code, "o": order_id, "k": retired_kg, "doc": json.dumps(doc, ensure_ascii=False)})
    return doc


def spread(total: int, sizes: list[int]) -> list[int]:
    """`total` fen over parts of these sizes, in proportion, to the fen: each part gets its floor and the
    fen left over go to the largest remainders (the earliest first), so the parts add up to `total`."""
    whole = sum(sizes)
    shares = [total * n // whole for n in sizes]
    order = sorted(range(len(sizes)), key=lambda i: (-(total * sizes[i] % whole), i))
    for i in order[:total - sum(shares)]:
        shares[i] += 1
    return shares


async def _required(rt: Runtime, order_id: int) -> int:
    async with rt.read() as conn:
        return int((await conn.execute(text("SELECT required_kg FROM restoration_orders WHERE id = :o"),
                                       {"o": order_id})).scalar())


async def verify_code(rt: Runtime, code: str) -> dict[str, Any]:
    """Public check by verification code: the stored certificate, re-verified against the registry's keys."""
    async with rt.read() as conn:
        row = (await conn.execute(text("SELECT certificate, order_id FROM restoration_certificates WHERE code = :c"),
                                  {"c": code})).first()
    if row is None:
        raise NotFound("certificate", code)
    keys = [k["verifier_key"] for k in await proofs.signing_keys(rt)]
    try:
        verified = cert_format.verify(row.certificate, keys, origin=rt.settings.origin)
    except cert_format.CertificateError as exc:
        return {"code": code, "valid": False, "reason": exc.code, "detail": exc.message}
    # A certificate signed before ID numbers were left out is still valid, but not shown to the public.
    document = None if _names_id_numbers(row.certificate) else row.certificate
    return {"code": code, "valid": True, "order_id": row.order_id, "entries": list(verified.entries),
            "certificate": document, "verifier_keys": keys}


def _names_id_numbers(doc: dict[str, Any]) -> bool:
    """Whether a stored certificate (signed before ID numbers were left out) names one."""
    return any("id_number" in d for d in body_of(doc).get("order", {}).get("defendants", []))


def body_of(doc: dict[str, Any]) -> dict[str, Any]:
    return json.loads(doc["note"][len(cert_format.HEADER):].split("\n", 1)[0])


def render_pdf(doc: dict[str, Any], verify_url: str) -> bytes:
    """An A4 certificate in Chinese; the font (Noto Sans CJK, SIL OFL) is embedded as a subset."""
    from exchange.courts.certificate_pdf import render

    return render(body_of(doc), cert_format.verification_code(doc["note"]), verify_url)


def verify_url(rt: Runtime, code: str) -> str:
    """Where the PDF sends its reader: the configured public address, never the request's Host header
    (the bytes are stored and served to everyone)."""
    base = rt.settings.public_url or f"http://{rt.settings.host}:{rt.settings.port}"
    return f"{base.rstrip('/')}/v1/public/certificates/{code}"


async def pdf(rt: Runtime, order_id: int) -> bytes:
    """The PDF of the order's current certificate, rendered once (about a second of CPU, in a worker
    thread) and then served from the database. A certificate never changes: a further retirement issues a
    new certificate, with a new code, and so a new PDF."""
    doc = await issue(rt, order_id)
    code = cert_format.verification_code(doc["note"])
    async with rt.read() as conn:
        stored = (await conn.execute(text("SELECT pdf FROM restoration_certificate_pdfs WHERE code = :c"),
                                     {"c": code})).scalar()
    if stored is not None:
        return bytes(stored)
    key = ("certificate.pdf", code)
    running = rt.inflight.get(key)
    if running is not None:  # someone is rendering it right now: wait for their bytes
        return await asyncio.shield(running)  # type: ignore[no-any-return]
    done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    rt.inflight[key] = done
    try:
        rendered = await asyncio.to_thread(render_pdf, doc, verify_url(rt, code))
        async with rt.tx() as conn:
            await conn.execute(text("""INSERT INTO restoration_certificate_pdfs (code, pdf) VALUES (:c, :p)
                                       ON CONFLICT DO NOTHING"""), {"c": code, "p": rendered})
            kept = bytes((await conn.execute(text("SELECT pdf FROM restoration_certificate_pdfs WHERE code = :c"),
                                             {"c": code})).scalar_one())
        done.set_result(kept)
        return kept
    except BaseException as exc:
        done.set_exception(exc)
        done.exception()
        raise
    finally:
        del rt.inflight[key]
