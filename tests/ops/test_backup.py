"""Disaster-recovery drill with real processes: load, back up, more load with WAL archiving, lose the data dir,
restore (to the end of the WAL and to a time in between), verify; a restore without the WAL is refused."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest

from tests.system.server import admit, free_port


class Registry:
    """`envx` on its own embedded PostgreSQL in `data`, archiving its WAL into `wal`."""

    def __init__(self, root: Path) -> None:
        self.data, self.wal = root / "data", root / "wal"
        self.port = free_port()
        self.env = {**os.environ, "ENVX_DATA_DIR": str(self.data), "ENVX_WAL_ARCHIVE_DIR": str(self.wal),
                    "ENVX_MAKER_CHECKER": "false", "ENVX_SCHEDULER": "false", "ENVX_LOG_LEVEL": "WARNING",
                    "ENVX_CHECKPOINT_INTERVAL_SECONDS": "0"}
        self.env.pop("ENVX_DATABASE_URL", None)
        self.proc: subprocess.Popen[str] | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run([sys.executable, "-m", "api.cli", *args], env=self.env, capture_output=True,
                             text=True, timeout=300)
        if check:
            assert out.returncode == 0, out.stderr[-3000:]
        return out

    def serve(self) -> subprocess.Popen[str]:
        self.proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(self.port)],
                                     env=self.env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self.proc
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                return self.proc
            time.sleep(0.2)
        raise AssertionError("envx serve did not come up")

    def stop(self) -> None:
        assert self.proc is not None
        pid_file = self.data / "pg" / "postmaster.pid"
        postmaster = int(pid_file.read_text().split()[0]) if pid_file.exists() else None
        self.proc.send_signal(signal.SIGTERM)
        self.proc.communicate(timeout=60)
        assert self.proc.returncode == 0
        # envx asked its PostgreSQL to stop; the drill's next step reuses the socket directory, so wait
        # (bounded) until that server has exited, not merely been told to (a slow machine lags here).
        deadline = time.monotonic() + 60
        while postmaster is not None and time.monotonic() < deadline:
            try:
                os.kill(postmaster, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            assert postmaster is None, f"PostgreSQL {postmaster} still runs 60 s after envx stopped"


def _switch_wal(pgdata: Path) -> None:
    """Close the current WAL segment so the archive has it (what archive_timeout does within 60 s)."""
    lines = (pgdata / "postmaster.pid").read_text().splitlines()
    port, socket_dir = int(lines[3]), lines[4]

    async def run() -> None:
        conn = await asyncpg.connect(host=socket_dir, port=port, user="postgres", database="envx")
        try:
            await conn.execute("SELECT pg_switch_wal()")
        finally:
            await conn.close()

    import asyncio

    asyncio.run(run())


def deposit(http: httpx.Client, op: str, pid: int, n: int) -> None:
    r = http.post("/v1/cash/deposits", json={"participant_id": pid, "amount": "100.00", "bank_reference": f"b{n}"},
                  headers={"Authorization": f"Bearer {op}", "Idempotency-Key": f"dep-{n}"})
    assert r.status_code == 201, r.text


def cash(http: httpx.Client, token: str) -> str:
    r = http.get("/v1/holdings", headers={"Authorization": f"Bearer {token}"})
    return next(b["posted"] for b in r.json()["balances"] if b["instrument"] == "CNY")


@pytest.mark.slow
def test_disaster_recovery_drill(own_tmp: Path) -> None:
    tmp_path = own_tmp
    reg = Registry(tmp_path)
    op = json.loads(reg.cli("admin", "create-key", "--name", "drill operator").stdout)["api_key"]
    reg.serve()
    with httpx.Client(base_url=reg.url, timeout=30) as http:
        pid, token = admit(http, op, "成都某企业", "enterprise", "drill")
        for n in range(3):
            deposit(http, op, pid, n)
        # a backup taken while the registry serves
        made = reg.cli("backup", str(tmp_path / "bk"))
        manifest = json.loads(made.stdout)
        assert "NOT in the backup" in made.stderr
        assert not list((tmp_path / "bk").rglob("signing.key")) and not list((tmp_path / "bk").rglob("credential.key"))
        assert manifest["public_keys"] and not any("PRIVATE" in k for k in manifest["public_keys"])
        for n in range(3, 6):
            deposit(http, op, pid, n)
        time.sleep(1.5)
        between = datetime.now(UTC)
        time.sleep(1.5)
        for n in range(6, 9):
            deposit(http, op, pid, n)
        assert cash(http, token) == "900.00"
        time.sleep(0.5)  # the checkpoint of the last batch (interval 0)
        published = http.get("/v1/ledger/checkpoint").text  # the signed note, as an outsider keeps it
    _switch_wal(reg.data / "pg")
    reg.stop()
    (tmp_path / "published.txt").write_text(published)
    # the operator's keystore: the signing and credential keys are kept apart from backups
    vault = tmp_path / "vault"
    vault.mkdir()
    for name in ("signing.key", "credential.key"):
        shutil.copy2(reg.data / name, vault / name)

    def lose_data_dir() -> None:
        shutil.rmtree(reg.data)
        reg.data.mkdir()
        for name in ("signing.key", "credential.key"):
            shutil.copy2(vault / name, reg.data / name)

    # 1. the base backup alone, without the WAL: behind the last published checkpoint (the archive keeps a copy
    #    of it, so losing the data dir did not lose it): the restore says so, and envx serve refuses to start.
    lose_data_dir()
    r = reg.cli("restore", str(tmp_path / "bk"), "--no-wal", check=False)
    assert r.returncode == 3, r.stderr
    assert json.loads(r.stdout)["level"] is False and "refuse" in r.stderr
    refused = reg.serve()
    refused.wait(timeout=60)
    assert refused.returncode != 0
    assert "refusing to start" in refused.stderr.read()  # type: ignore[union-attr]

    # 2. to a time in between: a consistent, verifiable database with the first six deposits, but behind what
    #    was published: refused too.
    lose_data_dir()
    r = reg.cli("restore", str(tmp_path / "bk"), "--until", between.isoformat(), check=False)
    assert r.returncode == 3, r.stderr
    assert reg.cli("verify").returncode == 0
    assert reg.cli("verify", "--checkpoint", str(tmp_path / "published.txt"), check=False).returncode != 0

    # 3. the base backup and the whole WAL archive: level with the published checkpoint; nothing acknowledged
    #    is lost, the full audit passes and proves the published tree is contained.
    lose_data_dir()
    r = reg.cli("restore", str(tmp_path / "bk"))
    restored = json.loads(r.stdout)
    assert restored["level"] is True and restored["last_published_checkpoint_size"] == int(published.splitlines()[1])
    verified = reg.cli("verify", "--checkpoint", str(tmp_path / "published.txt"))
    assert verified.returncode == 0, verified.stdout
    reg.serve()
    with httpx.Client(base_url=reg.url, timeout=30) as http:
        assert http.get("/health").json()["status"] == "ok"
        assert cash(http, token) == "900.00"
        deposit(http, op, pid, 9)  # and it takes writes again
        assert cash(http, token) == "1000.00"
    reg.stop()
