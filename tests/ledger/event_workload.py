"""A mixed version-1 / version-2 ledger workload and the bytes it must produce: the v2 known-answer vectors.

`tests/data/ledger_event_vectors.json` holds, for a fixed seeded workload (v1 set-up, order holds, trades
settled as one `Event` each -- seller's units out of their hold to the buyer, buyer's cash out of their
hold to the seller, fees, a trim of the buyer's excess, a T+1 lock --, v1 voids of remainders and T+1
locks, freezes and trims between them, events refused on their last leg), the outcome of every
group (entry hashes, or the refusal), the full leaf bytes of every version-2 entry, and the state digest
after every group. `tests/ledger/test_events.py` rebuilds the workload and insists on the same bytes.

Regenerate (only for a deliberate change of the version-2 encoding, which needs a new entry version):

    PYTHONPATH=$PWD python -m tests.ledger.event_workload --write
"""

from __future__ import annotations

import argparse
import contextlib
import json
import random
from pathlib import Path
from typing import Any

from ledger import commands as c
from ledger.state import Entry, LedgerState, Rejection
from tests.ledger.replay_workload import state_digest

VECTORS = Path(__file__).resolve().parent.parent / "data" / "ledger_event_vectors.json"
T0 = 1_760_000_000_000_000
Group = list[c.Request]


class _World:
    """Drives the state machine to build the workload (and, replayed, to check it)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.s = LedgerState()
        self.ts = T0
        self.groups: list[tuple[int, Group]] = []
        self.outcomes: list[list[Entry] | Rejection] = []
        self.n = 0

    def run(self, group: Group, advance: int = 1_000) -> list[Entry] | Rejection:
        self.ts += advance
        try:
            out: list[Entry] | Rejection = self.s.apply_linked(group, self.ts)
        except Rejection as rej:
            out = rej
        self.s.forget_journal()
        self.groups.append((self.ts, group))
        self.outcomes.append(out)
        return out

    def one(self, cmd: c.Command, meta: dict[str, Any] | None = None, actor: str = "op") -> Entry:
        self.n += 1
        out = self.run([c.Request(actor, cmd, f"w:{self.n}", meta or {})])
        assert not isinstance(out, Rejection), out
        return out[0]


def build(seed: int = 20261201) -> _World:
    w = _World(seed)
    one = w.one
    one(c.DefineInstrument("CNY", "currency", 2))
    one(c.DefineInstrument("CEA", "cea", 0))
    issuance = one(c.OpenAccount("registry", "issuance")).seq
    clearing = one(c.OpenAccount("exchange", "settlement")).seq
    fees = one(c.OpenAccount("exchange", "fees")).seq
    court = one(c.OpenAccount("court:1", "holding")).seq
    holding, cash = [], []
    for k in range(4):
        holding.append(one(c.OpenAccount(f"participant:{k}", "holding")).seq)
        cash.append(one(c.OpenAccount(f"participant:{k}", "cash")).seq)
        for j in range(2):
            one(c.IssueBatch(issuance, holding[k], "CEA", w.rng.randint(50, 400), f"batch-{k}-{j}"))
        one(c.Transfer(clearing, cash[k], "CNY", 5_000_000))
    t1_locks: list[int] = []
    freezes: list[int] = []
    trade_id = 0
    for round_ in range(40):
        seller, buyer = w.rng.sample(range(4), 2)
        limit = w.rng.randint(50, 90) * 100  # fen per unit
        qty = w.rng.randint(5, 40)
        free = w.s.balance(holding[seller], "CEA").available
        if free < qty:
            continue
        sell_hold = one(c.CreateHold("order", holding[seller], clearing, "CEA", qty)).seq
        buy_hold = one(c.CreateHold("order", cash[buyer], clearing, "CNY", limit * qty + -(-limit * qty // 1000))).seq
        free = w.s.balance(holding[seller], "CEA").available
        if round_ % 7 == 3 and free:  # a court freezes the seller's other units (v1) while the trades settle
            freezes.append(one(c.CreateHold("freeze", holding[seller], court, "CEA", free)).seq)
        left, paid, fee_paid = qty, 0, 0
        while left:
            fill = min(left, w.rng.randint(1, qty))
            price = limit - w.rng.randint(0, 3) * 100  # at or below the limit: an excess to trim
            n = price * fill
            fee_total = -(-(paid + n) // 1000)
            fb = fee_total - fee_paid
            left -= fill
            legs: list[c.Leg] = [c.PostHold(sell_hold, fill, keep_remainder=left > 0),
                                 c.Transfer(clearing, holding[buyer], "CEA", fill),
                                 c.PostHold(buy_hold, n + fb, keep_remainder=left > 0)]
            if left:
                rest = limit * left
                legs.append(c.TrimHold(buy_hold, rest + -(-(paid + n + rest) // 1000) - fee_total))
            legs += [c.Transfer(clearing, cash[seller], "CNY", n), c.Transfer(clearing, fees, "CNY", fb)]
            if round_ % 2:
                legs.append(c.CreateHold("t1", holding[buyer], clearing, "CEA", fill))
            trade_id += 1
            w.n += 1
            meta = {"market": "CEA.continuous", "trade_id": trade_id, "price": price, "qty": fill,
                    "memo": ["", "碳 交易", 'q "x" \\'][trade_id % 3]}
            if trade_id % 9 == 0:  # a refused last leg: nothing of the event may stay
                bad = [*legs, c.PostHold(buy_hold, 10**12)]
                before = state_digest(w.s)
                out = w.run([c.Request("exchange:CEA.continuous", c.Event("trade", tuple(bad)), f"w:{w.n}:bad",
                                       meta)])
                assert isinstance(out, Rejection) and state_digest(w.s) == before, out
            out = w.run([c.Request("exchange:CEA.continuous", c.Event("trade", tuple(legs)), f"w:{w.n}", meta)])
            assert not isinstance(out, Rejection), out
            paid += n
            fee_paid += fb
            if round_ % 2:
                t1_locks.append(out[0].seq)
        for h in (sell_hold, buy_hold):
            if w.s.holds[h].pending:
                one(c.VoidHold(h), {"why": "order ended"})
        while freezes:
            one(c.VoidHold(freezes.pop()), {"why": "freeze lifted"})
        if round_ % 5 == 4:
            while t1_locks:
                one(c.VoidHold(t1_locks.pop(0)), {"why": "next session"})
        if round_ % 6 == 5:  # a v1 trim between events, of a sell hold on units
            h = one(c.CreateHold("order", holding[seller], clearing, "CEA", 3)).seq
            one(c.TrimHold(h, 1))
            one(c.VoidHold(h))
    return w


def record(w: _World) -> dict[str, Any]:
    groups = []
    probe = LedgerState()
    for (ts, group), out in zip(w.groups, w.outcomes, strict=True):
        with contextlib.suppress(Rejection):
            probe.apply_linked(group, ts)
        probe.forget_journal()
        row: dict[str, Any] = {"ts": ts}
        if isinstance(out, Rejection):
            row["refused"] = out.code
        else:
            row["entries"] = [e.hash.hex() for e in out]
            v2 = [e.leaf.hex() for e in out if e.type == "event"]
            if v2:
                row["leaves"] = v2
                row["meta"] = [e.meta.decode() for e in out if e.type == "event"]
                row["state"] = state_digest(probe)
        groups.append(row)
    return {"seed": 20261201, "groups": groups, "final": {"head_seq": w.s.head.seq, "head_hash": w.s.head.hash.hex(),
                                                          "state": state_digest(w.s)}}


def load() -> dict[str, Any]:
    return json.loads(VECTORS.read_text(encoding="utf-8"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    data = record(build())
    if args.write:
        VECTORS.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    events = sum(len(g.get("leaves", ())) for g in data["groups"])
    print(f"{len(data['groups'])} groups, {events} version-2 entries, head {data['final']['head_seq']}")


if __name__ == "__main__":
    main()
