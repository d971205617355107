"""The witness's rules and the cosignature format, pure (ledger/witness_state.py, ledger/cosignature.py)."""

from __future__ import annotations

import hashlib

import pytest

from ledger import merkle, note
from ledger.cosignature import CosignatureVerifier, Cosigner, WitnessPolicy, generate_cosigner_key
from ledger.witness_state import LogState, WitnessRefusal, decide, format_add_checkpoint, parse_add_checkpoint

ORIGIN = "envx.test/rules"
SIGNER = note.Signer.from_seed(ORIGIN, bytes(range(32)))
LEAVES = [merkle.leaf_hash(hashlib.sha256(str(i).encode()).digest()) for i in range(40)]


def _note(size: int, leaves: list[bytes] = LEAVES, signer: note.Signer = SIGNER) -> str:
    return note.sign_checkpoint(note.Checkpoint(ORIGIN, size, merkle.root(leaves[:size])), signer)


def _proof(old: int, new: int) -> list[bytes]:
    return merkle.consistency_proof(old, new, lambda level, index: merkle.root(
        LEAVES[index << level:(index + 1) << level]))


LOGS = {ORIGIN: [SIGNER.verifier()]}


def _req(old: int, size: int, proof: list[bytes] | None = None, cp: str | None = None) -> bytes:
    return format_add_checkpoint(old, _proof(old, size) if proof is None and 0 < old < size else proof or [],
                                 cp or _note(size))


def _refusal(body: bytes, state: dict[str, LogState]) -> WitnessRefusal:
    with pytest.raises(WitnessRefusal) as info:
        decide(parse_add_checkpoint(body), LOGS, state)
    return info.value


def test_a_witness_cosigns_extensions_and_refuses_everything_else() -> None:
    origin, _text, new = decide(parse_add_checkpoint(_req(0, 10)), LOGS, {})
    assert (origin, new) == (ORIGIN, LogState(10, merkle.root(LEAVES[:10])))
    state = {ORIGIN: new}
    assert decide(parse_add_checkpoint(_req(10, 25)), LOGS, state)[2].size == 25
    assert decide(parse_add_checkpoint(_req(10, 10)), LOGS, state)[2].size == 10  # the same tree again
    # The log does not know the witness's size: 409 with it, as text/x.tlog.size.
    r = _refusal(_req(0, 25), state)
    assert (r.status, r.known_size, r.alarm) == (409, 10, False)
    # A smaller tree than cosigned: a rollback, 409 and an alarm.
    r = _refusal(_req(0, 5), state)
    assert (r.status, r.known_size, r.alarm) == (409, 10, True) and "ROLLBACK" in r.reason
    # Another tree of the cosigned size: a fork (split view).
    other = [merkle.leaf_hash(b"x"), *LEAVES[1:]]
    r = _refusal(_req(10, 10, cp=_note(10, other)), state)
    assert (r.status, r.alarm) == (409, True) and "FORK" in r.reason
    # A larger tree that does not extend the cosigned one: the proof fails, 422.
    r = _refusal(_req(10, 25, proof=_proof(10, 25), cp=_note(25, other)), state)
    assert (r.status, r.alarm) == (422, True)
    # Not a log it follows: 404; not signed by that log's key: 403; old size beyond the checkpoint: 400.
    stranger = note.Signer.from_seed("envx.test/other", bytes(32))
    assert _refusal(format_add_checkpoint(0, [], note.sign_checkpoint(
        note.Checkpoint("envx.test/other", 1, LEAVES[0]), stranger)), state).status == 404
    impostor = note.Signer.from_seed(ORIGIN, bytes(32))
    assert _refusal(_req(10, 25, cp=_note(25, signer=impostor)), state).status == 403
    assert _refusal(format_add_checkpoint(30, [], _note(25)), state).status == 400
    assert _refusal(_req(0, 25, proof=[LEAVES[0]]), {}).status == 422  # from 0 the proof is empty
    for body in (b"old 01\n\n" + _note(3).encode(), b"new 0\n\n" + _note(3).encode(), b"old 0\n" + _note(3).encode(),
                 b"old 0\nnot base64\n\n" + _note(3).encode(), b"\xff\n\n"):
        with pytest.raises(WitnessRefusal) as info:
            parse_add_checkpoint(body)
        assert info.value.status == 400


def test_cosignatures_verify_only_for_their_key_body_and_type() -> None:
    skey, vkey = generate_cosigner_key("witness.test")
    w = Cosigner.from_key_string(skey)
    assert w.verifier().key_string() == vkey and CosignatureVerifier.from_key_string(vkey) == w.verifier()
    body = note.parse_note(_note(7)).text
    line = w.cosign(body, 1_700_000_000)
    assert w.verifier().verify_line(body, line) == 1_700_000_000
    assert w.verifier().verify_line(note.parse_note(_note(8)).text, line) is None
    # The note key id (type 0x01) of the same name and key differs from the cosignature key id (0x04).
    assert note.key_id("witness.test", w.public_key) != w.key_id
    policy = WitnessPolicy.of([vkey], 1)
    assert policy.satisfied_by(_note(7) + line) and not policy.satisfied_by(_note(7))
    assert not policy.satisfied_by(_note(8) + line)  # a cosignature of another checkpoint counts for nothing
    with pytest.raises(note.InvalidKeyError):
        WitnessPolicy.of([vkey], 2)
    with pytest.raises(note.InvalidKeyError):
        WitnessPolicy.of([vkey, vkey], 1)
    with pytest.raises(note.InvalidKeyError):
        CosignatureVerifier.from_key_string(SIGNER.verifier_key_string())  # a note key is not a witness key


def test_a_tlog_proof_with_a_broken_cosignature_of_a_trusted_witness_fails_even_above_the_quorum() -> None:
    from ledger import tlog_proof

    w1, w2 = Cosigner.from_key_string(generate_cosigner_key("w1.test")[0]), \
        Cosigner.from_key_string(generate_cosigner_key("w2.test")[0])
    entries = [str(i).encode() for i in range(5)]
    leaves = [merkle.leaf_hash(e) for e in entries]
    cp = note.sign_checkpoint(note.Checkpoint(ORIGIN, 5, merkle.root(leaves)), SIGNER)
    body = cp[: cp.index("\n\n") + 1]
    cosigned = cp + w1.cosign(body, 1_700_000_000) + w2.cosign(body, 1_700_000_001)
    path = merkle.inclusion_proof(3, 5, lambda level, index: merkle.root(leaves[index << level:(index + 1) << level]))
    proof = tlog_proof.format_tlog_proof(entries[3], 3, path, cosigned)
    one_of_two = WitnessPolicy.of([w1.verifier().key_string(), w2.verifier().key_string()], 1)
    assert tlog_proof.verify_tlog_proof(proof, [SIGNER.verifier()], policy=one_of_two).index == 3
    # w2's signature bytes changed (its name and key id kept): one valid cosignature is the quorum, but a
    # trusted witness's line that does not verify fails the file.
    line = w2.cosign(body, 1_700_000_001)
    bad_line = line[:-6] + ("A" if line[-6] != "A" else "B") + line[-5:]
    with pytest.raises(tlog_proof.TlogProofError, match="bad_signature"):
        tlog_proof.verify_tlog_proof(proof.replace(line, bad_line), [SIGNER.verifier()], policy=one_of_two)
    # Two proofs one after the other (a certificate's entries) split back into the two.
    path0 = merkle.inclusion_proof(0, 5, lambda level, index: merkle.root(leaves[index << level:(index + 1) << level]))
    two = tlog_proof.format_tlog_proof(entries[0], 0, path0, cosigned) + proof
    parts = tlog_proof.split_tlog_proofs(two)
    assert [tlog_proof.verify_tlog_proof(p, [SIGNER.verifier()], policy=one_of_two).index for p in parts] == [0, 3]
