"""The registry's checkpoint signing key: where it comes from, and how a new one replaces it.

Order: ``ENVX_SIGNING_KEY`` (the C2SP signer key string ``PRIVATE+KEY+...``), else the file
``ENVX_SIGNING_KEY_FILE``, else ``<data dir>/signing.key``, generated on first start with mode
0600. The key name must be the log's origin (``ENVX_ORIGIN``), as checkpoints name it. The private
key is never logged or printed; ``Signer.__repr__`` shows only its name and key id.
"""

from __future__ import annotations

import os
from pathlib import Path

from exchange.core.settings import Settings
from ledger.note import InvalidKeyError, Signer, generate_signer_key

DEFAULT_KEY_FILE = "signing.key"


class SigningKeyError(RuntimeError):
    """The configured signing key is missing, malformed or names another log."""


def key_path(settings: Settings) -> Path:
    return Path(settings.signing_key_file) if settings.signing_key_file else settings.data_dir / DEFAULT_KEY_FILE


def _check(signer: Signer, settings: Settings, source: str) -> Signer:
    if signer.name != settings.origin:
        raise SigningKeyError(f"the signing key in {source} is named {signer.name!r}, but checkpoints of this "
                              f"registry are signed as its origin {settings.origin!r} (ENVX_ORIGIN)")
    return signer


def _read(path: Path) -> Signer:
    try:
        return Signer.from_key_string(path.read_text(encoding="ascii").strip())
    except (OSError, UnicodeDecodeError, InvalidKeyError) as exc:
        raise SigningKeyError(f"cannot load the signing key from {path}: {exc.__class__.__name__}") from None


def write_key_file(path: Path, signer_key: str) -> None:
    """Create ``path`` with mode 0600 (never wider, not even for an instant) and the key string."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, (signer_key + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)


def load_signer(settings: Settings) -> Signer:
    """The signing key in force for this process (generated on first start if none is configured)."""
    if settings.signing_key is not None:
        try:
            signer = Signer.from_key_string(settings.signing_key.get_secret_value())
        except InvalidKeyError as exc:
            raise SigningKeyError(f"ENVX_SIGNING_KEY is not a signer key: {exc}") from None
        return _check(signer, settings, "ENVX_SIGNING_KEY")
    path = key_path(settings)
    if not path.exists():
        if settings.signing_key_file:
            raise SigningKeyError(f"ENVX_SIGNING_KEY_FILE names {path}, which does not exist")
        write_key_file(path, generate_signer_key(settings.origin)[0])
    return _check(_read(path), settings, str(path))


def new_key_file(settings: Settings) -> tuple[Signer, Path]:
    """A fresh key beside the current key file (``<file>.new``), for rotation; see `install_new_key`."""
    if settings.signing_key is not None:
        raise SigningKeyError("the key comes from ENVX_SIGNING_KEY: rotate by setting a new one there "
                              "(the next start registers it in the log)")
    path = key_path(settings)
    new = path.with_name(path.name + ".new")
    if new.exists():
        new.unlink()  # left over from an interrupted rotation that never reached the log
    write_key_file(new, generate_signer_key(settings.origin)[0])
    return _read(new), new


def install_new_key(settings: Settings, new: Path, old_key_id: str) -> Path:
    """Make the rotated key the current one; keep the old file as ``<file>.<old key id>.retired``."""
    path = key_path(settings)
    retired = path.with_name(f"{path.name}.{old_key_id}.retired")
    if path.exists():
        os.replace(path, retired)
    os.replace(new, path)
    return retired
