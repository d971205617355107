"""Signing keys: loading, rotation as an entry of the log, and the checkpoint cadence."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest
from litestar.testing import TestClient
from pydantic import SecretStr

from api.app import create_app
from exchange.core.database import asyncpg_dsn
from exchange.core.settings import Settings
from exchange.verifiable.signing import SigningKeyError, load_signer
from ledger import note
from ledger.receipt import ReceiptError, verify_receipt
from ledger.verify import verify_database
from tests.helpers import Api, bootstrap_operator
from tests.ledger_verifiable.helpers import head_seq, latest_checkpoint, log_keys, world


def test_key_is_generated_once_private_and_named_for_the_origin(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, origin="envx.test/registry")
    first = load_signer(s)
    assert os.stat(tmp_path / "signing.key").st_mode & 0o777 == 0o600
    assert load_signer(s).key_id == first.key_id  # the same key on the next start
    assert "PRIVATE" not in repr(first)
    skey, vkey = note.generate_signer_key("envx.test/registry")
    env_settings = Settings(data_dir=tmp_path / "x", origin="envx.test/registry", signing_key=SecretStr(skey))
    assert load_signer(env_settings).verifier_key_string() == vkey
    assert "PRIVATE" not in repr(env_settings) and not (tmp_path / "x" / "signing.key").exists()
    with pytest.raises(SigningKeyError, match="named"):
        load_signer(Settings(data_dir=tmp_path, origin="another.example/log"))
    with pytest.raises(SigningKeyError, match="does not exist"):
        load_signer(Settings(data_dir=tmp_path, origin="envx.test/registry", signing_key_file=tmp_path / "nope"))
    (tmp_path / "bad.key").write_text("PRIVATE+KEY+garbage")
    with pytest.raises(SigningKeyError, match="cannot load"):
        load_signer(Settings(data_dir=tmp_path, origin="envx.test/registry", signing_key_file=tmp_path / "bad.key"))


def test_rotation_is_an_entry_and_old_receipts_stay_valid(db_url: str, settings: Settings, tmp_path: Path) -> None:
    def serve() -> TestClient:
        return TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60)

    with serve() as client:
        api = Api(client, bootstrap_operator(client))
        w = world(api, transfers=2)
        old_receipt = api.ok(api.get(w["moves"][0]["receipt_url"]))
        [old_key] = log_keys(client)
    env = {**os.environ, "ENVX_DATABASE_URL": db_url, "ENVX_DATA_DIR": str(settings.data_dir),
           "ENVX_ORIGIN": settings.origin, "ENVX_LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-m", "api.cli", "admin", "rotate-key"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    rotated = json.loads(out.stdout)
    assert rotated["old_key"] == old_key and rotated["new_key"] != old_key
    assert "PRIVATE" not in out.stdout + out.stderr

    with serve() as client:
        api = Api(client, bootstrap_operator(client, name="operator 2"))
        keys = client.get("/v1/ledger/keys").json()
        assert [k["verifier_key"] for k in keys] == [old_key, rotated["new_key"]]
        assert [k["current"] for k in keys] == [False, True] and keys[1]["seq"] == rotated["registered_at_seq"]
        move = api.ok(api.as_(w["seller"]["token"]).post(
            "/v1/transfers", {"to_participant": w["buyer"]["id"], "instrument": "FCT-SM", "quantity": "1"}))
        new_receipt = api.ok(api.get(move["receipt_url"]))
        _, cp = latest_checkpoint(client, [rotated["new_key"]], at_least=head_seq(client))
        assert cp.size >= move["entry_seq"]
    assert verify_receipt(old_receipt, [old_key]).index == w["moves"][0]["entry_seq"] - 1
    assert verify_receipt(new_receipt, [rotated["new_key"]]).index == move["entry_seq"] - 1
    with pytest.raises(ReceiptError, match="unknown_key"):
        verify_receipt(new_receipt, [old_key])  # after the rotation only the new key signs
    report = asyncio.run(verify_database(asyncpg_dsn(db_url)))
    assert report.ok, report.render()

    # A checkpoint signed with the retired key after the rotation is reported (a stolen old key).
    retired = note.Signer.from_key_string(Path(rotated["retired_key_file"]).read_text())

    async def forge() -> None:
        conn = await asyncpg.connect(asyncpg_dsn(db_url))
        try:
            size = await conn.fetchval("SELECT max(size) FROM ledger_checkpoints")
            row = await conn.fetchrow("SELECT root FROM ledger_checkpoints WHERE size = $1", size)
            text = note.sign_checkpoint(note.Checkpoint(settings.origin, size, bytes(row["root"])), retired)
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("UPDATE ledger_checkpoints SET note = $1, key_id = $2 WHERE size = $3", text,
                               retired.key_id.hex(), size)
        finally:
            await conn.close()

    asyncio.run(forge())
    report = asyncio.run(verify_database(asyncpg_dsn(db_url)))
    assert not report.ok and any("does not verify with the key in force" in p for p in report.problems)


def test_under_load_at_most_one_checkpoint_per_interval_and_the_last_on_stop(db_url: str, settings: Settings,
                                                                              tmp_path: Path) -> None:
    settings = settings.model_copy(update={"checkpoint_interval_seconds": 3600})
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as client:
        api = Api(client, bootstrap_operator(client))
        w = world(api, transfers=5)
        listed = client.get("/v1/ledger/checkpoints").json()
        assert len(listed) == 1  # the first batch was signed at once; the rest waits for the interval
        n = head_seq(client)
        assert listed[0]["tree_size"] < n
        # Not covered yet: 503 with Retry-After (the receipt waits a bounded moment for the publisher first).
        for r in (client.get("/v1/ledger/proofs/inclusion", params={"seq": n}), api.get(w["moves"][-1]["receipt_url"])):
            assert (r.status_code, r.json()["code"], r.headers["retry-after"]) == (503, "checkpoint_pending", "3600")
    # Stopping signs what is durable, so the latest file and the table end at the head.
    text = (tmp_path / "checkpoint-latest.txt").read_text()
    keys = [load_signer(settings).verifier_key_string()]
    assert note.verify_checkpoint(text, keys).size == n
