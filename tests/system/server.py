"""Run `envx serve` as a real process on loopback, for crash tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def admit(http: httpx.Client, operator: str, name: str, kind: str, key: str) -> tuple[int, str]:
    """On these servers (maker-checker off) one operator admits a participant and receives both halves of
    its enrollment code; the participant enrolls with them for its own key. Returns (id, token)."""
    p = http.post("/v1/participants", json={"name": name, "kind": kind},
                  headers={"Authorization": f"Bearer {operator}", "Idempotency-Key": f"{key}-p"})
    assert p.status_code == 201, p.text
    code = p.json()["enrollment"]
    k = http.post("/v1/enrollments", json={"first_half": code["first_half"], "second_half": code["second_half"]},
                  headers={"Idempotency-Key": f"{key}-e"})
    assert k.status_code == 201, k.text
    return p.json()["id"], k.json()["key"]["token"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    def __init__(self, db_url: str, data_dir: Path) -> None:
        self.db_url = db_url
        self.data_dir = data_dir
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir / "server.log"

    @property
    def env(self) -> dict[str, str]:
        # One operator drives these servers: deposits and definitions act at once (no second approver).
        return {**os.environ, "ENVX_DATABASE_URL": self.db_url, "ENVX_DATA_DIR": str(self.data_dir),
                "ENVX_LOG_LEVEL": "WARNING", "ENVX_MAKER_CHECKER": "false"}

    def cli(self, *args: str) -> str:
        out = subprocess.run([sys.executable, "-m", "api.cli", *args], env=self.env, capture_output=True,
                             timeout=120, check=True)
        return out.stdout.decode()

    def operator_key(self) -> str:
        key: str = json.loads(self.cli("admin", "create-key", "--name", "crash-test operator"))["api_key"]
        return key

    def start(self, *extra: str) -> None:
        """`envx serve` on this port; `extra`: more arguments (e.g. "--demo")."""
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "api.cli", "serve", "--port", str(self.port), *extra], env=self.env,
            stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)  # noqa: SIM115
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.1)
        raise RuntimeError("server did not become healthy")

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
