"""The version-4 known-answer vectors: the version-2 event workload (tests/ledger/event_workload.py) with every
event blinded with its amounts (ledger/blinding.py `FIELDS[4]`) under a fixed key.

`tests/data/ledger_blinded_v4_vectors.json` holds the key, a few commitments of the primitive (accounts, holds
and each amount field), and for every group of the workload the entry hashes (or the refusal) and, for each
version-4 entry, its full leaf bytes, its metadata, its openings and the state digest after it. Blinding changes
the bytes only: the state after each group equals the version-2 workload's but for the chain head.
`tests/ledger/test_blinding_v4.py` rebuilds it and insists on the same bytes. The v1, v2 and v3 vector files stay
as they are.

Regenerate (only for a deliberate change of the version-4 encoding, which needs a new entry version):

    PYTHONPATH=$PWD python -m tests.ledger.blinded_v4_workload --write
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from ledger import blinding
from ledger import commands as c
from ledger.state import Entry, LedgerState, Rejection
from tests.ledger import event_workload as ew
from tests.ledger.replay_workload import state_digest

VECTORS = Path(__file__).resolve().parent.parent / "data" / "ledger_blinded_v4_vectors.json"
KEY = hashlib.sha256(b"envx blinded entry vectors, version 4").digest()
Group = list[c.Request]


def blinded(group: Group) -> Group:
    """The group with each of its events blinded, amounts too (version 4)."""
    return [dataclasses.replace(r, command=dataclasses.replace(r.command, blinded=True, blind_amounts=True))
            if isinstance(r.command, c.Event) else r for r in group]


def groups(seed: int) -> list[tuple[int, Group]]:
    return [(ts, blinded(g)) for ts, g in ew.build(seed).groups]


def run(seed: int) -> tuple[LedgerState, list[list[Entry] | Rejection]]:
    s = LedgerState()
    s.salts = blinding.KeyedSalts(KEY)
    outcomes: list[list[Entry] | Rejection] = []
    for ts, group in groups(seed):
        try:
            outcomes.append(s.apply_linked(group, ts))
        except Rejection as rej:
            outcomes.append(rej)
        s.forget_journal()
    return s, outcomes


def primitives() -> list[dict[str, Any]]:
    out = []
    for field, seq, leg, value in (("debit", 1, 0, 0), ("hold", 42, 3, 7), ("amount", 7, 0, 1240300),
                                   ("released", 2**40, 63, 18800), ("remaining", 9, 2, 0),
                                   ("keep", 10, 5, 2**53 - 1)):
        salt = blinding.KeyedSalts(KEY).salt(seq, leg, field)
        out.append({"field": field, "seq": seq, "leg": leg, "value": value, "salt": salt.hex(),
                    "commitment": blinding.commitment(field, salt, value)})
    return out


def record(seed: int = 20261201) -> dict[str, Any]:
    final, outcomes = run(seed)
    rows = []
    probe = LedgerState()
    probe.salts = blinding.KeyedSalts(KEY)
    for (ts, group), out in zip(groups(seed), outcomes, strict=True):
        with contextlib.suppress(Rejection):
            probe.apply_linked(group, ts)
        probe.forget_journal()
        row: dict[str, Any] = {"ts": ts}
        if isinstance(out, Rejection):
            row["refused"] = out.code
        else:
            row["entries"] = [e.hash.hex() for e in out]
            v4 = [e for e in out if e.openings is not None]
            if v4:
                row["leaves"] = [e.leaf.hex() for e in v4]
                row["meta"] = [e.meta.decode() for e in v4]
                row["openings"] = [blinding.encode_openings(e.openings) for e in v4 if e.openings is not None]
                row["state"] = state_digest(probe)
        rows.append(row)
    return {"seed": seed, "key": KEY.hex(), "primitives": primitives(), "groups": rows,
            "final": {"head_seq": final.head.seq, "head_hash": final.head.hash.hex(), "state": state_digest(final)}}


def load() -> dict[str, Any]:
    return json.loads(VECTORS.read_text(encoding="utf-8"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    data = record()
    if args.write:
        if VECTORS.exists():
            raise SystemExit(f"{VECTORS} exists: a vector file is never regenerated (a change needs a new version)")
        VECTORS.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    events = sum(len(g.get("leaves", ())) for g in data["groups"])
    print(f"{len(data['groups'])} groups, {events} version-4 entries, head {data['final']['head_seq']}")


if __name__ == "__main__":
    main()
