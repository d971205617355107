"""PostgreSQL clusters on loopback for the campaigns: a primary, a synchronous standby, kill, promote.

The binaries are the ones the `pgserver` wheel ships (PostgreSQL 16, including pg_basebackup), so a
clean machine needs nothing beyond `pip install -e '.[test]'`. PostgreSQL refuses to run as root; as
root, every server command runs as the `pgserver` system user, the same one the wheel itself uses.
Servers listen on 127.0.0.1 only, with no unix socket: all traffic stays on loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pgserver
import psutil

BIN = Path(pgserver.__file__).parent / "pginstall" / "bin"
SYSTEM_USER = "pgserver"


def _alive(p: psutil.Process) -> bool:
    try:
        return p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_root() -> bool:
    return os.geteuid() == 0


def _prepare(path: Path) -> None:
    """Let the server's system user own `path` and traverse to it (only needed as root)."""
    if not _as_root():
        return
    from pgserver.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

    entry = ensure_user_exists(SYSTEM_USER)
    assert entry is not None
    path.mkdir(parents=True, exist_ok=True)
    ensure_prefix_permissions(path)
    # The wheel's binaries and libraries must be readable and executable by that user.
    ensure_folder_permissions(BIN, 0o055)
    ensure_folder_permissions(BIN.parent / "lib", 0o044)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def _run(*args: str, timeout: float = 120) -> str:
    kw: dict[str, Any] = {"user": SYSTEM_USER} if _as_root() else {}
    out = subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout,
                         check=False, **kw)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({out.returncode}): {out.stderr.strip() or out.stdout.strip()}")
    return out.stdout


class Cluster:
    """One PostgreSQL server: its data directory, its loopback port, and how to end it."""

    def __init__(self, root: Path, name: str) -> None:
        self.root = root
        self.name = name
        self.pgdata = (root / name).resolve()
        self.port = free_port()
        self.log = self.root / f"{name}.log"

    # ---------------------------------------------------------------- creation

    def init(self, **conf: str | int) -> Cluster:
        _prepare(self.root)
        _run("initdb", "-D", str(self.pgdata), "--auth=trust", "--encoding=utf8", "-U", "postgres", "--no-sync")
        self._base_conf()
        self.configure(
            wal_level="replica", max_wal_senders=8, max_replication_slots=8, wal_keep_size="256MB",
            hot_standby="on", max_connections=200, shared_buffers="128MB", **conf)
        return self

    def _base_conf(self) -> None:
        self.configure(listen_addresses="127.0.0.1", port=self.port, unix_socket_directories="",
                       cluster_name=self.name, logging_collector="off")

    def configure(self, **conf: str | int) -> None:
        """Append settings to postgresql.auto.conf (the last occurrence of a name wins)."""
        lines = [f"{k} = '{v}'" for k, v in conf.items()]
        auto = self.pgdata / "postgresql.auto.conf"
        text = auto.read_text() if auto.exists() else ""
        self._write(auto, text + "\n".join(lines) + "\n")

    def _write(self, path: Path, text: str) -> None:
        path.write_text(text)
        if _as_root():
            import pwd

            entry = pwd.getpwnam(SYSTEM_USER)
            os.chown(path, entry.pw_uid, entry.pw_gid)

    @classmethod
    def standby_of(cls, primary: Cluster, name: str) -> Cluster:
        """A streaming-replication standby made with pg_basebackup, named `name` to the primary
        (application_name, which `synchronous_standby_names` refers to)."""
        standby = cls(primary.root, name)
        _run("pg_basebackup", "-h", "127.0.0.1", "-p", str(primary.port), "-U", "postgres", "-D",
             str(standby.pgdata), "-R", "-X", "stream", "-c", "fast", "--no-sync")
        standby._base_conf()
        standby.configure(primary_conninfo=(
            f"host=127.0.0.1 port={primary.port} user=postgres application_name={name}"))
        return standby

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> None:
        _run("pg_ctl", "-D", str(self.pgdata), "-l", str(self.log), "-w", "-t", "60", "start")

    def stop(self) -> None:
        if self.running:
            _run("pg_ctl", "-D", str(self.pgdata), "-m", "fast", "-w", "stop")

    def kill(self) -> None:
        """SIGKILL the postmaster and every backend at once: the machine is gone, nothing is flushed
        or said goodbye to (killing only the postmaster would leave backends serving connections)."""
        pid = self.pid
        if pid is None:
            return
        try:
            proc = psutil.Process(pid)
            procs = [proc, *proc.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        for p in procs:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        # Dead once gone or a zombie (its sockets are closed by then); whoever reaps the orphans
        # (init, in a container possibly late) does not delay the failover being measured.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(p) for p in procs):
            time.sleep(0.005)
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)

    def promote(self) -> None:
        _run("pg_ctl", "-D", str(self.pgdata), "-w", "-t", "60", "promote")

    def destroy(self) -> None:
        try:
            self.stop()
        except Exception:
            self.kill()
        shutil.rmtree(self.pgdata, ignore_errors=True)

    @property
    def pid(self) -> int | None:
        try:
            pid = int((self.pgdata / "postmaster.pid").read_text().split("\n", 1)[0])
        except (FileNotFoundError, ValueError):
            return None
        try:
            return pid if _alive(psutil.Process(pid)) else None
        except psutil.NoSuchProcess:
            return None

    @property
    def running(self) -> bool:
        return self.pid is not None

    # ---------------------------------------------------------------- SQL

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        return _run("psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database,
                    "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql).strip()

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def wait_sync(self, standby_name: str, timeout: float = 60) -> None:
        """Until `standby_name` streams from this primary as its synchronous standby."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.psql(f"SELECT sync_state FROM pg_stat_replication WHERE application_name = '{standby_name}'")
            if state == "sync":
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{standby_name} is not a synchronous standby (state {state!r})")
            time.sleep(0.1)


class ReplicatedPair:
    """A primary with one synchronous standby (synchronous_commit = on): a commit is acknowledged
    only once the standby has flushed it, so promoting the standby loses nothing acknowledged."""

    STANDBY = "envx_standby1"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.primary = Cluster(root, "primary")
        self.standby: Cluster | None = None

    def start(self, database: str = "envx") -> str:
        self.primary.init(synchronous_commit="on")
        self.primary.start()
        self.primary.create_database(database)
        self.standby = Cluster.standby_of(self.primary, self.STANDBY)
        self.standby.start()
        # Only now is the standby required: earlier, every commit would wait for it.
        self.primary.psql(f"ALTER SYSTEM SET synchronous_standby_names = '{self.STANDBY}'")
        self.primary.psql("SELECT pg_reload_conf()")
        self.primary.wait_sync(self.STANDBY)
        return self.url(database)

    def url(self, database: str = "envx") -> str:
        """Both servers in one libpq URL; clients keep only a server that accepts writes."""
        assert self.standby is not None
        return (f"postgresql://postgres@127.0.0.1:{self.primary.port},127.0.0.1:{self.standby.port}/{database}"
                "?target_session_attrs=read-write")

    def stop(self) -> None:
        for c in (self.standby, self.primary):
            if c is not None:
                try:
                    c.stop()
                except Exception:
                    c.kill()
