"""Run a multi-statement SQL script through Alembic on asyncpg (one statement per execute)."""

from __future__ import annotations

from alembic import op


def split_sql(script: str) -> list[str]:
    """Split on `;` outside quotes, dollar-quoted bodies and comments."""
    out: list[str] = []
    buf: list[str] = []
    i, n = 0, len(script)
    while i < n:
        ch = script[i]
        if script.startswith("--", i):
            j = script.find("\n", i)
            j = n if j < 0 else j
            buf.append(script[i:j])
            i = j
            continue
        if ch == "'":
            j = script.find("'", i + 1)
            while j >= 0 and script.startswith("''", j):
                j = script.find("'", j + 2)
            j = n - 1 if j < 0 else j
            buf.append(script[i : j + 1])
            i = j + 1
            continue
        if ch == "$":
            k = script.find("$", i + 1)
            tag = script[i : k + 1] if k > 0 else ""
            if tag and all(c.isalnum() or c == "_" for c in tag[1:-1]):
                j = script.find(tag, k + 1)
                j = n - len(tag) if j < 0 else j
                buf.append(script[i : j + len(tag)])
                i = j + len(tag)
                continue
        if ch == ";":
            stmt = "".join(buf).strip()
            if stmt and not all(line.strip().startswith("--") or not line.strip() for line in stmt.splitlines()):
                out.append(stmt)
            buf = []
            i += 1
            continue
        buf.append(ch)
        i += 1
    tail = "".join(buf).strip()
    if tail and not all(line.strip().startswith("--") or not line.strip() for line in tail.splitlines()):
        out.append(tail)
    return out


def run_script(script: str) -> None:
    for stmt in split_sql(script):
        op.execute(stmt)
