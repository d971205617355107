"""Pledge tests: webhooks may go to plain http on 127.0.0.1 (an allowed host); the market scheduler stays off;
a declared default opens enforcement at once (ENVX_ENFORCEMENT_NOTICE_DAYS=0: the notice period and the
pledgor's consent are tested with the default setting in test_round4_realisation.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from exchange.core.settings import Settings


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # Tests receive webhooks on a local plain-http server; production insists on https.
    return Settings(data_dir=tmp_path, database_url=None, pledge_webhook_allow_http=True,
                    webhook_allowed_hosts="127.0.0.1", pledge_worker_interval_seconds=0.2, scheduler=False,
                    enforcement_notice_days=0)
