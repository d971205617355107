"""Fixtures for the transparency tests: checkpoints published quickly, a test origin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from exchange.core.settings import Settings
from ledger import note
from tests.transparency.helpers import WitnessProc

ORIGIN = "envx.test/registry"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"checkpoint_interval_seconds": 0.05, "origin": "envx.test/registry"})


@pytest.fixture
def registry_key() -> tuple[str, str]:
    return note.generate_signer_key(ORIGIN)


@pytest.fixture
def witnesses(tmp_path: Path, registry_key: tuple[str, str]) -> Iterator[list[WitnessProc]]:
    procs = [WitnessProc(tmp_path / f"w{i}", f"witness{i}.test", registry_key[1]) for i in (1, 2, 3)]
    try:
        yield procs
    finally:
        for p in procs:
            p.stop()
