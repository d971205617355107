"""Signed search certificates (查询证明) for the public inquiry: pure building and verification.

The certificate is a JSON object (query, results, time, the ledger head it was read at); its digest
is SHA-256 of its RFC 8785 canonical JSON (`ledger.encoding.canonical_json`). The registry signs a
C2SP signed note whose text is

    envx public inquiry certificate v1
    <key name / origin>
    <hex SHA-256 of the certificate>

so anyone holding the registry's verifier key can check it offline with any signed-note library.
The first line can never be a checkpoint origin, so the note cannot be mistaken for a checkpoint
even when the checkpoint key signs it.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ledger.encoding import canonical_json
from ledger.note import NoteError, Signer, open_note, sign_note

HEADER = "envx public inquiry certificate v1"
TYPE = "envx.public-inquiry/1"


def digest(certificate: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(certificate)).hexdigest()


def note_text(name: str, certificate: dict[str, Any]) -> str:
    return f"{HEADER}\n{name}\n{digest(certificate)}\n"


def sign(certificate: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """The answer served: the certificate plus its signature block."""
    return {
        "certificate": certificate,
        "signature": {
            "algorithm": "Ed25519 (C2SP signed note)",
            "key_name": signer.name,
            "key_id": signer.key_id.hex(),
            "verifier_key": signer.verifier_key_string(),
            "sha256": digest(certificate),
            "note": sign_note(note_text(signer.name, certificate), signer),
        },
    }


def verify(answer: dict[str, Any], verifier_key: str) -> bool:
    """True when `answer` is a certificate signed by `verifier_key` and untouched since."""
    try:
        sig = answer["signature"]
        opened = open_note(sig["note"], verifier_key)
        return opened.text == note_text(opened.verified_by[0].name, answer["certificate"])
    except (NoteError, KeyError, TypeError, IndexError, ValueError):
        return False
