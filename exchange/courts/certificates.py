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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from exchange.core.errors import DomainError, NotFound
from exchange.core.principal import Principal
from exchange.core.runtime import Runtime
from exchange.core.units import CARBON_UNIT, cny, iso, to_text
from exchange.courts import certificate_pdf, restoration
from exchange.courts import repository as repo
from exchange.verifiable import proofs, tlog_serving
from ledger import certificate as cert_format

# Receipts are fetched with oversight rights: the certificate is a public document by design.
_REGISTRY = Principal(0, "operator", "registry", 0, None, None)


async def issue(rt: Runtime, order_id: int) -> dict[str, Any]:
    """The current certificate of an order (a new one whenever more units have been retired). Readers that
    come while it is being made wait for that one: one state, one certificate, one code."""
    key = ("certificate", order_id)
    running = rt.inflight.get(key)
    if running is not None:
        return await asyncio.shield(running)
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
    found = await restoration.get_with_fills(rt, order_id)
    done = [f for f in found[1] if f.retire_seq is not None] if found else []
    if found is None or not done:
        # The certificate is public; an order without retirements has none, and answers exactly as an
        # order that does not exist (the order itself is only for its court, payer and seller).
        raise NotFound("certificate of restoration order", order_id)
    state = found[0]
    retired_kg = restoration.retired_kg(done)
    async with rt.read() as conn:
        stored = await repo.certificate_for(conn, order_id, retired_kg)
    if stored is not None and not _names_id_numbers(stored):
        return stored
    blocks = []
    for f in done:
        ranges = f.retired_serials()
        sizes = [e - s + 1 for s, e in ranges]
        # A fill is one trade: its value and fee are the trade's, shared over its blocks by quantity.
        values, fee_parts = spread(f.notional, sizes), spread(f.buyer_fee, sizes)
        for (start, end), value, fee in zip(ranges, values, fee_parts, strict=True):
            blocks.append({"instrument": f.instrument, "serial_start": start, "serial_end": end,
                           "quantity": to_text(end - start + 1, f.decimals), "entry_seq": f.retire_seq,
                           "price": cny(f.price), "value": cny(value), "fee": cny(fee),
                           "paid": cny(value + fee), "market": f.market_id, "trade_id": f.trade_id})
    value, fees = sum(f.notional for f in done), sum(f.buyer_fee for f in done)
    seqs = sorted({f.retire_seq for f in done if f.retire_seq is not None})
    under = await proofs.covering(rt, seqs[-1])  # one checkpoint (the witnessed one, with a policy) for all
    receipts = [await proofs.receipt(rt, _REGISTRY, seq, proofs.no_order_party, under=under)
                for seq in seqs]
    o = state.order
    body = {
        "title": "购买碳减排量用于替代性生态修复见证",
        "registry": rt.settings.origin,
        "order": {"id": o.id, "court": o.court, "case_number": o.case_number, "case_type": o.case_type,
                  "judgment_reference": o.judgment_reference,
                  "defendants": restoration.public_defendants(o.defendants),  # names, no ID numbers
                  "payer": o.payer, "assessed_loss": state.assessed_loss, "assessment_method": o.assessment_method,
                  "assessing_body": o.assessing_body, "multiplier": o.multiplier,
                  "required_quantity": state.required_quantity, "deadline": str(o.deadline)},
        "retired_quantity": state.retired_quantity,
        "unit": CARBON_UNIT,
        "status": "fulfilled" if retired_kg >= o.required_kg else "partially_fulfilled",
        "paid": cny(value + fees),
        "totals": {"value": cny(value), "fees": cny(fees), "paid": cny(value + fees)},
        "blocks": blocks,
        "issued_at": iso(datetime.now(UTC).replace(microsecond=0)),  # concurrent issues of one state agree
    }
    signer = rt.verifiable.signer if rt.verifiable is not None else None
    if signer is None:
        raise DomainError("registry_key_missing", "this process has no registry signing key", 503)
    doc = cert_format.build(body, receipts, signer)
    code = cert_format.verification_code(doc["note"])
    async with rt.tx() as conn:
        await repo.insert_certificate(conn, code, order_id, retired_kg, doc)
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


async def tlog_proof(rt: Runtime, order_id: int) -> str:
    """The order's certificate as C2SP tlog-proofs, one after the other: one per retirement entry it proves,
    in seq order (``extra`` = the entry bytes, as the JSON receipts carry them), all under the one checkpoint
    receipts are given under now -- with a witness policy, the newest the quorum cosigned. Public, as the
    certificate is; 404 exactly when the certificate is."""
    doc = await issue(rt, order_id)
    seqs = sorted({r["index"] + 1 for r in doc["receipts"]})
    under = await proofs.covering(rt, seqs[-1])
    return "".join([tlog_serving.receipt_as_tlog_proof(
        await proofs.receipt(rt, _REGISTRY, seq, proofs.no_order_party, under=under)) for seq in seqs])


@dataclass(frozen=True, slots=True)
class CertificateCheck:
    """What the public check of a verification code finds: a valid certificate (its order, the entries it
    proves, the document unless it names an ID number) or why it is not valid."""

    code: str
    valid: bool
    verifier_keys: list[str]
    order_id: int | None = None
    entries: list[int] | None = None
    certificate: dict[str, Any] | None = None
    reason: str | None = None
    detail: str | None = None


async def verify_code(rt: Runtime, code: str) -> CertificateCheck:
    """Public check by verification code: the stored certificate, re-verified against the registry's keys."""
    async with rt.read() as conn:
        stored = await repo.certificate_by_code(conn, code)
    if stored is None:
        raise NotFound("certificate", code)
    keys = [k.verifier_key for k in await proofs.signing_keys(rt)]
    try:
        verified = cert_format.verify(stored.certificate, keys, origin=rt.settings.origin)
    except cert_format.CertificateError as exc:
        return CertificateCheck(code, False, keys, reason=exc.code, detail=exc.message)
    # A certificate signed before ID numbers were left out is still valid, but not shown to the public.
    document = None if _names_id_numbers(stored.certificate) else stored.certificate
    return CertificateCheck(code, True, keys, order_id=stored.order_id, entries=list(verified.entries),
                            certificate=document)


def _names_id_numbers(doc: dict[str, Any]) -> bool:
    """Whether a stored certificate (signed before ID numbers were left out) names one."""
    return any("id_number" in d for d in body_of(doc).get("order", {}).get("defendants", []))


def body_of(doc: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(doc["note"][len(cert_format.HEADER):].split("\n", 1)[0])
    return body


def render_pdf(doc: dict[str, Any], verify_url: str) -> bytes:
    """An A4 certificate in Chinese; the font (Noto Sans CJK, SIL OFL) is embedded as a subset."""
    return certificate_pdf.render(body_of(doc), cert_format.verification_code(doc["note"]), verify_url)


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
        stored = await repo.stored_pdf(conn, code)
    if stored is not None:
        return stored
    key = ("certificate.pdf", code)
    running = rt.inflight.get(key)
    if running is not None:  # someone is rendering it right now: wait for their bytes
        return await asyncio.shield(running)
    done: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    rt.inflight[key] = done
    try:
        rendered = await asyncio.to_thread(render_pdf, doc, verify_url(rt, code))
        async with rt.tx() as conn:
            kept = await repo.keep_pdf(conn, code, rendered)
        done.set_result(kept)
        return kept
    except BaseException as exc:
        done.set_exception(exc)
        done.exception()
        raise
    finally:
        del rt.inflight[key]
