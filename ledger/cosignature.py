"""Witness cosignatures (C2SP tlog-cosignature, Ed25519 ``cosignature/v1``) and witness policies.

A cosignature is a note signature line ``— <name> base64(key id || u64 timestamp || signature)`` where

- key id = ``SHA-256(name || "\\n" || 0x04 || public key)[:4]``,
- the Ed25519 signature is over ``"cosignature/v1\\ntime <timestamp>\\n" || checkpoint body``.

Witness keys are written as C2SP vkeys with type 0x04: ``<name>+<hex key id>+<base64(0x04 || key)>``;
signer keys as ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x04 || seed)>``. A log's own Ed25519 note key
(type 0x01) has another key id even under the same name, so the two kinds never verify each other.

:class:`WitnessPolicy` is "``quorum`` of these named witnesses": a checkpoint counts as witnessed when
that many distinct configured witnesses cosigned its exact body.

Pure except :func:`generate_cosigner_key` (the OS CSPRNG); time is passed in.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from ledger import note

__all__ = [
    "ALG_COSIGNATURE_V1",
    "CosignatureVerifier",
    "Cosigner",
    "WitnessPolicy",
    "cosigned_message",
    "cosigner_key_id",
    "generate_cosigner_key",
    "note_body",
    "verified_cosigners",
]

ALG_COSIGNATURE_V1 = 0x04
_PREFIX = "\u2014 "
_MAX_TS = (1 << 63) - 1


def cosigner_key_id(name: str, public_key: bytes) -> bytes:
    if len(public_key) != 32:
        raise note.InvalidKeyError("Ed25519 public keys are 32 bytes")
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_COSIGNATURE_V1]) + public_key).digest()[:4]


def cosigned_message(body: str, timestamp: int) -> bytes:
    """What a ``cosignature/v1`` signs: the header, the time line, then the checkpoint body."""
    if type(timestamp) is not int or not 0 <= timestamp <= _MAX_TS:
        raise ValueError("cosignature timestamp must be an int in [0, 2^63)")
    return f"cosignature/v1\ntime {timestamp}\n{body}".encode()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    raw = base64.b64decode(text.encode("ascii"), validate=True)
    if _b64(raw) != text:
        raise ValueError("non-canonical base64")
    return raw


def _valid_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() or ord(c) < 0x20 for c in name)


@dataclass(frozen=True, slots=True)
class CosignatureVerifier:
    """A trusted witness: its name and Ed25519 cosigner public key."""

    name: str
    public_key: bytes

    def __post_init__(self) -> None:
        if not _valid_name(self.name):
            raise note.InvalidKeyError(f"invalid witness name {self.name!r}")
        if len(self.public_key) != 32:
            raise note.InvalidKeyError("Ed25519 public keys are 32 bytes")

    @property
    def key_id(self) -> bytes:
        return cosigner_key_id(self.name, self.public_key)

    @classmethod
    def from_key_string(cls, vkey: str) -> CosignatureVerifier:
        if not isinstance(vkey, str):
            raise note.InvalidKeyError("witness key must be a string")
        fields = vkey.strip().split("+", 2)  # base64 may contain '+'
        if len(fields) != 3 or len(fields[1]) != 8:
            raise note.InvalidKeyError("witness key must be name+keyid+base64(0x04||key)")
        name, hex_id, b64 = fields
        try:
            raw = _unb64(b64)
            kid = bytes.fromhex(hex_id)
        except ValueError:
            raise note.InvalidKeyError("witness key data is not canonical base64 / hex") from None
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise note.InvalidKeyError("witness keys are Ed25519 cosignature/v1 keys (type 0x04, 32 bytes)")
        ver = cls(name, raw[1:])
        if ver.key_id != kid:
            raise note.InvalidKeyError("witness key id does not match its name and key")
        return ver

    def key_string(self) -> str:
        return f"{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_COSIGNATURE_V1]) + self.public_key)}"

    def verify_line(self, body: str, line: str) -> int | None:
        """The timestamp of ``line`` if it is this witness's valid cosignature of ``body``, else None."""
        sig = _parse_line(line)
        if sig is None or sig[0] != self.name or sig[1] != self.key_id:
            return None
        _, _, ts, signature = sig
        if ts > _MAX_TS:
            return None
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, cosigned_message(body, ts))
        except (InvalidSignature, ValueError):
            return None
        return ts


def _parse_line(line: str) -> tuple[str, bytes, int, bytes] | None:
    """(name, key id, timestamp, signature) of a cosignature line, or None if it is not one."""
    line = line.rstrip("\n")
    if not line.startswith(_PREFIX):
        return None
    name, sep, b64 = line[len(_PREFIX):].partition(" ")
    if not sep:
        return None
    try:
        raw = _unb64(b64)
    except (ValueError, UnicodeEncodeError):
        return None
    if len(raw) != 4 + 8 + 64:
        return None
    return name, raw[:4], int.from_bytes(raw[4:12], "big"), raw[12:]


class Cosigner:
    """A witness's signing key."""

    __slots__ = ("_private", "name", "public_key")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not _valid_name(name):
            raise note.InvalidKeyError(f"invalid witness name {name!r}")
        self.name = name
        self._private = private_key
        self.public_key = private_key.public_key().public_bytes(serialization.Encoding.Raw,
                                                                serialization.PublicFormat.Raw)

    def __repr__(self) -> str:  # never print key material
        return f"Cosigner({self.name}+{self.key_id.hex()})"

    @property
    def key_id(self) -> bytes:
        return cosigner_key_id(self.name, self.public_key)

    @classmethod
    def from_key_string(cls, skey: str) -> Cosigner:
        fields = skey.strip().split("+", 4)
        if len(fields) != 5 or fields[:2] != ["PRIVATE", "KEY"]:
            raise note.InvalidKeyError("witness signer key must be PRIVATE+KEY+name+keyid+base64(0x04||seed)")
        _, _, name, hex_id, b64 = fields
        try:
            raw = _unb64(b64)
            kid = bytes.fromhex(hex_id)
        except ValueError:
            raise note.InvalidKeyError("witness signer key data is not canonical base64 / hex") from None
        if len(raw) != 33 or raw[0] != ALG_COSIGNATURE_V1:
            raise note.InvalidKeyError("witness signer keys are type 0x04 with a 32-byte seed")
        signer = cls(name, Ed25519PrivateKey.from_private_bytes(raw[1:]))
        if signer.key_id != kid:
            raise note.InvalidKeyError("witness signer key id does not match the key")
        return signer

    def key_string(self) -> str:
        seed = self._private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                           serialization.NoEncryption())
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{_b64(bytes([ALG_COSIGNATURE_V1]) + seed)}"

    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier(self.name, self.public_key)

    def cosign(self, body: str, timestamp: int) -> str:
        """The signature line (with its newline) cosigning checkpoint ``body`` at ``timestamp``."""
        sig = self._private.sign(cosigned_message(body, timestamp))
        return f"{_PREFIX}{self.name} {_b64(self.key_id + timestamp.to_bytes(8, 'big') + sig)}\n"


def generate_cosigner_key(name: str) -> tuple[str, str]:
    """A new witness key pair: ``(signer key string, verifier key string)``."""
    c = Cosigner(name, Ed25519PrivateKey.generate())
    return c.key_string(), c.verifier().key_string()


def note_body(signed_note: str) -> str:
    """The signed text of a note (up to and including the blank line's first newline)."""
    return note.parse_note(signed_note).text


def verified_cosigners(signed_note: str, witnesses: Iterable[CosignatureVerifier]) -> dict[str, int]:
    """{witness verifier key: timestamp} of every trusted witness that validly cosigned the note's body.

    Lines from unknown keys are ignored, as C2SP asks; a line that names a trusted witness but does
    not verify is ignored too (it cosigned nothing).
    """
    parsed = note.parse_note(signed_note)
    out: dict[str, int] = {}
    for w in witnesses:
        for sig in parsed.signatures:
            ts = w.verify_line(parsed.text, sig.line())
            if ts is not None:
                out[w.key_string()] = ts
                break
    return out


def broken_cosignatures(signed_note: str, witnesses: Iterable[CosignatureVerifier]) -> list[str]:
    """The trusted witnesses (by name) that a line claims -- their name and key id -- but that does not verify.

    `verified_cosigners` ignores such a line (it cosigned nothing); a verifier that must not accept a changed
    file refuses it, as C2SP signed notes refuse a bad signature by a trusted key.
    """
    parsed = note.parse_note(signed_note)
    out = []
    for sig in parsed.signatures:
        got = _parse_line(sig.line())
        for w in witnesses:
            if got is not None and (got[0], got[1]) == (w.name, w.key_id) and w.verify_line(parsed.text,
                                                                                             sig.line()) is None:
                out.append(w.name)
    return out


@dataclass(frozen=True, slots=True)
class WitnessPolicy:
    """``quorum`` of ``witnesses`` must cosign a checkpoint for it to count as witnessed."""

    witnesses: tuple[CosignatureVerifier, ...]
    quorum: int

    def __post_init__(self) -> None:
        names = [w.key_string() for w in self.witnesses]
        if len(set(names)) != len(names):
            raise note.InvalidKeyError("a witness is named twice in the policy")
        if not 0 <= self.quorum <= len(self.witnesses):
            raise note.InvalidKeyError(f"quorum {self.quorum} of {len(self.witnesses)} witnesses is impossible")

    @classmethod
    def of(cls, keys: Sequence[str], quorum: int) -> WitnessPolicy:
        return cls(tuple(CosignatureVerifier.from_key_string(k) for k in keys), quorum)

    def cosigners(self, signed_note: str) -> dict[str, int]:
        return verified_cosigners(signed_note, self.witnesses)

    def broken(self, signed_note: str) -> list[str]:
        return broken_cosignatures(signed_note, self.witnesses)

    def satisfied_by(self, signed_note: str) -> bool:
        return len(self.cosigners(signed_note)) >= self.quorum
