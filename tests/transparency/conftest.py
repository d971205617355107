"""Fixtures for the transparency tests: checkpoints published quickly, a test origin."""

from __future__ import annotations

import pytest

from exchange.core.settings import Settings


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"checkpoint_interval_seconds": 0.05, "origin": "envx.test/registry"})
