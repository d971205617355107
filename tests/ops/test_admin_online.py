"""Administration of a running server (issue #19): a new operator key and a rotation of the checkpoint signing
key through `envx admin ... --server URL`, keeping four-eyes; the database-access bootstrap says what to do
instead when the server holds the writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx

from tests.system.server import Server


class FourEyesServer(Server):
    @property
    def env(self) -> dict[str, str]:
        return {**super().env, "ENVX_MAKER_CHECKER": "true"}


def _cli(srv: Server, *args: str, key: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in srv.env.items() if k != "ENVX_API_KEY"}
    if key is not None:
        env["ENVX_API_KEY"] = key
    return subprocess.run([sys.executable, "-m", "api.cli", *args], env=env, capture_output=True, text=True,
                          input=stdin, timeout=120)


def test_operator_key_and_key_rotation_against_a_running_server(db_url: str, tmp_path: Path) -> None:
    srv = FourEyesServer(db_url, tmp_path)
    maker = json.loads(srv.cli("admin", "create-key", "--name", "运营者甲"))["api_key"]
    checker = json.loads(srv.cli("admin", "create-key", "--name", "运营者乙"))["api_key"]
    srv.start()
    try:
        # The bootstrap needs the writer: refused while serving, and it says how to do it instead.
        offline = _cli(srv, "admin", "create-key", "--name", "运营者丙")
        assert offline.returncode == 1 and "--server" in offline.stderr
        assert _cli(srv, "admin", "create-key", "--server", srv.url, "--name", "x").returncode == 1  # no key
        proposed = _cli(srv, "admin", "create-key", "--server", srv.url, "--name", "运营者丙",
                        "--client-id", "new-op-1", key=maker)
        assert proposed.returncode == 0, proposed.stderr
        action = json.loads(proposed.stdout)
        assert action["status"] == "pending" and maker not in proposed.stdout
        first = action["enrollment"]["first_half"]
        again = json.loads(_cli(srv, "admin", "create-key", "--server", srv.url, "--name", "运营者丙",
                                "--client-id", "new-op-1", key=maker).stdout)
        assert again["id"] == action["id"]  # a retry is the same proposal
        own = _cli(srv, "admin", "approve", str(action["id"]), "--server", srv.url, key=maker)
        assert own.returncode == 1 and "403" in own.stderr  # never the proposer
        done = _cli(srv, "admin", "approve", str(action["id"]), "--server", srv.url, key=checker)
        assert done.returncode == 0, done.stderr
        second = json.loads(done.stdout)["enrollment"]["second_half"]
        enrolled = _cli(srv, "admin", "enroll", "--server", srv.url, stdin=f"{first}\n{second}\n")
        assert enrolled.returncode == 0, enrolled.stderr
        token = json.loads(enrolled.stdout)["key"]["token"]
        who = httpx.get(f"{srv.url}/v1/whoami", headers={"Authorization": f"Bearer {token}"}).json()
        assert who["kind"] == "operator" and who["name"] == "运营者丙"

        # The checkpoint key, rotated online: proposed by one operator, approved by another.
        [old] = [k["verifier_key"] for k in httpx.get(f"{srv.url}/v1/ledger/keys").json()]
        rot = _cli(srv, "admin", "rotate-key", "--server", srv.url, "--reason", "年度轮换", key=token)
        assert rot.returncode == 0, rot.stderr
        rid = json.loads(rot.stdout)["id"]
        assert len(httpx.get(f"{srv.url}/v1/ledger/keys").json()) == 1
        ok = _cli(srv, "admin", "approve", str(rid), "--server", srv.url, key=checker)
        assert ok.returncode == 0, ok.stderr
        result = json.loads(ok.stdout)["result"]
        keys = httpx.get(f"{srv.url}/v1/ledger/keys").json()
        assert [k["verifier_key"] for k in keys] == [old, result["new_key"]]
    finally:
        srv.stop()
    env = {**os.environ, **srv.env}
    out = subprocess.run([sys.executable, "-m", "api.cli", "verify"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
