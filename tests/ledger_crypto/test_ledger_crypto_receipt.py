"""ledger.receipt: round trip, single-byte tampering of every field, the file/CLI entry points."""

from __future__ import annotations

import base64
import binascii
import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ledger import merkle, note, receipt
from ledger.note import Signer
from ledger.receipt import ReceiptError, verify_receipt
from ledger.tiles import TileStore

ORIGIN = "envx.example/ledger"
N = 37
INDEX = 21
ENTRIES = [f'{{"seq":{i},"op":"issue","qty":{i * 10}}}'.encode() for i in range(N)]


def build() -> tuple[dict[str, Any], str, Signer, TileStore]:
    skey, vkey = note.generate_signer_key(ORIGIN)  # a freshly generated key, as in production
    signer = Signer.from_key_string(skey)
    store = TileStore()
    root = store.append([merkle.leaf_hash(e) for e in ENTRIES])
    signed = note.sign_checkpoint(note.Checkpoint(ORIGIN, N, root), signer)
    rec = receipt.make_receipt(
        ENTRIES[INDEX], INDEX, N, store.inclusion_proof(INDEX, N), signed, metadata={"project": "北湖"}
    )
    return rec, vkey, signer, store


REC, VKEY, SIGNER, STORE = build()


def code_of(rec: Any, keys: list[str] | None = None) -> str:
    with pytest.raises(ReceiptError) as exc:
        verify_receipt(rec, keys if keys is not None else [VKEY])
    return exc.value.code


def with_field(**changes: Any) -> dict[str, Any]:
    rec = copy.deepcopy(REC)
    rec.update(changes)
    return rec


def strict_b64(text: str) -> bytes | None:
    """Independent canonical-base64 check for computing expected outcomes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if base64.b64encode(raw).decode() == text else None


def flip_char(text: str, i: int) -> str:
    return text[:i] + chr(ord(text[i]) ^ 1) + text[i + 1 :]


# ------------------------------------------------------------------------------------------
# Round trip
# ------------------------------------------------------------------------------------------


def test_round_trip() -> None:
    v = verify_receipt(REC, [VKEY])
    assert (v.entry, v.index, v.tree_size) == (ENTRIES[INDEX], INDEX, N)
    assert v.leaf_hash == merkle.leaf_hash(ENTRIES[INDEX])
    assert v.root_hash == STORE.root() == v.checkpoint.root_hash
    assert v.checkpoint.origin == ORIGIN
    assert v.signed_by == ("+".join(VKEY.split("+")[:2]),)  # name+keyid (key data may contain '+')
    assert v.metadata == {"project": "北湖"}
    # Survives JSON serialisation, and verifies for every leaf.
    assert verify_receipt(json.loads(json.dumps(REC)), [VKEY]).index == INDEX
    signed = REC["checkpoint"]
    for i in range(N):
        rec = receipt.make_receipt(ENTRIES[i], i, N, STORE.inclusion_proof(i, N), signed)
        assert verify_receipt(rec, [VKEY], origin=ORIGIN).entry == ENTRIES[i]


def test_single_leaf_tree_has_empty_path() -> None:
    root = merkle.leaf_hash(b"only")
    signed = note.sign_checkpoint(note.Checkpoint(ORIGIN, 1, root), SIGNER)
    rec = receipt.make_receipt(b"only", 0, 1, [], signed)
    assert verify_receipt(rec, [VKEY]).root_hash == root


# ------------------------------------------------------------------------------------------
# Single-byte tampering of every field
# ------------------------------------------------------------------------------------------


def test_every_entry_byte_flip_fails_inclusion() -> None:
    entry = ENTRIES[INDEX]
    for i in range(len(entry)):
        for bit in (0x01, 0x80):
            bad = entry[:i] + bytes([entry[i] ^ bit]) + entry[i + 1 :]
            assert code_of(with_field(entry=base64.b64encode(bad).decode())) == "inclusion_failed"
    # Flipping a character of the base64 text: either not canonical base64, or a different entry.
    text = REC["entry"]
    for i in range(len(text)):
        bad_text = flip_char(text, i)
        expected = "malformed" if strict_b64(bad_text) is None else "inclusion_failed"
        assert code_of(with_field(entry=bad_text)) == expected, (i, bad_text)


def test_every_index_change_fails() -> None:
    for bit in range(8):
        assert code_of(with_field(index=INDEX ^ (1 << bit))) == "inclusion_failed"
    for bad in (-1, True, "21", 21.0, None, 1 << 63):
        assert code_of(with_field(index=bad)) == "malformed"


def test_every_tree_size_change_is_a_size_mismatch() -> None:
    for bit in range(8):
        assert code_of(with_field(tree_size=N ^ (1 << bit))) == "size_mismatch"
    for bad in (-1, False, "37", None):
        assert code_of(with_field(tree_size=bad)) == "malformed"


def test_every_inclusion_path_byte_flip_fails() -> None:
    path = [base64.b64decode(p) for p in REC["inclusion_path"]]
    assert len(path) == 6
    for j, h in enumerate(path):
        for i in range(32):
            bad = list(path)
            bad[j] = h[:i] + bytes([h[i] ^ 1]) + h[i + 1 :]
            rec = with_field(inclusion_path=[base64.b64encode(x).decode() for x in bad])
            assert code_of(rec) == "inclusion_failed"
        text = REC["inclusion_path"][j]
        for i in range(len(text)):
            bad_text = flip_char(text, i)
            raw = strict_b64(bad_text)
            expected = "malformed" if raw is None or len(raw) != 32 else "inclusion_failed"
            rec = with_field(inclusion_path=[*REC["inclusion_path"][:j], bad_text, *REC["inclusion_path"][j + 1 :]])
            assert code_of(rec) == expected
    p = REC["inclusion_path"]
    assert code_of(with_field(inclusion_path=p[:-1])) == "inclusion_failed"
    assert code_of(with_field(inclusion_path=[*p, p[0]])) == "inclusion_failed"
    assert code_of(with_field(inclusion_path=[p[0], *p])) == "inclusion_failed"
    assert code_of(with_field(inclusion_path=list(reversed(p)))) == "inclusion_failed"
    assert code_of(with_field(inclusion_path=[*p[:-1], base64.b64encode(b"x" * 31).decode()])) == "malformed"
    assert code_of(with_field(inclusion_path=p[0])) == "malformed"
    assert code_of(with_field(inclusion_path=[p[0]] * 65)) == "malformed"


def expected_checkpoint_code(original: str, mutated: str, pos: int) -> str:
    """The error a correct verifier must give for a one-byte change at UTF-8 offset ``pos``."""
    raw = original.encode()
    body_end = original.rfind("\n\n") + 1  # text (signed) ends here, then the blank line
    body_end_b = len(original[:body_end].encode())
    if any((ord(c) < 0x20 and c != "\n") or 0xD800 <= ord(c) <= 0xDFFF for c in mutated):
        return "malformed"  # control character or invalid UTF-8
    if pos == body_end_b - 1 or pos == body_end_b or pos == len(raw) - 1:
        return "malformed"  # the text's last newline or the blank line (no separator left), or final newline
    if pos < body_end_b:
        return "bad_signature"  # the signed text changed; signature is checked before parsing
    line = mutated[body_end + 1 : -1]
    if not line.startswith("\u2014 "):
        return "malformed"
    name, sep, b64 = line[2:].partition(" ")
    if not sep or not name or "+" in name or any(c.isspace() for c in name):
        return "malformed"
    sig = strict_b64(b64)
    if sig is None or len(sig) < 5:
        return "malformed"
    if name != ORIGIN or sig[:4] != SIGNER.key_id:
        return "unknown_key"
    return "bad_signature"


def test_every_checkpoint_byte_flip_is_rejected_with_the_right_code() -> None:
    original: str = REC["checkpoint"]
    raw = original.encode()
    seen: dict[str, int] = {}
    for pos in range(len(raw)):
        for bit in (0x01, 0x40):
            bad = raw[:pos] + bytes([raw[pos] ^ bit]) + raw[pos + 1 :]
            # Invalid UTF-8 becomes lone surrogates, as a lenient JSON producer might deliver it.
            mutated = bad.decode("utf-8", errors="surrogateescape")
            code = code_of(with_field(checkpoint=mutated))
            assert code == expected_checkpoint_code(original, mutated, pos), (pos, bit, mutated)
            seen[code] = seen.get(code, 0) + 1
    assert set(seen) == {"bad_signature", "malformed", "unknown_key"}


def test_checkpoint_semantic_tampering() -> None:
    signed: str = REC["checkpoint"]
    text, sig_line = signed.split("\n\n")
    _, name, b64 = sig_line.rstrip("\n").split(" ")
    sig = base64.b64decode(b64)
    # Key id changed -> not our key; signature bytes changed -> bad signature.
    other_id = base64.b64encode(bytes([sig[0] ^ 1]) + sig[1:]).decode()
    assert code_of(with_field(checkpoint=f"{text}\n\n— {name} {other_id}\n")) == "unknown_key"
    bad_sig = base64.b64encode(sig[:40] + bytes([sig[40] ^ 1]) + sig[41:]).decode()
    assert code_of(with_field(checkpoint=f"{text}\n\n— {name} {bad_sig}\n")) == "bad_signature"
    # A validly signed checkpoint for another size.
    root = STORE.root(N - 1)
    other = note.sign_checkpoint(note.Checkpoint(ORIGIN, N - 1, root), SIGNER)
    assert code_of(with_field(checkpoint=other)) == "size_mismatch"
    # Same size, but a different (validly signed) root.
    forged = note.sign_checkpoint(note.Checkpoint(ORIGIN, N, merkle.leaf_hash(b"x")), SIGNER)
    assert code_of(with_field(checkpoint=forged)) == "inclusion_failed"
    # Signed text that is not a checkpoint.
    assert code_of(with_field(checkpoint=note.sign_note("hello\n", SIGNER))) == "malformed"
    assert code_of(with_field(checkpoint=None)) == "malformed"


def test_keys() -> None:
    _, other_vkey = note.generate_signer_key(ORIGIN)
    assert code_of(REC, [other_vkey]) == "unknown_key"
    assert code_of(REC, []) == "unknown_key"
    assert code_of(REC, ["not a key"]) == "invalid_key"
    assert code_of(REC, [VKEY[:-2] + "AA"]) == "invalid_key"  # key id no longer matches
    assert verify_receipt(REC, [other_vkey, VKEY]).index == INDEX
    with pytest.raises(ReceiptError) as exc:
        verify_receipt(REC, [VKEY], origin="someone.else/log")
    assert exc.value.code == "wrong_origin"


def test_structure() -> None:
    assert code_of(with_field(format="envx-receipt-v2")) == "malformed"
    for field in ("format", "entry", "index", "tree_size", "inclusion_path", "checkpoint"):
        rec = copy.deepcopy(REC)
        del rec[field]
        assert code_of(rec) == "malformed", field
    assert code_of(with_field(extra=1)) == "malformed"
    assert code_of(with_field(metadata=[1])) == "malformed"
    assert code_of([REC]) == "malformed"
    # Index outside the signed tree.
    assert code_of(with_field(index=N)) == "inclusion_failed"


def test_metadata_is_not_authenticated() -> None:
    # By design: metadata rides along unverified; changing it does not invalidate the receipt.
    v = verify_receipt(with_field(metadata={"project": "changed"}), [VKEY])
    assert v.metadata == {"project": "changed"}
    rec = copy.deepcopy(REC)
    del rec["metadata"]
    assert verify_receipt(rec, [VKEY]).metadata is None


# ------------------------------------------------------------------------------------------
# File and command line
# ------------------------------------------------------------------------------------------


def test_file_and_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(REC, ensure_ascii=False), encoding="utf-8")
    assert receipt.verify_receipt_file(str(good), [VKEY]).index == INDEX

    assert receipt.main([str(good), "--key", VKEY, "--origin", ORIGIN]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK ") and f"entry {INDEX}" in out and str(N) in out

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(with_field(tree_size=N + 1)), encoding="utf-8")
    assert receipt.main([str(bad), "--key", VKEY]) == 1
    assert capsys.readouterr().out.startswith("FAIL ")

    assert receipt.main([str(tmp_path / "missing.json"), "--key", VKEY]) == 1
    assert "[unreadable]" in capsys.readouterr().out

    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps(REC)[:-1] + ', "index": 0}', encoding="utf-8")
    assert receipt.main([str(dup), "--key", VKEY]) == 1
    assert "duplicate" in capsys.readouterr().out

    for content in (b"\xff", b"not json", b'{"index": NaN}'):
        f = tmp_path / "x.json"
        f.write_bytes(content)
        with pytest.raises(ReceiptError) as exc:
            receipt.verify_receipt_file(str(f), [VKEY])
        assert exc.value.code == "malformed"

    assert receipt.main([str(good)]) == 2  # --key is required
    capsys.readouterr()


def test_verifier_runs_with_only_stdlib_and_cryptography() -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import ledger.receipt\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names)\n"
        "print(sorted(new))\n"
        "print(sorted(m for m in sys.modules if m.startswith('ledger')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    third_party, ledger_modules = (eval(line) for line in out.splitlines())
    assert set(third_party) <= {"cryptography", "ledger", "_cffi_backend", "_openssl", "cffi"}
    # ledger.blinding (the commitments of a blinded entry's openings) imports the standard library alone.
    assert ledger_modules == ["ledger", "ledger.blinding", "ledger.merkle", "ledger.note", "ledger.receipt"]
