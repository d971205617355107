"""What the portal's browser tests share (the fixtures are in conftest.py): the demo's names, Debian's
Chromium, a tab that records console errors, the demo's restoration certificate.

Screenshots go to tests/portal/artifacts/ (ENVX_ARTIFACTS overrides where), for CI to keep."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx

from tests.debian import apt_install
from tests.system.server import Server

CHROMIUM = "/usr/bin/chromium"
CJK_FONT = Path("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc")  # Debian's fonts-wqy-zenhei: readable screenshots
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
ARTIFACTS = Path(os.environ.get("ENVX_ARTIFACTS", Path(__file__).parent / "artifacts"))
OWNER = "三明林票持有人 (示例林业经营主体)"
OWNER_USCC = "93350427MA2Y0E3R1Y"
PAYER = "南靖 滥伐林木案 被告人"
PAYER_ID_NUMBER = "350627198807150018"
MARKET = "FCT-SM.listing"
PAGES = ["/portal", "/portal/inquiry", "/portal/verify", "/portal/markets", f"/portal/markets/{MARKET}",
         "/portal/ledger"]


T = TypeVar("T")


def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` in a thread of its own: Playwright's sync API keeps an event loop running in this one, so
    set-up code that calls asyncio.run (database helpers) must not run here once a browser is open."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(fn, *args).result()


def chromium() -> str:
    missing = [pkg for pkg, there in (("chromium", shutil.which(CHROMIUM)), ("fonts-wqy-zenhei", CJK_FONT.exists()))
               if not there]
    if missing:
        apt_install(missing)
    assert shutil.which(CHROMIUM), "chromium is not installed and could not be installed from Debian"
    return CHROMIUM


class Page:
    """A browser tab that records console errors and uncaught exceptions."""

    def __init__(self, ctx: Any, base: str) -> None:
        self.tab = ctx.new_page()
        self.base = base
        self.errors: list[str] = []
        self.tab.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.tab.on("pageerror", lambda e: self.errors.append(str(e)))

    def go(self, path: str) -> Any:
        return self.tab.goto(self.base + path)

    def shot(self, name: str) -> None:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        self.tab.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)

    def steps(self) -> list[tuple[str | None, str | None]]:
        """The verification steps shown, as (step, state)."""
        items = self.tab.locator("#steps li")
        return [(items.nth(i).get_attribute("data-step"), items.nth(i).get_attribute("data-state"))
                for i in range(items.count())]

    def verify_file(self, path: Path) -> tuple[str | None, str | None]:
        """Drop `path` on the verification page; its verdict (pass/fail) and the step that failed."""
        self.go("/portal/verify")
        self.tab.set_input_files("#file", str(path))
        self.tab.wait_for_selector("#verdict[data-state]")
        return self.tab.get_attribute("#verdict", "data-state"), self.tab.get_attribute("#verdict", "data-step")


def certificate(server: Server) -> dict[str, Any]:
    """The demo's restoration certificate (the one restoration order, id 1)."""
    with httpx.Client(base_url=server.url, timeout=60) as http:
        retired = http.get("/v1/public/retirements", params={"name": PAYER}).json()["certificate"]["results"]
        assert retired and retired[0]["purpose"] == "judicial_restoration", retired
        doc = http.get("/v1/restoration-orders/1/certificate")
        assert doc.status_code == 200, doc.text
        return dict(doc.json())
