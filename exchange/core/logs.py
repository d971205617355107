"""One log configuration for the whole process: text or JSON, one line per event, a request id, no secrets.

`setup(fmt, level)` puts a single handler on the root logger and routes every library through it: envx,
uvicorn (run with ``log_config=None``, so it installs no handlers of its own), alembic, apscheduler,
pgserver, asyncio, py.warnings. Each record passes two filters on that handler:

- `ContextFilter` stamps the request id of the request being served (`REQUEST_ID`, a contextvar set at the
  edge by api/edge.py; ``-`` outside a request), so every line a request causes carries it;
- `RedactingFilter` rewrites the message (arguments and traceback included) so that no API key secret,
  enrollment-code half, signer key, bearer header or database password reaches the console.

A record is one line in both formats: JSON escapes newlines by itself; the text format writes a newline
inside a message or a traceback as ``\\n``. The embedded server's child-process dumps (pgserver logs each
initdb/pg_ctl command with its whole output at INFO) are moved to DEBUG by `_Demote`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import IO

REQUEST_ID: ContextVar[str | None] = ContextVar("envx_request_id", default=None)

# Loggers of libraries that would otherwise bring their own handlers or formats.
ROUTED = ("envx", "uvicorn", "uvicorn.error", "uvicorn.access", "alembic", "apscheduler", "pgserver", "asyncio",
          "py.warnings", "httpx", "litestar")
# Chatty at INFO with child-process output or per-request noise: shown from DEBUG on only.
DEMOTED = ("pgserver", "httpx", "apscheduler.scheduler", "apscheduler.executors.default",
           "alembic.runtime.plugins")  # alembic 1.16+: a line per autogenerate plugin at every start

_SECRETS: tuple[tuple[re.Pattern[str], str], ...] = (
    # API keys envx_<prefix>_<secret>: the prefix names the key (not secret), the rest is the credential.
    (re.compile(r"\b(envx_[0-9a-f]{6,32}_)[A-Za-z0-9_\-]+"), r"\1<redacted>"),
    # enrollment-code halves envxe1_<handle>_<secret>
    (re.compile(r"\b(envxe[12]_[A-Za-z0-9\-]+_)[A-Za-z0-9]+"), r"\1<redacted>"),
    # C2SP signer keys (checkpoint signing key, witness keys)
    (re.compile(r"PRIVATE\+KEY\+\S+"), "PRIVATE+KEY+<redacted>"),
    (re.compile(r"(?i)\b(bearer\s+)\S+"), r"\1<redacted>"),
    (re.compile(r"(?i)\b(authorization['\"]?\s*[:=]\s*['\"]?)[^'\"\s,}]+"), r"\1<redacted>"),
    # passwords in connection URLs and libpq strings
    (re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s]+:)[^@\s]+@"), r"\1<redacted>@"),
    (re.compile(r"(?i)\b(password\s*=\s*)\S+"), r"\1<redacted>"),
)


def redact(text: str) -> str:
    for pattern, replacement in _SECRETS:
        text = pattern.sub(replacement, text)
    return text


class RedactingFilter(logging.Filter):
    """Rewrites the record's message (and traceback) with every secret replaced; never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep what there is rather than lose the record
            message = f"{record.msg!r} {record.args!r}"
        record.msg, record.args = redact(message), None
        if record.exc_info:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


class _Demote(logging.Filter):
    """INFO (and below) of a chatty library becomes DEBUG."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno <= logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return True


def _ts(record: logging.LogRecord) -> str:
    return datetime.fromtimestamp(record.created, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": _ts(record), "level": record.levelname, "logger": record.name,
               "request_id": getattr(record, "request_id", "-"), "msg": record.getMessage()}
        exc = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else None)
        if exc:
            out["exc"] = exc
        if record.stack_info:
            out["stack"] = record.stack_info
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = (f"{_ts(record)} {record.levelname} {record.name} [{getattr(record, 'request_id', '-')}] "
                f"{record.getMessage()}")
        exc = record.exc_text or (self.formatException(record.exc_info) if record.exc_info else None)
        if exc:
            line += " | " + exc
        return line.replace("\r", "\\r").replace("\n", "\\n")


def handler(fmt: str, level: str | int, stream: IO[str] | None = None) -> logging.Handler:
    h: logging.Handler = logging.StreamHandler(stream or sys.stderr)
    h.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    h.addFilter(ContextFilter())
    h.addFilter(RedactingFilter())
    h.setLevel(level.upper() if isinstance(level, str) else level)
    return h


def setup(fmt: str, level: str) -> None:
    root = logging.getLogger()
    root.handlers[:] = [handler(fmt, level)]
    root.setLevel(level.upper())
    for name in ROUTED:
        lg = logging.getLogger(name)
        lg.handlers[:] = []
        lg.propagate = True
        lg.setLevel(logging.NOTSET)
        lg.filters[:] = [f for f in lg.filters if not isinstance(f, _Demote)]
    for name in DEMOTED:
        logging.getLogger(name).addFilter(_Demote())
    logging.captureWarnings(True)
