"""With a witness policy, JSON receipts, restoration certificates and search certificates are given under a
checkpoint the quorum of real `envx witness` processes cosigned, and each is also a .tlog-proof that
`envx verify-receipt` checks offline with `--witness ... --quorum K`; one changed byte anywhere fails it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from litestar.testing import TestClient
from pydantic import SecretStr

from api.app import create_app
from exchange.core.settings import Settings
from ledger import note, tlog_proof
from ledger.cosignature import WitnessPolicy, generate_cosigner_key
from ledger.encoding import decode_entry
from pledges import certificate as search_certificate
from tests.courts.test_restoration import PAYER_ID, _setup
from tests.helpers import Api, bootstrap_operator
from tests.transparency.conftest import ORIGIN
from tests.transparency.helpers import WitnessProc, go_run

PAYER = "南靖 滥伐林木案 被告人"


def _verify_cli(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", "verify-receipt", str(path), *args],
                          capture_output=True, text=True, timeout=60)


def _no_byte_can_change(text: str, tmp_path: Path, args: list[str]) -> None:
    """Every single-bit change of every byte of the proof file makes `envx verify-receipt` fail."""
    data = text.encode("utf-8")
    bad = tmp_path / "bad.tlog-proof"
    shapes = [search_certificate.verify_tlog_proof]
    passed = []
    for i in range(len(data)):
        bad.write_bytes(data[:i] + bytes([data[i] ^ 0x01]) + data[i + 1:])
        if tlog_proof.main([str(bad), *args], shapes=shapes) == 0:
            passed.append(i)
    assert passed == [], f"changed bytes at {passed} still verify: {[data[i:i + 1] for i in passed]}"


def test_receipts_and_certificates_name_the_witnessed_checkpoint_and_verify_as_tlog_proofs(
        db_url: str, settings: Settings, tmp_path: Path, registry_key: tuple[str, str],
        witnesses: list[WitnessProc]) -> None:
    skey, vkey = registry_key
    s = settings.model_copy(update={
        "data_dir": tmp_path / "reg", "signing_key": SecretStr(skey), "witness_quorum": 2,
        "witness_timeout_seconds": 10.0, "witnesses": ", ".join(f"{w.vkey} {w.url}" for w in witnesses)})
    quorum2 = WitnessPolicy.of([w.vkey for w in witnesses], 2)
    witness_args = ["--key", vkey, *(a for w in witnesses for a in ("--witness", w.vkey)), "--quorum", "2"]
    with TestClient(create_app(s, db_url), raise_server_exceptions=False, timeout=60) as client:
        api = Api(client, bootstrap_operator(client))
        w = _setup(api)
        court, payer, seller = w["court"]["api"], w["payer"]["api"], w["seller"]["api"]
        api.ok(api.post("/v1/markets", {"instrument": "CCER", "mode": "listing", "settings": {"sessions": []}}))
        api.ok(api.post("/v1/markets/CCER.listing/session", {"action": "open"}))
        listing = api.ok(seller.post("/v1/markets/CCER.listing/listings", {"side": "sell", "price": "60.00",
                                                                            "quantity": "200"}))["order"]["id"]
        oid = api.ok(court.post("/v1/restoration-orders", {
            "case_number": "(2022)闽0627刑初123号", "case_type": "刑事附带民事公益诉讼",
            "defendants": [{"name": "被告人甲"}], "payer_id": w["payer"]["id"], "payer_identifier": PAYER_ID,
            "required_quantity": "96", "eligible_kinds": ["ccer"],
            "deadline": (date.today() + timedelta(days=30)).isoformat()}))["id"]
        take = {"market_id": "CCER.listing", "listing_id": listing}
        api.ok(payer.post(f"/v1/restoration-orders/{oid}/takes", {**take, "quantity": "50"}))
        # Two of the three witnesses paused: the quorum cannot cosign the second retirement. Writes go on; what
        # must name a witnessed checkpoint waits for one (bounded), then says checkpoint_pending.
        for paused in witnesses[1:]:
            paused.proc.send_signal(signal.SIGSTOP)
        try:
            api.ok(payer.post(f"/v1/restoration-orders/{oid}/takes", {**take, "quantity": "46"}))
            for r in (client.get(f"/v1/restoration-orders/{oid}/certificate"),
                      client.get(f"/v1/restoration-orders/{oid}/certificate.tlog-proof"),
                      client.get("/v1/public/retirements.tlog-proof", params={"name": PAYER})):
                assert r.status_code == 503 and r.json()["code"] == "checkpoint_pending", r.text
                assert r.headers["retry-after"]
            head = int(client.get("/v1/ledger/head").json()["seq"])
            r = api.get(f"/v1/ledger/entries/{head}/receipt")
            assert r.status_code == 503 and r.json()["code"] == "checkpoint_pending", r.text
        finally:
            for paused in witnesses[1:]:
                paused.proc.send_signal(signal.SIGCONT)
        # Back: the latest checkpoint is put to them again although nothing new was written.
        deadline = time.monotonic() + 60
        while sum(x["state"] == "ok" and x["last_cosigned_size"] >= head
                  for x in client.get("/v1/ledger/witnesses").json()["witnesses"]) < 3:
            assert time.monotonic() < deadline, client.get("/v1/ledger/witnesses").json()
            time.sleep(0.1)

        # The JSON receipt of a retirement, for the payer, is under a checkpoint the quorum cosigned.
        doc = api.ok(client.get(f"/v1/restoration-orders/{oid}/certificate"))
        seqs = sorted(r["index"] + 1 for r in doc["receipts"])
        assert len(seqs) == 2
        for r in doc["receipts"]:
            assert quorum2.satisfied_by(r["checkpoint"]), r["checkpoint"]
        receipt = api.ok(payer.get(f"/v1/ledger/entries/{seqs[0]}/receipt"))
        assert quorum2.satisfied_by(receipt["checkpoint"])
        assert note.verify_checkpoint(receipt["checkpoint"], [vkey], origin=ORIGIN).size >= seqs[0]
        # The payer's .tlog-proof of the judicial retirement (theirs by the order, as the JSON receipt is).
        mine = payer.get(f"/v1/ledger/entries/{seqs[0]}/tlog-proof")
        assert mine.status_code == 200, mine.text

        # The certificate as .tlog-proofs (public, no key): one per retirement entry.
        cert_proof = client.get(f"/v1/restoration-orders/{oid}/certificate.tlog-proof")
        assert cert_proof.status_code == 200, cert_proof.text
        missing = client.get("/v1/restoration-orders/99999/certificate.tlog-proof")
        assert (missing.status_code, missing.json()["code"]) == (404, "not_found")

        # The search certificate (公示查询 by the payer's name) as JSON, and as a .tlog-proof.
        found = api.ok(client.get("/v1/public/retirements", params={"name": PAYER}))
        assert search_certificate.verify(found, vkey) and len(found["certificate"]["results"]) == 2
        head = found["certificate"]["ledger_head"]
        assert head["seq"] >= seqs[1] and head["leaf_hash"]
        inquiry = client.get("/v1/public/retirements.tlog-proof", params={"name": PAYER})
        assert inquiry.status_code == 200, inquiry.text
        short = client.get("/v1/public/retirements.tlog-proof", params={"name": "南"})
        assert (short.status_code, short.json()["code"]) == (422, "query_too_short")

    # Offline, no server: the JSON certificate meets the quorum ...
    cert_json = tmp_path / "certificate.json"
    cert_json.write_text(json.dumps(doc, ensure_ascii=False))
    out = _verify_cli(cert_json, *witness_args)
    assert out.returncode == 0 and "cosigned by at least 2" in out.stdout, out.stdout + out.stderr
    # ... the certificate's .tlog-proof: both retirements, each in the witnessed log ...
    f = tmp_path / f"restoration-{oid}.tlog-proof"
    f.write_text(cert_proof.text)
    parts = tlog_proof.split_tlog_proofs(cert_proof.text)
    assert [tlog_proof.parse_tlog_proof(p).index + 1 for p in parts] == seqs
    for p in parts:
        v = tlog_proof.verify_tlog_proof(p, [vkey], policy=quorum2, origin=ORIGIN)
        assert decode_entry(v.entry)["body"]["purpose"] == "judicial_restoration"
    out = _verify_cli(f, *witness_args)
    assert out.returncode == 0 and out.stdout.count("OK ") == 2, out.stdout + out.stderr
    assert all(f"entry {s - 1} is in {ORIGIN}" in out.stdout for s in seqs), out.stdout
    # ... and the search certificate's .tlog-proof: the signed certificate, its ledger head in the witnessed log.
    g = tmp_path / "inquiry.tlog-proof"
    g.write_text(inquiry.text)
    out = _verify_cli(g, *witness_args)
    assert out.returncode == 0 and "search certificate (retirements, 2 results" in out.stdout, out.stdout + out.stderr
    answer = json.loads(tlog_proof.parse_tlog_proof(inquiry.text).extra or b"")
    assert search_certificate.verify(answer, vkey) and answer["certificate"]["query"] == {"name": PAYER}
    # Go's own sumdb packages (nothing from envx) check the log's signature and the inclusion of each proof.
    gocache = tmp_path / "gocache"
    for path, lines in ((f, [f"OK entry {s - 1} in {ORIGIN}" for s in seqs]),
                        (g, [f"OK search certificate's ledger head {head['seq'] - 1} in {ORIGIN}"])):
        out = go_run("proofjudge.go", str(path), vkey, ORIGIN, cache=gocache)
        assert out.returncode == 0 and [x.split(" size ")[0] for x in out.stdout.splitlines()] == lines, \
            out.stdout + out.stderr
        text = path.read_text()
        at = text.index("\nindex ") + 1
        hash_line = text.index("\n", at) + 1  # the first hash of the inclusion path
        flipped = tmp_path / "flipped.tlog-proof"
        flipped.write_text(text[:hash_line] + ("B" if text[hash_line] == "A" else "A") + text[hash_line + 1:])
        out = go_run("proofjudge.go", str(flipped), vkey, ORIGIN, cache=gocache)
        assert out.returncode == 1 and out.stdout.startswith("FAIL inclusion"), out.stdout + out.stderr

    # A stricter policy than the witnesses met, or witnesses nobody trusts: refused.
    other = ["--key", vkey, "--witness", generate_cosigner_key("stranger.test")[1], "--quorum", "1"]
    for path in (f, g, cert_json):
        out = _verify_cli(path, *other)
        assert out.returncode == 1 and "quorum_not_met" in out.stdout, out.stdout + out.stderr

    # One changed byte anywhere fails it, under the policy that trusts every witness whose cosignature it
    # carries (a line of a key the policy does not name is ignored, as C2SP says, so it must name them all).
    for text in (inquiry.text, cert_proof.text):
        checkpoints = {tlog_proof.parse_tlog_proof(p).checkpoint for p in tlog_proof.split_tlog_proofs(text)}
        assert len(checkpoints) == 1  # a certificate's entries are proven under one checkpoint
        cosigners = sorted(WitnessPolicy.of([w.vkey for w in witnesses], 0).cosigners(checkpoints.pop()))
        assert len(cosigners) >= 2
        strict = ["--key", vkey, *(a for k in cosigners for a in ("--witness", k))]
        _no_byte_can_change(text, tmp_path, strict)
