"""The one place where refusals of the pure rules (pledges.errors.PledgeError) become the exchange's
domain errors (problem details): at the boundary of every use case, and for a short serial range."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from exchange.core.errors import DomainError
from exchange.core.units import speak
from pledges.errors import PledgeError

P = ParamSpec("P")
R = TypeVar("R")


def take_units(take: Callable[[list[tuple[int, int]], int], list[tuple[int, int]]], ranges: list[tuple[int, int]],
           n: int, decimals: int) -> list[tuple[int, int]]:
    """`take` (pledges.ranges) of `n` base units, its refusal in the instrument's unit."""
    try:
        return take(ranges, n)
    except PledgeError as exc:
        raise DomainError(exc.code, speak(exc.message, decimals), exc.status) from None


def translate_refusals(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Refusals of the pure rules become domain errors (problem details) at the service boundary."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except PledgeError as exc:  # the pure rules mark times ({ts:...}); quantities are spoken by take_units
            raise DomainError(exc.code, speak(exc.message, 0), exc.status) from None

    return wrapper

