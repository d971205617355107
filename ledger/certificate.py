"""Restoration certificates (替代性生态修复见证): build and verify, offline.

A certificate is::

    {"format": "envx-restoration-certificate-v1",
     "note": <C2SP signed note: "envx restoration certificate v1\\n" + canonical JSON body + "\\n", signed
              by the registry key>,
     "receipts": [<ledger receipts (ledger.receipt) of every retirement entry it names>]}

The body names the court order and the retired serial blocks, each with the ledger entry that retired
it and what was paid for it: `price` (CNY per unit), `quantity`, `value` (price x quantity), `fee` (the
exchange's fee) and `paid` (value + fee); `totals` sums value, fees and paid over the blocks, and `paid`
is the total paid. A fill (one trade, one retirement entry) that retired several blocks shares its value
and fee over them by quantity, to the fen. Verification needs only Python, `cryptography` and the registry's public key:
the note's signature, every receipt (checkpoint signature and inclusion proof), and then that each
entry really is a `judicial_restoration` retirement of exactly the blocks the body lists for this case
(the entry commits to its metadata by SHA-256, so serial ranges, case and price are authenticated),
and that the money adds up: value + fee = paid for every block, the values of an entry's blocks are its
price x their quantity, and the totals are the sums (certificates from before fees were itemised have
no `value` or `fee` and are checked without them).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from ledger import note
from ledger.encoding import EncodingError, canonical_json, decode_entry
from ledger.receipt import ReceiptError, verify_receipt

FORMAT = "envx-restoration-certificate-v1"
HEADER = "envx restoration certificate v1\n"


class CertificateError(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class VerifiedCertificate:
    body: dict[str, Any]
    code: str
    retired: int  # base units retired, summed over the verified entries
    entries: tuple[int, ...]


def verification_code(note_text: str) -> str:
    """The short code printed on the PDF: the first 16 hex digits of SHA-256 of the signed note."""
    return hashlib.sha256(note_text.encode("utf-8")).hexdigest()[:16]


def sign_body(body: Mapping[str, Any], signer: note.Signer) -> str:
    return note.sign_note(HEADER + canonical_json(dict(body)).decode("utf-8") + "\n", signer)


def build(body: Mapping[str, Any], receipts: list[dict[str, Any]], signer: note.Signer) -> dict[str, Any]:
    return {"format": FORMAT, "note": sign_body(body, signer), "receipts": receipts}


def verify(cert: Mapping[str, Any], verifier_keys: Iterable[str | note.Verifier] | str,
           *, origin: str | None = None) -> VerifiedCertificate:
    if not isinstance(cert, Mapping) or cert.get("format") != FORMAT:
        raise CertificateError("malformed", f"not an {FORMAT} document")
    if set(cert) - {"format", "note", "receipts"} or not isinstance(cert.get("note"), str):
        raise CertificateError("malformed", "a certificate has exactly format, note and receipts")
    keys = list(verifier_keys) if not isinstance(verifier_keys, str) else [verifier_keys]
    try:
        opened = note.open_note(cert["note"], keys)
    except note.NoteError as exc:
        raise CertificateError(exc.code, f"certificate signature: {exc}") from None
    if not opened.text.startswith(HEADER):
        raise CertificateError("malformed", "the signed note is not a restoration certificate")
    try:
        body = json.loads(opened.text[len(HEADER):])
    except json.JSONDecodeError as exc:
        raise CertificateError("malformed", f"certificate body: {exc}") from None
    blocks = body.get("blocks")
    order = body.get("order")
    if not isinstance(blocks, list) or not blocks or not isinstance(order, Mapping):
        raise CertificateError("malformed", "the body names no order or no retired blocks")
    receipts = cert.get("receipts")
    if not isinstance(receipts, list):
        raise CertificateError("malformed", "receipts must be a list")
    by_seq: dict[int, Mapping[str, Any]] = {}
    for r in receipts:
        seq = (r.get("metadata") or {}).get("seq") if isinstance(r, Mapping) else None
        if not isinstance(seq, int):
            raise CertificateError("malformed", "every receipt names its entry's seq in its metadata")
        if seq in by_seq:  # one receipt per entry: a copy would count for nothing, or pass off as more
            raise CertificateError("duplicate_receipt", f"ledger entry {seq} has more than one receipt")
        by_seq[seq] = r
    wanted: dict[int, list[Mapping[str, Any]]] = {}
    for b in blocks:
        wanted.setdefault(int(b["entry_seq"]), []).append(b)
    extra = sorted(set(by_seq) - set(wanted))
    if extra:  # a certificate carries exactly the receipts of the entries its blocks name
        raise CertificateError("unexpected_receipt", f"receipts for entries {extra} that no retired block names")
    retired = 0
    for seq, its_blocks in sorted(wanted.items()):
        r = by_seq.get(seq)
        if r is None:
            raise CertificateError("missing_receipt", f"no receipt for ledger entry {seq}")
        try:
            verified = verify_receipt(r, keys, origin=origin)
        except ReceiptError as exc:
            raise CertificateError(exc.code, f"entry {seq}: {exc.message}") from None
        try:
            entry = decode_entry(verified.entry)
        except EncodingError as exc:
            raise CertificateError("malformed", f"entry {seq}: {exc}") from None
        if entry["seq"] != seq:
            raise CertificateError("wrong_entry", f"the receipt for {seq} proves entry {entry['seq']}")
        ebody = entry["body"]
        if entry["type"] != "retire" or ebody.get("purpose") != "judicial_restoration":
            raise CertificateError("not_retired", f"ledger entry {seq} is a {entry['type']} "
                                   f"({ebody.get('purpose', 'no purpose')}), not a judicial_restoration retirement")
        meta_text = (verified.metadata or {}).get("meta")
        if not isinstance(meta_text, str) or hashlib.sha256(meta_text.encode()).hexdigest() != entry["meta"]:
            raise CertificateError("meta_mismatch", f"entry {seq}: metadata does not match what the entry commits to")
        meta = json.loads(meta_text)
        ranges = sorted((int(s), int(e)) for s, e in meta.get("serials", []))
        listed = sorted((int(b["serial_start"]), int(b["serial_end"])) for b in its_blocks)
        if ranges != listed or any(b["instrument"] != ebody["instrument"] for b in its_blocks):
            raise CertificateError("serials_mismatch", f"entry {seq} retired {ranges} of {ebody['instrument']}, "
                                   f"the certificate lists {listed}")
        restoration = meta.get("restoration") or {}
        if restoration.get("case_number") != order.get("case_number") or \
                restoration.get("restoration_order") != order.get("id"):
            raise CertificateError("case_mismatch", f"entry {seq} retired units for another case")
        if "price" in meta and any(_fen_of(b) != int(meta["price"]) for b in its_blocks):
            raise CertificateError("price_mismatch", f"entry {seq}: the price paid differs from the ledger's")
        retired += int(ebody["amount"])
    claimed = sum(int(b["serial_end"]) - int(b["serial_start"]) + 1 for b in blocks)
    if claimed != retired:
        raise CertificateError("quantity_mismatch", f"blocks add up to {claimed}, entries retired {retired}")
    _check_money(body, wanted)
    return VerifiedCertificate(body, verification_code(cert["note"]), retired, tuple(sorted(wanted)))


def _fen_of(block: Mapping[str, Any]) -> int:
    """A block's price in fen, as the ledger entry's meta has it: from its CNY price (certificates from
    before prices were decimal strings only also carry `price_fen`)."""
    if "price_fen" in block:
        return int(block["price_fen"])
    fen = _cny(block.get("price"), "price") * 100
    return int(fen) if fen == fen.to_integral_value() else -1


def _cny(value: Any, what: str) -> Decimal:
    try:
        amount = Decimal(value) if isinstance(value, str) else None
    except InvalidOperation:
        amount = None
    if amount is None or not amount.is_finite() or amount.as_tuple().exponent != -2:
        raise CertificateError("malformed", f"{what} is not an amount in CNY such as \"12.50\"")
    return amount


def _check_money(body: Mapping[str, Any], by_entry: Mapping[int, list[Mapping[str, Any]]]) -> None:
    """value + fee = paid per block; an entry's values are its price x quantity; totals are the sums."""
    blocks = [b for its in by_entry.values() for b in its]
    if not any("value" in b for b in blocks):
        return  # a certificate from before fees were itemised
    for seq, its in by_entry.items():
        value = Decimal(0)
        for b in its:
            v, f, p = (_cny(b.get(k), f"block {b['serial_start']}-{b['serial_end']} {k}")
                       for k in ("value", "fee", "paid"))
            if v + f != p:
                raise CertificateError("amount_mismatch", f"block {b['serial_start']}-{b['serial_end']}: value {v} "
                                       f"+ fee {f} is not the {p} paid")
            value += v
        price, qty = _cny(its[0].get("price"), f"entry {seq} price"), sum(Decimal(b["quantity"]) for b in its)
        if value != price * qty:
            raise CertificateError("amount_mismatch", f"entry {seq}: its blocks' value {value} is not the price "
                                   f"{price} x the quantity {qty}")
    totals = body.get("totals")
    if not isinstance(totals, Mapping):
        raise CertificateError("malformed", "a certificate with values names their totals")
    sums = {"value": sum((_cny(b["value"], "value") for b in blocks), Decimal(0)),
            "fees": sum((_cny(b["fee"], "fee") for b in blocks), Decimal(0))}
    sums["paid"] = sums["value"] + sums["fees"]
    for key, total in sums.items():
        if _cny(totals.get(key), f"total {key}") != total:
            raise CertificateError("amount_mismatch", f"the blocks' {key} add up to {total}, the total says "
                                   f"{totals.get(key)}")
    if _cny(body.get("paid"), "paid") != sums["paid"]:
        raise CertificateError("amount_mismatch", f"paid {body.get('paid')} is not the total {sums['paid']}")


def main(argv: list[str] | None = None) -> int:
    """``envx verify-receipt FILE --key KEY``: a restoration certificate, or else a plain ledger receipt."""
    import argparse
    import sys

    from ledger import receipt

    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(prog="envx verify-receipt", add_help=False)
    parser.add_argument("file")
    parser.add_argument("--key", action="append", default=[])
    parser.add_argument("--origin")
    known, _ = parser.parse_known_args(args)
    try:
        with open(known.file, "rb") as fh:
            doc = receipt.load_receipt_json(fh.read())
    except (OSError, ValueError):
        doc = None
    if not (isinstance(doc, dict) and doc.get("format") == FORMAT):
        return receipt.main(args)
    try:
        v = verify(doc, known.key, origin=known.origin)
    except CertificateError as exc:
        print(f"FAIL {known.file}: [{exc.code}] {exc.message}")
        return 1
    o = v.body["order"]
    print(f"OK {known.file}: restoration certificate {v.code} for {o['court']} {o['case_number']}: "
          f"{v.body['retired_quantity']} {v.body.get('unit', 'tCO2e')} retired in ledger entries "
          f"{', '.join(map(str, v.entries))}, "
          "each proven under a signed checkpoint")
    return 0
