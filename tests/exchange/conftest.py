"""Fixtures of the exchange tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.exchange.clock import Calendar
from tests.helpers import Api


@pytest.fixture
def cal(api: Api) -> Iterator[Calendar]:
    c = Calendar(api)
    yield c
    c.close()
