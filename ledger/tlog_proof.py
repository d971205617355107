"""C2SP tlog-proof files (https://c2sp.org/tlog-proof): an entry's proof of inclusion under a cosigned
checkpoint, verifiable offline with the log's key and a witness policy. ``envx verify-receipt`` reads them.

envx writes::

    c2sp.org/tlog-proof@v1
    extra <base64 of the entry's canonical bytes: the Merkle leaf data>
    index <leaf index = ledger seq - 1>
    <inclusion path, one base64 hash a line>

    <the checkpoint note: the registry's signature, then the witnesses' cosignatures>

The extra data is the entry itself, so the proof is self-contained: the verifier hashes it
(``SHA-256(0x00 || entry)``) and checks the path to the signed root. The extra data is not trusted for
anything else: what it says is true only because it hashes to the proven leaf. Decoding the entry
(``ledger.encoding``) shows what was recorded; an entry's private metadata is committed by its digest.

Pure, apart from :func:`main` reading the file it is given.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from ledger import certificate, merkle, note, receipt
from ledger.cosignature import WitnessPolicy

__all__ = ["HEADER", "Shape", "TlogProof", "TlogProofError", "VerifiedTlogProof", "format_tlog_proof", "main",
           "parse_tlog_proof", "split_tlog_proofs", "verify_tlog_proof"]

HEADER = "c2sp.org/tlog-proof@v1"
_INDEX = re.compile(r"index (0|[1-9][0-9]{0,19})")
_MAX_BYTES = 1 << 20


class TlogProofError(Exception):
    """Codes: ``malformed``, ``unknown_key``, ``bad_signature``, ``wrong_origin``, ``inclusion_failed``,
    ``no_entry``, ``quorum_not_met``, ``invalid_key``, ``unreadable``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class TlogProof:
    extra: bytes | None
    index: int
    path: tuple[bytes, ...]
    checkpoint: str


@dataclass(frozen=True, slots=True)
class VerifiedTlogProof:
    entry: bytes
    index: int
    checkpoint: note.Checkpoint
    signed_by: tuple[str, ...]
    cosigned_by: dict[str, int]  # witness key -> cosignature timestamp (only the policy's witnesses)


def _b64(text: str, what: str) -> bytes:
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise TlogProofError("malformed", f"{what} is not base64") from None
    if base64.b64encode(raw).decode("ascii") != text:
        raise TlogProofError("malformed", f"{what} is not canonical base64")
    return raw


def format_tlog_proof(entry: bytes | None, index: int, path: Sequence[bytes], checkpoint: str) -> str:
    lines = [HEADER]
    if entry is not None:
        lines.append("extra " + base64.b64encode(entry).decode("ascii"))
    lines.append(f"index {index}")
    lines += [base64.b64encode(h).decode("ascii") for h in path]
    return "\n".join(lines) + "\n\n" + checkpoint


def parse_tlog_proof(text: str | bytes) -> TlogProof:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise TlogProofError("malformed", "not UTF-8") from None
    head, sep, checkpoint = text.partition("\n\n")
    lines = head.split("\n")
    if not sep or lines[0] != HEADER:
        raise TlogProofError("malformed", f"not a {HEADER} proof")
    rest = lines[1:]
    extra = None
    if rest and rest[0].startswith("extra "):
        extra = _b64(rest[0][len("extra "):], "extra data")
        rest = rest[1:]
    m = _INDEX.fullmatch(rest[0]) if rest else None
    if m is None:
        raise TlogProofError("malformed", "no 'index <n>' line")
    path = tuple(_b64(line, "inclusion proof line") for line in rest[1:])
    if len(path) > 64 or any(len(h) != merkle.HASH_SIZE for h in path):
        raise TlogProofError("malformed", "the inclusion proof must be at most 64 hashes of 32 bytes")
    return TlogProof(extra, int(m.group(1)), path, checkpoint)


def split_tlog_proofs(text: str | bytes) -> list[str]:
    """The proofs of a file holding one or more tlog-proofs one after the other (a certificate proving
    several entries): each starts at a line ``c2sp.org/tlog-proof@v1``. A single proof is a list of one."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise TlogProofError("malformed", "not UTF-8") from None
    marker = "\n" + HEADER + "\n"
    parts, start = [], 0
    while (at := text.find(marker, start + 1)) != -1:
        parts.append(text[start:at + 1])
        start = at + 1
    parts.append(text[start:])
    return parts


def verify_tlog_proof(text: str | bytes, log_keys: Iterable[str | note.Verifier] | str, *,
                      policy: WitnessPolicy | None = None, origin: str | None = None,
                      entry: bytes | None = None, leaf_hash: bytes | None = None) -> VerifiedTlogProof:
    """Verify the log's signature, the inclusion of ``entry`` (default: the extra data) -- or, given
    ``leaf_hash``, of that record hash (the extra data is then the caller's to check) -- and the policy."""
    p = parse_tlog_proof(text)
    data = entry if entry is not None else p.extra
    if data is None:
        raise TlogProofError("no_entry", "the proof carries no entry and none was given")
    try:
        verified = note.open_note(p.checkpoint, log_keys)
        cp = note.parse_checkpoint(verified.text)
    except note.NoteError as exc:
        raise TlogProofError(exc.code, str(exc)) from None
    if origin is not None and cp.origin != origin:
        raise TlogProofError("wrong_origin", f"checkpoint origin {cp.origin!r} is not {origin!r}")
    record = leaf_hash if leaf_hash is not None else merkle.leaf_hash(data)
    if p.index >= cp.size or not merkle.verify_inclusion(record, p.index, cp.size, list(p.path),
                                                         cp.root_hash):
        raise TlogProofError("inclusion_failed", f"entry {p.index} is not proven in the tree of size {cp.size}")
    cosigned = policy.cosigners(p.checkpoint) if policy is not None else {}
    broken = policy.broken(p.checkpoint) if policy is not None else []
    if broken:
        raise TlogProofError("bad_signature", f"the cosignature of trusted witness {broken[0]} does not verify")
    if policy is not None and len(cosigned) < policy.quorum:
        raise TlogProofError("quorum_not_met", f"{len(cosigned)} of the {len(policy.witnesses)} trusted witnesses "
                                               f"cosigned the checkpoint; the policy needs {policy.quorum}")
    return VerifiedTlogProof(data, p.index, cp, tuple(f"{v.name}+{v.key_id.hex()}" for v in verified.verified_by),
                             cosigned)


# A proof shape another package defines (its extra data is not an entry): None if ``text`` is not of it,
# else what it verified and how to say it; it raises TlogProofError when it is of it and does not verify.
Shape = Callable[..., "tuple[VerifiedTlogProof, str] | None"]


def _verify_one(text: str, keys: list[str], policy: WitnessPolicy | None, origin: str | None,
                shapes: Sequence[Shape]) -> tuple[VerifiedTlogProof, str]:
    for shape in shapes:
        found = shape(text, keys, policy=policy, origin=origin)
        if found is not None:
            return found
    v = verify_tlog_proof(text, keys, policy=policy, origin=origin)
    return v, f"entry {v.index}"


def main(argv: Sequence[str] | None = None, shapes: Sequence[Shape] = ()) -> int:
    """``envx verify-receipt FILE --key LOG_KEY [--witness KEY ... --quorum K] [--origin O]``.

    A ``.tlog-proof`` file (one proof, or several one after the other: a certificate's entries) is
    verified here, each proof by the first of ``shapes`` that knows it (a search certificate's) or as an
    entry's; a JSON receipt or restoration certificate by ``ledger.certificate`` (and, given witnesses,
    its checkpoints must meet the same quorum).
    """
    parser = argparse.ArgumentParser(prog="envx verify-receipt",
                                     description="Verify a receipt (.tlog-proof, JSON receipt or restoration "
                                                 "certificate) offline against the log's key and a witness policy.")
    parser.add_argument("file")
    parser.add_argument("--key", action="append", required=True, metavar="LOG_KEY",
                        help="the log's checkpoint key (C2SP vkey); repeat for rotated keys")
    parser.add_argument("--witness", action="append", default=[], metavar="WITNESS_KEY",
                        help="a trusted witness (cosignature/v1 vkey); repeat")
    parser.add_argument("--quorum", type=int, default=None,
                        help="how many of the witnesses must have cosigned (default: all given)")
    parser.add_argument("--origin", help="require this checkpoint origin")
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 2
    try:
        policy = WitnessPolicy.of(args.witness, len(args.witness) if args.quorum is None else args.quorum) \
            if args.witness or args.quorum else None
    except note.InvalidKeyError as exc:
        print(f"FAIL {args.file}: [invalid_key] {exc}")
        return 1
    try:
        with open(args.file, "rb") as fh:
            data = fh.read(_MAX_BYTES + 1)
    except OSError as exc:
        print(f"FAIL {args.file}: [unreadable] {exc.strerror or exc}")
        return 1
    if not data.startswith(HEADER.encode() + b"\n"):
        return _json_main(args, data, policy)
    try:
        parts = split_tlog_proofs(data)
        done = [_verify_one(one, args.key, policy, args.origin, shapes) for one in parts]
    except (TlogProofError, note.InvalidKeyError) as exc:
        code, msg = (exc.code, exc.message) if isinstance(exc, TlogProofError) else ("invalid_key", str(exc))
        print(f"FAIL {args.file}: [{code}] {msg}")
        return 1
    for v, what in done:
        witnessed = f", cosigned by {len(v.cosigned_by)} of {len(policy.witnesses)} witnesses (quorum " \
                    f"{policy.quorum})" if policy else ""
        print(f"OK {args.file}: {what} is in {v.checkpoint.origin} at tree size {v.checkpoint.size}, signed "
              f"by {', '.join(v.signed_by)}{witnessed}")
    return 0


def _json_main(args: argparse.Namespace, data: bytes, policy: WitnessPolicy | None) -> int:
    try:
        doc = receipt.load_receipt_json(data)
    except receipt.ReceiptError as exc:
        print(f"FAIL {args.file}: [malformed] neither a {HEADER} proof nor a JSON receipt ({exc.message})")
        return 1
    argv = [args.file, *(a for k in args.key for a in ("--key", k)),
            *(("--origin", args.origin) if args.origin else ())]
    code = certificate.main(argv)
    if code != 0 or policy is None:
        return code
    notes = [r.get("checkpoint") for r in doc.get("receipts", [])] if "receipts" in doc else [doc.get("checkpoint")]
    for n in notes:
        if isinstance(n, str) and policy.broken(n):
            print(f"FAIL {args.file}: [bad_signature] the cosignature of trusted witness {policy.broken(n)[0]} "
                  f"does not verify")
            return 1
        if not isinstance(n, str) or len(policy.cosigners(n)) < policy.quorum:
            print(f"FAIL {args.file}: [quorum_not_met] a checkpoint is not cosigned by {policy.quorum} of the "
                  f"{len(policy.witnesses)} trusted witnesses")
            return 1
    print(f"OK {args.file}: every checkpoint cosigned by at least {policy.quorum} trusted witnesses")
    return 0
