"""The `envx` command: migrate, serve, admin, verify."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any

from exchange.core import logs
from exchange.core.database import resolve_url
from exchange.core.settings import Settings, get_settings

log = logging.getLogger("envx")


def _url(settings: Settings) -> str:
    return resolve_url(settings.database_url, settings.data_dir, settings.wal_archive_dir)


def cmd_migrate(settings: Settings, args: argparse.Namespace) -> int:
    from exchange.core.migrate import upgrade

    upgrade(_url(settings))
    print("envx: database migrated to head")
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import signal

    import uvicorn

    # uvicorn stops gracefully on SIGTERM, then raises the signal again at its default action, which would end
    # the process without its exit handlers -- and the embedded PostgreSQL (stopped by pgserver's atexit) would
    # keep running. Ended by SystemExit instead, the exit handlers run.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    signal.signal(signal.SIGINT, _exit_on_sigterm)  # Ctrl-C: the same graceful stop, exit 0, no traceback

    from api.app import create_app
    from exchange.core.migrate import upgrade

    if args.host:
        settings.host = args.host
    if args.port:
        settings.port = args.port
    url = _url(settings)
    if not settings.read_only:  # a read replica (hot standby) cannot migrate: the primary does
        upgrade(url)
    hooks = []
    keys_path = settings.data_dir.resolve() / "demo-keys.json"
    if args.demo:
        from exchange.demo import loader as demo

        async def load_demo(rt):  # type: ignore[no-untyped-def]
            await demo.load(rt, keys_path)
            log.info("demo data loaded; API keys (one per demo participant) in %s", keys_path)

        hooks.append(load_demo)
    app = create_app(settings, url, on_ready=hooks)
    base = f"http://{settings.host}:{settings.port}"
    # Through the one log configuration (text or JSON), not a second format on stdout.
    log.info("serving on %s; API docs at %s/schema (Swagger UI, served by envx); OpenAPI at "
             "%s/schema/openapi.json; metrics at %s/metrics", base, base, base, base)
    # ws="websockets": the market stream needs uvicorn's WebSocket protocol; without the package the server
    # would start and answer every upgrade 405, so it refuses to start instead.
    config = uvicorn.Config(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower(),
                            access_log=False, ws="websockets", log_config=None,  # one log format: core/logs.py
                            timeout_graceful_shutdown=settings.shutdown_grace_seconds,
                            **proxy_options(settings))
    _serving_class()(config).run()
    return 0


def proxy_options(settings: Settings) -> dict[str, Any]:
    """uvicorn believes X-Forwarded-For from 127.0.0.1 by default: any local client (or a proxy that passes the
    header through) would choose the address that rate limits and the audit trail see (red team round 6, F4).
    Only the proxies named in ENVX_TRUSTED_PROXIES are believed."""
    proxies = settings.trusted_proxies.strip()
    if not proxies:
        return {"proxy_headers": False}
    return {"proxy_headers": True, "forwarded_allow_ips": proxies}


def _serving_class() -> type:
    import signal

    import uvicorn

    class Serving(uvicorn.Server):
        """uvicorn's server, stopping as an exchange must. The first SIGTERM or SIGINT stops gracefully: no new
        connections, requests in flight finish (at most ENVX_SHUTDOWN_GRACE_SECONDS), then the lifespan's stop
        (api/app.py): sequencers and writer finish their batches, the last checkpoint is signed, and the
        embedded PostgreSQL stops (its exit handler). A second signal of either kind stops at once (uvicorn
        itself forces only on a second SIGINT): nothing acknowledged is lost -- what was answered is
        committed -- and the next start replays the journals and signs the checkpoint then."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            name = signal.Signals(sig).name
            if self.should_exit:
                log.warning("second signal (%s): stopping at once, without waiting for requests, batches or the "
                            "last checkpoint", name)
                raise SystemExit(1)  # out of the event loop; the exit handlers still stop the embedded PostgreSQL
            log.info("%s: stopping gracefully (a second signal stops at once)", name)
            super().handle_exit(sig, frame)

    return Serving



def _remote(call: Any) -> int:
    from api.remote import RemoteError

    try:
        out = call()
    except (RemoteError, OSError) as exc:  # httpx's transport errors are OSErrors' kin: say it plainly
        print(f"envx: {exc}", file=sys.stderr)
        return 1
    except Exception as exc:
        print(f"envx: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


def cmd_create_key(settings: Settings, args: argparse.Namespace) -> int:
    """Bootstrap: create (if needed) an operator participant and print a fresh API key for it. With --server:
    propose a new operator to the running registry (four-eyes: another operator approves, it enrolls)."""
    if args.server:
        from api import remote

        return _remote(lambda: remote.create_key(args.server, args.name, args.client_id))
    from exchange.core.database import asyncpg_dsn, make_engine
    from exchange.core.migrate import upgrade
    from exchange.core.runtime import Runtime
    from exchange.core.secrets import Credentials
    from exchange.registry.system import ensure_system
    from exchange.security.bootstrap import operator_key
    from exchange.verifiable.publisher import VerifiableLedger
    from ledger.writer import LedgerWriter

    url = _url(settings)
    upgrade(url)

    async def run() -> dict:
        engine = make_engine(url, 2)
        writer = LedgerWriter(asyncpg_dsn(url))
        verifiable = VerifiableLedger(settings, asyncpg_dsn(url))  # tiles, fork check, checkpoints: as serve
        verifiable.attach(writer)
        await writer.start()
        rt = Runtime(settings, url, engine, writer, verifiable=verifiable, credentials=Credentials.load(settings))
        try:
            await verifiable.start(writer)
            await ensure_system(rt)
            return await operator_key(rt, name=args.name, participant_id=args.participant, label=args.label)
        finally:
            await writer.stop()
            await verifiable.stop()
            await engine.dispose()

    try:
        out = asyncio.run(run())
    except Exception as exc:  # e.g. a running server holds the writer lock
        print(f"envx: {exc}", file=sys.stderr)
        print("envx: against a running server, propose with `envx admin create-key --server URL --name NAME` "
              "(ENVX_API_KEY: your operator key); a second operator approves with `envx admin approve`",
              file=sys.stderr)
        return 1
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


def cmd_approve(settings: Settings, args: argparse.Namespace) -> int:
    from api import remote

    return _remote(lambda: remote.approve(args.server, args.action_id, args.note))


def cmd_enroll(settings: Settings, args: argparse.Namespace) -> int:
    from api import remote

    return _remote(lambda: remote.enroll(args.server, args.label))


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    from exchange.core.database import asyncpg_dsn
    from ledger.verify import verify_database

    given = [Path(f).read_text(encoding="utf-8") for f in args.checkpoint or ()]
    report = asyncio.run(verify_database(asyncpg_dsn(_url(settings)), replay=not args.no_replay,
                                         checkpoints=given, trusted_keys=args.key or (), jobs=args.jobs))
    print(report.render())
    return 0 if report.ok else 1


def cmd_rotate_key(settings: Settings, args: argparse.Namespace) -> int:
    """A new checkpoint signing key, registered in the log; the old one stays published. Server stopped; with
    --server: proposed to the running registry (a second operator approves with `envx admin approve`)."""
    if args.server:
        from api import remote

        return _remote(lambda: remote.rotate_key(args.server, args.reason, args.client_id))
    from exchange.core.database import asyncpg_dsn
    from exchange.core.migrate import upgrade
    from exchange.verifiable.publisher import rotate_key

    url = _url(settings)
    upgrade(url)
    try:
        out = asyncio.run(rotate_key(settings, asyncpg_dsn(url)))
    except Exception as exc:  # e.g. a running server holds the writer lock
        print(f"envx: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


def cmd_backup(settings: Settings, args: argparse.Namespace) -> int:
    from exchange.core.backup import BackupError, backup
    from exchange.core.database import asyncpg_dsn

    try:
        out = backup(asyncpg_dsn(_url(settings)), settings.data_dir, Path(args.dir))
    except BackupError as exc:
        print(f"envx: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out, ensure_ascii=False, indent=2))
    print("envx: the checkpoint signing key and the credential key are NOT in the backup: keep them apart",
          file=sys.stderr)
    return 0


def cmd_restore(settings: Settings, args: argparse.Namespace) -> int:
    from datetime import datetime

    from exchange.core.backup import BackupError, restore

    if settings.database_url:
        print("envx: restore works on the embedded PostgreSQL; restore an external server with its own tools "
              "from the same base backup (DIR/base) and WAL archive", file=sys.stderr)
        return 2
    until = None
    if args.until:
        try:
            until = datetime.fromisoformat(args.until)
        except ValueError:
            print(f"envx: --until {args.until!r} is not an ISO 8601 time", file=sys.stderr)
            return 2
        if until.tzinfo is None:
            print("envx: --until needs an offset (e.g. 2026-12-01T03:54:52Z)", file=sys.stderr)
            return 2
    archive = None if args.no_wal else (Path(args.wal) if args.wal else settings.wal_archive_dir)
    try:
        r = restore(Path(args.dir), settings.data_dir, origin=settings.origin, archive=archive, until=until,
                    published_in=settings.wal_archive_dir)
    except BackupError as exc:
        print(f"envx: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"data_dir": str(r.pgdata), "ledger_entries": r.entries,
                      "last_published_checkpoint_size": r.checkpoint_size, "level": r.level, "detail": r.detail},
                     ensure_ascii=False, indent=2))
    if not r.level:
        print(f"envx: {r.detail}\nenvx: `envx serve` will refuse this database", file=sys.stderr)
        return 3
    return 0


def cmd_export_tiles(settings: Settings, args: argparse.Namespace) -> int:
    """The log as static C2SP tlog-tiles files (checkpoint last, so a mirror is never ahead of its tiles)."""
    import asyncpg

    from exchange.core.database import asyncpg_dsn
    from exchange.verifiable.tlog_serving import export

    out = Path(args.dir)
    skipped = "" if args.entries else " (entry bundles left out: --entries to include them)"

    async def run() -> int:
        conn = await asyncpg.connect(asyncpg_dsn(_url(settings)))
        count = 0
        try:
            async for path, data in export(conn):
                if path.startswith("tile/entries/") and not args.entries:
                    continue
                target = out / path
                target.parent.mkdir(parents=True, exist_ok=True)
                tmp = target.with_name(target.name + ".tmp")
                tmp.write_bytes(data)
                tmp.replace(target)
                count += 1
        finally:
            await conn.close()
        return count

    count = asyncio.run(run())
    if count == 0:
        print("envx: no checkpoint has been published yet; nothing exported", file=sys.stderr)
        return 1
    print(f"envx: {count} files written under {out}{skipped}")
    return 0


def cmd_witness(settings: Settings, args: argparse.Namespace) -> int:
    """A C2SP tlog-witness for the logs named by --log, with its own key and state file."""
    import os

    import uvicorn

    from api.witness_app import StateFileError, Witness, create_witness_app, parse_log_option
    from ledger.cosignature import Cosigner, generate_cosigner_key
    from ledger.note import InvalidKeyError

    key_file = Path(args.key_file)
    if not key_file.exists():
        if not args.name:
            print(f"envx: {key_file} does not exist; give --name to make a new witness key", file=sys.stderr)
            return 2
        skey, _ = generate_cosigner_key(args.name)
        key_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(skey + "\n")
    try:
        cosigner = Cosigner.from_key_string(key_file.read_text(encoding="ascii"))
        logs = parse_log_option(args.log)
        witness = Witness(cosigner, logs, Path(args.state))
    except (OSError, InvalidKeyError, StateFileError) as exc:
        print(f"envx: {exc}", file=sys.stderr)
        return 1
    vkey = cosigner.verifier().key_string()
    if args.print_key:
        print(vkey)
        return 0
    print(f"envx witness {vkey} on http://{args.host}:{args.port} for {', '.join(sorted(logs))}", flush=True)
    uvicorn.run(create_witness_app(witness), host=args.host, port=args.port, log_level=settings.log_level.lower(),
                access_log=False, log_config=None)
    return 0


def cmd_monitor(settings: Settings, args: argparse.Namespace) -> int:
    from exchange.verifiable.monitoring import run_monitor

    return run_monitor(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="envx", description="envx: environmental-rights exchange and registry")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations").set_defaults(fn=cmd_migrate)
    s = sub.add_parser("serve", help="run the API (embedded PostgreSQL unless ENVX_DATABASE_URL is set)")
    s.add_argument("--demo", action="store_true", help="load demo data and write demo API keys")
    s.add_argument("--host")
    s.add_argument("--port", type=int)
    s.set_defaults(fn=cmd_serve)
    admin = sub.add_parser("admin", help="administration").add_subparsers(dest="admin_command", required=True)
    ck = admin.add_parser("create-key", help="bootstrap an operator API key (database access; other participants "
                                             "enroll with an enrollment code)")
    ck.add_argument("--name", default="Registry operator", help="operator participant name (created if missing)")
    ck.add_argument("--participant", type=int, help="existing operator participant id instead of --name")
    ck.add_argument("--label", default="bootstrap")
    ck.add_argument("--server", metavar="URL", help="a running registry: propose a new operator (ENVX_API_KEY: your "
                                                    "operator key); another operator approves (`approve`)")
    ck.add_argument("--client-id", help="with --server: the proposal's idempotency key (a retry reuses it)")
    ck.set_defaults(fn=cmd_create_key)
    rk = admin.add_parser("rotate-key", help="new checkpoint signing key, registered in the log (server stopped; "
                                             "with --server: online, maker-checker)")
    rk.add_argument("--server", metavar="URL", help="a running registry: propose the rotation (ENVX_API_KEY)")
    rk.add_argument("--reason", default="scheduled rotation")
    rk.add_argument("--client-id", help="with --server: the proposal's idempotency key")
    rk.set_defaults(fn=cmd_rotate_key)
    ap = admin.add_parser("approve", help="approve an operator action on a running registry (ENVX_API_KEY: a "
                                          "second operator's key, never the proposer's)")
    ap.add_argument("action_id", type=int)
    ap.add_argument("--server", metavar="URL", required=True)
    ap.add_argument("--note")
    ap.set_defaults(fn=cmd_approve)
    en = admin.add_parser("enroll", help="exchange an enrollment code (both halves on stdin, one per line) for "
                                         "your own API key on a running registry")
    en.add_argument("--server", metavar="URL", required=True)
    en.add_argument("--label", default="cli")
    en.set_defaults(fn=cmd_enroll)
    v = sub.add_parser("verify", help="full audit of the ledger in the database")
    v.add_argument("--no-replay", action="store_true",
                   help="bytes, chain, tree and checkpoints only (skip the state-machine replay and projections)")
    v.add_argument("--checkpoint", action="append", metavar="FILE",
                   help="a checkpoint note you obtained earlier: the database must contain that tree (repeatable)")
    v.add_argument("--key", action="append", metavar="VERIFIER_KEY",
                   help="trust these keys for --checkpoint instead of the keys the log registers")
    v.add_argument("--jobs", type=int, default=None,
                   help="processes for the replay-free pass of a large log (default: CPU count)")
    v.set_defaults(fn=cmd_verify)
    b = sub.add_parser("backup", help="base backup of the database with the last published checkpoint and the "
                                      "public keys (never the private signing key)")
    b.add_argument("dir", help="a new (or empty) directory")
    b.set_defaults(fn=cmd_backup)
    r = sub.add_parser("restore", help="restore a backup into the embedded PostgreSQL of the data dir, replaying "
                                       "the WAL archive (to its end or to --until)")
    r.add_argument("dir", help="a directory made by `envx backup`")
    r.add_argument("--until", help="point in time (ISO 8601 with offset): replay the WAL up to it")
    r.add_argument("--wal", help="the WAL archive (default: ENVX_WAL_ARCHIVE_DIR)")
    r.add_argument("--no-wal", action="store_true", help="the base backup alone, no WAL replay")
    r.set_defaults(fn=cmd_restore)
    ex = sub.add_parser("export-tiles", help="write the log as static C2SP tlog-tiles files (checkpoint, tile/...)")
    ex.add_argument("dir", help="directory to write (created; existing files are replaced)")
    ex.add_argument("--entries", action="store_true",
                    help="include the entry bundles (the entries' bytes: accounts and quantities; not public by "
                         "default)")
    ex.set_defaults(fn=cmd_export_tiles)
    w = sub.add_parser("witness", help="run a C2SP tlog-witness (POST /add-checkpoint) with its own key and state")
    w.add_argument("--key-file", required=True, help="witness signing key (PRIVATE+KEY+..., type 0x04); made "
                                                     "with --name if missing")
    w.add_argument("--name", help="witness name for a new key (e.g. witness.bank.example)")
    w.add_argument("--log", action="append", default=[], metavar="LOG_KEY",
                   help="a log to witness: its checkpoint verifier key (the key name is the origin); repeat")
    w.add_argument("--state", required=True, help="state file: per log the size and root last cosigned")
    w.add_argument("--host", default="127.0.0.1")
    w.add_argument("--port", type=int, default=8100)
    w.add_argument("--print-key", action="store_true", help="print the witness's verifier key and exit")
    w.set_defaults(fn=cmd_witness)
    m = sub.add_parser("monitor", help="follow a remote envx log through its tiles and report inconsistencies")
    m.add_argument("url", help="the log's URL prefix (where /checkpoint and /tile/ are)")
    m.add_argument("--key", action="append", required=True, metavar="LOG_KEY", help="the log's checkpoint key")
    m.add_argument("--witness", action="append", default=[], metavar="WITNESS_KEY")
    m.add_argument("--quorum", type=int, default=0, help="cosignatures each checkpoint must carry")
    m.add_argument("--state", required=True, help="file keeping the last checkpoint seen (the monitor's memory)")
    m.add_argument("--interval", type=float, default=10.0, help="seconds between polls")
    m.add_argument("--once", action="store_true", help="check the current checkpoint once and exit")
    m.set_defaults(fn=cmd_monitor)
    sub.add_parser("verify-receipt", add_help=False,
                   help="verify a receipt offline: envx verify-receipt FILE --key LOG_KEY [--witness KEY "
                        "... --quorum K] (.tlog-proof, JSON receipt or restoration certificate)")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["verify-receipt"]:
        # Offline by design: no settings, no database; the verifier has its own arguments.
        from ledger.tlog_proof import main as verify_receipt  # .tlog-proof, else certificates, else receipts
        from pledges.certificate import verify_tlog_proof as search_certificate_proof

        return verify_receipt(argv[1:], shapes=[search_certificate_proof])
    args = build_parser().parse_args(argv)
    settings = get_settings()
    logs.setup(settings.log_format, settings.log_level)
    return int(args.fn(settings, args) or 0)


if __name__ == "__main__":
    sys.exit(main())
