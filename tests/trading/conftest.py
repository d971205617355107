"""Fixtures of the exchange tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.helpers import Api
from tests.trading.clock import Calendar


@pytest.fixture
def cal(api: Api) -> Iterator[Calendar]:
    c = Calendar(api)
    yield c
    c.close()
