"""Signed instructions: Ed25519 signatures over a canonical form of a request, for non-repudiation.

A participant registers public keys (POST /v1/participants/{id}/signing-keys) and signs a mutation by
sending, besides its API key,

    X-Envx-Signature: keyid=<signing key id>,ts=<unix seconds>,nonce=<16-128 of A-Z a-z 0-9 _ ->,sig=<base64>

where sig is the Ed25519 signature of the UTF-8 bytes of these lines joined by "\\n" (no trailing newline):

    envx-sig-v1
    <METHOD, upper case>
    <path as sent, percent-encoded, plus "?" and the raw query string if there is one>
    <hex SHA-256 of the exact body bytes (of b"" if none)>
    <ts>
    <nonce>
    <keyid>

The registry refuses a timestamp more than ENVX_SIGNATURE_MAX_SKEW_SECONDS (300) away from its clock, a
nonce already used with that key (replay), a key of another participant or a revoked one. Each
verified instruction is stored whole (signed_instructions) and its digest goes into the meta of the
ledger entries it causes. A retry of an idempotent mutation is signed again with a fresh nonce and
the same Idempotency-Key: it gets the original result.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.core.errors import DomainError
from exchange.core.principal import Principal
from exchange.core.units import iso
from exchange.security import repository

SCHEME = "envx-sig-v1"
HEADER = "X-Envx-Signature"
NONCE = re.compile(r"[A-Za-z0-9_-]{16,128}", re.ASCII)
# keyid and ts: ASCII digits only. str.isdigit() also takes "²" or "١" (which int() then refuses: a 500).
_KEY_ID = re.compile(r"[0-9]{1,18}", re.ASCII)
_TS = re.compile(r"[0-9]{1,12}", re.ASCII)
MAX_HEADER = 512
# How long a participant's require_signatures flag is trusted from memory; changes through this process
# clear it at once (as API key revocation does). The cache lives in the app's state: one per database.
POLICY_CACHE_SECONDS = 5.0


class SignatureError(DomainError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code, message, 401)


@dataclass(frozen=True, slots=True)
class SignatureHeader:
    key_id: int
    ts: int
    nonce: str
    sig: bytes


def canonical(method: str, target: str, body_sha256_hex: str, ts: int, nonce: str, key_id: int) -> bytes:
    return "\n".join([SCHEME, method.upper(), target, body_sha256_hex, str(ts), nonce, str(key_id)]).encode("utf-8")


def parse_header(value: str) -> SignatureHeader:
    if len(value) > MAX_HEADER:
        raise SignatureError("signature_malformed", f"{HEADER} is longer than {MAX_HEADER} characters")
    fields: dict[str, str] = {}
    for part in value.split(","):
        name, sep, v = part.strip().partition("=")
        if not sep or name in fields:
            raise SignatureError("signature_malformed", f"{HEADER} is keyid=...,ts=...,nonce=...,sig=...")
        fields[name] = v.strip()
    if set(fields) != {"keyid", "ts", "nonce", "sig"}:
        raise SignatureError("signature_malformed", f"{HEADER} needs exactly keyid, ts, nonce and sig")
    if not (_KEY_ID.fullmatch(fields["keyid"]) and _TS.fullmatch(fields["ts"])):
        raise SignatureError("signature_malformed", "keyid and ts are decimal integers in ASCII digits")
    if not NONCE.fullmatch(fields["nonce"]):
        raise SignatureError("signature_malformed", "nonce is 16-128 characters of A-Z a-z 0-9 _ -")
    try:
        sig = base64.b64decode(fields["sig"], validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("signature_malformed", "sig is standard base64") from None
    if len(sig) != 64:
        raise SignatureError("signature_malformed", "an Ed25519 signature is 64 bytes")
    return SignatureHeader(int(fields["keyid"]), int(fields["ts"]), fields["nonce"], sig)


def decode_public_key(value: str) -> bytes:
    """Raw 32-byte Ed25519 public key from standard or URL-safe base64 (padding optional)."""
    v = value.strip()
    try:
        raw = base64.b64decode(v + "=" * (-len(v) % 4), altchars=b"-_" if ("-" in v or "_" in v) else None,
                               validate=True)
    except (binascii.Error, ValueError):
        raise DomainError("invalid_public_key", "public_key is base64 of the raw 32-byte Ed25519 key", 422) from None
    if len(raw) != 32:
        raise DomainError("invalid_public_key", "an Ed25519 public key is 32 bytes", 422)
    try:
        Ed25519PublicKey.from_public_bytes(raw)
    except ValueError:
        raise DomainError("invalid_public_key", "not an Ed25519 public key", 422) from None
    return raw


# --- client side (tests, SDKs): what a participant runs --------------------------------------------------


def generate_key() -> tuple[Ed25519PrivateKey, str]:
    """A new signing key and its public half as base64, ready for POST .../signing-keys."""
    private = Ed25519PrivateKey.generate()
    raw = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return private, base64.b64encode(raw).decode()


def sign_request(private_key: Ed25519PrivateKey, key_id: int, method: str, url: str, body: bytes = b"",
                 *, ts: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The header to add to a request. `url` may be absolute or a path with its query string; send
    exactly `body` (sign the bytes you send, e.g. json.dumps(obj).encode())."""
    parts = urlsplit(url)
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    ts = int(time.time()) if ts is None else ts
    nonce = nonce or secrets.token_urlsafe(18)
    msg = canonical(method, target, hashlib.sha256(body).hexdigest(), ts, nonce, key_id)
    sig = base64.b64encode(private_key.sign(msg)).decode()
    return {HEADER: f"keyid={key_id},ts={ts},nonce={nonce},sig={sig}"}


# --- server side -----------------------------------------------------------------------------------------


def request_target(scope: Any) -> str:
    raw = scope.get("raw_path")
    # raw_path is the path as sent (percent-encoding kept); some clients' test transports append the query.
    path = bytes(raw).split(b"?", 1)[0].decode("latin-1") if isinstance(raw, bytes | bytearray) else scope["path"]
    query = scope.get("query_string", b"")
    return path + (f"?{query.decode('latin-1')}" if query else "")


async def verify_and_record(conn: AsyncConnection, principal: Principal, header: str, *, method: str,
                            target: str, body: bytes, operation: str | None, max_skew: int) -> dict[str, Any]:
    """Check a signed instruction and store it (which consumes its nonce). Returns what the ledger records."""
    h = parse_header(header)
    now = int(time.time())
    if abs(now - h.ts) > max_skew:
        raise SignatureError("signature_stale", f"the signature's timestamp is more than {max_skew} s from "
                                                f"the registry's clock ({now}, {iso(now * 1_000_000)})")
    key = await repository.signing_key(conn, h.key_id)
    if key is None or key.participant_id != principal.participant_id:
        raise SignatureError("signature_unknown_key", f"signing key {h.key_id} is not one of yours")
    if key.revoked_at is not None:
        raise SignatureError("signature_key_revoked", f"signing key {h.key_id} was revoked")
    digest = hashlib.sha256(body).digest()
    msg = canonical(method, target, digest.hex(), h.ts, h.nonce, h.key_id)
    try:
        Ed25519PublicKey.from_public_bytes(key.public_key).verify(h.sig, msg)
    except InvalidSignature:
        raise SignatureError("signature_invalid", "the signature does not match this request") from None
    record = await repository.record_signed_instruction(
        conn, signing_key_id=h.key_id, participant_id=principal.participant_id, api_key_id=principal.key_id,
        nonce=h.nonce, signed_ts=h.ts, method=method, target=target, body=body, body_sha256=digest, signature=h.sig,
        operation=operation)
    if record is None:
        raise SignatureError("signature_replayed", "this nonce was already used with this key: sign again")
    return {"record": record, "key_id": h.key_id, "ts": h.ts, "nonce": h.nonce, "method": method,
            "target": target, "body_sha256": digest.hex(), "signature": base64.b64encode(h.sig).decode()}


def _policy(state: Any) -> dict[int, tuple[bool, float]]:
    cache: dict[int, tuple[bool, float]] | None = getattr(state, "_envx_signature_policy", None)
    if cache is None:
        cache = {}
        state._envx_signature_policy = cache
    return cache


async def requires_signatures(state: Any, participant_id: int) -> bool:
    cache = _policy(state)
    hit = cache.get(participant_id)
    now = time.monotonic()
    if hit is not None and hit[1] > now:
        return hit[0]
    async with state.rt.read() as conn:
        policy = await repository.signature_policy(conn, participant_id)
    flag = policy is not None and policy.require_signatures
    if len(cache) > 100_000:
        cache.clear()
    cache[participant_id] = (flag, now + POLICY_CACHE_SECONDS)
    return flag


def forget_policy(state: Any, participant_id: int) -> None:
    _policy(state).pop(participant_id, None)
