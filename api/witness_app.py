"""`envx witness`: a C2SP tlog-witness that a bank, a court or the regulator runs with its own key.

One endpoint, ``POST /add-checkpoint`` (c2sp.org/tlog-witness); the rules are ledger/witness_state.py. The
state -- per log origin the size and root last cosigned -- is a JSON file written atomically and durably
(temporary file, fsync, rename, fsync of the directory) before the cosignature is returned, under one lock
so two requests cannot roll it back. A rollback or a fork is refused with the spec's status and logged at
CRITICAL with both sizes: that line is the evidence the operator of the witness acts on.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from litestar import Litestar, Request, Response, get, post

from ledger import note
from ledger.checkpoints import write_latest_file
from ledger.cosignature import Cosigner
from ledger.witness_state import LogState, WitnessRefusal, decide, parse_add_checkpoint

log = logging.getLogger("envx.witness")


class StateFileError(RuntimeError):
    """The witness's state file is unreadable: it must not start (it would forget what it cosigned)."""


def load_state(path: Path) -> dict[str, LogState]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StateFileError(f"cannot read the witness state {path}: {exc}") from None
    try:
        return {origin: LogState(int(v["size"]), base64.b64decode(v["root"], validate=True))
                for origin, v in data["logs"].items()}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise StateFileError(f"the witness state {path} is malformed: {exc!r}") from None


def save_state(path: Path, state: Mapping[str, LogState]) -> None:
    text = json.dumps({"logs": {o: {"size": s.size, "root": base64.b64encode(s.root).decode("ascii")}
                                for o, s in sorted(state.items())}}, indent=1) + "\n"
    write_latest_file(path, text)  # tmp + fsync + rename + fsync(dir)


@dataclass
class Witness:
    cosigner: Cosigner
    logs: dict[str, list[note.Verifier]]
    state_file: Path
    clock: Callable[[], float] = time.time
    state: dict[str, LogState] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        self.state = load_state(self.state_file)

    async def add_checkpoint(self, body: bytes) -> str:
        async with self.lock:
            req = parse_add_checkpoint(body)
            origin, text, new = decide(req, self.logs, self.state)
            line = self.cosigner.cosign(text, int(self.clock()))
            if self.state.get(origin) != new:
                await asyncio.to_thread(save_state, self.state_file, {**self.state, origin: new})
                self.state[origin] = new
            log.info("cosigned %s at size %d", origin, new.size)
            return line


def create_witness_app(witness: Witness) -> Litestar:
    @post("/add-checkpoint", status_code=200)
    async def add_checkpoint(request: Request) -> Response[bytes]:
        body = await request.body()
        try:
            line = await witness.add_checkpoint(body)
        except WitnessRefusal as exc:
            if exc.alarm:
                log.critical("REFUSED add-checkpoint from %s: %s", request.client.host if request.client else "?",
                             exc.reason)
            else:
                log.warning("refused add-checkpoint (%d): %s", exc.status, exc.reason)
            if exc.known_size is not None:
                return Response(f"{exc.known_size}\n".encode(), status_code=exc.status,
                                media_type="text/x.tlog.size")
            return Response(f"{exc.reason}\n".encode(), status_code=exc.status, media_type="text/plain")
        return Response(line.encode("utf-8"), status_code=200, media_type="text/plain")

    @get("/")
    async def info() -> dict[str, object]:
        return {"witness": witness.cosigner.verifier().key_string(),
                "logs": {o: {"size": s.size} for o, s in sorted(witness.state.items())}}

    return Litestar(route_handlers=[add_checkpoint, info], debug=False)


def parse_log_option(values: Sequence[str]) -> dict[str, list[note.Verifier]]:
    """``--log KEY`` options (C2SP vkeys of the logs' checkpoint keys; the key name is the origin)."""
    logs: dict[str, list[note.Verifier]] = {}
    for v in values:
        ver = note.Verifier.from_key_string(v)
        logs.setdefault(ver.name, []).append(ver)
    return logs
