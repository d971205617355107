"""The benches' `envx serve`: one helper to start it (bench.e2e, bench.http_layer), and a statement counter.

    python -m bench.server --port N      (what `serve` runs: `envx serve`, counting)

`serve(env, log)` starts `envx serve` on a free port of loopback as its own process, through this module, and
waits for `/health`. In that process every SQL statement sent to PostgreSQL is counted, on every connection
(SQLAlchemy's pool and the raw asyncpg connections of the writer and the sequencers alike), by what it says
(its first 80 characters, whitespace folded): asyncpg's `Connection` (simple queries, BEGIN, COMMIT, COPY,
fetches) and its prepared statements are wrapped before the app starts (a statement's preparation, cached per
connection, is not counted). Every half second the counts are
written to `<data dir>/statements.json`; `Statements.read()` gives them to the bench, which prints the
difference a run made per order. The wrappers only count: the app runs unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.system.server import free_port

_counts: Counter[str] = Counter()


def _label(query: object) -> str:
    return " ".join(str(query).split())[:80]


def _counting(method: Callable[..., Any], query_of: Callable[[Any, tuple[Any, ...]], object | None]) -> Any:
    async def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        query = query_of(self, args)
        if query is not None:
            _counts[_label(query)] += 1
        return await method(self, *args, **kwargs)

    return counted


def install_counter(path: Path) -> None:
    """Count every statement asyncpg sends from now on; write the counts to `path` every half second."""
    from asyncpg.connection import Connection
    from asyncpg.prepared_stmt import PreparedStatement

    # Connection.execute with arguments goes through _execute (counted there); without, it is a simple query.
    Connection.execute = _counting(Connection.execute, lambda _s, a: a[0] if len(a) == 1 else None)
    for name in ("_execute", "_executemany"):
        setattr(Connection, name, _counting(getattr(Connection, name), lambda _s, a: a[0]))
    Connection.copy_records_to_table = _counting(Connection.copy_records_to_table,
                                                 lambda _s, a: f"COPY {a[0] if a else ''}")
    for name in ("fetch", "fetchrow", "fetchval", "executemany"):
        setattr(PreparedStatement, name, _counting(getattr(PreparedStatement, name), lambda s, _a: s._query))

    def dump() -> None:
        while True:
            time.sleep(0.5)
            try:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(dict(_counts.copy())))
                tmp.replace(path)
            except Exception:  # a lost sample: the next one has it
                continue

    threading.Thread(target=dump, name="statement-counter", daemon=True).start()


class Statements:
    """The counts a served process writes (see the module's doc)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> Counter[str]:
        time.sleep(0.6)  # the next dump: everything answered so far is in it
        try:
            return Counter(json.loads(self.path.read_text()))
        except (OSError, ValueError):
            return Counter()


class Served:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, statements: Statements) -> None:
        self.proc, self.port, self.statements = proc, port, statements
        self.base = f"http://127.0.0.1:{port}"

    def cpu_seconds(self) -> float:
        """The server process's CPU time so far (user + system, all its threads; PostgreSQL's is its own)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        import signal

        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def wait_healthy(url: str, proc: subprocess.Popen[bytes]) -> None:
    for _ in range(600):
        try:
            if httpx.get(url, timeout=1).status_code in (200, 404, 405):
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        time.sleep(0.1)
    raise RuntimeError("server did not start")


def serve(env: dict[str, str], data_dir: Path) -> Served:
    """`envx serve` (counting its statements) with `env`, its log in `data_dir/server.log`, once healthy."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "bench.server", "--port", str(port)],
                            env={**env, "ENVX_BENCH_STATEMENTS": str(data_dir / "statements.json")},
                            stdout=subprocess.DEVNULL, stderr=open(data_dir / "server.log", "wb"))  # noqa: SIM115
    served = Served(proc, port, Statements(data_dir / "statements.json"))
    try:
        wait_healthy(f"{served.base}/health", proc)
    except BaseException:
        served.stop()
        raise
    return served


def per_order(before: Counter[str], after: Counter[str], orders: int, top: int = 12) -> list[str]:
    """Lines: statements per order in all, then the `top` most frequent, per order."""
    d = after - before
    n = max(orders, 1)
    lines = [f"{sum(d.values()) / n:.2f} SQL statements per order ({sum(d.values()):,} for {orders:,} orders)"]
    lines += [f"    {c / n:6.3f}  {q}" for q, c in d.most_common(top)]
    return lines


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    counts = os.environ.get("ENVX_BENCH_STATEMENTS")
    if counts:
        install_counter(Path(counts))
    from api.cli import main as envx

    sys.exit(envx(["serve", "--port", str(args.port)]))


if __name__ == "__main__":
    main()
