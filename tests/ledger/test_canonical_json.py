"""canonical_json and the entry encoder: RFC 8785 vectors for what the ledger encodes, and the fast
encoder (msgspec) against the standard-library reference path on random values."""

from __future__ import annotations

import enum
import hashlib
from collections import OrderedDict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.encoding import (
    DOMAIN_TAG,
    EncodingError,
    canonical_json,
    canonical_json_stdlib,
    decode_entry,
    encode_entry,
    encode_entry_reference,
)

# RFC 8785 section 3.2.2.2 (serialisation of strings): the input string of the RFC's example, written
# with Python escapes, and the exact output bytes it gives.
RFC8785_STRING_IN = "\u20ac$\u000f\u000aA'\u0042\u0022\u005c\\\"/"
RFC8785_STRING_OUT = '"€$\\u000f\\nA\'B\\"\\\\\\\\\\"/"'.encode()

VECTORS: list[tuple[object, bytes]] = [
    (RFC8785_STRING_IN, RFC8785_STRING_OUT),
    # the control characters: short escapes where JSON has them, lowercase \u00XX otherwise; DEL is not escaped
    ("\b\t\n\f\r", b'"\\b\\t\\n\\f\\r"'),
    ("\x00\x01\x1f\x7f", b'"\\u0000\\u0001\\u001f\x7f"'),
    # non-ASCII as UTF-8, never escaped: BMP, astral (a surrogate pair in UTF-16), U+2028/U+2029
    ("é€😀\u2028\u2029", "\"é€😀\u2028\u2029\"".encode()),
    ("碳汇 認購", '"碳汇 認購"'.encode()),
    # integers: I-JSON's safe range, no exponent, no sign on zero
    (0, b"0"), (-0, b"0"), (2**53 - 1, b"9007199254740991"), (-(2**53 - 1), b"-9007199254740991"),
    (True, b"true"), (False, b"false"), (None, b"null"),
    # no whitespace; arrays keep their order; tuples are arrays
    ([1, [2, [3]], "x"], b'[1,[2,[3]],"x"]'), ((1, 2), b"[1,2]"), ([], b"[]"), ({}, b"{}"),
    # keys sorted by UTF-16 code units (for ASCII keys: byte order), recursively
    ({"b": 1, "a": {"d": 1, "c": [{"z": 0, "y": 1}]}, "B": 2, "_": 3, "1": 4, "~": 5},
     b'{"1":4,"B":2,"_":3,"a":{"c":[{"y":1,"z":0}],"d":1},"b":1,"~":5}'),
    ({"a\"q": 1, "a\\b": 2, "a\nb": 3}, b'{"a\\nb":3,"a\\"q":1,"a\\\\b":2}'),
]


@pytest.mark.parametrize(("value", "expected"), VECTORS)
def test_rfc8785_vectors(value: object, expected: bytes) -> None:
    assert canonical_json(value) == expected
    assert canonical_json_stdlib(value) == expected


@pytest.mark.parametrize("value", [1.5, 0.0, float("nan"), 2**53, -(2**53), 2**64, {"é": 1}, {"\u20ac": 1},
                                   {1: 2}, {None: 1}, b"x", {"a": [1, {"b": 2.5}]}, {1, 2}, object()])
def test_what_has_no_canonical_encoding_is_refused(value: object) -> None:
    # RFC 8785 would encode floats and non-ASCII keys; the ledger's subset refuses them, on every path.
    with pytest.raises(EncodingError):
        canonical_json(value)


def test_lone_surrogates_fail_as_before() -> None:
    for v in ("\ud800", {"k": "x\udfff"}):
        with pytest.raises(UnicodeEncodeError):
            canonical_json(v)
        with pytest.raises(UnicodeEncodeError):
            canonical_json_stdlib(v)


class Colour(enum.StrEnum):
    RED = "red"


class Size(enum.IntEnum):
    BIG = 7


def test_subclasses_take_the_stdlib_path_with_the_same_bytes() -> None:
    value = {"c": Colour.RED, "s": Size.BIG, "o": OrderedDict(b=1, a=2)}
    assert canonical_json(value) == canonical_json_stdlib(value) == b'{"c":"red","o":{"a":2,"b":1},"s":7}'


keys = st.text(st.characters(max_codepoint=127), max_size=6)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**53 - 1), 2**53 - 1), st.text(max_size=12))
values = st.recursive(scalars, lambda kids: st.lists(kids, max_size=4) | st.dictionaries(keys, kids, max_size=4),
                      max_leaves=20)


@settings(max_examples=500, deadline=None)
@given(values)
def test_fast_encoder_equals_the_stdlib_path(value: object) -> None:
    assert canonical_json(value) == canonical_json_stdlib(value)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=8),
                       scalars, max_size=8),
       scalars, scalars, st.text(max_size=10), st.binary(max_size=40))
def test_fast_entry_encoder_equals_the_reference(body: dict, actor: object, client_id: object, type_: str,
                                                 meta: bytes) -> None:
    kw = {"seq": 3, "prev": b"\x01" * 32, "ts": 99, "type_": type_, "actor": actor, "client_id": client_id,
          "body": body, "meta": meta}
    assert encode_entry(**kw) == encode_entry_reference(**kw)  # type: ignore[arg-type]


def test_entry_encoder_refuses_as_before() -> None:
    base = {"seq": 1, "prev": bytes(32), "ts": 1, "type_": "t", "actor": "a", "client_id": None, "meta": b""}
    for body in ({"x": 0.5}, {"x": 2**53}, {"x": [1]}, {"x": {"y": 1}}, {"x": b"b"}):
        for enc in (encode_entry, encode_entry_reference):
            with pytest.raises(EncodingError):
                enc(body=body, **base)  # type: ignore[arg-type]
    with pytest.raises(EncodingError):
        encode_entry(body={}, **{**base, "ts": 2**60})  # type: ignore[arg-type]
    with pytest.raises(EncodingError):
        encode_entry(body={}, **{**base, "prev": bytes(31)})  # type: ignore[arg-type]
    leaf = encode_entry(body={"amount": 5, "memo": "é\n"}, **base)  # type: ignore[arg-type]
    assert leaf == DOMAIN_TAG + canonical_json({"v": 1, "seq": 1, "prev": "00" * 32, "ts": 1, "type": "t",
                                                "actor": "a", "client_id": None,
                                                "body": {"amount": 5, "memo": "é\n"},
                                                "meta": hashlib.sha256(b"").hexdigest()})
    assert decode_entry(leaf)["body"] == {"amount": 5, "memo": "é\n"}
    for bad in (leaf[:-1], leaf.replace(b'"amount":5', b'"amount":5.0'), leaf.replace(b"\\n", b"\\u000a"),
                DOMAIN_TAG + b"\xff", leaf.replace(b'"a"', b'"\xed\xa0\x80"')):
        with pytest.raises(EncodingError):
            decode_entry(bad)
