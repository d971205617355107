"""The verifiable ledger in the running system: Merkle tiles, signed checkpoints, keys, fork check.

`VerifiableLedger.attach(writer)` registers, in this order, on the single ledger writer:
- on start: load (and, for entries written without it, build) the tree; refuse a database that is
  behind `<data dir>/checkpoint-latest.txt`; read what is published and which keys the log names;
- before commit: the batch's tiles, in the batch's transaction;
- after commit: adopt the new tree head; mark it for the checkpoint publisher.
`start(writer)` then registers this process's signing key in the log if it is new (first start or a
rotation) and starts the publisher.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import asyncpg

from exchange.core.backup import mirror_checkpoint
from exchange.core.principal import SYSTEM_ACTOR
from exchange.core.settings import Settings
from exchange.verifiable.signing import SigningKeyError, install_new_key, load_signer, new_key_file
from ledger import commands as c
from ledger.checkpoints import CheckpointPublisher, check_not_behind, key_in_force, registered_keys
from ledger.note import Signer
from ledger.state import Entry
from ledger.tree_store import TreeStore
from ledger.writer import LedgerWriter

log = logging.getLogger("envx.ledger")

LATEST_FILE = "checkpoint-latest.txt"


@dataclass(frozen=True, slots=True)
class Rotation:
    """A rotation of the checkpoint signing key: the key before, the key after, the log entry registering it
    (checkpoints of trees that include it are signed by the new key, of smaller trees by the old one)."""

    old_key: str
    new_key: str
    registered_at_seq: int
    retired_key_file: str | None


class VerifiableLedger:
    def __init__(self, settings: Settings, dsn: str, signer: Signer | None = None) -> None:
        self.settings = settings
        self.signer = signer or load_signer(settings)
        self._rotating = asyncio.Lock()
        self.tree = TreeStore()
        self.latest_file = settings.data_dir / LATEST_FILE
        self.publisher = CheckpointPublisher(
            dsn, origin=settings.origin, signer=self.signer, tree=self.tree,
            interval=settings.checkpoint_interval_seconds, latest_file=self.latest_file)
        self._log_keys: set[str] = set()
        if settings.wal_archive_dir is not None:  # the proof of what was published, beside the WAL
            archive = settings.wal_archive_dir
            self.publisher.on_publish.append(lambda text: mirror_checkpoint(archive, text))

    def attach(self, writer: LedgerWriter) -> None:
        writer.add_on_start(self.tree.on_start)
        writer.add_on_start(self._fork_check)
        writer.add_on_start(self.publisher.on_start)
        writer.add_on_start(self._load_keys)
        writer.add_before_commit(self.tree.before_commit)
        writer.add_after_commit(self.tree.after_commit)
        writer.add_after_commit(self.publisher.after_commit)
        writer.add_after_commit(self._note_keys)

    async def _fork_check(self, conn: asyncpg.Connection) -> None:
        try:
            text = self.latest_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            log.info("no %s yet: nothing published from this data dir", self.latest_file)
            return
        keys = [r["verifier_key"] for r in await registered_keys(conn)] + [self.signer.verifier_key_string()]
        cp = await check_not_behind(conn, text, origin=self.settings.origin, verifiers=keys,
                                    source=str(self.latest_file))
        log.info("database extends the last published checkpoint (size %d)", cp.size)

    async def _load_keys(self, conn: asyncpg.Connection) -> None:
        self._log_keys = {r["verifier_key"] for r in await registered_keys(conn)}

    async def _note_keys(self, entries: list[Entry]) -> None:
        self._log_keys.update(e.body["key"] for e in entries if e.type == "key.register")

    async def register_key(self, writer: LedgerWriter, signer: Signer) -> Entry | None:
        """Put ``signer``'s public key in the log (a rotation if another key was in force)."""
        vkey = signer.verifier_key_string()
        if vkey in self._log_keys:
            return None
        self.publisher.add_signer(signer)
        entry = await writer.submit(c.Request(SYSTEM_ACTOR, c.RegisterSigningKey(vkey),
                                              f"signing-key:{signer.key_id.hex()}"))
        log.info("signing key %s+%s registered in the log at seq %d", signer.name, signer.key_id.hex(), entry.seq)
        return entry

    async def rotate(self, writer: LedgerWriter, client_id: str) -> Rotation:
        """Rotate the signing key while serving: a new key file, installed (the old one kept as
        ``<file>.<key id>.retired``), then registered in the log through the running writer under `client_id`;
        from the tree that includes that entry on, checkpoints are signed by the new key (the publisher holds
        both: a checkpoint of a smaller tree still pending is signed by the old). Old keys stay published (they
        are entries of the log). One at a time. If the process dies between the install and the registration,
        the next start registers the installed key itself (`start`)."""
        async with self._rotating:
            old = self.signer
            new, new_path = new_key_file(self.settings)
            retired = install_new_key(self.settings, new_path, old.key_id.hex())
            self.publisher.add_signer(new)
            vkey = new.verifier_key_string()
            entry = await writer.submit(c.Request(SYSTEM_ACTOR, c.RegisterSigningKey(vkey), client_id))
            self._log_keys.add(vkey)
            self.signer = new  # what signs certificates from now on
            log.info("signing key rotated online: %s -> %s, registered at seq %d", old.verifier_key_string(), vkey,
                     entry.seq)
            return Rotation(old.verifier_key_string(), vkey, entry.seq, str(retired))

    async def start(self, writer: LedgerWriter) -> None:
        entry = await self.register_key(writer, self.signer)
        keys = self.publisher.keys
        if entry is not None:
            keys.append((entry.seq, self.signer.verifier_key_string()))  # even if its hook has not run yet
        in_force = key_in_force(keys, 2**63)
        if in_force != self.signer.verifier_key_string():
            # Our key is an older one the log has rotated away from: signing with it would be refused
            # by every verifier, so say so now instead of deferring checkpoints forever.
            raise SigningKeyError(f"the log names {in_force} as its current signing key, but this process holds "
                                  f"the older {self.signer.verifier_key_string()}; install the current key")
        await self.publisher.start()

    async def stop(self) -> None:
        await self.publisher.stop()


async def rotate_key(settings: Settings, dsn: str) -> dict[str, object]:
    """`envx admin rotate-key`: a new signing key, registered in the log, signing from now on.

    Needs the writer lock, so the server must be stopped. The new key file is installed before the
    registration entry: a crash in between leaves a key that the next start registers itself.
    """
    v = VerifiableLedger(settings, dsn)
    old = v.signer
    new, new_path = new_key_file(settings)
    writer = LedgerWriter(dsn)
    v.attach(writer)
    try:
        await writer.start()
    except BaseException:
        new_path.unlink(missing_ok=True)
        raise
    try:
        await v.start(writer)
        # Installed first, registered second: if anything fails from here on, the new key is the
        # one on disk and the next start registers it if the log does not name it yet.
        retired = install_new_key(settings, new_path, old.key_id.hex())
        entry = await v.register_key(writer, new)
        await v.publisher.publish_once()
    finally:
        await writer.stop()
        await v.stop()
    return {"old_key": old.verifier_key_string(), "new_key": new.verifier_key_string(),
            "registered_at_seq": entry.seq if entry else None, "retired_key_file": str(retired)}
