"""The writer's direct encoder must equal the canonical form the verifier re-derives."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.encoding import DOMAIN_TAG, EncodingError, canonical_json, decode_entry, encode_entry, sha256

scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53 - 1), 2**53 - 1), st.text(max_size=20))


@given(st.dictionaries(st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=8), scalars,
                       max_size=8), st.text(max_size=10), st.one_of(st.none(), st.text(max_size=10)),
       st.binary(max_size=40))
def test_direct_encoder_is_canonical_json(body: dict, actor: str, client_id: str | None, meta: bytes) -> None:
    leaf = encode_entry(seq=3, prev=b"\x01" * 32, ts=99, type_="transfer", actor=actor, client_id=client_id,
                        body=body, meta=meta)
    expected = DOMAIN_TAG + canonical_json({"v": 1, "seq": 3, "prev": ("01" * 32), "ts": 99, "type": "transfer",
                                            "actor": actor, "client_id": client_id, "body": body,
                                            "meta": sha256(meta).hex()})
    assert leaf == expected
    assert decode_entry(leaf)["body"] == body


def test_non_canonical_or_unsafe_values_are_refused() -> None:
    with pytest.raises(EncodingError):
        canonical_json({"x": 1.5})
    with pytest.raises(EncodingError):
        canonical_json({"x": 2**60})
    with pytest.raises(EncodingError):
        encode_entry(seq=1, prev=bytes(32), ts=1, type_="t", actor="a", client_id=None, body={"x": 0.1}, meta=b"")
    leaf = encode_entry(seq=1, prev=bytes(32), ts=1, type_="t", actor="a", client_id=None, body={}, meta=b"")
    with pytest.raises(EncodingError):
        decode_entry(leaf.replace(b'"seq":1', b'"seq": 1'))  # whitespace makes it non-canonical
    with pytest.raises(EncodingError):
        decode_entry(b"other-tag" + leaf[len(DOMAIN_TAG):])
