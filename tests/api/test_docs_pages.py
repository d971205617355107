"""The API docs pages run no script from another origin (red team round 4, F5): Swagger UI is served by
envx itself, and the pages say so in their Content-Security-Policy, on the origin where operators paste
their keys."""

from __future__ import annotations

import re

from litestar.testing import TestClient


def test_docs_load_scripts_and_styles_from_envx_only(client: TestClient) -> None:
    for path in ("/schema", "/schema/swagger"):
        page = client.get(path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
        sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
        assert sources and all(s.startswith("/") and not s.startswith("//") for s in sources), sources
        csp = page.headers["content-security-policy"]
        assert "script-src 'self' 'unsafe-inline'" in csp and "http" not in csp
        for s in sources:
            asset = client.get(s)
            assert asset.status_code == 200 and len(asset.content) > 1000, s
    assert "swagger-ui" in client.get("/schema/swagger").text
    assert client.get("/schema/openapi.json").json()["info"]["title"].startswith("envx")
