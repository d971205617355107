"""The checkpoint signing key rotated while the registry serves (issue #19): one operator proposes, another
approves, transfers keep flowing; receipts from before the rotation verify with the old key, after it with the
new one; old keys stay published; a second approval rotates nothing; a restart signs with the new key; `envx
verify` passes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient
from pydantic import SecretStr

from api.app import create_app
from exchange.core.settings import Settings
from ledger import note
from ledger.checkpoints import key_in_force
from ledger.receipt import ReceiptError, verify_receipt
from tests.helpers import Api, bootstrap_operator, checker_token
from tests.ledger_verifiable.helpers import head_seq, latest_checkpoint, log_keys, world


def _serve(settings: Settings, db_url: str) -> TestClient:
    return TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60)


def test_online_rotation_under_load(db_url: str, settings: Settings, tmp_path: Path) -> None:
    receipts: list[dict[str, Any]] = []
    errors: list[str] = []
    with _serve(settings, db_url) as client:
        api = Api(client, bootstrap_operator(client))
        w = world(api, transfers=1)
        [old_key] = log_keys(client)
        seller = api.as_(w["seller"]["token"])
        stop = threading.Event()

        def load() -> None:
            while not stop.is_set() and len(receipts) < 400:
                r = seller.post("/v1/transfers", {"to_participant": w["buyer"]["id"], "instrument": "FCT-SM",
                                                  "quantity": "1"})
                if r.status_code != 201:
                    errors.append(r.text)
                    return
                got = seller.get(r.json()["receipt_url"])
                if got.status_code != 200:
                    errors.append(got.text)
                    return
                receipts.append(got.json())

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        while len(receipts) < 10 and not errors:
            threading.Event().wait(0.01)
        proposal = api.propose("/v1/ledger/key-rotations", {"reason": "scheduled yearly rotation"})
        assert proposal.status_code == 202 and proposal.json()["kind"] == "rotateSigningKey", proposal.text
        own = api.post(f"/v1/operator-actions/{proposal.json()['id']}/approve", {}, key=None)
        assert own.status_code == 403  # four eyes: not the proposer
        assert log_keys(client) == [old_key]  # nothing rotated until a second operator approves
        checker = api.as_(checker_token(client))
        done = checker.ok(checker.post(f"/v1/operator-actions/{proposal.json()['id']}/approve", {}, key=None))
        rotated = done["result"]
        before = len(receipts)
        while len(receipts) < before + 10 and not errors:
            threading.Event().wait(0.01)
        stop.set()
        for t in threads:
            t.join()
        assert errors == []
        assert rotated["old_key"] == old_key and rotated["new_key"] != old_key
        keys = client.get("/v1/ledger/keys").json()
        assert [k["verifier_key"] for k in keys] == [old_key, rotated["new_key"]]  # the old key stays published
        assert [k["current"] for k in keys] == [False, True] and keys[1]["seq"] == rotated["registered_at_seq"]
        # Approving again answers the same rotation; it rotates nothing more.
        again = checker.ok(checker.post(f"/v1/operator-actions/{proposal.json()['id']}/approve", {}, key=None))
        assert again["result"] == rotated and len(log_keys(client)) == 2
        latest_checkpoint(client, [rotated["new_key"]], at_least=head_seq(client))  # the new key signs the head
        key_file = (settings.data_dir / "signing.key").read_text()
        assert note.Signer.from_key_string(key_file).verifier_key_string() == rotated["new_key"]

    schedule = [(k["seq"], k["verifier_key"]) for k in keys]
    signed_by = {old_key: 0, rotated["new_key"]: 0}
    for r in receipts:  # each verifies with the key in force at its checkpoint's size, and not with the other
        size = note.verify_checkpoint(r["checkpoint"], [old_key, rotated["new_key"]]).size
        right = key_in_force(schedule, size)
        assert right is not None
        other = rotated["new_key"] if right == old_key else old_key
        verify_receipt(r, [right])
        with pytest.raises(ReceiptError):
            verify_receipt(r, [other])
        signed_by[right] += 1
    assert signed_by[old_key] >= 10 and signed_by[rotated["new_key"]] >= 10  # across the rotation, under load

    # A restart signs with the new key (installed on disk); `envx verify` passes.
    with _serve(settings, db_url) as client:
        api = Api(client, bootstrap_operator(client, name="operator 3"))
        move = api.ok(api.as_(w["seller"]["token"]).post(
            "/v1/transfers", {"to_participant": w["buyer"]["id"], "instrument": "FCT-SM", "quantity": "1"}))
        verify_receipt(api.ok(api.get(move["receipt_url"])), [rotated["new_key"]])
    env = {**os.environ, "ENVX_DATABASE_URL": db_url, "ENVX_DATA_DIR": str(settings.data_dir),
           "ENVX_ORIGIN": settings.origin, "ENVX_LOG_LEVEL": "WARNING"}
    out = subprocess.run([sys.executable, "-m", "api.cli", "verify"], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_rotation_is_refused_when_the_key_comes_from_the_environment(db_url: str, settings: Settings) -> None:
    skey, _ = note.generate_signer_key(settings.origin)
    env_settings = settings.model_copy(update={"signing_key": SecretStr(skey)})
    with _serve(env_settings, db_url) as client:
        api = Api(client, bootstrap_operator(client))
        r = api.propose("/v1/ledger/key-rotations", {"reason": "x"})
        assert r.status_code == 409 and r.json()["code"] == "rotation_unavailable", r.text
        ent = api.participant("企业", "enterprise")["api"]
        assert ent.propose("/v1/ledger/key-rotations", {"reason": "x"}).status_code == 403
