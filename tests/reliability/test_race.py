"""Race campaign, short: one round of every race with 60 concurrent clients."""

from __future__ import annotations

from pathlib import Path

from tests.campaigns import race


def test_concurrent_clients_on_hot_accounts_listings_and_holds(db_url: str, tmp_path: Path) -> None:
    # 60 clients: half of them confirm one pledge at once, below the server's 40 pooled connections
    # (more stalls the server: see RELIABILITY.md, "pool exhaustion").
    s = race.run_campaign(db_url, tmp_path / "data", rounds=1, clients=60, seed=2, log=lambda _msg: None)
    assert s.problems == []
    assert s.verify_clean == 1 and s.scenarios >= 7
    codes = {k.split(": ", 1)[1] for k in s.outcomes}
    assert "409 insufficient_available" in codes  # refusals carry their codes
