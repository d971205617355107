"""Priority of registrations: one total order, never stored ranks (DESIGN §7, 民法典 §414).

Every registration (a pledge's lock, or a ranked claim on a pledged lot) draws a registration number
from one database sequence when it becomes effective; that number is its place in time. Registered
claims come before unregistered ones; registered ones by registration number; unregistered ones by
filing order (they share pro rata in the waterfall, so their order only breaks ties).

Ranks are computed, not kept: when a senior registration goes away the juniors move up by themselves.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Protocol, TypeVar


class Ranked(Protocol):
    @property
    def registration_no(self) -> int | None: ...

    @property
    def filed_no(self) -> int: ...


T = TypeVar("T", bound=Ranked)


def sort_key(registration_no: int | None, filed_no: int) -> tuple[int, int]:
    return (0, registration_no) if registration_no is not None else (1, filed_no)


def order(items: Iterable[T]) -> list[T]:
    return sorted(items, key=lambda x: sort_key(x.registration_no, x.filed_no))


def ranks(rows: Sequence[dict[str, Any]]) -> dict[int, int]:
    """id -> rank (1 = senior) over registered rows {id, registration_no}; unregistered rows get no rank."""
    reg = sorted((r for r in rows if r.get("registration_no") is not None), key=lambda r: r["registration_no"])
    return {r["id"]: i for i, r in enumerate(reg, start=1)}
