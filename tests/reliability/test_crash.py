"""Crash campaign, short: SIGKILL `envx serve` twice (once more during recovery) under mixed load."""

from __future__ import annotations

from pathlib import Path

from tests.campaigns import crash


def test_sigkill_under_mixed_load_loses_nothing_acknowledged(db_url: str, tmp_path: Path) -> None:
    s = crash.run_campaign(db_url, tmp_path / "data", runs=3, seed=4, workers=5, max_load_seconds=1.5,
                           min_acknowledged=12,
                           log=lambda _msg: None)
    assert s.problems == []
    assert s.kills >= 3 and s.acknowledged > 30
    assert s.acknowledged_found == s.acknowledged
    assert s.verify_clean == s.runs
    # The mix reached the ledger, the book and the pledge registry.
    assert {"transfer", "order", "pledge_file"} <= set(s.acknowledged_by_kind)
