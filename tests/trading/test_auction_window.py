"""The venue's shortest bidding window binds every seller (red team round 4, F4): a seller, or a bank
selling collateral, cannot open a window so short that only a bidder told in advance can bid."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.core.settings import Settings
from tests.helpers import Api
from tests.trading.test_auctions import auction_market, emission_right


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The default window, not the one tests/conftest.py sets through the environment for other tests.
    default = Settings.model_fields["auction_min_bidding_seconds"].default
    return Settings(data_dir=tmp_path, database_url=None, scheduler=False, auction_min_bidding_seconds=default)


def test_the_default_window_is_ten_minutes_and_a_shorter_one_is_refused(api: Api, settings: Settings) -> None:
    assert settings.auction_min_bidding_seconds == 600
    emission_right(api, "PW-NOX-NX", 5, "宁夏回族自治区")
    reserve = api.participant("储备中心", "issuer")
    api.issue(reserve["api"], reserve["id"], "PW-NOX-NX", "2.000",
              {"valid_from": "2025-01-01", "valid_until": "2029-12-31"})
    m = auction_market(api, "PW-NOX-NX")
    path = f"/v1/markets/{m}/auctions"
    aid = api.ok(reserve["api"].post(path, {"quantity": "2.000", "min_price": "21000", "increment": "500"}))[
        "order"]["id"]
    api.ok(reserve["api"].post(f"{path}/{aid}/step", {"action": "registration"}))
    for who in (reserve["api"], api):
        short = who.post(f"{path}/{aid}/step", {"action": "bidding", "duration_seconds": 1})
        assert (short.status_code, short.json()["code"]) == (422, "bidding_too_short")
        assert "600" in short.json()["detail"]
    assert api.ok(api.get(f"{path}/{aid}"))["phase"] == "registration"
    # Before bidding opens nobody has bid: the seller may still withdraw its lot.
    api.ok(reserve["api"].post(f"{path}/{aid}/step", {"action": "cancel"}))
    assert api.ok(api.get(f"{path}/{aid}"))["phase"] == "cancelled"
