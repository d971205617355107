"""Shared request-schema conventions: unknown fields refused, no type coercion, every value bounded.

- Strict types (pydantic strict mode; the app validates with `strict=True`, api/app.py): a boolean is not
  an integer, nor is a float or a numeric string; an integer is not a string. Strings are kept as sent
  (no stripping).
- Integers are bounded; ids are 1..2^53 - 1 (I-JSON safe, what JavaScript clients can hold exactly).
- Quantities and money are decimal strings of ASCII digits: no sign, padding, exponent or other digits.
- Dates are `YYYY-MM-DD` strings from 2000-01-01 to 2199-12-31, datetimes RFC 3339 with an offset in the
  same years; a datetime is not a date, nor is a number. The OpenAPI document declares both as a pattern.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Annotated, Any, ClassVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    WithJsonSchema,
    model_serializer,
    model_validator,
)

MAX_ID = 2**53 - 1
FIRST_DATE, LAST_DATE = dt.date(2000, 1, 1), dt.date(2199, 12, 31)
_YEAR_MONTH_DAY = r"2[01][0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
DATE_PATTERN = f"^{_YEAR_MONTH_DAY}$"
DATETIME_PATTERN = (f"^{_YEAR_MONTH_DAY}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\\.[0-9]{{1,6}})?"
                    "(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
DECIMAL_PATTERN = r"^(0|[1-9][0-9]{0,17})(\.[0-9]{1,12})?$"  # as exchange.core.units.to_base reads them

STRICT = ConfigDict(extra="forbid", strict=True, str_max_length=2000)

ClientId = Annotated[str | None, Field(default=None, min_length=1, max_length=128,
                                       description="Idempotency key (or send the Idempotency-Key header)")]
Decimal = Annotated[str, Field(min_length=1, max_length=40, pattern=DECIMAL_PATTERN,
                               description="A decimal string in the instrument's unit, e.g. \"2723\" or \"12.500\": "
                                           "ASCII digits, no sign, spaces or exponent")]
Id = Annotated[int, Field(ge=1, le=MAX_ID)]
# How a caller names another participant whose name its answer will show: the registered USCC of an
# organisation or the identity document number of a person, as in the contract or judgment (exchange.
# participants.party: a wrong one is the same 404 as an unknown id).
RegisteredIdentifier = Annotated[str, Field(min_length=5, max_length=20, pattern=r"^[0-9A-Z]{5,20}$",
                                            description="the participant's unified social credit code "
                                                        "(organisations) or identity document number "
                                                        "(persons), as registered")]
Name = Annotated[str, Field(min_length=1, max_length=200)]
Note = Annotated[str | None, Field(default=None, max_length=2000)]


def _calendar(value: Any, pattern: str, parse: Any, what: str) -> Any:
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise ValueError(f"a {what} is a string {'YYYY-MM-DD' if what == 'date' else 'YYYY-MM-DDTHH:MM:SSZ'} "
                         f"from {FIRST_DATE} to {LAST_DATE}")
    try:
        return parse(value)
    except ValueError:
        raise ValueError(f"{value} is not a {what} of the calendar") from None


def _date(value: Any) -> dt.date:
    return _calendar(value, DATE_PATTERN, dt.date.fromisoformat, "date")  # type: ignore[no-any-return]


def _datetime(value: Any) -> dt.datetime:
    return _calendar(value, DATETIME_PATTERN, dt.datetime.fromisoformat, "datetime")  # type: ignore[no-any-return]


Date = Annotated[dt.date, BeforeValidator(_date), WithJsonSchema(
    {"type": "string", "format": "date", "pattern": DATE_PATTERN,
     "description": f"YYYY-MM-DD, {FIRST_DATE} to {LAST_DATE}"})]
DateTime = Annotated[dt.datetime, BeforeValidator(_datetime), WithJsonSchema(
    {"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN,
     "description": f"RFC 3339 with an offset, years {FIRST_DATE.year} to {LAST_DATE.year}"})]


class SerialRange(BaseModel):
    model_config = STRICT
    start: Id
    end: Id


# Characters no registry text needs and that make one text show as another: C0 controls but tab, line
# feed and carriage return; DEL and C1 controls (an ANSI escape reaching a terminal or a log viewer); bidi
# embeddings, overrides and isolates (a case number rendering as another one in a certificate); zero-width
# space, word joiner and BOM (look-alike names). NUL also because PostgreSQL text and jsonb cannot hold it.
_UNSAFE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u200b\u2060\ufeff]")


def _refuse_unsafe_characters(value: Any) -> None:
    if isinstance(value, str):
        if (bad := _UNSAFE.search(value)) is not None:
            raise ValueError(f"the character U+{ord(bad.group()):04X} is not allowed (controls, bidi controls, "
                             "zero-width space, BOM)")
    elif isinstance(value, dict):
        for k, v in value.items():
            _refuse_unsafe_characters(k)
            _refuse_unsafe_characters(v)
    elif isinstance(value, list | tuple):
        for v in value:
            _refuse_unsafe_characters(v)


class Strict(BaseModel):
    model_config = STRICT

    @model_validator(mode="before")
    @classmethod
    def _no_unsafe_characters(cls, data: Any) -> Any:
        _refuse_unsafe_characters(data)
        return data


def ranges(serials: list[SerialRange] | None) -> list[tuple[int, int]] | None:
    return [(r.start, r.end) for r in serials] if serials else None


# ----------------------------------------------------------------------------------- answers

Time = Annotated[str, Field(description="ISO 8601, UTC, microseconds, Z")]


class Sparse(BaseModel):
    """An answer some of whose fields are left out, not written as null, when they do not apply: those of
    `_sparse` when they are None, those of `_unset` when they were not given at all (a field the caller's
    role does not see: left out, whatever its value would be)."""

    _sparse: ClassVar[frozenset[str]] = frozenset()
    _unset: ClassVar[frozenset[str]] = frozenset()

    @model_serializer(mode="wrap")
    def _leave_out(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        out: dict[str, Any] = handler(self)
        given = self.model_fields_set
        return {k: v for k, v in out.items()
                if not (v is None and k in self._sparse) and not (k in self._unset and k not in given)}
