"""Signed search certificates (查询证明) for the public inquiry: pure building and verification.

The certificate is a JSON object (query, results, time, the ledger head it was read at); its digest
is SHA-256 of its RFC 8785 canonical JSON (`ledger.encoding.canonical_json`). The registry signs a
C2SP signed note whose text is

    envx public inquiry certificate v1
    <key name / origin>
    <hex SHA-256 of the certificate>

so anyone holding the registry's verifier key can check it offline with any signed-note library.
``ledger_head`` names the entry the search was read at: its ``seq``, chain ``hash`` and Merkle ``leaf_hash``
(base64 SHA-256(0x00 || entry)), so the certificate's ``.tlog-proof`` form (`format_tlog_proof`) proves that
entry in the (witnessed) log without showing it.
The first line can never be a checkpoint origin, so the note cannot be mistaken for a checkpoint
even when the checkpoint key signs it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from ledger import tlog_proof
from ledger.cosignature import WitnessPolicy
from ledger.encoding import canonical_json
from ledger.note import NoteError, Signer, open_note, sign_note

HEADER = "envx public inquiry certificate v1"
TYPE = "envx.public-inquiry/1"


def digest(certificate: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(certificate)).hexdigest()


def note_text(name: str, certificate: dict[str, Any]) -> str:
    return f"{HEADER}\n{name}\n{digest(certificate)}\n"


ALGORITHM = "Ed25519 (C2SP signed note)"


def sign(certificate: dict[str, Any], signer: Signer) -> dict[str, Any]:
    """The answer served: the certificate plus its signature block."""
    return {
        "certificate": certificate,
        "signature": {
            "algorithm": ALGORITHM,
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


# ------------------------------------------------------------------- the certificate as a .tlog-proof

def format_tlog_proof(answer: dict[str, Any], path: list[bytes], checkpoint: str) -> str:
    """A signed search certificate as a C2SP tlog-proof: ``extra`` = the RFC 8785 JSON of the whole answer
    (certificate and signature), ``index`` = the ledger head's seq - 1, the inclusion path of the head's
    leaf (the certificate's ``ledger_head.leaf_hash``) under ``checkpoint`` (cosigned, when witnessed)."""
    head = answer["certificate"]["ledger_head"]
    return tlog_proof.format_tlog_proof(canonical_json(answer), head["seq"] - 1, path, checkpoint)


def _signed_exactly(answer: dict[str, Any], key: str) -> bool:
    """`verify`, and every field of the signature block is what `sign` writes for this key: in a proof, any
    changed byte of the extra data must fail it."""
    if not verify(answer, key):
        return False
    sig: dict[str, Any] = answer["signature"]
    v = open_note(sig["note"], key).verified_by[0]
    return sig == {"algorithm": ALGORITHM, "key_name": v.name, "key_id": v.key_id.hex(),
                   "verifier_key": key, "sha256": digest(answer["certificate"]), "note": sig["note"]}


def verify_tlog_proof(text: str, keys: list[str], *, policy: WitnessPolicy | None = None,
                      origin: str | None = None) -> tuple[tlog_proof.VerifiedTlogProof, str] | None:
    """A search certificate's tlog-proof (`format_tlog_proof`), verified: the certificate's signature by one
    of ``keys``, its ledger head being the proven leaf, in the log's checkpoint, with the witness policy.
    None when ``text`` is another kind of tlog-proof (its extra data is not a search certificate)."""
    p = tlog_proof.parse_tlog_proof(text)
    if p.extra is None or not p.extra.startswith(b'{"certificate":'):
        return None
    try:
        answer = json.loads(p.extra)
        cert = answer["certificate"]
        head = cert["ledger_head"]
        well_formed = (canonical_json(answer) == p.extra and cert.get("type") == TYPE
                       and isinstance(head.get("seq"), int) and isinstance(head.get("leaf_hash"), str))
    except (ValueError, KeyError, TypeError, AttributeError):
        well_formed = False
    if not well_formed:
        raise tlog_proof.TlogProofError("malformed", "the extra data is not a search certificate in RFC 8785 JSON")
    if set(answer) != {"certificate", "signature"} or not any(_signed_exactly(answer, k) for k in keys):
        raise tlog_proof.TlogProofError("bad_signature", "the search certificate is not signed by a given key, or "
                                                         "its signature block does not say that signature")
    if head["seq"] != p.index + 1:
        raise tlog_proof.TlogProofError("inclusion_failed", f"the certificate was read at ledger seq {head['seq']}, "
                                                            f"the proof is of leaf {p.index}")
    try:
        leaf = base64.b64decode(head["leaf_hash"], validate=True)
    except ValueError:
        raise tlog_proof.TlogProofError("malformed", "ledger_head.leaf_hash is not base64") from None
    v = tlog_proof.verify_tlog_proof(text, keys, policy=policy, origin=origin or cert.get("registry"), leaf_hash=leaf)
    return v, (f"search certificate ({cert.get('record')}, {cert.get('result_count')} results, issued "
               f"{cert.get('issued_at')}) read at ledger seq {head['seq']}, whose leaf")
