"""The one decoding step every request body goes through before any handler (api/security/middleware.py).

A body is accepted only if it is UTF-8 JSON text (RFC 8259) that means exactly one thing:

- `json_too_deep`: arrays and objects nest deeper than MAX_DEPTH (measured before parsing, so no parser
  ever recurses on a nesting bomb);
- `duplicate_key`: an object names a key twice, at any depth. A signed instruction covers the raw bytes;
  with two `quantity` keys a reader of the bytes and the executed request could disagree;
- `invalid_characters`: bytes that are not UTF-8, or a lone surrogate escape (`"\\ud800"`), which no
  UTF-8 text (and no PostgreSQL column) can hold;
- `number_out_of_range`: an integer outside the I-JSON safe range ±(2^53 - 1), or a number too large
  for a double (`1e400`) — RFC 7493 §2.2;
- `malformed_json`: anything else the JSON grammar refuses, and `NaN` / `Infinity`, which it does not have.

What the value must look like (types, bounds, fields) is the request models' business (api/schemas).
"""

from __future__ import annotations

import json
import math
import re
from itertools import accumulate
from typing import Any

MAX_DEPTH = 32
MAX_SAFE_INT = 2**53 - 1

# A JSON string token; possessive, so an unterminated one costs one linear scan.
_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_SURROGATE = re.compile("[\ud800-\udfff]")


class BodyRefused(ValueError):
    """The body is not acceptable JSON; `code` is the problem's machine code (422)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def depth(text: str) -> int:
    """How deep brackets nest outside strings. Never below the depth a parser reaches on the same text
    (up to where the text stops being JSON, both read the same tokens)."""
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise BodyRefused("duplicate_key", f"the key {key[:50]!r} appears twice in one object")
        out[key] = value
    return out


def _integer(literal: str) -> int:
    value = int(literal) if len(literal) <= 20 else MAX_SAFE_INT + 1  # int() of 5,000 digits is not cheap
    if not -MAX_SAFE_INT <= value <= MAX_SAFE_INT:
        raise BodyRefused("number_out_of_range", f"the integer {literal[:30]} is outside ±(2^53 - 1)")
    return value


def _float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise BodyRefused("number_out_of_range", f"the number {literal[:30]} is too large")
    return value


def _constant(name: str) -> Any:
    raise BodyRefused("malformed_json", f"{name} is not a JSON value")


def _refuse_surrogates(value: Any) -> None:
    if isinstance(value, str):
        if not value.isascii() and _SURROGATE.search(value):
            raise BodyRefused("invalid_characters", "the body contains a lone surrogate (e.g. \"\\ud800\"), "
                                                    "which is not a character")
    elif isinstance(value, dict):
        for k, v in value.items():
            _refuse_surrogates(k)
            _refuse_surrogates(v)
    elif isinstance(value, list):
        for v in value:
            _refuse_surrogates(v)


def decode(body: bytes) -> Any:
    """The body's JSON value, or BodyRefused. Recursion below is bounded by MAX_DEPTH."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyRefused("invalid_characters", f"the body is not UTF-8 (byte {exc.start})") from None
    if text.count("[") + text.count("{") > MAX_DEPTH and depth(text) > MAX_DEPTH:
        raise BodyRefused("json_too_deep", f"arrays and objects may nest at most {MAX_DEPTH} deep")
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_int=_integer, parse_float=_float,
                           parse_constant=_constant)
    except BodyRefused:
        raise
    except ValueError as exc:  # json.JSONDecodeError, and int() past its digit limit
        raise BodyRefused("malformed_json", f"the body is not JSON: {str(exc)[:200]}") from None
    _refuse_surrogates(value)
    return value
