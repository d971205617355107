"""Shared request-schema conventions: unknown fields refused, strings and lists bounded."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True, str_max_length=2000)

ClientId = Annotated[str | None, Field(default=None, min_length=1, max_length=128,
                                       description="Idempotency key (or send the Idempotency-Key header)")]
Decimal = Annotated[str, Field(min_length=1, max_length=40, pattern=r"^\s*[0-9]+(\.[0-9]+)?\s*$",
                               description="A decimal string in the instrument's unit, e.g. \"2723\" or \"12.500\"")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Note = Annotated[str | None, Field(default=None, max_length=2000)]


class SerialRange(BaseModel):
    model_config = STRICT
    start: int = Field(ge=1, le=2**53 - 1)
    end: int = Field(ge=1, le=2**53 - 1)


def _refuse_nul(value: Any) -> None:
    # PostgreSQL text and jsonb cannot hold U+0000: refuse it here (422), not as a database error (500).
    if isinstance(value, str):
        if "\x00" in value:
            raise ValueError("NUL characters (U+0000) are not allowed")
    elif isinstance(value, dict):
        for k, v in value.items():
            _refuse_nul(k)
            _refuse_nul(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _refuse_nul(v)


class Strict(BaseModel):
    model_config = STRICT

    @model_validator(mode="before")
    @classmethod
    def _no_nul(cls, data: Any) -> Any:
        _refuse_nul(data)
        return data


def ranges(serials: list[SerialRange] | None) -> list[tuple[int, int]] | None:
    return [(r.start, r.end) for r in serials] if serials else None
