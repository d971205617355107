"""Process-wide secrets and caches the runtime holds for the security package: the credential key that
derives secrets shown once, and the cache of verified API keys (exchange/security/keys.py uses both)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time
from collections.abc import Collection
from datetime import UTC, datetime
from pathlib import Path

from exchange.core.principal import Principal
from exchange.core.settings import Settings

# Verified keys, so a hot client costs no database round trip per request. Revocation and suspension
# through this process clear the entries at once; other processes (read replicas) see them within
# CACHE_SECONDS.
CACHE_SECONDS = 5.0
CREDENTIAL_KEY_FILE = "credential.key"


class KeyCache:
    """Verified tokens of one process (it lives on the Runtime). `forget` drops entries *and* moves the
    epoch on: a verification that read the database before the forget does not cache its (older) answer."""

    MAX_ENTRIES = 100_000

    def __init__(self, seconds: float = CACHE_SECONDS) -> None:
        self.seconds = seconds
        self.epoch = 0
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, token: str) -> Principal | None:
        hit = self._entries.get(token)
        if hit is None:
            return None
        principal, until = hit
        if time.monotonic() > until:
            self._entries.pop(token, None)
            return None
        return principal

    def put(self, token: str, principal: Principal, expires_at: datetime | None, epoch: int) -> None:
        if epoch != self.epoch:
            return  # a revocation or suspension happened while this key was being verified
        if len(self._entries) >= self.MAX_ENTRIES:
            self._entries.clear()
        ttl = self.seconds
        if expires_at is not None:  # never trust the cache past the key's own expiry
            ttl = min(ttl, (expires_at - datetime.now(UTC)).total_seconds())
        if ttl > 0:
            self._entries[token] = (principal, time.monotonic() + ttl)

    def forget(self, key_ids: Collection[int] = (), participant_id: int | None = None) -> None:
        self.epoch += 1
        ids = set(key_ids)
        for token, (p, _) in list(self._entries.items()):
            if p.key_id in ids or p.participant_id == participant_id:
                self._entries.pop(token, None)

    def clear(self) -> None:
        self.epoch += 1
        self._entries.clear()


class Credentials:
    """Derives the secrets that are shown once (API-key secrets, enrollment-code halves) from a key that is
    not in the database, so a retry can show them again while the database holds only their digests."""

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("the credential key must be at least 32 bytes")
        self._key = key

    def __repr__(self) -> str:
        return "Credentials(<key hidden>)"

    @classmethod
    def load(cls, settings: Settings) -> Credentials:
        """ENVX_CREDENTIAL_SECRET, else the file ENVX_CREDENTIAL_SECRET_FILE, else <data dir>/credential.key
        (made on first start, mode 0600)."""
        if settings.credential_secret is not None:
            return cls(hashlib.sha256(b"envx-credential-secret/1\n" +
                                      settings.credential_secret.get_secret_value().encode()).digest())
        path = Path(settings.credential_secret_file) if settings.credential_secret_file else \
            settings.data_dir / CREDENTIAL_KEY_FILE
        if not path.exists():
            if settings.credential_secret_file:
                raise FileNotFoundError(f"ENVX_CREDENTIAL_SECRET_FILE names {path}, which does not exist")
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass  # another process made it a moment ago
            else:
                try:
                    os.write(fd, secrets.token_hex(32).encode("ascii") + b"\n")
                    os.fsync(fd)
                finally:
                    os.close(fd)
        raw = path.read_text(encoding="ascii").strip()
        return cls(bytes.fromhex(raw))

    def _derive(self, label: bytes) -> bytes:
        return hmac.new(self._key, label, hashlib.sha256).digest()

    def api_secret(self, prefix: str) -> str:
        return base64.urlsafe_b64encode(self._derive(b"envx-api-key/1\n" + prefix.encode())).decode().rstrip("=")

    def enrollment_secret(self, handle: str, half: int) -> str:
        raw = self._derive(f"envx-enrollment/1\n{handle}\n{half}".encode())[:20]
        return base64.b32encode(raw).decode().lower()
