"""A database restored from an older backup (`envx backup` / `envx restore`) and served with the registry's key
is refused by every `envx witness` (409: they cosigned a larger tree), and the registry says so -- health
(witnessing not_ok, writes go on), a CRITICAL log line, the envx_witness_refused metric -- while no witness
moves back. Real processes: the registry on its embedded PostgreSQL, two witnesses."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import httpx
import pytest

from ledger import note
from ledger.cosignature import WitnessPolicy
from tests.ops.test_backup import Registry, deposit
from tests.system.server import admit
from tests.transparency.helpers import WitnessProc

ORIGIN = "envx.test/registry"


def _wait(cond, what: str, timeout: float = 60.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def _witnesses(http: httpx.Client) -> list[dict]:
    return http.get("/v1/ledger/witnesses").json()["witnesses"]


@pytest.mark.slow
def test_a_database_restored_from_an_older_backup_is_refused_by_every_witness(own_tmp: Path) -> None:
    skey, vkey = note.generate_signer_key(ORIGIN)
    ws = [WitnessProc(own_tmp / f"w{i}", f"witness{i}.test", vkey) for i in (1, 2)]
    try:
        witnessed = {"ENVX_ORIGIN": ORIGIN, "ENVX_SIGNING_KEY": skey, "ENVX_WITNESS_QUORUM": "2",
                     "ENVX_WITNESSES": ", ".join(f"{w.vkey} {w.url}" for w in ws),
                     "ENVX_CHECKPOINT_INTERVAL_SECONDS": "0.2"}
        reg = Registry(own_tmp / "a")
        reg.env.update(witnessed)
        op = json.loads(reg.cli("admin", "create-key", "--name", "drill operator").stdout)["api_key"]
        reg.serve()
        with httpx.Client(base_url=reg.url, timeout=30) as http:
            pid, _ = admit(http, op, "成都某企业", "enterprise", "drill")
            deposit(http, op, pid, 0)
            reg.cli("backup", str(own_tmp / "bk"))  # the older backup
            for n in range(1, 6):
                deposit(http, op, pid, n)
            head = int(http.get("/v1/ledger/head").json()["seq"])
            _wait(lambda: all(x["state"] == "ok" and x["last_cosigned_size"] >= head for x in _witnesses(http)),
                  f"the witnesses did not cosign size {head}")
            health = http.get("/health").json()
            assert health["witnessing"] == "ok" and health["witness_problems"] == {}, health
            assert WitnessPolicy.of([w.vkey for w in ws], 2).satisfied_by(http.get("/checkpoint").text)
        reg.stop()
        cosigned = {w.name: json.loads(w.state.read_text())["logs"][ORIGIN]["size"] for w in ws}
        assert min(cosigned.values()) >= head

        # The backup restored where the newer checkpoints are not known (another machine, a fresh data dir):
        # level with its own checkpoint, so envx serves it -- but the witnesses remember.
        old = Registry(own_tmp / "b")
        old.env.update(witnessed)
        old.env.pop("ENVX_WAL_ARCHIVE_DIR")
        old.data.mkdir(parents=True)
        shutil.copy2(reg.data / "credential.key", old.data / "credential.key")  # the operator's key store
        restored = old.cli("restore", str(own_tmp / "bk"), "--no-wal")
        assert json.loads(restored.stdout)["level"] is True, restored.stdout
        proc = old.serve()
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        with httpx.Client(base_url=old.url, timeout=30) as http:
            served = note.verify_checkpoint(http.get("/checkpoint").text, [vkey], origin=ORIGIN)
            assert served.size < head  # behind what was witnessed
            _wait(lambda: all(x["state"] == "rollback_refused" for x in _witnesses(http)),
                  f"the witnesses did not refuse the restored database: {_witnesses(http)}")
            health = http.get("/health").json()
            assert health["status"] == "ok" and health["witnessing"] == "not_ok", health
            assert health["witness_problems"] == {w.name: "rollback_refused" for w in ws}, health
            metrics = http.get("/metrics", headers={"Authorization": f"Bearer {op}"}).text
            for w in ws:
                assert f'envx_witness_refused{{reason="rollback",witness="{w.name}"}} 1.0' in metrics, metrics
            deposit(http, op, pid, 100)  # writes go on
            assert not WitnessPolicy.of([w.vkey for w in ws], 1).satisfied_by(http.get("/checkpoint").text)
            # What needs the quorum is not given under an unwitnessed checkpoint.
            seq = int(http.get("/v1/ledger/head").json()["seq"])
            r = http.get(f"/v1/ledger/entries/{seq}/receipt", headers={"Authorization": f"Bearer {op}"})
            assert r.status_code == 503 and r.json()["code"] == "checkpoint_pending", r.text
        old.proc.send_signal(15)  # type: ignore[union-attr]
        _, err = old.proc.communicate(timeout=60)  # type: ignore[union-attr]
        assert "rollback_refused" in err and "CRITICAL" in err, err[-3000:]
        for w in ws:
            assert json.loads(w.state.read_text())["logs"][ORIGIN]["size"] == cosigned[w.name]  # never moved back
            text = w.log.read_text()
            assert "REFUSED add-checkpoint" in text and "ROLLBACK" in text, text[-2000:]
    finally:
        for w in ws:
            w.stop()
