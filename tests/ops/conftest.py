"""Fixtures of the operations tests."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture
def own_tmp() -> Iterator[Path]:
    """Outside pytest's base temp dir: other pytest sessions on the machine reset its mode to 0700, which locks the
    embedded server's system user out of a data dir below it."""
    path = Path(tempfile.mkdtemp(prefix="envx-drill-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
