"""Backups of the legal record: a base backup, continuous WAL archiving, and a point-in-time restore.

- `envx backup DIR` (`backup`): ``pg_basebackup`` of the database (the embedded server or ENVX_DATABASE_URL;
  WAL streamed into the copy, so it is consistent by itself) into ``DIR/base``, plus the data dir's last
  published checkpoint (``checkpoint-latest.txt``), the log's public checkpoint keys (``public-keys.txt``) and
  ``manifest.json``. Never the private checkpoint signing key nor the credential key: they are secrets, kept
  apart (the manifest says so, and so does the command).
- **WAL archiving** (``ENVX_WAL_ARCHIVE_DIR``, `configure_archiving`): the embedded server copies every
  finished WAL segment there (``archive_mode``, ``archive_timeout`` 60 s), and the checkpoint publisher writes
  each newly published checkpoint there too (``checkpoint-latest.txt``), so that a lost data dir does not
  take the proof of what was published with it. An external server's archiving is its DBA's.
- `envx restore DIR [--until TIME]` (`restore`, embedded server only): the base backup becomes ``<data
  dir>/pg`` (an existing one is moved aside, never deleted); with the WAL archive PostgreSQL replays it to its
  end or to TIME and is promoted; the last published checkpoint is the largest of the data dir's, the
  archive's and the backup's. Then the fork check runs as at start: a database behind that checkpoint is
  reported, and `envx serve` refuses it, unless the replay brought it level.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from exchange.core import store
from exchange.core.archiving import BackupError, give_to_server, pg_binary
from exchange.core.database import asyncpg_dsn, start_embedded
from ledger import note
from ledger.checkpoints import ForkRefused, check_not_behind, registered_keys, write_latest_file
from ledger.tree_store import stored_size

LATEST_FILE = "checkpoint-latest.txt"


def checkpoint_size(text: str) -> int:
    try:
        return note.parse_checkpoint(note.parse_note(text).text).size
    except note.NoteError:
        return -1


# --- archiving (exchange/core/archiving.py turns it on) ---------------------------------------------------------


def mirror_checkpoint(archive: Path, text: str) -> None:
    """Called for each published checkpoint: the archive keeps the latest one beside the WAL."""
    write_latest_file(archive / LATEST_FILE, text)


# --- backup ---------------------------------------------------------------------------------------------------


async def _log_facts(dsn: str) -> tuple[int, list[str]]:
    conn = await asyncpg.connect(dsn)
    try:
        return await stored_size(conn), [r["verifier_key"] for r in await registered_keys(conn)]
    finally:
        await conn.close()


def backup(dsn: str, data_dir: Path, dest: Path) -> dict[str, object]:
    if dest.exists() and any(dest.iterdir()):
        raise BackupError(f"{dest} is not empty: back up into a new directory")
    dest.mkdir(parents=True, exist_ok=True)
    size_before, keys = asyncio.run(_log_facts(dsn))
    started = datetime.now(UTC)
    out = subprocess.run([pg_binary("pg_basebackup"), "-d", dsn, "-D", str(dest / "base"), "-Fp", "-X", "stream",
                          "-c", "fast", "-l", f"envx {started.isoformat()}", "--no-password"],
                         capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise BackupError(f"pg_basebackup failed: {out.stderr.strip()[-2000:]}")
    for leftover in (".handle_pids.json", "log"):  # the embedded server's own bookkeeping, not the database
        (dest / "base" / leftover).unlink(missing_ok=True)
    latest = data_dir / LATEST_FILE
    checkpoint = None
    if latest.exists():
        shutil.copy2(latest, dest / LATEST_FILE)
        checkpoint = checkpoint_size(latest.read_text(encoding="utf-8"))
    (dest / "public-keys.txt").write_text("".join(k + "\n" for k in keys), encoding="ascii")
    manifest = {"format": "envx-backup/1", "started_at": started.isoformat(), "ledger_entries_at_start": size_before,
                "last_published_checkpoint_size": checkpoint, "public_keys": keys,
                "not_included": ["the checkpoint signing key (signing.key)", "the credential key (credential.key)"]}
    (dest / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return {"backup": str(dest), **manifest}


# --- restore --------------------------------------------------------------------------------------------------


@dataclass
class Restored:
    pgdata: Path
    entries: int
    checkpoint_size: int | None
    level: bool
    detail: str


def _running(pgdata: Path) -> bool:
    pid_file = pgdata / "postmaster.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text().split()[0]), 0)
    except (ValueError, ProcessLookupError, IndexError):
        return False
    except PermissionError:
        return True
    return True


def _latest_checkpoint(*candidates: Path) -> str | None:
    best: tuple[int, str] | None = None
    for path in candidates:
        if path.exists():
            text = path.read_text(encoding="utf-8")
            size = checkpoint_size(text)
            if best is None or size > best[0]:
                best = (size, text)
    return best[1] if best else None


def restore(src: Path, data_dir: Path, *, origin: str, archive: Path | None, until: datetime | None,
            published_in: Path | None = None) -> Restored:
    """`published_in`: where else the last published checkpoint is kept (the configured WAL archive), even when
    the WAL itself is not replayed."""
    base = src / "base"
    if not (base / "PG_VERSION").exists():
        raise BackupError(f"{src} holds no base backup (no base/PG_VERSION): made by `envx backup`?")
    if until is not None and archive is None:
        raise BackupError("--until needs the WAL archive (ENVX_WAL_ARCHIVE_DIR or --wal DIR)")
    if archive is not None and not archive.is_dir():
        raise BackupError(f"the WAL archive {archive} does not exist")
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = (data_dir / "pg").resolve()
    if pgdata.exists():
        if _running(pgdata):
            raise BackupError(f"a PostgreSQL server is running on {pgdata}: stop envx first")
        aside = pgdata.with_name(f"pg.before-restore-{int(time.time())}")
        pgdata.rename(aside)
    shutil.copytree(base, pgdata, symlinks=True)
    os.chmod(pgdata, 0o700)
    if archive is not None:
        lines = [f"restore_command = 'cp \"{archive.resolve()}/%f\" \"%p\"'", "recovery_target_timeline = 'current'"]
        if until is not None:
            lines += [f"recovery_target_time = '{until.isoformat()}'", "recovery_target_inclusive = true",
                      "recovery_target_action = 'promote'"]
        with open(pgdata / "postgresql.auto.conf", "a", encoding="utf-8") as fh:
            fh.write("\n# envx restore\n" + "".join(line + "\n" for line in lines))
        (pgdata / "recovery.signal").touch()
    give_to_server(pgdata)
    # The last published checkpoint: the largest the data dir, the archive and the backup know.
    kept = [d / LATEST_FILE for d in (archive, published_in) if d is not None]
    text = _latest_checkpoint(data_dir / LATEST_FILE, *kept, src / LATEST_FILE)
    if text is not None:
            write_latest_file(data_dir / LATEST_FILE, text)
    try:
        url = start_embedded(data_dir)  # recovery runs now; replayed to the end of the archive (or TIME), promoted
    except subprocess.CalledProcessError:
        log_file = pgdata / "log"
        tail = log_file.read_text(errors="replace")[-3000:] if log_file.exists() else ""
        raise BackupError(f"the restored PostgreSQL did not start; its log ends with:\n{tail}") from None
    return asyncio.run(_check(asyncpg_dsn(url), pgdata, text, origin, src))


async def _check(dsn: str, pgdata: Path, text: str | None, origin: str, src: Path) -> Restored:
    deadline = time.monotonic() + 600
    conn = await asyncpg.connect(dsn)
    try:
        while await store.promote_if_recovering(conn):  # a paused recovery target: promote it
            if time.monotonic() > deadline:
                raise BackupError("the restored server is still in recovery after 10 minutes")
        entries = await stored_size(conn)
        if text is None:
            return Restored(pgdata, entries, None, True, "no checkpoint was ever published from this data dir")
        keys = [r["verifier_key"] for r in await registered_keys(conn)]
        keys += (src / "public-keys.txt").read_text(encoding="ascii").split() if (src / "public-keys.txt").exists() \
            else []
        size = checkpoint_size(text)
        try:
            await check_not_behind(conn, text, origin=origin, verifiers=keys, source="the last published checkpoint")
        except ForkRefused as exc:
            return Restored(pgdata, entries, size, False, str(exc))
        return Restored(pgdata, entries, size, True,
                        f"the database extends the last published checkpoint (size {size})")
    finally:
        await conn.close()
