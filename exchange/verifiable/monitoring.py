"""`envx monitor URL`: follow a remote envx log through its C2SP tiles and report any inconsistency.

Each poll: fetch ``/checkpoint``, verify the log's signature (and, with ``--witness``/``--quorum``, the
cosignatures), fetch the hash tiles that the new tree's root and the consistency proof from the last
checkpoint seen need, recompute the root from them, and check that the new tree extends the old one.
The last checkpoint seen is kept in ``--state`` (written atomically), so the check spans runs and
machines: a bank points it at the registry, and at any mirror, with one state file.

It reports, as a log line and an exit code: ``SPLIT VIEW`` (another checkpoint of a size already seen,
with another root), ``ROLLBACK`` (a smaller tree than one seen), ``FORK`` (a larger tree that does not
extend the one seen), ``BAD TILES`` (tiles that do not hash to the signed root) -- exit 1; a checkpoint
that does not verify or lacks the witness quorum -- exit 2. The offending checkpoint is printed whole:
it is signed by the log, so it is the evidence.
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import time
from pathlib import Path

import httpx

from ledger import merkle, note
from ledger.checkpoints import write_latest_file
from ledger.cosignature import WitnessPolicy
from ledger.tiles import (
    TILE_HEIGHT,
    TILE_WIDTH,
    Tile,
    TileId,
    node_getter_from_tiles,
    tiles_for_consistency,
    tiles_for_root,
    tiles_for_size,
)

log = logging.getLogger("envx.monitor")


class Inconsistent(Exception):
    def __init__(self, kind: str, message: str, exit_code: int = 1) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.exit_code = exit_code


def _load(path: Path) -> tuple[int, bytes, str] | None:
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    return int(d["size"]), base64.b64decode(d["root"]), d["checkpoint"]


def check_once(http: httpx.Client, base: str, keys: list[str], policy: WitnessPolicy | None,
               state_file: Path) -> note.Checkpoint:
    """One poll; raises :class:`Inconsistent`; on success the state file holds the new checkpoint."""
    text = http.get(f"{base}/checkpoint").raise_for_status().text
    try:
        cp = note.verify_checkpoint(text, keys)
    except note.NoteError as exc:
        raise Inconsistent("UNVERIFIED", f"the checkpoint does not verify with the log's key ({exc})", 2) from None
    if policy is not None and len(policy.cosigners(text)) < policy.quorum:
        raise Inconsistent("UNWITNESSED", f"checkpoint {cp.size} is cosigned by {len(policy.cosigners(text))} "
                                          f"trusted witnesses, fewer than {policy.quorum}", 2)
    seen = _load(state_file)
    if seen is not None:
        old_size, old_root, old_text = seen
        if cp.size == old_size and cp.root_hash != old_root:
            raise Inconsistent("SPLIT VIEW", f"two checkpoints of size {cp.size} with different roots, both signed "
                                             f"by the log:\n{old_text}\n---\n{text}")
        if cp.size < old_size:
            raise Inconsistent("ROLLBACK", f"the log shows size {cp.size} after size {old_size} was seen:\n{text}")
    else:
        old_size, old_root = 0, merkle.EMPTY_ROOT
    # Every hash tile that covers leaves not seen before (and what the proofs need): each full one must
    # hash to its entry in the tile above, the partial ones (the right edge) to the signed root.
    wanted = {t for t in tiles_for_size(cp.size) if (t.index + 1) << (TILE_HEIGHT * (t.level + 1)) > old_size}
    wanted |= set(tiles_for_root(cp.size))
    if 0 < old_size < cp.size:
        wanted |= set(tiles_for_consistency(old_size, cp.size))
    tiles = {}
    for tid in wanted:
        r = http.get(f"{base}/{tid.path()}")
        if r.status_code != 200 or len(r.content) != tid.width * merkle.HASH_SIZE:
            raise Inconsistent("BAD TILES", f"{tid.path()} answered {r.status_code} with {len(r.content)} bytes")
        tiles[tid.key] = Tile(tid.level, tid.index, r.content)
    for (level, index), t in tiles.items():
        parent = tiles.get((level + 1, index // TILE_WIDTH))
        if (t.is_full and parent is not None and parent.width > index % TILE_WIDTH
                and merkle.root([t.hash_at(i) for i in range(TILE_WIDTH)]) != parent.hash_at(index % TILE_WIDTH)):
            raise Inconsistent("BAD TILES", f"{TileId(level, index, TILE_WIDTH).path()} does not hash to its "
                                                f"entry in the tile above")
    get = node_getter_from_tiles(tiles)
    if merkle.tree_root(cp.size, get) != cp.root_hash:
        raise Inconsistent("BAD TILES", f"the tiles do not hash to the root of checkpoint {cp.size}")
    if 0 < old_size < cp.size:
        proof = merkle.consistency_proof(old_size, cp.size, get)
        if not merkle.verify_consistency(old_size, cp.size, old_root, cp.root_hash, proof):
            raise Inconsistent("FORK", f"size {cp.size} does not extend size {old_size} seen before:\n{text}")
    if seen is None or cp.size > old_size:
        write_latest_file(state_file, json.dumps({"size": cp.size, "root": base64.b64encode(cp.root_hash).decode(),
                                                  "checkpoint": text}) + "\n")
    return cp


def run_monitor(args: argparse.Namespace) -> int:
    base = args.url.rstrip("/")
    try:
        policy = WitnessPolicy.of(args.witness, args.quorum) if args.witness or args.quorum else None
        keys = [note.Verifier.from_key_string(k) for k in args.key]
    except note.InvalidKeyError as exc:
        print(f"envx monitor: {exc}")
        return 2
    state = Path(args.state)
    with httpx.Client(timeout=30) as http:
        while True:
            try:
                cp = check_once(http, base, [k.key_string() for k in keys], policy, state)
            except Inconsistent as exc:
                log.critical("envx monitor %s: %s", base, exc)
                print(f"envx monitor {base}: {exc}", flush=True)
                return exc.exit_code
            except httpx.HTTPError as exc:
                log.warning("envx monitor %s: unreachable: %s", base, exc)
                if args.once:
                    print(f"envx monitor {base}: UNREACHABLE: {exc}", flush=True)
                    return 2
            else:
                print(f"envx monitor {base}: OK {cp.origin} size {cp.size} "
                      f"root {base64.b64encode(cp.root_hash).decode()}", flush=True)
            if args.once:
                return 0
            time.sleep(args.interval)
