"""ledger.note: C2SP signed-note known answers, key strings, checkpoints and rejections."""

from __future__ import annotations

import base64

import pytest
from ledger_crypto_reference import load_vectors

from ledger import note
from ledger.note import (
    BadSignatureError,
    Checkpoint,
    InvalidKeyError,
    MalformedNoteError,
    Signer,
    UnknownKeyError,
    Verifier,
    WrongOriginError,
)

V = load_vectors()["signed_note"]
VKEY: str = V["verifier_key"]
TEXT: str = V["text"]
SIG_LINE: str = V["signature_line"] + "\n"
NOTE = TEXT + "\n" + SIG_LINE

# The matching signer key from the Go reference implementation's documentation
# (golang.org/x/mod/sumdb/note). Ed25519 is deterministic, so it must reproduce SIG_LINE exactly.
GO_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
# A second key and signature over the same text, from Go's note_test.go.
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
ENOCH_SIG = "— EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"

SEED = bytes(range(32))


def test_c2sp_example_verifies() -> None:
    verified = note.open_note(NOTE, [VKEY])
    assert verified.text == TEXT
    assert [v.key_string() for v in verified.verified_by] == [VKEY]
    assert verified.unverified == ()


def test_key_id_and_verifier_key_string() -> None:
    v = Verifier.from_key_string(VKEY)
    assert v.name == "PeterNeumann"
    assert v.key_id.hex() == "c74f20a3"
    assert note.key_id(v.name, v.public_key).hex() == "c74f20a3"
    assert note.verifier_key_string(v.name, v.public_key) == VKEY
    assert v.verify(TEXT.encode(), base64.b64decode(V["signature_line"].split(" ")[2])[4:])


def test_go_signer_key_reproduces_the_example_signature() -> None:
    signer = Signer.from_key_string(GO_SKEY)
    assert signer.key_string() == GO_SKEY
    assert signer.verifier_key_string() == VKEY
    assert note.sign_note(TEXT, signer) == NOTE


def test_signer_key_strings_round_trip_and_generate() -> None:
    signer = Signer.from_seed("envx.example/log", SEED)
    again = Signer.from_key_string(signer.key_string())
    assert again.key_string() == signer.key_string()
    assert again.verifier_key_string() == signer.verifier_key_string()
    assert "PRIVATE" not in repr(signer)
    skey, vkey = note.generate_signer_key("envx.example/log")
    s = Signer.from_key_string(skey)
    assert s.verifier_key_string() == vkey
    assert note.open_note(note.sign_note("hello\n", s), [vkey]).text == "hello\n"


def test_mangled_key_strings_are_rejected() -> None:
    # As in Go's note_test.go: every proper substring and every single-byte increment fails.
    for key, parse in [(VKEY, Verifier.from_key_string), (GO_SKEY, Signer.from_key_string)]:
        b = key.encode()
        for i in range(len(b) + 1):
            for j in range(i + 1, len(b) + 1):
                if (i, j) != (0, len(b)):
                    with pytest.raises(InvalidKeyError):
                        parse(b[i:j].decode())
        for i in range(len(b)):
            mangled = b[:i] + bytes([b[i] + 1]) + b[i + 1 :]
            with pytest.raises(InvalidKeyError):
                parse(mangled.decode())
    # Wrong key length / unknown algorithm, each with a correctly recomputed key id.
    with pytest.raises(InvalidKeyError):
        Verifier.from_key_string("PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==")
    with pytest.raises(InvalidKeyError):
        Verifier.from_key_string("PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
    for name in ["", "a+b", "a b", "a\tb", "a\u00a0b"]:
        with pytest.raises(InvalidKeyError):
            Signer.from_seed(name, SEED)


def test_multiple_signatures_and_unknown_ones() -> None:
    both = TEXT + "\n" + SIG_LINE + ENOCH_SIG
    v = note.open_note(both, [VKEY])
    assert [s.name for s in v.unverified] == ["EnochRoot"]
    v = note.open_note(both, [VKEY, ENOCH_VKEY])
    assert [x.name for x in v.verified_by] == ["PeterNeumann", "EnochRoot"]
    with pytest.raises(UnknownKeyError):
        note.open_note(both, [])
    with pytest.raises(UnknownKeyError):
        note.open_note(TEXT + "\n" + ENOCH_SIG, [VKEY])
    # Repeated signatures by one key are fine.
    assert len(note.open_note(TEXT + "\n" + SIG_LINE + SIG_LINE, [VKEY]).verified_by) == 1


def test_wrong_key_is_unknown_not_bad() -> None:
    other = Signer.from_seed("PeterNeumann", SEED).verifier_key_string()  # same name, other id
    with pytest.raises(UnknownKeyError):
        note.open_note(NOTE, [other])


def test_ambiguous_trust_list_is_rejected() -> None:
    v = Verifier.from_key_string(VKEY)
    forged = Verifier.__new__(Verifier)  # bypass the id check to model a broken trust list
    object.__setattr__(forged, "name", v.name)
    object.__setattr__(forged, "key_id", v.key_id)
    object.__setattr__(forged, "public_key", bytes(32))
    with pytest.raises(InvalidKeyError, match="ambiguous"):
        note.open_note(NOTE, [v, forged])
    assert note.open_note(NOTE, [v, v, VKEY]).text == TEXT  # identical duplicates are harmless


def test_modified_text_or_signature_is_a_bad_signature() -> None:
    with pytest.raises(BadSignatureError):
        note.open_note(NOTE.replace("problem,", "problem;"), [VKEY])
    with pytest.raises(BadSignatureError):
        note.open_note(TEXT + "\n" + SIG_LINE[:60] + "ABCD" + SIG_LINE[60:], [VKEY])
    sig = bytearray(base64.b64decode(SIG_LINE.split(" ")[2]))
    sig[10] ^= 1
    line = f"— PeterNeumann {base64.b64encode(bytes(sig)).decode()}\n"
    with pytest.raises(BadSignatureError):
        note.open_note(TEXT + "\n" + line, [VKEY])
    # A bad signature from a trusted key rejects the note even if another trusted one verifies.
    enoch = bytearray(base64.b64decode(ENOCH_SIG.split(" ")[2]))
    enoch[10] ^= 1
    bad_enoch = f"— EnochRoot {base64.b64encode(bytes(enoch)).decode()}\n"
    assert note.open_note(TEXT + "\n" + SIG_LINE + bad_enoch, [VKEY]).text == TEXT  # untrusted: ignored
    with pytest.raises(BadSignatureError):
        note.open_note(TEXT + "\n" + SIG_LINE + bad_enoch, [VKEY, ENOCH_VKEY])


@pytest.mark.parametrize(
    "msg",
    [
        TEXT,  # no signatures
        TEXT + "\n",  # blank line but no signatures
        TEXT + "\n" + SIG_LINE[:-1],  # no final newline
        "\x01" + NOTE,  # control character
        TEXT + "\n" + SIG_LINE.replace("PeterNeumann", "Bad Name"),  # space in key name
        NOTE + "Unexpected line.\n",
        TEXT + "\n" + SIG_LINE.replace("\u2014", "-"),  # hyphen instead of em dash
        TEXT + "\n" + SIG_LINE.replace("\u2014 ", "\u2014"),  # no space after the dash
        TEXT + "\n" + SIG_LINE.replace("PeterNeumann ", "PeterNeumann  "),  # double space
        TEXT + "\n" + "— PeterNeumann \n",  # empty signature
        TEXT + "\n" + "— PeterNeumann AAAA\n",  # signature shorter than key id + 1
        TEXT + "\n" + SIG_LINE.replace("AM=", "AN="),  # non-canonical base64
        TEXT + "\n" + SIG_LINE.replace("=", ""),  # unpadded base64
        TEXT + "\n" + SIG_LINE * 101,  # too many signatures
        TEXT + "\n" + SIG_LINE.replace("\n", "\r\n"),  # CR
        "\ud800" + NOTE,  # lone surrogate (possible after JSON decoding)
    ],
)
def test_malformed_notes(msg: str) -> None:
    with pytest.raises(MalformedNoteError):
        note.open_note(msg, [VKEY])


def test_malformed_bytes_note() -> None:
    with pytest.raises(MalformedNoteError):
        note.open_note(b"\xff" + NOTE.encode(), [VKEY])
    assert note.open_note(NOTE.encode(), [VKEY]).text == TEXT


def test_sign_note_rejects_bad_text() -> None:
    signer = Signer.from_seed("k", SEED)
    with pytest.raises(MalformedNoteError):
        note.sign_note("no newline", signer)
    with pytest.raises(MalformedNoteError):
        note.sign_note("tab\there\n", signer)
    with pytest.raises(ValueError):
        note.sign_note("x\n", [])
    # Text containing blank lines still round-trips: the last blank line separates signatures.
    text = "a\n\nb\n\n"
    assert note.open_note(note.sign_note(text, signer), [signer.verifier()]).text == text


# ------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------

ROOT = bytes.fromhex("5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328")


def test_checkpoint_format_parse_round_trip() -> None:
    text = note.format_checkpoint("envx.example/ledger", 8, ROOT)
    assert text == f"envx.example/ledger\n8\n{base64.b64encode(ROOT).decode()}\n"
    assert note.parse_checkpoint(text) == Checkpoint("envx.example/ledger", 8, ROOT)
    ext = note.format_checkpoint("o", 0, ROOT, ["ext one", "ext two"])
    assert note.parse_checkpoint(ext).extensions == ("ext one", "ext two")
    # The spec's own example body parses.
    cp = note.parse_checkpoint("example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n")
    assert (cp.origin, cp.size, len(cp.root_hash)) == ("example.com/behind-the-sofa", 20852163, 32)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "o\n8\n",
        "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=",  # no final newline
        "\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",  # empty origin
        "o\n08\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",  # leading zero
        "o\n-8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
        "o\n+8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
        "o\n8 \nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",
        "o\n\u0668\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",  # non-ASCII digit
        "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg\n",  # unpadded
        "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyh=\n",  # non-canonical
        "o\n18446744073709551616\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",  # 2**64
        "o\n" + "9" * 5000 + "\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n",  # beyond int() digit limit
        "o\n8\nAAAA\n",  # 3-byte root
        "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n\n",  # empty extension line
    ],
)
def test_malformed_checkpoints(text: str) -> None:
    with pytest.raises(MalformedNoteError):
        note.parse_checkpoint(text)


def test_sign_and_verify_checkpoint() -> None:
    signer = Signer.from_seed("envx.example/ledger", SEED)
    cp = Checkpoint("envx.example/ledger", 8, ROOT)
    signed = note.sign_checkpoint(cp, signer)
    assert note.verify_checkpoint(signed, [signer.verifier_key_string()]) == cp
    assert note.verify_checkpoint(signed, [signer.verifier()], origin="envx.example/ledger") == cp
    assert note.verify_checkpoint(signed, signer.verifier_key_string()) == cp  # a single key string
    big = Checkpoint("envx.example/ledger", (1 << 64) - 1, ROOT)
    assert note.verify_checkpoint(note.sign_checkpoint(big, signer), [signer.verifier()]) == big
    with pytest.raises(WrongOriginError):
        note.verify_checkpoint(signed, [signer.verifier()], origin="other.example/log")
    with pytest.raises(UnknownKeyError):
        note.verify_checkpoint(signed, [VKEY])
    with pytest.raises(BadSignatureError):
        note.verify_checkpoint(signed.replace("\n8\n", "\n9\n"), [signer.verifier()])
    # A validly signed note that is not a checkpoint is still rejected.
    with pytest.raises(MalformedNoteError):
        note.verify_checkpoint(note.sign_note("just text\n", signer), [signer.verifier()])
    for bad in [("", 1, ROOT), ("a\nb", 1, ROOT), ("o", -1, ROOT), ("o", 1 << 64, ROOT), ("o", 1, ROOT[:31])]:
        with pytest.raises(ValueError):
            note.format_checkpoint(*bad)
    with pytest.raises(ValueError):
        note.format_checkpoint("o", 1, ROOT, [""])
