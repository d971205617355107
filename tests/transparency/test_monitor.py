"""`envx monitor` follows a log through its tiles: growth is consistent; a split view (another checkpoint
of a size already seen, signed by the same key), a rollback, or tiles that do not hash to the root are
reported with exit code 1 and a log line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from litestar.testing import TestClient
from pydantic import SecretStr

from api.app import create_app
from exchange.core.database import with_database
from exchange.core.settings import Settings
from ledger import note
from ledger.tlog_paths import TilePath
from tests.ledger_verifiable.helpers import admin_sql, latest_checkpoint
from tests.transparency.helpers import write_entries
from tests.transparency.test_tiles import static_server

ORIGIN = "envx.test/registry"


def _publish_and_export(settings: Settings, url: str, out: Path) -> note.Checkpoint:
    """Start the registry on ``url`` (its start registers the key and publishes), then export its tiles."""
    with TestClient(create_app(settings, url), raise_server_exceptions=False, timeout=60) as client:
        head = int(client.get("/v1/ledger/head").json()["seq"])
        _, cp = latest_checkpoint(client, [settings.signing_key and note.Signer.from_key_string(
            settings.signing_key.get_secret_value()).verifier_key_string()], at_least=head)
    env = {"ENVX_DATABASE_URL": url, "ENVX_DATA_DIR": str(settings.data_dir)}
    subprocess.run([sys.executable, "-m", "api.cli", "export-tiles", str(out)], env={**_environ(), **env},
                   check=True, capture_output=True, timeout=120)
    return cp


def _environ() -> dict[str, str]:
    import os

    return dict(os.environ)


def _monitor(url: str, vkey: str, state: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", "monitor", url, "--key", vkey, "--state", str(state),
                           "--once"], capture_output=True, text=True, timeout=120)


def test_monitor_follows_growth_and_detects_a_split_view(db_url: str, pg_admin_url: str, template_db: str,
                                                         settings: Settings, tmp_path: Path) -> None:
    skey, vkey = note.generate_signer_key(ORIGIN)
    other = f"{urlsplit(db_url).path.lstrip('/')}_split"
    admin_sql(pg_admin_url, f'CREATE DATABASE "{other}" TEMPLATE "{template_db}"')
    other_url = with_database(pg_admin_url, other)
    try:
        # Two databases, the same key, the same number of entries, different entries: a split view.
        write_entries(db_url, 300, prefix="a")
        write_entries(other_url, 300, prefix="b")
        s_a = settings.model_copy(update={"data_dir": tmp_path / "a", "signing_key": SecretStr(skey)})
        s_b = settings.model_copy(update={"data_dir": tmp_path / "b", "signing_key": SecretStr(skey)})
        cp_a = _publish_and_export(s_a, db_url, tmp_path / "export-a")
        cp_b = _publish_and_export(s_b, other_url, tmp_path / "export-b")
        assert cp_a.size == cp_b.size and cp_a.root_hash != cp_b.root_hash

        state = tmp_path / "monitor.json"
        with static_server(tmp_path / "export-a") as a:
            out = _monitor(a, vkey, state)
            assert out.returncode == 0 and f"OK {ORIGIN} size {cp_a.size}" in out.stdout, out.stdout + out.stderr
        with static_server(tmp_path / "export-b") as b:
            out = _monitor(b, vkey, state)
            assert out.returncode == 1 and "SPLIT VIEW" in out.stdout, out.stdout + out.stderr

        # The log grows: consistent with what was seen.
        write_entries(db_url, 200, prefix="a2")
        cp_a2 = _publish_and_export(s_a, db_url, tmp_path / "export-a2")
        assert cp_a2.size > cp_a.size
        with static_server(tmp_path / "export-a2") as a2:
            out = _monitor(a2, vkey, state)
            assert out.returncode == 0 and f"size {cp_a2.size}" in out.stdout, out.stdout + out.stderr
        # The old, smaller tree shown again after the larger one: a rollback.
        with static_server(tmp_path / "export-a") as a:
            out = _monitor(a, vkey, state)
            assert out.returncode == 1 and "ROLLBACK" in out.stdout, out.stdout + out.stderr
        # The other database grown past the size seen: not an extension of it, a fork.
        write_entries(other_url, 300, prefix="b2")
        _publish_and_export(s_b, other_url, tmp_path / "export-b2")
        with static_server(tmp_path / "export-b2") as b2:
            out = _monitor(b2, vkey, state)
            assert out.returncode == 1 and ("FORK" in out.stdout or "BAD TILES" in out.stdout), out.stdout
        # A tile whose bytes were changed on the mirror: the root does not match the signed one.
        fresh = tmp_path / "fresh.json"
        tile = tmp_path / "export-a2" / TilePath(0, 0, 256).path()
        raw = tile.read_bytes()
        tile.write_bytes(bytes([raw[0] ^ 1]) + raw[1:])
        with static_server(tmp_path / "export-a2") as a2:
            out = _monitor(a2, vkey, fresh)
            assert out.returncode == 1 and "BAD TILES" in out.stdout, out.stdout + out.stderr
    finally:
        admin_sql(pg_admin_url, f'DROP DATABASE IF EXISTS "{other}" WITH (FORCE)')
