"""One business event, one ledger entry: the legs of a use case's ledger step as one `Event` (version 2).

The ledger's rules for an event (ledger/state.py): its legs apply in order, all or none; at most 64 legs;
at most one leg creates a hold, and that hold's id is the entry's seq. A step that must create more than
one hold at once -- an enforcement under several court freezes, each of which keeps its units outside
the lot frozen again; unsold units that come back under the lock and under the courts' freezes -- has its
first creation in the event and each further one as an entry of its own right after it, in the same linked
group (all or none still). Those creations name their serials and only encumber them, so moving them after
the other legs changes what is written, not what it does: callers only pass creations of that kind.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ledger import commands as c
from ledger.state import MAX_LEGS, Entry


def event_requests(actor: str, kind: str, legs: Sequence[c.Leg], client_id: str,
                   meta: dict[str, Any], *, blinded: bool = False) -> list[c.Request]:
    """The linked group that writes `legs` as one event: one request, unless the step creates more than one
    hold (or has more legs than an event takes); then the event first and what it cannot hold after it,
    each with a client id derived from the event's. `blinded`: its events name accounts, holds and amounts
    by commitment (entry version 4), so each payee's receipt opens its own legs only."""
    assert legs, "an event has at least one leg"
    main: list[c.Leg] = []
    later: list[c.CreateHold] = []
    for leg in legs:
        if isinstance(leg, c.CreateHold) and any(isinstance(x, c.CreateHold) for x in main):
            assert leg.serials, "only a creation that names its serials may move after the event's other legs"
            later.append(leg)
        else:
            main.append(leg)
    chunks = [main[i:i + MAX_LEGS] for i in range(0, len(main), MAX_LEGS)]
    out = [c.Request(actor, c.Event(kind, tuple(chunk), blinded=blinded, blind_amounts=blinded),
                     client_id if n == 0 else f"{client_id}:part-{n}",
                     meta if n == 0 else {**meta, "part_of": client_id})
           for n, chunk in enumerate(chunks)]
    out += [c.Request(actor, hold, f"{client_id}:hold-{n}", {**meta, "part_of": client_id})
            for n, hold in enumerate(later, start=1)]
    return out


def created_holds(entries: Sequence[Entry]) -> list[int]:
    """The ids of the holds an `event_requests` group created, in the order of its creating legs: the event's
    own (its seq), then those of the entries after it."""
    out: list[int] = []
    for e in entries:
        if e.type == "event":
            out += [e.seq for leg in e.body["legs"] if leg["type"] == "hold.create"]
        elif e.type == "hold.create":
            out.append(e.seq)
    return out


def legs_of(entries: Sequence[Entry]) -> list[dict[str, Any]]:
    """Every leg the group wrote, in order, as `{"type", "body", "seq"}` (an entry of its own is one leg)."""
    out: list[dict[str, Any]] = []
    for e in entries:
        if e.type == "event":
            out += [{**leg, "seq": e.seq} for leg in e.body["legs"]]
        else:
            out.append({"type": e.type, "body": e.body, "seq": e.seq})
    return out
