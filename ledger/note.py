"""C2SP signed notes (https://c2sp.org/signed-note) and checkpoints (https://c2sp.org/tlog-checkpoint).

A signed note is a UTF-8 text ending in a newline, a blank line, then one or more signature
lines ``— <key name> <base64(key id || signature)>``. Only Ed25519 (signature type 0x01) is
supported, where ``key id = SHA-256(name || 0x0A || 0x01 || public key)[:4]``.

Key strings (compatible with Go's golang.org/x/mod/sumdb/note):

* verifier key: ``<name>+<hex key id>+<base64(0x01 || 32-byte public key)>``
* signer key:   ``PRIVATE+KEY+<name>+<hex key id>+<base64(0x01 || 32-byte seed)>``

A checkpoint is a note whose text is ``origin\\n size\\n base64(root)\\n [extension lines\\n]``.

Everything here is pure except :func:`generate_signer_key`, which draws a fresh key from the
operating system's CSPRNG (via ``cryptography``) and is kept separate for that reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

__all__ = [
    "ALG_ED25519",
    "MAX_SIGNATURES",
    "BadSignatureError",
    "Checkpoint",
    "InvalidKeyError",
    "MalformedNoteError",
    "Note",
    "NoteError",
    "NoteSignature",
    "Signer",
    "UnknownKeyError",
    "VerifiedNote",
    "Verifier",
    "WrongOriginError",
    "format_checkpoint",
    "generate_signer_key",
    "key_id",
    "open_note",
    "parse_checkpoint",
    "parse_note",
    "sign_checkpoint",
    "sign_note",
    "verifier_key_string",
    "verify_checkpoint",
]

ALG_ED25519 = 0x01
MAX_SIGNATURES = 100  # C2SP: verifiers must accept at least 16; bound parsing work like Go does
_SIG_PREFIX = "\u2014 "  # em dash, space
_HASH_SIZE = 32
_HEX8 = re.compile(r"[0-9a-fA-F]{8}")
_DECIMAL = re.compile(r"0|[1-9][0-9]*")


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class NoteError(ValueError):
    """Base class; ``code`` is a stable machine-readable reason."""

    code = "malformed"


class MalformedNoteError(NoteError):
    """The note, signature line or checkpoint text does not follow the format."""

    code = "malformed"


class UnknownKeyError(NoteError):
    """No signature on the note is from a trusted key (name and key id both matching)."""

    code = "unknown_key"


class BadSignatureError(NoteError):
    """A signature from a trusted key does not verify over the note text."""

    code = "bad_signature"


class WrongOriginError(NoteError):
    """The checkpoint is validly signed but names a different log (origin line)."""

    code = "wrong_origin"


class InvalidKeyError(NoteError):
    """A key string (or key set) supplied by the caller is malformed or inconsistent."""

    code = "invalid_key"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _b64decode(text: str) -> bytes:
    """Standard base64, canonical only: one value has exactly one accepted spelling."""
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError("invalid base64") from exc
    if base64.b64encode(raw).decode("ascii") != text:
        # Rejects non-zero padding bits and missing padding, so a flipped character can never
        # decode to the same bytes.
        raise ValueError("non-canonical base64")
    return raw


def _b64encode(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _is_valid_name(name: str) -> bool:
    # C2SP: non-empty, no Unicode spaces, no '+'. str.isspace mirrors Go's unicode.IsSpace closely
    # enough for names; control characters are rejected as well since notes forbid them.
    return bool(name) and "+" not in name and not any(c.isspace() or ord(c) < 0x20 for c in name)


def _check_note_chars(text: str) -> None:
    for c in text:
        if ord(c) < 0x20 and c != "\n":
            raise MalformedNoteError("note contains a control character")
        if 0xD800 <= ord(c) <= 0xDFFF:
            # A lone surrogate (possible after JSON decoding) has no UTF-8 encoding to sign.
            raise MalformedNoteError("note is not valid Unicode text")


def key_id(name: str, public_key: bytes) -> bytes:
    """C2SP Ed25519 key id: ``SHA-256(name || 0x0A || 0x01 || public_key)[:4]``."""
    if len(public_key) != 32:
        raise InvalidKeyError("Ed25519 public keys are 32 bytes")
    return hashlib.sha256(name.encode("utf-8") + b"\n" + bytes([ALG_ED25519]) + public_key).digest()[:4]


def verifier_key_string(name: str, public_key: bytes) -> str:
    """``<name>+<hex key id>+<base64(0x01 || public key)>``."""
    if not _is_valid_name(name):
        raise InvalidKeyError(f"invalid key name {name!r}")
    return f"{name}+{key_id(name, public_key).hex()}+{_b64encode(bytes([ALG_ED25519]) + public_key)}"


def _split_key(text: str, parts: int) -> list[str]:
    fields = text.split("+", parts - 1)
    if len(fields) != parts:
        raise InvalidKeyError("key string has too few '+'-separated fields")
    return fields


# --------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verifier:
    """A trusted Ed25519 note key."""

    name: str
    key_id: bytes
    public_key: bytes

    def __post_init__(self) -> None:
        if not _is_valid_name(self.name):
            raise InvalidKeyError(f"invalid key name {self.name!r}")
        if key_id(self.name, self.public_key) != self.key_id:
            raise InvalidKeyError("key id does not match name and public key")

    @classmethod
    def from_public_key(cls, name: str, public_key: bytes) -> Verifier:
        return cls(name, key_id(name, public_key), public_key)

    @classmethod
    def from_key_string(cls, vkey: str) -> Verifier:
        """Parse ``name+keyid+base64(0x01||pubkey)``, checking that the key id matches."""
        if not isinstance(vkey, str):
            raise InvalidKeyError("verifier key must be a string")
        name, hex_id, b64 = _split_key(vkey.strip(), 3)
        if not _HEX8.fullmatch(hex_id):
            raise InvalidKeyError("key id must be 8 hex digits")
        try:
            raw = _b64decode(b64)
        except ValueError as exc:
            raise InvalidKeyError(f"verifier key data: {exc}") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise InvalidKeyError("only Ed25519 (type 0x01, 32-byte) verifier keys are supported")
        return cls(name, bytes.fromhex(hex_id), raw[1:])

    def key_string(self) -> str:
        return verifier_key_string(self.name, self.public_key)

    def verify(self, message: bytes, signature: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class Signer:
    """An Ed25519 note signing key with its key name."""

    __slots__ = ("_private", "key_id", "name", "public_key")

    def __init__(self, name: str, private_key: Ed25519PrivateKey) -> None:
        if not _is_valid_name(name):
            raise InvalidKeyError(f"invalid key name {name!r}")
        self.name = name
        self._private = private_key
        self.public_key: bytes = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.key_id: bytes = key_id(name, self.public_key)

    def __repr__(self) -> str:  # never print key material
        return f"Signer({self.name}+{self.key_id.hex()})"

    @classmethod
    def from_seed(cls, name: str, seed: bytes) -> Signer:
        """Deterministic signer from a 32-byte Ed25519 seed (the RFC 8032 private key)."""
        if len(seed) != 32:
            raise InvalidKeyError("Ed25519 seeds are 32 bytes")
        return cls(name, Ed25519PrivateKey.from_private_bytes(seed))

    @classmethod
    def from_key_string(cls, skey: str) -> Signer:
        """Parse ``PRIVATE+KEY+name+keyid+base64(0x01||seed)``, checking the key id."""
        if not isinstance(skey, str):
            raise InvalidKeyError("signer key must be a string")
        p1, p2, name, hex_id, b64 = _split_key(skey.strip(), 5)
        if (p1, p2) != ("PRIVATE", "KEY"):
            raise InvalidKeyError("signer key must start with PRIVATE+KEY+")
        if not _HEX8.fullmatch(hex_id):
            raise InvalidKeyError("key id must be 8 hex digits")
        try:
            raw = _b64decode(b64)
        except ValueError as exc:
            raise InvalidKeyError(f"signer key data: {exc}") from None
        if len(raw) != 33 or raw[0] != ALG_ED25519:
            raise InvalidKeyError("only Ed25519 (type 0x01, 32-byte seed) signer keys are supported")
        signer = cls.from_seed(name, raw[1:])
        if signer.key_id != bytes.fromhex(hex_id):
            raise InvalidKeyError("key id does not match the key")
        return signer

    def key_string(self) -> str:
        """The secret ``PRIVATE+KEY+...`` string; handle like the key itself."""
        seed = self._private.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        return f"PRIVATE+KEY+{self.name}+{self.key_id.hex()}+{_b64encode(bytes([ALG_ED25519]) + seed)}"

    def verifier(self) -> Verifier:
        return Verifier(self.name, self.key_id, self.public_key)

    def verifier_key_string(self) -> str:
        return verifier_key_string(self.name, self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._private.sign(message)

    def signature_line(self, text: str) -> str:
        """``— name base64(keyid || sig)\\n`` over the UTF-8 bytes of ``text``."""
        sig = self.sign(text.encode("utf-8"))
        return f"{_SIG_PREFIX}{self.name} {_b64encode(self.key_id + sig)}\n"


def generate_signer_key(name: str) -> tuple[str, str]:
    """New random key pair as ``(signer key string, verifier key string)``.

    The only non-deterministic function in the ledger crypto core: it uses the OS CSPRNG.
    """
    signer = Signer(name, Ed25519PrivateKey.generate())
    return signer.key_string(), signer.verifier_key_string()


# --------------------------------------------------------------------------------------------
# Notes
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NoteSignature:
    """One parsed signature line (not yet verified)."""

    name: str
    key_id: bytes
    signature: bytes

    def line(self) -> str:
        return f"{_SIG_PREFIX}{self.name} {_b64encode(self.key_id + self.signature)}\n"


@dataclass(frozen=True, slots=True)
class Note:
    """A parsed signed note: the signed text (ends in newline) and its signature lines."""

    text: str
    signatures: tuple[NoteSignature, ...]


@dataclass(frozen=True, slots=True)
class VerifiedNote:
    """A note with at least one valid signature from a trusted key."""

    text: str
    verified_by: tuple[Verifier, ...]
    unverified: tuple[NoteSignature, ...]  # signatures from keys the caller does not trust


def sign_note(text: str, signers: Signer | Sequence[Signer]) -> str:
    """Signed note: ``text`` + blank line + one signature line per signer."""
    signers = [signers] if isinstance(signers, Signer) else list(signers)
    if not signers:
        raise ValueError("at least one signer is required")
    if not text.endswith("\n"):
        raise MalformedNoteError("note text must end with a newline")
    _check_note_chars(text)
    return text + "\n" + "".join(s.signature_line(text) for s in signers)


def parse_note(note: str | bytes) -> Note:
    """Split a signed note into text and signature lines, checking the format only."""
    if isinstance(note, bytes):
        try:
            note = note.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedNoteError("note is not valid UTF-8") from None
    if not isinstance(note, str):
        raise MalformedNoteError("note must be text")
    _check_note_chars(note)
    # The text is separated from the signatures by the *last* blank line.
    split = note.rfind("\n\n")
    if split < 0:
        raise MalformedNoteError("note has no blank line before its signatures")
    text, block = note[: split + 1], note[split + 2 :]
    if not block or not block.endswith("\n"):
        raise MalformedNoteError("note has no signature lines or lacks a final newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise MalformedNoteError(f"note has more than {MAX_SIGNATURES} signatures")
    sigs: list[NoteSignature] = []
    for line in lines:
        if not line.startswith(_SIG_PREFIX):
            raise MalformedNoteError("signature line does not start with an em dash and a space")
        name, sep, b64 = line[len(_SIG_PREFIX) :].partition(" ")
        if not sep or not _is_valid_name(name) or not b64:
            raise MalformedNoteError("signature line must be '— <name> <base64>'")
        try:
            raw = _b64decode(b64)
        except ValueError as exc:
            raise MalformedNoteError(f"signature: {exc}") from None
        if len(raw) < 5:
            raise MalformedNoteError("signature is too short")
        sigs.append(NoteSignature(name, raw[:4], raw[4:]))
    return Note(text, tuple(sigs))


def _verifier_index(verifiers: Iterable[Verifier | str] | str) -> dict[tuple[str, bytes], Verifier]:
    if isinstance(verifiers, str | Verifier):
        verifiers = [verifiers]  # a single key, not an iterable of characters
    index: dict[tuple[str, bytes], Verifier] = {}
    for v in verifiers:
        ver = Verifier.from_key_string(v) if isinstance(v, str) else v
        if not isinstance(ver, Verifier):
            raise InvalidKeyError("verifiers must be Verifier objects or verifier key strings")
        other = index.setdefault((ver.name, ver.key_id), ver)
        if other.public_key != ver.public_key:
            # Same name and id but different keys: the trust list itself is broken.
            raise InvalidKeyError(f"ambiguous verifier keys for {ver.name}+{ver.key_id.hex()}")
    return index


def open_note(note: str | bytes, verifiers: Iterable[Verifier | str] | str) -> VerifiedNote:
    """Parse a note and verify it against trusted keys, per the C2SP rules.

    Signatures from unknown keys (name or id not matching a trusted key) are ignored. Every
    signature from a trusted key must verify, else :class:`BadSignatureError`. If no trusted
    key signed, :class:`UnknownKeyError`.
    """
    trusted = _verifier_index(verifiers)
    parsed = parse_note(note)
    message = parsed.text.encode("utf-8")
    verified: list[Verifier] = []
    unverified: list[NoteSignature] = []
    for sig in parsed.signatures:
        ver = trusted.get((sig.name, sig.key_id))
        if ver is None:
            unverified.append(sig)
            continue
        if not ver.verify(message, sig.signature):
            raise BadSignatureError(f"invalid signature by {sig.name}+{sig.key_id.hex()}")
        if ver not in verified:
            verified.append(ver)
    if not verified:
        seen = ", ".join(f"{s.name}+{s.key_id.hex()}" for s in parsed.signatures)
        raise UnknownKeyError(f"note is not signed by any trusted key (signed by: {seen})")
    return VerifiedNote(parsed.text, tuple(verified), tuple(unverified))


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A tlog-checkpoint body: the log's origin, tree size and root hash (+ opaque extensions)."""

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def text(self) -> str:
        return format_checkpoint(self.origin, self.size, self.root_hash, self.extensions)


def format_checkpoint(origin: str, size: int, root: bytes, extensions: Iterable[str] = ()) -> str:
    """Checkpoint note text: origin, decimal size, base64 root, extension lines; each + newline."""
    exts = tuple(extensions)
    if not origin or "\n" in origin:
        raise ValueError("origin must be a non-empty single line")
    if type(size) is not int or not 0 <= size < 1 << 64:
        raise ValueError("tree size must be an int in [0, 2^64)")
    if not isinstance(root, bytes) or len(root) != _HASH_SIZE:
        raise ValueError("root hash must be 32 bytes")
    for ext in exts:
        if not ext or "\n" in ext:
            raise ValueError("extension lines must be non-empty single lines")
    text = "".join(f"{line}\n" for line in (origin, str(size), _b64encode(root), *exts))
    _check_note_chars(text)
    return text


def parse_checkpoint(text: str) -> Checkpoint:
    """Parse (strictly) a checkpoint note *text*, i.e. the signed part without signatures."""
    if not isinstance(text, str) or not text.endswith("\n"):
        raise MalformedNoteError("checkpoint text must end with a newline")
    _check_note_chars(text)
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise MalformedNoteError("checkpoint needs origin, size and root hash lines")
    origin, size_line, root_line, *exts = lines
    if not origin:
        raise MalformedNoteError("checkpoint origin is empty")
    # Bound the length before int(): tree sizes are uint64, and huge digit strings make int() raise.
    if len(size_line) > 20 or not _DECIMAL.fullmatch(size_line) or int(size_line) >= 1 << 64:
        raise MalformedNoteError("checkpoint size must be a decimal uint64 without leading zeros")
    try:
        root = _b64decode(root_line)
    except ValueError as exc:
        raise MalformedNoteError(f"checkpoint root hash: {exc}") from None
    if len(root) != _HASH_SIZE:
        raise MalformedNoteError("checkpoint root hash must be 32 bytes")
    if any(not ext for ext in exts):
        raise MalformedNoteError("checkpoint extension lines must be non-empty")
    return Checkpoint(origin, int(size_line), root, tuple(exts))


def sign_checkpoint(checkpoint: Checkpoint, signers: Signer | Sequence[Signer]) -> str:
    """Signed checkpoint note."""
    return sign_note(checkpoint.text(), signers)


def verify_checkpoint(
    note: str | bytes, verifier_keys: Iterable[Verifier | str] | str, *, origin: str | None = None
) -> Checkpoint:
    """Verify a signed checkpoint with trusted keys and return its parsed body.

    Checks the signature before parsing the body, so untrusted text is never interpreted.
    ``origin``, if given, must equal the checkpoint's origin line (pins the log identity).
    """
    verified = open_note(note, verifier_keys)
    checkpoint = parse_checkpoint(verified.text)
    if origin is not None and checkpoint.origin != origin:
        raise WrongOriginError(f"checkpoint origin {checkpoint.origin!r} is not {origin!r}")
    return checkpoint
