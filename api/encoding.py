"""Answers in one time convention: every datetime in a JSON answer is written by exchange.units.iso.

msgspec (Litestar's encoder) writes datetimes itself, each in its own offset and precision; the answer
class below hands it strings instead, so that a time reads the same in every answer, whatever produced
it (a database column, the sequencer's clock, a calendar computed in Asia/Shanghai).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Response

from exchange.units import iso


def times_in_iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, dict):
        return {k: times_in_iso(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [times_in_iso(v) for v in value]
    return value


class Answer(Response[Any]):
    def render(self, content: Any, media_type: str, enc_hook: Any = None) -> bytes:  # type: ignore[override]
        if not isinstance(content, bytes | str):
            content = times_in_iso(content)
        return super().render(content, media_type, *(() if enc_hook is None else (enc_hook,)))
