"""Tamper campaign, short: 120 random single-byte changes of a database built by mixed load."""

from __future__ import annotations

from pathlib import Path

from tests.campaigns import tamper


def test_every_single_byte_change_is_detected(db_url: str, tmp_path: Path) -> None:
    s = tamper.run_campaign(db_url, tmp_path / "data", mutations=120, seed=5, load_seconds=3.0,
                            log=lambda _msg: None)
    assert s.undetected == []
    assert s.detected == s.mutations == 120
    assert len(s.by_table) == len(tamper.TABLES)  # every ledger table was tampered with
    assert s.entries > 256 and s.checkpoints > 1
