"""The portal's browser tests: one real `envx serve --demo` process for the package, and Debian's Chromium
(installed from Debian when missing, never downloaded by Playwright) driven by Playwright."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

from exchange.core.database import with_database
from tests.conftest import _admin_execute
from tests.portal.browser import ARGS, Page, chromium
from tests.system.server import Server


@pytest.fixture(scope="package")
def database(pg_admin_url: str, template_db: str) -> Iterator[str]:
    name = f"envx_portal_{os.getpid()}"
    _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _admin_execute(pg_admin_url, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        yield with_database(pg_admin_url, name)
    finally:
        _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="package")
def server(database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = Server(database, tmp_path_factory.mktemp("portal"))
    srv.start("--demo")
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture(scope="package")
def keys(server: Server) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((server.data_dir / "demo-keys.json").read_text("utf-8"))
    return data


@pytest.fixture(scope="package")
def browser_context(server: Server) -> Iterator[Any]:
    """After the server (its database set-up runs an event loop of its own, as Playwright's sync API does)."""
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="envx-chromium-"),
                                                   executable_path=chromium(),
                                                   headless=True, args=ARGS, viewport={"width": 1280, "height": 900})
        try:
            yield ctx
        finally:
            ctx.close()


@pytest.fixture
def page(browser_context: Any, server: Server) -> Iterator[Page]:
    p = Page(browser_context, server.url)
    yield p
    p.tab.close()
