"""The log at the C2SP tlog-tiles paths, judged by Go's golang.org/x/mod/sumdb/tlog (Debian's package):
served by a real `envx serve`, and exported by `envx export-tiles` to static files on a plain web server."""

from __future__ import annotations

import base64
import functools
import http.server
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from litestar.testing import TestClient

from ledger import merkle, note
from ledger.tlog_paths import ENTRIES, TilePath, decode_bundle, parse_tile_path, resources_for_size
from tests.helpers import Api
from tests.ledger_verifiable.helpers import latest_checkpoint, log_keys, world
from tests.system.server import Server
from tests.transparency.helpers import go_run, write_entries

ORIGIN = "envx.test/tiles"
ENTRY_COUNT = 3000  # 11 full level-0 tiles, a partial one, a partial level-1 tile


class TlogServer(Server):
    def __init__(self, db_url: str, data_dir: Path, **env: str) -> None:
        super().__init__(db_url, data_dir)
        self.extra = {"ENVX_ORIGIN": ORIGIN, "ENVX_CHECKPOINT_INTERVAL_SECONDS": "0.05", **env}

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, **self.extra}


def _checkpoint(url: str, at_least: int) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        r = httpx.get(f"{url}/checkpoint")
        if r.status_code == 200 and int(r.text.split("\n")[1]) >= at_least:
            return r.text
        time.sleep(0.1)
    raise AssertionError("no checkpoint covering the log was served")


@contextmanager
def static_server(root: Path) -> Iterator[str]:
    """A plain HTTP file server on loopback: what a mirror of `envx export-tiles` would be."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


@pytest.fixture(scope="module")
def gocache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gocache")


def test_go_sumdb_tlog_checks_the_served_and_the_exported_tiles(db_url: str, tmp_path: Path, gocache: Path) -> None:
    write_entries(db_url, ENTRY_COUNT)
    srv = TlogServer(db_url, tmp_path / "srv")
    srv.data_dir.mkdir()
    token = srv.operator_key()
    srv.start()
    try:
        text = _checkpoint(srv.url, ENTRY_COUNT)
        vkey = httpx.get(f"{srv.url}/v1/ledger/keys").json()[-1]["verifier_key"]
        cp = note.verify_checkpoint(text, [vkey], origin=ORIGIN)
        assert cp.size >= ENTRY_COUNT and cp.size % 256 and (cp.size >> 8) % 256  # partial tiles at L0 and L1

        # The served paths, hashes only (public): tree hash, inclusion and consistency proofs.
        out = go_run("tilejudge.go", srv.url, vkey, ORIGIN, cache=gocache)
        assert out.returncode == 0 and out.stdout.startswith(f"OK size {cp.size} "), out.stdout + out.stderr
        assert " 0 entries" in out.stdout
        # With the operator's key the judge also reads every entry bundle and hashes each entry to its leaf.
        out = go_run("tilejudge.go", srv.url, vkey, ORIGIN, token, cache=gocache)
        assert out.returncode == 0 and f" {cp.size} entries" in out.stdout, out.stdout + out.stderr

        # Caching: tiles immutable, the checkpoint not cached; bundles private (not for shared caches).
        full = httpx.get(f"{srv.url}/tile/0/000")
        assert full.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert full.headers["content-type"] == "application/octet-stream" and len(full.content) == 8192
        assert httpx.get(f"{srv.url}/checkpoint").headers["cache-control"] == "no-cache"
        assert httpx.get(f"{srv.url}/checkpoint").headers["content-type"] == "text/plain; charset=utf-8"
        bundle = httpx.get(f"{srv.url}/tile/entries/000", headers={"Authorization": f"Bearer {token}"})
        assert bundle.status_code == 200 and bundle.headers["cache-control"].startswith("private")
        # Entry bundles are not for the public by default: 404, as for an object one may not see.
        assert httpx.get(f"{srv.url}/tile/entries/000").status_code == 404
        # Beyond the checkpoint, or not the canonical spelling of a path: no such resource.
        beyond = TilePath(0, cp.size // 256, cp.size % 256 + 1).path()
        for path in (beyond, "tile/0/0", "tile/0/x000/000", "tile/0/000.p/0", "tile/0/000.p/256",
                     "tile/00/000", "tile/64/000", f"tile/0/{cp.size // 256:03d}"):
            assert httpx.get(f"{srv.url}/{path}").status_code == 404, path

        # `envx export-tiles DIR --entries`, served by a plain file server: the same judgement.
        export = tmp_path / "export"
        srv.cli("export-tiles", str(export), "--entries")
    finally:
        srv.stop()
    assert (export / "checkpoint").read_text() == text
    with static_server(export) as url:
        out = go_run("tilejudge.go", url, vkey, ORIGIN, "any", cache=gocache)
        assert out.returncode == 0 and f" {cp.size} entries" in out.stdout, out.stdout + out.stderr

        # The judge is real: one changed byte of one tile, or a tile under a wrong path, fails it.
        victim = export / TilePath(0, 3, 256).path()
        good = victim.read_bytes()
        victim.write_bytes(good[:100] + bytes([good[100] ^ 1]) + good[101:])
        out = go_run("tilejudge.go", url, vkey, ORIGIN, cache=gocache)
        assert out.returncode == 1 and out.stdout.startswith("FAIL"), out.stdout + out.stderr
        victim.write_bytes(good)
        partial = export / TilePath(0, cp.size // 256, cp.size % 256).path()
        partial.rename(partial.with_name("1"))  # as if the width were written wrong
        out = go_run("tilejudge.go", url, vkey, ORIGIN, cache=gocache)
        assert out.returncode == 1 and "404" in out.stdout, out.stdout + out.stderr
        partial.with_name("1").rename(partial)
        # A changed byte inside an entry: its bundle no longer hashes to the leaf.
        bundle_file = export / TilePath(ENTRIES, 2, 256).path()
        good = bundle_file.read_bytes()
        bundle_file.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
        out = go_run("tilejudge.go", url, vkey, ORIGIN, "any", cache=gocache)
        assert out.returncode == 1 and "does not hash to leaf" in out.stdout, out.stdout + out.stderr
    shutil.rmtree(export)


def test_tile_paths_are_canonical_and_cover_the_tree() -> None:
    assert parse_tile_path("tile/1/x001/x234/067.p/17") == TilePath(1, 1234067, 17)
    assert parse_tile_path("/tile/entries/000") == TilePath(ENTRIES, 0, 256)
    assert TilePath(ENTRIES, 1000, 3).path() == "tile/entries/x001/000.p/3"
    for bad in ("tile/1/1234067", "tile/1/x1/234", "tile/1/001/234", "tile/-1/000", "tile/data/000",
                "tile/0/000.p/017", "tile/0/000.p", "tile/0/０００", "tiles/0/000", "tile/0/000/"):
        with pytest.raises(ValueError):
            parse_tile_path(bad)
    # C2SP's example: a tree of 70,000 leaves.
    tiles = [t for t in resources_for_size(70_000) if t.level != ENTRIES]
    assert sum(t.level == 0 and t.is_full for t in tiles) == 273
    assert [(t.level, t.width) for t in tiles if not t.is_full] == [(0, 112), (1, 17), (2, 1)]
    assert sum(t.level == 1 and t.is_full for t in tiles) == 1
    assert [t.width for t in resources_for_size(256) if t.level != ENTRIES] == [256, 1]


def test_in_process_tiles_and_bundles_match_the_entries(api: Api, client: TestClient) -> None:
    w = world(api, transfers=3)
    keys = log_keys(client)
    _, cp = latest_checkpoint(client, keys, at_least=1)
    served = client.get("/checkpoint")
    assert served.status_code == 200 and note.verify_checkpoint(served.text, keys).size >= cp.size
    size = note.verify_checkpoint(served.text, keys).size
    tile = client.get(TilePath(0, 0, size).path() if size < 256 else "/tile/0/000")
    assert tile.status_code == 200
    # One name per immutable object (red team round 4, F6): the router's normalisations are not served.
    canonical = "/" + TilePath(0, 0, size).path() if size < 256 else "/tile/0/000"
    for alias in (canonical.replace("/tile/", "/tile//"), canonical.replace("/000", "/%30%30%30"), canonical + "/"):
        assert client.get(alias).status_code == 404, alias
    bundle = api.get(f"/{TilePath(ENTRIES, 0, min(size, 256)).path()}")
    assert bundle.status_code == 200
    entries = decode_bundle(bundle.content)
    assert [merkle.leaf_hash(e) for e in entries] == [tile.content[i:i + 32] for i in range(0, len(tile.content), 32)]
    first = api.get("/v1/ledger/entries/1").json()
    assert base64.b64decode(first["leaf_b64"]) == entries[0]
    # Only operators and auditors read bundles, unless the registry makes them public.
    assert client.get(f"/{TilePath(ENTRIES, 0, min(size, 256)).path()}").status_code == 404
    seller = Api(client, w["seller"]["token"])
    refused = seller.get(f"/{TilePath(ENTRIES, 0, min(size, 256)).path()}")
    assert refused.status_code == 404 and refused.json()["code"] == "not_found"


def test_entry_bundles_can_be_made_public(db_url: str, settings, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from api.app import create_app
    from tests.helpers import bootstrap_operator

    public = settings.model_copy(update={"tlog_entries_public": True})
    with TestClient(create_app(public, db_url), raise_server_exceptions=False, timeout=60) as client:
        Api(client, bootstrap_operator(client))
        keys = log_keys(client)
        _, cp = latest_checkpoint(client, keys, at_least=1)
        r = client.get(f"/{TilePath(ENTRIES, 0, min(cp.size, 256)).path()}")
        assert r.status_code == 200 and r.headers["cache-control"].startswith("public")
        assert len(decode_bundle(r.content)) == min(cp.size, 256)
