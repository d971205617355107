"""The rules of the code's shape, kept by tools: import layers (import-linter, contracts in pyproject.toml),
types (mypy, [tool.mypy]) and where SQL may be written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold() -> None:
    # A fresh process: grimp reads the tree from disk, with the project root first on the path.
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports; "
                          "sys.exit(lint_imports(no_cache=True, no_logo=True))"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]


# --- types (mypy, configured in pyproject.toml [tool.mypy]) --------------------------------------------------

# mypy runs over the application's packages and the benchmarks (the tests' own modules are checked where the
# benchmarks import them, not as a whole: their fixtures are typed loosely on purpose).
TYPED = ("exchange", "api", "ledger", "matching", "pledges", "bench")
# Modules whose errors are not yet fixed, by the work package that fixes them. The list only shrinks: an
# entry that has no error left fails the test too (take it out), and the lead empties it at the merge.
NOT_YET_TYPED: tuple[str, ...] = ()


def test_types_check() -> None:
    cache = ROOT / ".mypy_cache"  # ignored by git; a warm cache makes the run a few seconds
    out = subprocess.run([sys.executable, "-m", "mypy", "--cache-dir", str(cache), "--no-error-summary",
                          "--show-error-codes", *TYPED], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=900)
    assert out.returncode in (0, 1), out.stdout[-4000:] + out.stderr[-2000:]  # 2: mypy itself failed
    errors = [line for line in out.stdout.splitlines() if ": error: " in line]
    owed = [e for e in errors if e.startswith(NOT_YET_TYPED)]
    assert [e for e in errors if e not in owed] == []
    stale = [m for m in NOT_YET_TYPED if not any(e.startswith(m) for e in owed)]
    assert stale == [], f"no type errors left in {stale}: take them out of NOT_YET_TYPED"


# --- SQL only in the modules that hold it --------------------------------------------------------------------

SQL = re.compile(r"(?<![\w.])text\(|\.fetch(row|val)?\(|\.execute\(")
# A package's SQL lives in its repository (plus, in a big package, one more query module named for what it
# holds); the ledger is its own store.
SQL_MODULES = frozenset({"repository.py", "journal.py", "queries.py", "store.py"})
SQL_PACKAGES = ("exchange", "api", "pledges", "matching")
# Modules that still run SQL of their own, by the work package that moves it. Only shrinks (a listed module
# without SQL fails the test), and the lead empties it at the merge.
SQL_NOT_YET_MOVED = frozenset({
})


def _runs_sql(path: Path) -> bool:
    return SQL.search(path.read_text(encoding="utf-8")) is not None


def test_sql_only_in_repositories() -> None:
    modules = [p for pkg in SQL_PACKAGES for p in sorted((ROOT / pkg).rglob("*.py"))]
    with_sql = {p.relative_to(ROOT).as_posix() for p in modules if _runs_sql(p)}
    stray = sorted(m for m in with_sql if Path(m).name not in SQL_MODULES and m not in SQL_NOT_YET_MOVED)
    assert stray == [], f"SQL outside a repository / query module: {stray}"
    stale = sorted(SQL_NOT_YET_MOVED - with_sql)
    assert stale == [], f"no SQL left in {stale}: take them out of SQL_NOT_YET_MOVED"


def test_sql_pattern_finds_each_form(tmp_path: Path) -> None:
    """The search itself: each way of running SQL is found; a name that merely ends in `text(` is not."""
    f = tmp_path / "m.py"
    for line in ('conn.execute(q)', 'await conn.fetchrow("SELECT 1")', 'await c.fetchval(q)', 'c.fetch(q)',
                 'text("SELECT 1")', 'x = (text(f"SELECT {COLUMNS}"))'):
        f.write_text(line)
        assert _runs_sql(f), line
    for line in ("to_text(5, 2)", "checkpoint.text()", "fetcher(1)", "executed(2)"):
        f.write_text(line)
        assert not _runs_sql(f), line


# --- only ledger/ reads or writes ledger_* tables ------------------------------------------------------------

# The ledger's tables, as the migrations create them; SQL that names one (FROM, JOIN, INTO, UPDATE, TABLE) may
# stand in ledger/ only: every other package reads the ledger through ledger/queries.py (or the writer).
LEDGER_TABLES = frozenset(re.findall(r"CREATE TABLE (ledger_\w+)", "".join(
    p.read_text(encoding="utf-8") for p in sorted((ROOT / "migrations" / "versions").glob("*.py")))))
LEDGER_SQL = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE|TABLE)\s+(ledger_\w+)\b", re.IGNORECASE)


def ledger_sql_outside(root: Path) -> list[str]:
    """`module: table` for each ledger table that SQL outside ledger/ names."""
    found = []
    for pkg in SQL_PACKAGES:
        for p in sorted((root / pkg).rglob("*.py")):
            for table in sorted(set(LEDGER_SQL.findall(p.read_text(encoding="utf-8"))) & LEDGER_TABLES):
                found.append(f"{p.relative_to(root).as_posix()}: {table}")
    return found


def test_only_the_ledger_names_its_tables() -> None:
    assert {"ledger_blocks", "ledger_entries", "ledger_holds", "ledger_batches"} <= LEDGER_TABLES
    assert ledger_sql_outside(ROOT) == []
