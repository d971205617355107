"""A witness's rules (C2SP tlog-witness ``add-checkpoint``), pure: what to answer, what to remember.

The witness remembers, per log origin, the size and root of the latest checkpoint it cosigned. A request
carries the old size the log believes the witness has, a consistency proof from it, and the new signed
checkpoint. :func:`decide` checks, in the spec's order:

1. the body's shape (400), the checkpoint's origin is a log the witness follows (404), a signature by
   one of that log's keys verifies (403);
2. old size <= checkpoint size (400);
3. old size == the size remembered (else 409 with the remembered size: the log is behind -- rolled
   back -- or confused);
4. same size: the same root (else 409: a fork, two trees of one size); larger: the consistency proof
   from the remembered root verifies (else 422: not an extension of what was cosigned, a fork).

Only then is the new state returned, which the caller must persist before answering with the
cosignature. The caller holds one lock around decide-persist-answer (the spec's race).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ledger import merkle, note

__all__ = ["AddCheckpoint", "LogState", "WitnessRefusal", "decide", "format_add_checkpoint", "parse_add_checkpoint"]

MAX_PROOF_LINES = 63
MAX_BODY_BYTES = 64 * 1024
_OLD = re.compile(r"old (0|[1-9][0-9]{0,19})")


@dataclass(frozen=True, slots=True)
class LogState:
    size: int
    root: bytes


@dataclass(frozen=True, slots=True)
class AddCheckpoint:
    old_size: int
    proof: tuple[bytes, ...]
    checkpoint: str  # the signed note, as sent


class WitnessRefusal(Exception):
    """An answer other than 200: ``status``, a log line's ``reason``, and for 409 on size the remembered
    size (``known_size``), sent as ``text/x.tlog.size``. ``alarm``: evidence of log misbehaviour."""

    def __init__(self, status: int, reason: str, *, known_size: int | None = None, alarm: bool = False) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.known_size = known_size
        self.alarm = alarm


def format_add_checkpoint(old_size: int, proof: Sequence[bytes], signed_note: str) -> bytes:
    lines = [f"old {old_size}\n", *(base64.b64encode(h).decode("ascii") + "\n" for h in proof), "\n"]
    return ("".join(lines) + signed_note).encode("utf-8")


def _b64(text: str) -> bytes:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if base64.b64encode(raw).decode("ascii") != text:
        raise ValueError("non-canonical base64")
    return raw


def parse_add_checkpoint(body: bytes) -> AddCheckpoint:
    if len(body) > MAX_BODY_BYTES:
        raise WitnessRefusal(400, "request body too large")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise WitnessRefusal(400, "request body is not UTF-8") from None
    head, sep, signed = text.partition("\n\n")
    if not sep:
        raise WitnessRefusal(400, "no empty line before the checkpoint")
    lines = head.split("\n")
    m = _OLD.fullmatch(lines[0])
    if m is None or int(m.group(1)) >= 1 << 64:
        raise WitnessRefusal(400, "the first line must be 'old <size>'")
    if len(lines) - 1 > MAX_PROOF_LINES:
        raise WitnessRefusal(400, f"more than {MAX_PROOF_LINES} consistency proof lines")
    try:
        proof = tuple(_b64(line) for line in lines[1:])
    except (ValueError, binascii.Error, UnicodeEncodeError):
        raise WitnessRefusal(400, "a consistency proof line is not base64") from None
    if any(len(h) != merkle.HASH_SIZE for h in proof):
        raise WitnessRefusal(400, "consistency proof hashes are 32 bytes")
    return AddCheckpoint(int(m.group(1)), proof, signed)


def decide(req: AddCheckpoint, logs: Mapping[str, Sequence[note.Verifier | str]],
           state: Mapping[str, LogState]) -> tuple[str, str, LogState]:
    """``(origin, checkpoint body, new state)`` if the witness must cosign; else :class:`WitnessRefusal`."""
    try:
        unverified = note.parse_checkpoint(note.parse_note(req.checkpoint).text)
    except note.NoteError as exc:
        raise WitnessRefusal(400, f"not a signed checkpoint: {exc}") from None
    origin = unverified.origin
    keys = logs.get(origin)
    if not keys:
        raise WitnessRefusal(404, f"unknown log {origin!r}")
    try:
        verified = note.open_note(req.checkpoint, keys)
    except note.NoteError as exc:
        raise WitnessRefusal(403, f"checkpoint of {origin!r} is not signed by its key: {exc}") from None
    cp = note.parse_checkpoint(verified.text)
    if req.old_size > cp.size:
        raise WitnessRefusal(400, f"old size {req.old_size} is larger than the checkpoint's {cp.size}")
    known = state.get(origin, LogState(0, merkle.EMPTY_ROOT))
    if req.old_size != known.size:
        behind = cp.size < known.size
        raise WitnessRefusal(
            409, f"{origin}: old size {req.old_size} but the last cosigned size is {known.size}"
                 + (f"; the log now shows size {cp.size}, smaller than what it showed before: a ROLLBACK"
                    if behind else ""),
            known_size=known.size, alarm=behind)
    if known.size == 0:
        if req.proof:
            raise WitnessRefusal(422, "the consistency proof from size 0 must be empty")
    elif cp.size == known.size:
        if cp.root_hash != known.root:
            raise WitnessRefusal(409, f"{origin}: a second tree of size {cp.size} with another root: a FORK "
                                      "(split view)", alarm=True)
    elif not merkle.verify_consistency(known.size, cp.size, known.root, cp.root_hash, list(req.proof)):
        raise WitnessRefusal(422, f"{origin}: size {cp.size} does not extend the cosigned size {known.size}: "
                                  "the consistency proof fails, a FORK or a rewritten history", alarm=True)
    return origin, verified.text, LogState(cp.size, cp.root_hash)
