"""The security package's SQL: API keys, signing keys and signed instructions, enrollment codes, operator
actions, and the audit chain's queries (exchange/security/audit.py hashes and checks the chain). Every function
takes the caller's connection; rows become models (exchange/security/models.py) right here.

Two reads of the registry's participants table stay here because they lock a row in the caller's
transaction (FOR SHARE) or run before the registry can serve them: `participant_status` and `operator_named`."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from exchange.security.models import (
    AnonymousRefusals,
    AuditRecord,
    EnrollmentCode,
    KeyHolder,
    KeyRow,
    OperatorAction,
    SignaturePolicy,
    SigningKey,
)

_KEY = "id, participant_id, prefix, label, created_at, expires_at, revoked_at, parent_key_id, created_by"
_SIGNING_KEY = "id, participant_id, public_key, label, created_at, created_by, revoked_at, revoked_by"
_CODE = ("id, handle, participant_id, operator_action_id, four_eyes, created_by, client_id, first_hash, "
         "second_hash, second_by, created_at, completed_at, expires_at, used_at, used_client_id, "
         "used_fingerprint, key_id, cancelled_at, cancel_reason")
_ACTION = ("id, kind, payload, summary, status, proposed_by, client_id, created_at, expires_at, decided_by, "
           "decided_at, decision_note, result, error, fingerprint")


# --- participants (the registry's rows, as security needs them) ----------------------------------------------


async def participant_status(conn: AsyncConnection, participant_id: int) -> str | None:
    """The participant's status, its row locked FOR SHARE: a concurrent suspension waits for us or comes first."""
    status = (await conn.execute(text("SELECT status FROM participants WHERE id = :p FOR SHARE"),
                                 {"p": participant_id})).scalar()
    return None if status is None else str(status)


async def operator_named(conn: AsyncConnection, name: str | None) -> int | None:
    row = (await conn.execute(text(
        "SELECT id FROM participants WHERE kind = 'operator' AND name = :n ORDER BY id LIMIT 1"), {"n": name})).first()
    return None if row is None else int(row.id)


# --- API keys -------------------------------------------------------------------------------------------------


async def insert_key(conn: AsyncConnection, *, participant_id: int, prefix: str, secret_hash: bytes, label: str,
                     expires_at: datetime | None, parent_key_id: int | None, created_by: str,
                     client_id: str | None, fingerprint: bytes | None) -> KeyRow:
    row = (await conn.execute(
        text(f"""INSERT INTO api_keys (participant_id, prefix, secret_hash, label, expires_at, parent_key_id,
                                       created_by, client_id, fingerprint)
                 VALUES (:p, :prefix, :h, :label, :exp, :parent, :by, :cid, :fp) RETURNING {_KEY}"""),
        {"p": participant_id, "prefix": prefix, "h": secret_hash, "label": label, "exp": expires_at,
         "parent": parent_key_id, "by": created_by, "cid": client_id, "fp": fingerprint})).one()
    return KeyRow.from_row(row)


async def secret_hash(conn: AsyncConnection, key_id: int) -> bytes | None:
    stored = (await conn.execute(text("SELECT secret_hash FROM api_keys WHERE id = :i"), {"i": key_id})).scalar()
    return None if stored is None else bytes(stored)


async def get_key(conn: AsyncConnection, key_id: int, *, lock: bool = False) -> KeyRow | None:
    row = (await conn.execute(text(f"SELECT {_KEY} FROM api_keys WHERE id = :i" + (" FOR SHARE" if lock else "")),
                              {"i": key_id})).first()
    return KeyRow.from_row(row) if row else None


async def minted_by(conn: AsyncConnection, parent_key_id: int, client_id: str) -> tuple[KeyRow, bytes] | None:
    row = (await conn.execute(
        text(f"SELECT {_KEY}, fingerprint FROM api_keys WHERE parent_key_id = :k AND client_id = :c"),
        {"k": parent_key_id, "c": client_id})).first()
    return (KeyRow.from_row(row), bytes(row.fingerprint or b"")) if row else None


async def live_keys_locked(conn: AsyncConnection, participant_id: int) -> int:
    """How many of the participant's API keys work now (unrevoked, unexpired), counted under a lock that
    concurrent mints for the participant take too (released at commit), so a cap holds under a race."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('api_keys'), CAST(:p AS integer))"),
                       {"p": participant_id})
    return int((await conn.execute(text(
        """SELECT count(*) FROM api_keys WHERE participant_id = :p AND revoked_at IS NULL
             AND (expires_at IS NULL OR expires_at > now())"""), {"p": participant_id})).scalar_one())


async def keys_of(conn: AsyncConnection, participant_id: int) -> list[KeyRow]:
    rows = await conn.execute(text(f"SELECT {_KEY} FROM api_keys WHERE participant_id = :p ORDER BY id"),
                              {"p": participant_id})
    return [KeyRow.from_row(r) for r in rows]


async def revoke_tree(conn: AsyncConnection, root_id: int) -> list[int]:
    """Revoke a key and everything minted under it, transitively; returns every id in that tree.

    The root is locked first (a mint under it holds FOR SHARE on it and is either committed before, and
    its child is found below, or waits and then sees the root revoked). Each level is a new statement,
    hence a new snapshot under READ COMMITTED: a child committed while we waited for its parent's row
    lock is found by the next level."""
    await conn.execute(text("SELECT id FROM api_keys WHERE id = :i FOR UPDATE"), {"i": root_id})
    await conn.execute(text("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = :i"),
                       {"i": root_id})
    tree, frontier = [root_id], [root_id]
    while frontier:
        rows = await conn.execute(
            text("""UPDATE api_keys SET revoked_at = coalesce(revoked_at, now())
                    WHERE parent_key_id = ANY(:f) RETURNING id"""), {"f": frontier})
        frontier = [int(r.id) for r in rows]
        tree += frontier
    return tree


async def key_holder(conn: AsyncConnection, prefix: str) -> KeyHolder | None:
    row = (await conn.execute(
        text("""SELECT k.id, k.secret_hash, k.expires_at, k.revoked_at, p.id AS pid, p.kind, p.name,
                       p.status, p.holding_account, p.cash_account
                FROM api_keys k JOIN participants p ON p.id = k.participant_id WHERE k.prefix = :prefix"""),
        {"prefix": prefix})).first()
    return None if row is None else KeyHolder.from_row(row)


# --- signing keys, the signature policy and signed instructions ---------------------------------------------


async def insert_signing_key(conn: AsyncConnection, participant_id: int, public_key: bytes, label: str,
                             created_by: str) -> SigningKey:
    row = (await conn.execute(
        text(f"""INSERT INTO participant_signing_keys (participant_id, public_key, label, created_by)
                 VALUES (:p, :k, :l, :a) RETURNING {_SIGNING_KEY}"""),
        {"p": participant_id, "k": public_key, "l": label, "a": created_by})).one()
    return SigningKey.from_row(row)


async def signing_keys_of(conn: AsyncConnection, participant_id: int) -> list[SigningKey]:
    rows = await conn.execute(
        text(f"SELECT {_SIGNING_KEY} FROM participant_signing_keys WHERE participant_id = :p ORDER BY id"),
        {"p": participant_id})
    return [SigningKey.from_row(r) for r in rows]


async def signing_key(conn: AsyncConnection, key_id: int) -> SigningKey | None:
    row = (await conn.execute(text(f"SELECT {_SIGNING_KEY} FROM participant_signing_keys WHERE id = :k"),
                              {"k": key_id})).first()
    return None if row is None else SigningKey.from_row(row)


async def revoke_signing_key(conn: AsyncConnection, participant_id: int, key_id: int,
                             actor: str) -> SigningKey | None:
    row = (await conn.execute(
        text(f"""UPDATE participant_signing_keys SET revoked_at = coalesce(revoked_at, now()),
                     revoked_by = coalesce(revoked_by, :a)
                 WHERE id = :k AND participant_id = :p RETURNING {_SIGNING_KEY}"""),
        {"a": actor, "k": key_id, "p": participant_id})).first()
    return None if row is None else SigningKey.from_row(row)


async def has_live_signing_key(conn: AsyncConnection, participant_id: int) -> bool:
    live = (await conn.execute(
        text("SELECT 1 FROM participant_signing_keys WHERE participant_id = :p AND revoked_at IS NULL"),
        {"p": participant_id})).first()
    return live is not None


async def set_signature_policy(conn: AsyncConnection, participant_id: int, require: bool) -> SignaturePolicy | None:
    row = (await conn.execute(
        text("UPDATE participants SET require_signatures = :r WHERE id = :p RETURNING id, require_signatures"),
        {"r": require, "p": participant_id})).first()
    return None if row is None else SignaturePolicy(row.id, row.require_signatures)


async def signature_policy(conn: AsyncConnection, participant_id: int) -> SignaturePolicy | None:
    row = (await conn.execute(text("SELECT id, require_signatures FROM participants WHERE id = :p"),
                              {"p": participant_id})).first()
    return None if row is None else SignaturePolicy(row.id, row.require_signatures)


async def record_signed_instruction(conn: AsyncConnection, *, signing_key_id: int, participant_id: int,
                                    api_key_id: int, nonce: str, signed_ts: int, method: str, target: str,
                                    body: bytes, body_sha256: bytes, signature: bytes,
                                    operation: str | None) -> int | None:
    """Store a verified instruction (which consumes its nonce); None if the nonce was used with this key."""
    record = (await conn.execute(
        text("""INSERT INTO signed_instructions (signing_key_id, participant_id, api_key_id, nonce, signed_ts,
                    method, target, body, body_sha256, signature, operation)
                VALUES (:k, :p, :ak, :n, :ts, :m, :t, :b, :d, :s, :op)
                ON CONFLICT (signing_key_id, nonce) DO NOTHING RETURNING id"""),
        {"k": signing_key_id, "p": participant_id, "ak": api_key_id, "n": nonce, "ts": signed_ts, "m": method,
         "t": target, "b": body, "d": body_sha256, "s": signature, "op": operation})).scalar()
    return None if record is None else int(record)


# --- enrollment codes ---------------------------------------------------------------------------------------


async def open_code(conn: AsyncConnection, *, handle: str, participant_id: int | None,
                    operator_action_id: int | None, four_eyes: bool, created_by: str, client_id: str,
                    first_hash: bytes) -> EnrollmentCode:
    """The code's row with its first half's digest (idempotent by (created_by, client_id): an earlier row wins)."""
    await conn.execute(
        text("""INSERT INTO enrollment_codes (handle, participant_id, operator_action_id, four_eyes, created_by,
                                              client_id, first_hash)
                VALUES (:h, :p, :a, :fe, :by, :cid, :d) ON CONFLICT (created_by, client_id) DO NOTHING"""),
        {"h": handle, "p": participant_id, "a": operator_action_id, "fe": four_eyes, "by": created_by,
         "cid": client_id, "d": first_hash})
    row = (await conn.execute(text(f"SELECT {_CODE} FROM enrollment_codes WHERE created_by = :by AND client_id = :cid"),
                              {"by": created_by, "cid": client_id})).one()
    return EnrollmentCode.from_row(row)


async def code_of_action(conn: AsyncConnection, action_id: int, *, lock: bool = False) -> EnrollmentCode | None:
    row = (await conn.execute(text(f"SELECT {_CODE} FROM enrollment_codes WHERE operator_action_id = :a"
                                   + (" FOR UPDATE" if lock else "")), {"a": action_id})).first()
    return None if row is None else EnrollmentCode.from_row(row)


async def lock_code(conn: AsyncConnection, code_id: int) -> EnrollmentCode:
    row = (await conn.execute(text(f"SELECT {_CODE} FROM enrollment_codes WHERE id = :i FOR UPDATE"),
                              {"i": code_id})).one()
    return EnrollmentCode.from_row(row)


async def lock_code_by_handle(conn: AsyncConnection, handle: str) -> EnrollmentCode | None:
    row = (await conn.execute(text(f"SELECT {_CODE} FROM enrollment_codes WHERE handle = :h FOR UPDATE"),
                              {"h": handle})).first()
    return None if row is None else EnrollmentCode.from_row(row)


async def cancel_open_codes(conn: AsyncConnection, participant_id: int, except_id: int, reason: str) -> None:
    """Cancel the participant's completed, unused codes other than `except_id`."""
    await conn.execute(
        text("""UPDATE enrollment_codes SET cancelled_at = now(), cancel_reason = :why
                WHERE participant_id = :p AND id <> :i AND completed_at IS NOT NULL AND used_at IS NULL
                  AND cancelled_at IS NULL"""),
        {"p": participant_id, "i": except_id, "why": reason})


async def complete_code(conn: AsyncConnection, code_id: int, participant_id: int, second_hash: bytes,
                        second_by: str, ttl_seconds: float) -> EnrollmentCode:
    row = (await conn.execute(
        text(f"""UPDATE enrollment_codes SET participant_id = :p, second_hash = :d, second_by = :by,
                     completed_at = now(), expires_at = now() + make_interval(secs => :ttl)
                 WHERE id = :i RETURNING {_CODE}"""),
        {"p": participant_id, "d": second_hash, "by": second_by, "ttl": ttl_seconds, "i": code_id})).one()
    return EnrollmentCode.from_row(row)


async def mark_code_used(conn: AsyncConnection, code_id: int, client_id: str, fingerprint: bytes,
                         key_id: int) -> None:
    await conn.execute(
        text("""UPDATE enrollment_codes SET used_at = now(), used_client_id = :cid, used_fingerprint = :fp,
                    key_id = :k WHERE id = :i"""), {"cid": client_id, "fp": fingerprint, "k": key_id, "i": code_id})


async def codes_of(conn: AsyncConnection, participant_id: int) -> list[EnrollmentCode]:
    rows = await conn.execute(text(f"SELECT {_CODE} FROM enrollment_codes WHERE participant_id = :p ORDER BY id"),
                              {"p": participant_id})
    return [EnrollmentCode.from_row(r) for r in rows]


# --- operator actions -----------------------------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, default=str)


async def action_by_client(conn: AsyncConnection, proposed_by: str, client_id: str) -> OperatorAction | None:
    row = (await conn.execute(text(f"SELECT {_ACTION} FROM operator_actions WHERE proposed_by = :a AND client_id = :c"),
                              {"a": proposed_by, "c": client_id})).first()
    return None if row is None else OperatorAction.from_row(row)


async def insert_action(conn: AsyncConnection, *, kind: str, payload: dict[str, Any], summary: str,
                        proposed_by: str, client_id: str, fingerprint: bytes, expires_at: datetime) -> int | None:
    """The new proposal's id; None if a concurrent retry inserted it first."""
    new = (await conn.execute(
        text("""INSERT INTO operator_actions (kind, payload, summary, proposed_by, client_id, fingerprint, expires_at)
                VALUES (:k, CAST(:p AS jsonb), :s, :a, :c, :fp, :exp)
                ON CONFLICT (proposed_by, client_id) DO NOTHING RETURNING id"""),
        {"k": kind, "p": _json(payload), "s": summary, "a": proposed_by, "c": client_id, "fp": fingerprint,
         "exp": expires_at})).scalar()
    return None if new is None else int(new)


async def get_action(conn: AsyncConnection, action_id: int, *, lock: bool = False) -> OperatorAction | None:
    row = (await conn.execute(text(f"SELECT {_ACTION} FROM operator_actions WHERE id = :i"
                                   + (" FOR UPDATE" if lock else "")), {"i": action_id})).first()
    return None if row is None else OperatorAction.from_row(row)


async def actions(conn: AsyncConnection, status: str | None, limit: int, after: int) -> list[OperatorAction]:
    sql = f"SELECT {_ACTION} FROM operator_actions WHERE id > :after"
    params: dict[str, Any] = {"after": after, "limit": limit}
    if status:
        sql += " AND status = :status"
        params["status"] = status
    return [OperatorAction.from_row(r) for r in await conn.execute(text(sql + " ORDER BY id LIMIT :limit"), params)]


async def action_approved(conn: AsyncConnection, action_id: int, decided_by: str, note: str | None) -> None:
    """Decided, not executed yet (exchange.security.operator_actions.approve executes it after this commits)."""
    await conn.execute(
        text("""UPDATE operator_actions SET status = 'approved', decided_by = :d, decided_at = now(),
                    decision_note = :n WHERE id = :i AND status = 'pending'"""),
        {"d": decided_by, "n": note, "i": action_id})


async def action_failed(conn: AsyncConnection, action_id: int, decided_by: str, note: str | None,
                        error: dict[str, Any]) -> None:
    await conn.execute(
        text("""UPDATE operator_actions SET status = 'failed', decided_by = :d, decided_at = now(),
                    decision_note = :n, error = CAST(:e AS jsonb) WHERE id = :i"""),
        {"d": decided_by, "n": note, "i": action_id, "e": _json(error)})


async def action_executed(conn: AsyncConnection, action_id: int, decided_by: str, note: str | None,
                          result: dict[str, Any]) -> None:
    await conn.execute(
        text("""UPDATE operator_actions SET status = 'executed', decided_by = :d, decided_at = now(),
                    decision_note = :n, result = CAST(:r AS jsonb) WHERE id = :i"""),
        {"d": decided_by, "n": note, "r": _json(result), "i": action_id})


async def action_rejected(conn: AsyncConnection, action_id: int, decided_by: str, note: str | None) -> None:
    await conn.execute(
        text("""UPDATE operator_actions SET status = 'rejected', decided_by = :d, decided_at = now(),
                    decision_note = :n WHERE id = :i"""), {"d": decided_by, "n": note, "i": action_id})


# --- the audit chain (exchange/security/audit.py) ---------------------------------------------------------------

_AUDIT = ("seq, ts, actor, participant_kind, api_key_id, operation, method, path, client_ip, forwarded_for, "
          "status, outcome, detail, prev_hash, hash")


async def lock_audit(conn: AsyncConnection, key: int) -> None:
    """The transaction-scoped advisory lock that serialises appends."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


async def audit_head(conn: AsyncConnection) -> tuple[int, bytes] | None:
    """(seq, hash) of the last row; None for an empty chain."""
    last = (await conn.execute(text("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1"))).first()
    return None if last is None else (int(last.seq), bytes(last.hash))


async def insert_audit_row(conn: AsyncConnection, row: dict[str, Any], prev: bytes, digest: bytes) -> None:
    await conn.execute(text(f"INSERT INTO audit_log ({_AUDIT}) VALUES (:seq, :ts, :actor, :participant_kind, "
                            ":api_key_id, :operation, :method, :path, :client_ip, :forwarded_for, :status, "
                            ":outcome, :detail, :prev, :hash)"),
                       {**row, "prev": prev, "hash": digest})


async def count_anonymous_refusal(conn: AsyncConnection, client_ip: str, minute: int, operation: str) -> int:
    """Count one more keyless refusal of `client_ip` in `minute` (POSIX seconds); the count so far."""
    count = (await conn.execute(text(
        """INSERT INTO audit_anonymous_refusals (client_ip, minute, refusals, last_operation, last_at)
           VALUES (:ip, to_timestamp(:m), 1, :op, now())
           ON CONFLICT (client_ip, minute) DO UPDATE SET refusals = audit_anonymous_refusals.refusals + 1,
               last_operation = EXCLUDED.last_operation, last_at = EXCLUDED.last_at
           RETURNING refusals"""),
        {"ip": client_ip, "m": minute, "op": operation})).scalar_one()
    return int(count)


async def first_anonymous_refusal(conn: AsyncConnection, client_ip: str, minute: int, seq: int) -> None:
    """The chain row that recorded the first refusal of that address and minute."""
    await conn.execute(text("UPDATE audit_anonymous_refusals SET first_seq = :s WHERE client_ip = :ip "
                            "AND minute = to_timestamp(:m)"), {"s": seq, "ip": client_ip, "m": minute})


async def anonymous_refusals(conn: AsyncConnection, *, after_minute: int, limit: int) -> list[AnonymousRefusals]:
    rows = await conn.execute(text(
        """SELECT client_ip, extract(epoch FROM minute)::bigint AS minute, refusals, first_seq, last_operation,
                  last_at FROM audit_anonymous_refusals WHERE minute > to_timestamp(:a)
           ORDER BY minute, client_ip LIMIT :n"""), {"a": after_minute, "n": limit})
    return [AnonymousRefusals.from_row(r) for r in rows]


async def audit_rows(conn: AsyncConnection, *, after: int, limit: int, operation: str | None = None,
                     actor: str | None = None) -> list[AuditRecord]:
    """Rows by seq after `after`, optionally of one operation or actor."""
    sql = f"SELECT {_AUDIT} FROM audit_log WHERE seq > :after"
    params: dict[str, Any] = {"after": after, "limit": limit}
    if operation:
        sql += " AND operation = :op"
        params["op"] = operation
    if actor:
        sql += " AND actor = :actor"
        params["actor"] = actor
    rows = await conn.execute(text(sql + " ORDER BY seq LIMIT :limit"), params)
    return [AuditRecord.from_row(r) for r in rows]


async def audit_hash(conn: AsyncConnection, seq: int) -> bytes | None:
    got = (await conn.execute(text("SELECT hash FROM audit_log WHERE seq = :s"), {"s": seq})).scalar()
    return None if got is None else bytes(got)


async def lock_identified(conn: AsyncConnection, actor: str) -> None:
    """The transaction-scoped advisory lock under which a caller's identified lookups are counted."""
    await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('identified'), hashtext(:a))"), {"a": actor})


async def audit_count_since(conn: AsyncConnection, operation: str, actor: str, since_us: int) -> int:
    """How many rows of `operation` by `actor` the chain holds from `since_us` (UTC microseconds) on."""
    n = (await conn.execute(text("SELECT count(*) FROM audit_log WHERE actor = :a AND operation = :op "
                                 "AND ts >= :t"), {"a": actor, "op": operation, "t": since_us})).scalar_one()
    return int(n)
