"""WAL archiving of the embedded PostgreSQL (ENVX_WAL_ARCHIVE_DIR) and the server binaries and user that
backup and restore (exchange/core/backup.py) share with it; the database start (exchange/core/database.py)
turns archiving on through this module."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ARCHIVE_TIMEOUT = "60s"


class BackupError(RuntimeError):
    """A backup or restore that cannot be done as asked; the message says why and what to do."""


def pg_binary(name: str) -> str:
    """The embedded server's own binaries (the pgserver wheel) first: they match its version."""
    try:
        import pgserver._commands as pgc  # the wheel's bin directory

        path = Path(pgc.POSTGRES_BIN_PATH) / name
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} not found (neither in the pgserver wheel nor on PATH)")
    return found


def server_user() -> str | None:
    """pgserver runs PostgreSQL as the system user 'pgserver' when started by root."""
    return "pgserver" if os.geteuid() == 0 else None


def give_to_server(path: Path) -> None:
    user = server_user()
    if user is not None:
        shutil.chown(path, user, user)
        for root, dirs, files in os.walk(path):
            for n in dirs + files:
                shutil.chown(os.path.join(root, n), user, user)


def archive_command(archive: Path) -> str:
    return f"test ! -f '{archive}/%f' && cp '%p' '{archive}/%f'"


def configure_archiving(server: object, pgdata: Path, archive: Path) -> None:
    """Turn on WAL archiving of the embedded server into `archive` (a restart the first time)."""
    archive = archive.resolve()
    archive.mkdir(parents=True, exist_ok=True)
    give_to_server(archive)
    psql = server.psql  # type: ignore[attr-defined]
    mode = psql("SHOW archive_mode;")
    command = psql("SHOW archive_command;")
    if " on" in mode and str(archive) in command:
        return
    psql("ALTER SYSTEM SET archive_mode = 'on';")
    psql(f"ALTER SYSTEM SET archive_command = $envx${archive_command(archive)}$envx$;")
    psql(f"ALTER SYSTEM SET archive_timeout = '{ARCHIVE_TIMEOUT}';")
    # Output to files, never pipes: the server inherits them and a pipe would never close (pgserver does the same);
    # the server's own log stays in pgserver's log file.
    with tempfile.TemporaryFile("w+") as err:
        done = subprocess.run([pg_binary("pg_ctl"), "-D", str(pgdata), "-w", "-t", "120", "-m", "fast",
                               "-l", str(pgdata / "log"), "restart"],
                              stdout=subprocess.DEVNULL, stderr=err, user=server_user(), timeout=180)
        if done.returncode != 0:
            err.seek(0)
            raise BackupError(f"restarting PostgreSQL with WAL archiving failed: {err.read()[-2000:]}")
