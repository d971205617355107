"""Shared steps of the transparency tests: a log of many entries, Go from Debian, a real server."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx

from exchange.core.database import asyncpg_dsn
from ledger import commands as c
from ledger.writer import LedgerWriter
from tests.debian import apt_install
from tests.system.server import free_port

GO_DIR = Path(__file__).parent / "go"
GOPATH = "/usr/share/gocode"  # where Debian's golang-*-dev packages put their sources
DEBIAN_PACKAGES = ("golang-go", "golang-golang-x-mod-dev")


def write_entries(db_url: str, n: int, prefix: str = "tlog") -> None:
    """``n`` ledger entries (account openings) through a bare writer, in batches as the writer groups them.

    The tree hook is not attached: the server builds the tiles of these entries when it starts.
    """
    async def run() -> None:
        writer = LedgerWriter(asyncpg_dsn(db_url))
        await writer.start()
        try:
            for start in range(0, n, 500):
                await asyncio.gather(*(writer.submit(c.Request("tlog-test", c.OpenAccount(f"{prefix}-{i}", "holding"),
                                                               f"{prefix}-{i}"))
                                       for i in range(start, min(n, start + 500))))
        finally:
            await writer.stop()

    asyncio.run(run())


def ensure_go() -> str:
    """The `go` binary, with golang.org/x/mod in GOPATH: installed from Debian when missing (as root)."""
    have = shutil.which("go") and (Path(GOPATH) / "src/golang.org/x/mod/sumdb/tlog").is_dir()
    if not have:
        apt_install(DEBIAN_PACKAGES)
    go = shutil.which("go")
    assert go, "go is not installed and could not be installed from Debian"
    return go


def go_run(program: str, *args: str, cache: Path) -> subprocess.CompletedProcess[str]:
    """Run a Go program of tests/transparency/go against golang.org/x/mod from Debian (GOPATH mode, offline)."""
    go = ensure_go()
    env = {**os.environ, "GO111MODULE": "off", "GOPATH": GOPATH, "GOCACHE": str(cache), "GOFLAGS": "",
           "GOPROXY": "off", "CGO_ENABLED": "0"}
    return subprocess.run([go, "run", str(GO_DIR / program), *args], env=env, capture_output=True, text=True,
                          timeout=600)


class WitnessProc:
    def __init__(self, root: Path, name: str, log_vkey: str) -> None:
        self.root, self.name, self.port = root, name, free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.state = root / "state.json"
        self.log = root / "witness.log"
        base = [sys.executable, "-m", "api.cli", "witness", "--key-file", str(root / "witness.key"),
                "--name", name, "--log", log_vkey, "--state", str(self.state)]
        self.vkey = subprocess.run([*base, "--print-key"], capture_output=True, text=True, check=True,
                                   timeout=60).stdout.strip()
        self.proc = subprocess.Popen([*base, "--port", str(self.port)], stdout=open(self.log, "ab"),  # noqa: SIM115
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert self.proc.poll() is None, self.log.read_text()
            assert time.monotonic() < deadline, "witness did not start"
            time.sleep(0.1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=20)
