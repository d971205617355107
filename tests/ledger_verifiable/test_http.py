"""Checkpoints, proofs and receipts through the HTTP API against a real PostgreSQL, checked with our maths."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

from litestar.testing import TestClient

from api.app import create_app
from exchange.core.settings import Settings
from ledger import merkle, note
from ledger.receipt import verify_receipt
from tests.helpers import Api, bootstrap_operator
from tests.ledger_verifiable.helpers import b64d, head_seq, latest_checkpoint, log_keys, world


def test_checkpoint_verifies_with_the_published_key_and_proofs_with_rfc9162(api: Api, client: TestClient,
                                                                             settings: Settings) -> None:
    world(api, transfers=40)
    keys = log_keys(client)
    assert len(keys) == 1 and keys[0].startswith(settings.origin + "+")
    n = head_seq(client)
    text, cp = latest_checkpoint(client, keys, at_least=n)
    assert cp.origin == settings.origin and cp.size == n
    # The note is C2SP: text, blank line, one signature line naming the key (with its key id).
    assert text.count("\n\n") == 1 and text.endswith("\n") and f"— {settings.origin} " in text
    note.Verifier.from_key_string(keys[0])  # well-formed verifier key

    leaves = [b64d(api.ok(api.get(f"/v1/ledger/entries/{s}"))["leaf_b64"]) for s in range(1, n + 1)]
    hashes = [merkle.leaf_hash(leaf) for leaf in leaves]
    assert merkle.root(hashes) == cp.root_hash  # the signed root is the tree over the entries' bytes

    for seq in range(1, n + 1):  # public: no key needed
        p = client.get("/v1/ledger/proofs/inclusion", params={"seq": seq}).json()
        assert (p["index"], p["tree_size"], p["checkpoint"]) == (seq - 1, n, text)
        assert b64d(p["leaf_hash"]) == hashes[seq - 1]
        assert merkle.verify_inclusion(hashes[seq - 1], seq - 1, n, [b64d(h) for h in p["inclusion_path"]],
                                       cp.root_hash)
    # Against an older, explicit tree size, by leaf index.
    p = client.get("/v1/ledger/proofs/inclusion", params={"index": 3, "tree_size": 10}).json()
    assert merkle.verify_inclusion(hashes[3], 3, 10, [b64d(h) for h in p["inclusion_path"]], merkle.root(hashes[:10]))

    for first in range(0, n + 1):
        p = client.get("/v1/ledger/proofs/consistency", params={"first": first}).json()
        assert p["second"] == n and b64d(p["second_root"]) == cp.root_hash
        assert b64d(p["first_root"]) == merkle.root(hashes[:first])
        assert merkle.verify_consistency(first, n, merkle.root(hashes[:first]), cp.root_hash,
                                         [b64d(h) for h in p["proof"]])
    # Every older published checkpoint is consistent with the newest one.
    listed = client.get("/v1/ledger/checkpoints", params={"limit": 1000}).json()
    assert listed[0]["tree_size"] == n and len(listed) >= 2
    for old in listed[1:]:
        old_cp = note.verify_checkpoint(old["checkpoint"], keys)
        p = client.get("/v1/ledger/proofs/consistency", params={"first": old_cp.size, "second": n}).json()
        assert merkle.verify_consistency(old_cp.size, n, old_cp.root_hash, cp.root_hash, [b64d(h) for h in p["proof"]])
    page = client.get("/v1/ledger/checkpoints", params={"limit": 1, "before": listed[0]["tree_size"]}).json()
    assert [c["tree_size"] for c in page] == [listed[1]["tree_size"]]

    # Bad input is a problem, never a 500.
    assert client.get("/v1/ledger/proofs/inclusion", params={"seq": n + 1}).json()["code"] == "beyond_tree"
    assert client.get("/v1/ledger/proofs/inclusion", params={"seq": 1, "tree_size": n + 5}).json()["code"] == \
        "tree_size_unavailable"
    assert client.get("/v1/ledger/proofs/inclusion", params={"seq": 5, "tree_size": 4}).status_code == 422
    assert client.get("/v1/ledger/proofs/inclusion", params={"seq": 1, "index": 0}).status_code == 422
    assert client.get("/v1/ledger/proofs/consistency", params={"first": 5, "second": 4}).status_code == 422
    assert client.get("/v1/ledger/proofs/consistency", params={"first": -1}).status_code == 422


def test_receipts_are_private_to_the_parties_and_linked_from_mutations(api: Api, client: TestClient) -> None:
    w = world(api, transfers=1)
    move = w["moves"][0]
    assert move["receipt_url"] == f"/v1/ledger/entries/{move['entry_seq']}/receipt"
    keys = log_keys(client)
    for who in (w["seller"]["api"], w["buyer"]["api"], api):  # author, counterparty, operator
        r = who.get(move["receipt_url"])
        assert r.status_code == 200, r.text
        ok = verify_receipt(r.json(), keys)
        assert ok.index == move["entry_seq"] - 1 and json.loads(ok.entry[len(b"envx-entry/1\n"):])["type"] == "transfer"
    assert w["outsider"]["api"].get(move["receipt_url"]).json()["code"] == "not_found"  # as if there were none
    assert client.get(move["receipt_url"]).status_code == 401
    assert api.get("/v1/ledger/entries/99999/receipt").status_code == 404


def test_receipt_verifies_offline_with_the_cli_after_the_server_is_gone(db_url: str, settings: Settings,
                                                                        tmp_path: Path) -> None:
    with TestClient(create_app(settings, db_url), raise_server_exceptions=False, timeout=60) as client:
        api = Api(client, bootstrap_operator(client))
        w = world(api, transfers=3)
        receipt = api.ok(w["buyer"]["api"].get(w["moves"][1]["receipt_url"]))
        key = log_keys(client)[-1]
    path = tmp_path / "receipt.json"
    path.write_text(json.dumps(receipt, ensure_ascii=False), encoding="utf-8")
    # No database anywhere in the environment: the verifier needs the file and the public key only.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENVX_")}
    env["ENVX_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "api.cli", "verify-receipt", *args], env=env,
                              capture_output=True, text=True, timeout=60)

    out = cli(str(path), "--key", key, "--origin", settings.origin)
    assert out.returncode == 0 and out.stdout.startswith("OK "), out.stdout + out.stderr
    # One changed byte of the entry (the quantity moved) and the receipt no longer verifies.
    entry = b64d(receipt["entry"]).replace(b'"amount":2', b'"amount":9')
    assert entry != b64d(receipt["entry"])
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**receipt, "entry": base64.b64encode(entry).decode()}), encoding="utf-8")
    out = cli(str(forged), "--key", key)
    assert out.returncode == 1 and "inclusion_failed" in out.stdout, out.stdout
    other_key = note.generate_signer_key(settings.origin)[1]
    out = cli(str(path), "--key", other_key)
    assert out.returncode == 1 and "unknown_key" in out.stdout, out.stdout
