"""Offline verifier for envx ledger receipts.

A receipt proves that one ledger entry is in the log, to anyone holding the log's public key
and nothing else (no database, no network). It is a JSON object::

    {
      "format": "envx-receipt-v1",
      "entry": "<base64 of the canonical entry bytes, i.e. the Merkle leaf data>",
      "index": <leaf index>,
      "tree_size": <size of the tree the proof is against>,
      "inclusion_path": ["<base64 32-byte hash>", ...],   # RFC 9162 inclusion path
      "checkpoint": "<signed C2SP checkpoint note>",
      "metadata": { ... },                                 # optional, NOT covered by any proof
      "openings": [{"leg": i, "field": "debit", "salt": "<hex>", "value": n}, ...]   # optional, see below
    }

A blinded entry (:mod:`ledger.blinding`) names its accounts and holds (version 3), and the amounts of its legs
too (version 4), by commitment; its receipt carries the openings of the caller's own fields, each checked
against the commitment in the entry bytes (``opening_mismatch`` when it does not open it), so a party can see
that the proven entry moves its own accounts by its own amounts while the other side's stay commitments. In a
version-4 entry every field its version blinds must be a commitment (``malformed`` otherwise).

Verification: the checkpoint signature must verify with a trusted key; its size must equal
``tree_size``; ``SHA-256(0x00 || entry)`` with the inclusion path must reproduce its root.

This module deliberately imports only the standard library, ``cryptography`` (via
:mod:`ledger.note`), :mod:`ledger.merkle`, :mod:`ledger.note` and :mod:`ledger.blinding`, so the verifier can be
handed to outsiders (banks, courts, auditors) and run offline.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger import blinding, merkle, note

__all__ = [
    "RECEIPT_FORMAT",
    "ReceiptError",
    "VerifiedReceipt",
    "load_receipt_json",
    "main",
    "make_receipt",
    "verify_receipt",
    "verify_receipt_file",
]

RECEIPT_FORMAT = "envx-receipt-v1"
_REQUIRED = ("format", "entry", "index", "tree_size", "inclusion_path", "checkpoint")
_ALLOWED = frozenset((*_REQUIRED, "metadata", "openings"))
# The blinded entry versions by domain tag (ledger.encoding.BLINDED_VERSIONS, spelled out: this module imports
# nothing of the ledger but blinding, merkle and note).
_BLINDED_TAGS = {b"envx-entry/3\n": 3, b"envx-entry/4\n": 4}
_TAG_LEN = 13
_MAX_SIZE = 1 << 63  # fits a PostgreSQL bigint; far beyond any real ledger
_MAX_PATH = 64  # a tree below 2**64 leaves is at most 64 levels tall
_MAX_FILE_BYTES = 16 * 1024 * 1024


class ReceiptError(Exception):
    """Verification failed. ``code`` is stable and machine-readable.

    Codes: ``malformed`` (receipt or checkpoint not in the expected format), ``invalid_key``
    (a trusted key string given by the caller is unusable), ``unknown_key`` (checkpoint not
    signed by any trusted key), ``bad_signature`` (a trusted key's signature does not verify),
    ``wrong_origin`` (checkpoint from another log than the one required), ``size_mismatch``
    (receipt tree size differs from the checkpoint's), ``inclusion_failed`` (the entry and path
    do not reproduce the signed root), ``opening_mismatch`` (an opening does not open the commitment
    of a blinded entry's field), ``unreadable`` (the receipt file cannot be read).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class VerifiedReceipt:
    """What a successful verification establishes (``metadata`` excepted: it is unauthenticated)."""

    entry: bytes
    leaf_hash: bytes
    index: int
    tree_size: int
    root_hash: bytes
    checkpoint: note.Checkpoint
    signed_by: tuple[str, ...]  # "name+keyid" of each trusted key whose signature verified
    metadata: Mapping[str, Any] | None  # copied from the receipt as-is; NOT verified
    # A blinded entry's fields the receipt opened, each checked against its commitment: (leg, field, value).
    opened: tuple[tuple[int, str, int], ...] = ()


def _b64(value: object, what: str) -> bytes:
    if not isinstance(value, str):
        raise ReceiptError("malformed", f"{what} must be a base64 string")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise ReceiptError("malformed", f"{what} is not valid base64") from None
    if base64.b64encode(raw).decode("ascii") != value:
        # Canonical spelling only, so every altered character is an altered value.
        raise ReceiptError("malformed", f"{what} is not canonical base64")
    return raw


def _uint(value: object, what: str) -> int:
    if type(value) is not int or not 0 <= value < _MAX_SIZE:
        raise ReceiptError("malformed", f"{what} must be an integer in [0, 2^63)")
    return value


def verify_receipt(
    receipt: Mapping[str, Any],
    verifier_keys: Iterable[str | note.Verifier] | str,
    *,
    origin: str | None = None,
) -> VerifiedReceipt:
    """Verify a decoded receipt against trusted note verifier keys; raise :class:`ReceiptError`.

    ``origin``, if given, pins the checkpoint's origin line (the log identity).
    """
    if not isinstance(receipt, Mapping):
        raise ReceiptError("malformed", "receipt must be a JSON object")
    missing = [k for k in _REQUIRED if k not in receipt]
    if missing:
        raise ReceiptError("malformed", f"receipt lacks {', '.join(missing)}")
    unknown = sorted(set(receipt) - _ALLOWED)
    if unknown:
        raise ReceiptError("malformed", f"receipt has unknown fields {', '.join(map(str, unknown))}")
    if receipt["format"] != RECEIPT_FORMAT:
        raise ReceiptError("malformed", f"unsupported receipt format {receipt['format']!r}")
    entry = _b64(receipt["entry"], "entry")
    index = _uint(receipt["index"], "index")
    tree_size = _uint(receipt["tree_size"], "tree_size")
    raw_path = receipt["inclusion_path"]
    if not isinstance(raw_path, list) or len(raw_path) > _MAX_PATH:
        raise ReceiptError("malformed", f"inclusion_path must be a list of at most {_MAX_PATH} hashes")
    path = [_b64(p, f"inclusion_path[{i}]") for i, p in enumerate(raw_path)]
    if any(len(p) != merkle.HASH_SIZE for p in path):
        raise ReceiptError("malformed", "inclusion_path hashes must be 32 bytes")
    checkpoint_note = receipt["checkpoint"]
    if not isinstance(checkpoint_note, str):
        raise ReceiptError("malformed", "checkpoint must be the signed note text")
    metadata = receipt.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise ReceiptError("malformed", "metadata must be an object")

    try:
        verified = note.open_note(checkpoint_note, verifier_keys)
        checkpoint = note.parse_checkpoint(verified.text)
    except note.NoteError as exc:
        raise ReceiptError(exc.code, str(exc)) from None
    if origin is not None and checkpoint.origin != origin:
        raise ReceiptError("wrong_origin", f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")

    if tree_size != checkpoint.size:
        raise ReceiptError("size_mismatch", f"receipt tree_size {tree_size} != checkpoint size {checkpoint.size}")
    if index >= tree_size:
        raise ReceiptError("inclusion_failed", f"index {index} is outside a tree of size {tree_size}")
    leaf = merkle.leaf_hash(entry)
    if not merkle.verify_inclusion(leaf, index, tree_size, path, checkpoint.root_hash):
        raise ReceiptError("inclusion_failed", f"entry {index} and its inclusion path do not reproduce the signed root")
    opened = _check_openings(entry, receipt.get("openings"))
    return VerifiedReceipt(
        entry=entry,
        leaf_hash=leaf,
        index=index,
        tree_size=tree_size,
        root_hash=checkpoint.root_hash,
        checkpoint=checkpoint,
        signed_by=tuple(f"{v.name}+{v.key_id.hex()}" for v in verified.verified_by),
        metadata=metadata,
        opened=opened,
    )


def _check_openings(entry: bytes, given: object) -> tuple[tuple[int, str, int], ...]:
    """Each opening of a blinded entry's field must open the commitment its bytes hold there; in a version-4
    entry every field the version blinds must be a commitment, whether the receipt opens it or not."""
    version = _BLINDED_TAGS.get(entry[:_TAG_LEN])
    legs = _legs(entry) if version == 4 else None
    if legs is not None:
        for i, leg in enumerate(legs):
            body = leg.get("body") if isinstance(leg, dict) else None
            if not isinstance(body, dict):
                raise ReceiptError("malformed", f"leg {i} of the entry has no body")
            for f in blinding.FIELDS[4]:
                if f in body and not _is_commitment(body[f]):
                    raise ReceiptError("malformed", f"leg {i}'s {f} is not a commitment in a version-4 entry")
    if given is None or given == []:
        return ()
    if not isinstance(given, list) or len(given) > len(blinding.TAGS) * 64:
        raise ReceiptError("malformed", f"openings must be a list of at most {len(blinding.TAGS) * 64} objects")
    if version is None:
        raise ReceiptError("malformed", "openings belong to a blinded (version-3 or -4) entry only")
    if legs is None:
        legs = _legs(entry)
    fields = blinding.FIELDS[version]
    out: list[tuple[int, str, int]] = []
    for k, o in enumerate(given):
        if not isinstance(o, Mapping) or set(o) != {"leg", "field", "salt", "value"}:
            raise ReceiptError("malformed", f"openings[{k}] must be {{leg, field, salt, value}}")
        leg, field, salt, value = o["leg"], o["field"], o["salt"], o["value"]
        if (type(leg) is not int or not 0 <= leg < len(legs) or field not in fields
                or type(value) is not int or not isinstance(salt, str) or len(salt) != 64):
            raise ReceiptError("malformed", f"openings[{k}]: a leg of the entry, a blinded field, a hex salt, "
                                            "an integer value")
        try:
            raw_salt = bytes.fromhex(salt)
        except ValueError:
            raise ReceiptError("malformed", f"openings[{k}]: the salt is not hex") from None
        body = legs[leg].get("body") if isinstance(legs[leg], dict) else None
        c = body.get(field) if isinstance(body, dict) else None
        if not isinstance(c, str) or not blinding.opens(c, field, raw_salt, value):
            raise ReceiptError("opening_mismatch", f"openings[{k}] does not open leg {leg}'s {field}")
        out.append((leg, field, value))
    return tuple(out)


def _legs(entry: bytes) -> list[Any]:
    try:
        legs = json.loads(entry[_TAG_LEN:].decode("utf-8"))["body"]["legs"]
    except (ValueError, KeyError, TypeError) as exc:
        raise ReceiptError("malformed", f"the entry's legs cannot be read: {exc}") from None
    if not isinstance(legs, list):
        raise ReceiptError("malformed", "the entry's legs are not a list")
    return legs


def _is_commitment(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(ch in "0123456789abcdef" for ch in value)


def make_receipt(
    entry: bytes,
    index: int,
    tree_size: int,
    inclusion_path: Sequence[bytes],
    checkpoint_note: str,
    metadata: Mapping[str, Any] | None = None,
    openings: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Assemble a receipt object (the issuing side); JSON-serialisable."""
    receipt: dict[str, Any] = {
        "format": RECEIPT_FORMAT,
        "entry": base64.b64encode(entry).decode("ascii"),
        "index": index,
        "tree_size": tree_size,
        "inclusion_path": [base64.b64encode(h).decode("ascii") for h in inclusion_path],
        "checkpoint": checkpoint_note,
    }
    if metadata is not None:
        receipt["metadata"] = dict(metadata)
    if openings is not None:
        receipt["openings"] = [dict(o) for o in openings]
    return receipt


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            # Two parsers could otherwise disagree on which value a receipt "says".
            raise ReceiptError("malformed", f"duplicate JSON field {key!r}")
        out[key] = value
    return out


def _no_constants(name: str) -> Any:
    raise ReceiptError("malformed", f"JSON constant {name} is not allowed")


def load_receipt_json(data: bytes | str) -> Any:
    """Strict JSON decoding: UTF-8, no duplicate fields, no NaN/Infinity."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ReceiptError("malformed", f"receipt is not valid JSON: {exc}") from None


def verify_receipt_file(
    path: str, key_strings: Iterable[str | note.Verifier] | str, *, origin: str | None = None
) -> VerifiedReceipt:
    """Read a receipt JSON file and verify it (the only function here that does I/O)."""
    try:
        with open(path, "rb") as f:
            data = f.read(_MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ReceiptError("unreadable", f"cannot read {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_FILE_BYTES:
        raise ReceiptError("malformed", f"receipt file is larger than {_MAX_FILE_BYTES} bytes")
    return verify_receipt(load_receipt_json(data), key_strings, origin=origin)


def main(argv: Sequence[str] | None = None) -> int:
    """``envx verify-receipt FILE --key VERIFIER_KEY [--key ...] [--origin ORIGIN]``.

    Prints one ``OK ...`` or ``FAIL ...`` line; returns 0 on success, 1 on failure
    (2 for command-line usage errors, as argparse does).
    """
    parser = argparse.ArgumentParser(
        prog="envx verify-receipt",
        description="Verify an envx ledger receipt offline against the log's public key(s).",
    )
    parser.add_argument("file", help="receipt JSON file")
    parser.add_argument(
        "--key",
        action="append",
        required=True,
        metavar="VERIFIER_KEY",
        help="trusted log key, name+keyid+base64 (repeat to trust several)",
    )
    parser.add_argument("--origin", help="require this checkpoint origin (log identity)")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # keep main() returning an exit code instead of exiting
        return exc.code if isinstance(exc.code, int) else 2
    try:
        result = verify_receipt_file(args.file, args.key, origin=args.origin)
    except ReceiptError as exc:
        print(f"FAIL {args.file}: [{exc.code}] {exc.message}")
        return 1
    print(
        f"OK {args.file}: entry {result.index} is in {result.checkpoint.origin} at tree size "
        f"{result.tree_size}, root {base64.b64encode(result.root_hash).decode('ascii')}, "
        f"signed by {', '.join(result.signed_by)}"
        + ("; opened: " + ", ".join(f"leg {leg} {f} = {v}" for leg, f, v in result.opened) if result.opened else "")
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
