"""A client cannot choose the address the server sees (red team round 6, F4): uvicorn believed X-Forwarded-For
from 127.0.0.1 by default, so a local client rotating the header escaped the anonymous rate limit (and the
PDF share, and named any address in the audit trail). Only proxies named in ENVX_TRUSTED_PROXIES are believed."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.system.server import Server


def _anonymous_oks(srv: Server, n: int) -> int:
    with httpx.Client(base_url=srv.url, timeout=10) as c:
        return sum(c.get("/v1/markets", headers={"X-Forwarded-For": f"203.0.113.{i % 250 + 1}"}).status_code == 200
                   for i in range(n))


def test_x_forwarded_for_is_not_believed_unless_the_proxy_is_trusted(db_url: str, tmp_path: Path) -> None:
    limits = {"ENVX_ANONYMOUS_RATE_LIMIT_PER_SECOND": "1", "ENVX_ANONYMOUS_RATE_LIMIT_BURST": "5"}
    os.environ.update(limits)
    try:
        srv = Server(db_url, tmp_path)
        srv.start()
        try:
            assert _anonymous_oks(srv, 30) <= 10  # one address, whatever the header says: the limit holds
        finally:
            srv.stop()
        os.environ["ENVX_TRUSTED_PROXIES"] = "127.0.0.1"  # a proxy on this host: now the header is believed
        srv = Server(db_url, tmp_path)
        srv.start()
        try:
            assert _anonymous_oks(srv, 30) >= 25  # each forwarded address has its own bucket
        finally:
            srv.stop()
    finally:
        for k in (*limits, "ENVX_TRUSTED_PROXIES"):
            os.environ.pop(k, None)
