"""One log format: `envx serve` as a process, every stderr line one JSON object, request ids, no secrets."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from exchange.core import logs
from tests.system.server import free_port


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "api.cli", *args], env=env, capture_output=True, text=True,
                          timeout=180)


def json_lines(text: str) -> list[dict]:
    out = []
    for line in text.splitlines():
        assert line.strip(), "an empty line on stderr"
        record = json.loads(line)  # every line, or the test fails here
        assert {"ts", "level", "logger", "request_id", "msg"} <= record.keys(), line
        out.append(record)
    return out


def test_serve_writes_one_json_object_per_line(own_tmp: Path) -> None:
    tmp_path = own_tmp
    port = free_port()
    env = {**os.environ, "ENVX_DATA_DIR": str(tmp_path / "data"), "ENVX_LOG_FORMAT": "json",
           "ENVX_LOG_LEVEL": "INFO", "ENVX_ACCESS_LOG": "true", "ENVX_SCHEDULER": "false",
           "ENVX_METRICS_ALLOWED_ADDRESSES": "127.0.0.1"}
    env.pop("ENVX_DATABASE_URL", None)  # the embedded PostgreSQL: its initdb runs now
    made = run_cli(env, "admin", "create-key", "--name", "log-test operator")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)["api_key"]
    bootstrap = json_lines(made.stderr)
    stderr = tmp_path / "serve.err"
    with open(stderr, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "api.cli", "serve", "--port", str(port)], env=env,
                                stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, stderr.read_text()[-3000:]
            time.sleep(0.2)
        auth = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=base, timeout=30) as http:
            assert http.get("/v1/whoami", headers={**auth, "X-Request-Id": "req-whoami"}).status_code == 200
            assert http.get("/v1/whoami", headers={"Authorization": f"Bearer {token}x",
                                                   "X-Request-Id": "req-refused"}).status_code == 401
            bad = http.post("/v1/transfers", content=b'{"a": 1, "a": 2}', headers={
                **auth, "Idempotency-Key": "k1", "content-type": "application/json", "X-Request-Id": "req-dup"})
            assert bad.status_code == 422
            # the admin address scrapes without a key (ENVX_METRICS_ALLOWED_ADDRESSES)
            scraped = http.get("/metrics", headers={"X-Request-Id": "req-metrics"})
            assert scraped.status_code == 200 and "envx_http_requests_total" in scraped.text
            assert http.get("/health").headers["x-request-id"]
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0
    # SIGTERM stopped the embedded PostgreSQL too (it used to keep running: no exit handlers after the signal)
    assert not (tmp_path / "data" / "pg" / "postmaster.pid").exists()
    assert out == ""  # nothing in a second format on stdout
    text = stderr.read_text()
    records = bootstrap + json_lines(text)
    loggers = {r["logger"] for r in records}
    assert {"envx", "uvicorn.error", "envx.access"} <= loggers, loggers
    assert any(r["logger"].startswith("alembic") for r in records)
    # initdb's and pg_ctl's output are child-process dumps: DEBUG, not shown at INFO
    assert not any(r["logger"] == "pgserver" for r in records)
    assert "Success. You can now start the database server" not in text + made.stderr
    # a request id on the lines of a request, the one the client sent
    by_id = {r["request_id"]: r for r in records if r["logger"] == "envx.access"}
    assert {"req-whoami", "req-refused", "req-dup", "req-metrics"} <= by_id.keys()
    assert " 401 " in by_id["req-refused"]["msg"] and " 422 " in by_id["req-dup"]["msg"]
    assert all(r["request_id"] == "-" for r in records if r["logger"] == "uvicorn.error")
    assert any("serving on" in r["msg"] for r in records)
    assert token not in text and token.rsplit("_", 1)[1] not in text
    assert "PRIVATE+KEY" not in text


def test_text_format_is_one_line_per_event_and_redacted() -> None:
    stream = io.StringIO()
    log = logging.getLogger("envx.test_logs")
    h = logs.handler("text", "DEBUG", stream)
    log.addHandler(h)
    log.propagate = False
    log.setLevel(logging.DEBUG)
    try:
        token = "envx_0123456789ab_" + "Zx-_" * 10
        half = "envxe2_h4ndle_" + "a2b3" * 8
        log.warning("minted %s and %s for\nline two", token, half)
        log.error("url postgresql://envx:s3cret-pass@db:5432/envx, key PRIVATE+KEY+envx.example/registry+abc+AAAA")
        log.info("header Authorization: Bearer %s", token)
        try:
            raise ValueError(f"bad token {token}")
        except ValueError:
            log.exception("failed")
        token2 = logs.REQUEST_ID.set("rid-7")
        log.info("inside a request")
        logs.REQUEST_ID.reset(token2)
    finally:
        log.removeHandler(h)
        log.propagate = True
    lines = stream.getvalue().splitlines()
    assert len(lines) == 5  # one per event, tracebacks and newlines included
    out = stream.getvalue()
    for secret in ("Zx-_Zx-_", "a2b3a2b3", "s3cret-pass", "+abc+AAAA"):
        assert secret not in out, out
    assert "envx_0123456789ab_<redacted>" in lines[0] and "envxe2_h4ndle_<redacted>" in lines[0]
    assert "\\nline two" in lines[0]
    assert "postgresql://envx:<redacted>@db" in lines[1] and "PRIVATE+KEY+<redacted>" in lines[1]
    assert "Traceback" in lines[3] and "ValueError" in lines[3]
    assert "[rid-7] inside a request" in lines[4] and "[-]" in lines[0]


def test_json_format_redacts_tracebacks() -> None:
    stream = io.StringIO()
    log = logging.getLogger("envx.test_logs_json")
    h = logs.handler("json", "INFO", stream)
    log.addHandler(h)
    log.propagate = False
    try:
        try:
            raise RuntimeError("PRIVATE+KEY+envx.example/registry+0badc0de+SECRET")
        except RuntimeError:
            log.exception("boom")
    finally:
        log.removeHandler(h)
        log.propagate = True
    (record,) = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert "SECRET" not in record["exc"] and "RuntimeError" in record["exc"]
