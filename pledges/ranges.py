"""Serial-range arithmetic for locks: which exact blocks a pledge keeps after a release or top-up.

Ranges are inclusive `(start, end)` pairs of one instrument, kept sorted, disjoint and merged.
"""

from __future__ import annotations

from collections.abc import Iterable

from pledges.errors import PledgeError

Range = tuple[int, int]


def normalise(ranges: Iterable[Iterable[int]]) -> list[Range]:
    """Sorted, merged, validated; overlapping input is a client error, not something to guess about."""
    out: list[Range] = []
    for s, e in sorted((int(a), int(b)) for a, b in ranges):
        if s < 1 or e < s:
            raise PledgeError("invalid_serials", f"invalid serial range {s}-{e}", 422)
        if out and s <= out[-1][1]:
            raise PledgeError("invalid_serials", "serial ranges overlap", 422)
        if out and s == out[-1][1] + 1:
            out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def total(ranges: Iterable[Range]) -> int:
    return sum(e - s + 1 for s, e in ranges)


def contains(outer: Iterable[Range], inner: Iterable[Range]) -> bool:
    outer = normalise(outer)
    return all(any(a <= s and e <= b for a, b in outer) for s, e in normalise(inner))


def subtract(ranges: Iterable[Range], remove: Iterable[Range]) -> list[Range]:
    """`ranges` minus `remove`; every removed serial must be in `ranges` (you release only what you lock)."""
    base, cut = normalise(ranges), normalise(remove)
    if not contains(base, cut):
        raise PledgeError("serials_not_pledged", "the named serials are not part of this pledge's lock", 422)
    out: list[Range] = []
    for s, e in base:
        cursor = s
        for cs, ce in cut:
            if ce < cursor or cs > e:
                continue
            if cs > cursor:
                out.append((cursor, cs - 1))
            cursor = ce + 1
        if cursor <= e:
            out.append((cursor, e))
    return out


def take_highest(ranges: Iterable[Range], n: int) -> list[Range]:
    """The `n` highest serials: a partial release gives back the top of the lock, keeping the oldest units."""
    left = n
    picked: list[Range] = []
    for s, e in reversed(normalise(ranges)):
        if left == 0:
            break
        size = e - s + 1
        take = min(left, size)
        picked.append((e - take + 1, e))
        left -= take
    if left:
        raise PledgeError("quantity_exceeds_pledge", f"the lock holds fewer than {{qty:{n}}} units", 409)
    return normalise(picked)


def union(a: Iterable[Range], b: Iterable[Range]) -> list[Range]:
    return normalise([*a, *b])


def take_lowest(ranges: Iterable[Range], n: int) -> list[Range]:
    """The `n` lowest serials of `ranges` (the ledger's own choice when no serials are named)."""
    left = n
    picked: list[Range] = []
    for s, e in normalise(ranges):
        if left == 0:
            break
        take = min(left, e - s + 1)
        picked.append((s, s + take - 1))
        left -= take
    if left:
        raise PledgeError("insufficient_available", f"fewer than {{qty:{n}}} free units to add", 409)
    return picked


def split_at(ranges: Iterable[Range], bounds: Iterable[Range]) -> list[Range]:
    """Cut `ranges` wherever a block of `bounds` starts or ends inside them.

    The ledger takes a named range only if one block contains it; blocks end at batch boundaries and
    where their state changes (pledged next to free). Cutting at the blocks' edges names the same
    serials in pieces the ledger accepts, and keeps the entry replayable.
    """
    cuts = sorted({s for s, _ in bounds} | {e + 1 for _, e in bounds})
    out: list[Range] = []
    for s, e in normalise(ranges):
        start = s
        for cut in cuts:
            if start < cut <= e:
                out.append((start, cut - 1))
                start = cut
        out.append((start, e))
    return out


def intersect(a: Iterable[Range], b: Iterable[Range]) -> list[Range]:
    """The serials in both."""
    out: list[Range] = []
    for s1, e1 in normalise(a):
        for s2, e2 in normalise(b):
            s, e = max(s1, s2), min(e1, e2)
            if s <= e:
                out.append((s, e))
    return normalise(out)


def minus(a: Iterable[Range], b: Iterable[Range]) -> list[Range]:
    """`a` without the serials of `b` (which need not lie inside `a`)."""
    a = normalise(a)
    return subtract(a, intersect(a, b)) if a else []


def pick(ranges: Iterable[Range], n: int, prefer: Iterable[Range] = ()) -> list[Range]:
    """`n` serials of `ranges`: those also in `prefer` first, then the lowest others (lowest first each)."""
    ranges = normalise(ranges)
    first = intersect(ranges, prefer)
    take = take_lowest(first, min(n, total(first))) if first else []
    if n > total(take):
        take = union(take, take_lowest(minus(ranges, take), n - total(take)))
    return take
