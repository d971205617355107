"""Real `envx witness` processes cosign the registry's checkpoints under load; a .tlog-proof of a real
retirement verifies offline with `envx verify-receipt` and the witness quorum; a second database signing
with the same key is refused by every witness and the registry reports it."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from litestar.testing import TestClient
from pydantic import SecretStr

from api.app import create_app
from exchange.core.database import with_database
from exchange.core.settings import Settings
from ledger import note
from ledger.cosignature import WitnessPolicy
from ledger.encoding import decode_entry
from ledger.tlog_proof import main as verify_main
from ledger.tlog_proof import parse_tlog_proof, verify_tlog_proof
from tests.helpers import Api, bootstrap_operator
from tests.ledger_verifiable.helpers import admin_sql, world
from tests.transparency.helpers import WitnessProc

ORIGIN = "envx.test/registry"


def _settings(base: Settings, data_dir: Path, skey: str, ws: list[WitnessProc], quorum: int) -> Settings:
    return base.model_copy(update={
        "data_dir": data_dir, "signing_key": SecretStr(skey), "witness_quorum": quorum, "witness_timeout_seconds": 10.0,
        "witnesses": ", ".join(f"{w.vkey} {w.url}" for w in ws)})


def _witness_states(client: TestClient) -> list[dict]:
    return client.get("/v1/ledger/witnesses").json()["witnesses"]


def _wait(cond, what: str, timeout: float = 30.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_witnesses_cosign_proofs_verify_and_a_second_database_is_refused(
        db_url: str, pg_admin_url: str, template_db: str, settings: Settings, tmp_path: Path,
        registry_key: tuple[str, str], witnesses: list[WitnessProc]) -> None:
    skey, vkey = registry_key
    s1 = _settings(settings, tmp_path / "reg1", skey, witnesses, quorum=2)
    policy = WitnessPolicy.of([w.vkey for w in witnesses], 3)
    with TestClient(create_app(s1, db_url), raise_server_exceptions=False, timeout=60) as client:
        api = Api(client, bootstrap_operator(client))
        w = world(api, transfers=3)
        seller = Api(client, w["seller"]["token"])

        # Load: transfers from several threads while checkpoints are published and cosigned.
        def move(i: int) -> int:
            r = seller.post("/v1/transfers", {"to_participant": w["buyer"]["id"], "instrument": "FCT-SM",
                                              "quantity": "1"}, key=f"load-{i}")
            return r.status_code
        with ThreadPoolExecutor(4) as pool:
            assert set(pool.map(move, range(40))) <= {200, 201}
        retired = seller.ok(seller.post("/v1/retirements", {"instrument": "FCT-SM", "quantity": "7",
                                                             "purpose": "voluntary", "beneficiary": "三明碳中和"}))
        seq = retired["entry"]["seq"] if isinstance(retired.get("entry"), dict) else retired.get("entry_seq",
                                                                                                   retired.get("seq"))
        assert isinstance(seq, int), retired
        head = int(client.get("/v1/ledger/head").json()["seq"])

        # Every witness cosigns the newest checkpoint; /checkpoint carries all three cosignatures.
        def all_cosigned() -> bool:
            return all(x["state"] == "ok" and x["last_cosigned_size"] >= head for x in _witness_states(client))
        _wait(all_cosigned, f"witnesses did not all cosign size {head}: {_witness_states(client)}")
        served = client.get("/checkpoint").text
        cp = note.verify_checkpoint(served, [vkey], origin=ORIGIN)
        assert cp.size >= head and policy.satisfied_by(served)
        assert set(policy.cosigners(served)) == {x.vkey for x in witnesses}
        for wp in witnesses:
            st = json.loads(wp.state.read_text())["logs"][ORIGIN]
            assert st["size"] >= head  # durable in the witness's own file

        # The retirement as a .tlog-proof, under a checkpoint the quorum cosigned.
        r = seller.get(f"/v1/ledger/entries/{seq}/tlog-proof")
        assert r.status_code == 200, r.text
        proof_text = r.text
        outsider = Api(client, w["outsider"]["token"]).get(f"/v1/ledger/entries/{seq}/tlog-proof")
        assert outsider.status_code == 404  # as for the JSON receipt: the entry's bytes are not for others
        cosigned_size = cp.size

    # Offline: `envx verify-receipt` with the log key and the witness quorum (no server, no database).
    proof = tmp_path / f"entry-{seq}.tlog-proof"
    proof.write_text(proof_text)
    witness_args = [a for x in witnesses for a in ("--witness", x.vkey)]
    out = subprocess.run([sys.executable, "-m", "api.cli", "verify-receipt", str(proof), "--key", vkey,
                          *witness_args, "--quorum", "2"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.startswith("OK "), out.stdout + out.stderr
    assert "cosigned by 3 of 3 witnesses (quorum 2)" in out.stdout
    v = verify_tlog_proof(proof_text, [vkey], policy=policy, origin=ORIGIN)
    assert v.index == seq - 1 and decode_entry(v.entry)["type"].startswith("retire"), decode_entry(v.entry)
    # A quorum the witnesses did not meet, or witnesses nobody trusts: refused.
    other = WitnessPolicy.of([note_vkey for note_vkey in _foreign_witness_keys()], 1)
    with pytest.raises(Exception, match="quorum_not_met"):
        verify_tlog_proof(proof_text, [vkey], policy=other)
    # One changed byte anywhere fails it (all three cosignatures required, so none may be broken either).
    data = proof_text.encode()
    args = ["--key", vkey, *witness_args, "--quorum", "3"]
    bad = tmp_path / "bad.tlog-proof"
    passed = []
    for i in range(len(data)):
        bad.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])
        if verify_main([str(bad), *args]) == 0:
            passed.append(i)
    assert passed == [], f"changed bytes at {passed} still verify"
    assert verify_main([str(proof), *args]) == 0
    assert parse_tlog_proof(proof_text).index == seq - 1

    # A second database signing with the same key (a fork, or a restored old copy run elsewhere):
    # every witness refuses it, the registry reports it, and no witness state moves back.
    second = f"{urlsplit(db_url).path.lstrip('/')}_second"
    admin_sql(pg_admin_url, f'CREATE DATABASE "{second}" TEMPLATE "{template_db}"')
    s2 = _settings(settings, tmp_path / "reg2", skey, witnesses, quorum=2)
    with TestClient(create_app(s2, with_database(pg_admin_url, second)), raise_server_exceptions=False,
                    timeout=60) as client2:
        token2 = bootstrap_operator(client2)
        _wait(lambda: all(x["state"] == "rollback_refused" for x in _witness_states(client2)),
              f"the witnesses did not refuse the second database: {_witness_states(client2)}")
        health = client2.get("/health").json()  # reported, and writes go on
        assert (health["status"], health["witnessing"]) == ("ok", "not_ok"), health
        assert set(health["witness_problems"].values()) == {"rollback_refused"}, health
        detail = _witness_states(client2)[0]["detail"]
        assert f"cosigned size {cosigned_size}" in detail or "cosigned size" in detail
        assert not WitnessPolicy.of([x.vkey for x in witnesses], 1).satisfied_by(client2.get("/checkpoint").text)
        pending = Api(client2, token2).get("/v1/ledger/entries/1/tlog-proof")
        assert pending.status_code == 503 and pending.json()["code"] == "checkpoint_pending"
    for wp in witnesses:
        assert json.loads(wp.state.read_text())["logs"][ORIGIN]["size"] >= head
        assert "REFUSED add-checkpoint" in wp.log.read_text() and "ROLLBACK" in wp.log.read_text()
    admin_sql(pg_admin_url, f'DROP DATABASE IF EXISTS "{second}" WITH (FORCE)')


def _foreign_witness_keys() -> list[str]:
    from ledger.cosignature import generate_cosigner_key

    return [generate_cosigner_key("stranger.test")[1]]
