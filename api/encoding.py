"""Answers in one time convention: every datetime in a JSON answer is written by exchange.core.units.iso.

msgspec (Litestar's encoder) writes datetimes itself, each in its own offset and precision; the answer
class below hands it strings instead, so that a time reads the same in every answer, whatever produced
it (a database column, the sequencer's clock, a calendar computed in Asia/Shanghai).
"""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.enums import MediaType
from litestar.serialization import get_serializer

from exchange.core.units import times_in_iso


class Answer(Response[Any]):
    def render(self, content: Any, media_type: str, enc_hook: Any = None) -> bytes:
        if not isinstance(content, bytes | str):
            content = times_in_iso(content)
        return super().render(content, media_type, *(() if enc_hook is None else (enc_hook,)))


def render(request: Request[Any, Any, Any], content: Any) -> bytes:
    """The bytes this request's handler answers `content` with (JSON), as Litestar renders a returned value: the
    Answer class above, with the handler's type encoders (pydantic models among them)."""
    return Answer(content).render(content, MediaType.JSON,
                                  get_serializer(request.route_handler.resolve_type_encoders()))
