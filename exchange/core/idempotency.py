"""Idempotency for exchange-level mutations: every mutated row carries (actor, client_id, fingerprint)
under a unique index; a retry with the same request gets the original, a different one is refused.

Two helpers on top of that:
- `replay_on_refusal`: a request that is refused, or loses a unique-index race, because a concurrent twin
  (same actor and client id) got there first answers what the twin did, not the refusal;
- stored answers (`answers_by_request`): the HTTP edge keeps the exact bytes of each successful keyed
  answer, so a retry of the same request gets them back unchanged (api/security/replays.py) — except an
  answer that shows a secret (any field named in SECRET_FIELDS, at any depth): the store refuses it, and
  a retry gets the service's own replay, which derives the secret again (exchange/security/keys.py) rather than
  reading it back from a table. `AnswerLog` reads and keeps them for the requests of a moment together:
  one statement looks up the earlier answers of all the keyed requests that arrived meanwhile, one
  transaction keeps the new answers of all that finished meanwhile (each request still waits for its own
  answer's commit before that answer leaves).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from exchange.core import store
from exchange.core.errors import DomainError, Invalid
from exchange.core.store import Answer
from ledger.encoding import canonical_json

MAX_CLIENT_ID = 128
# What a caller's idempotency key may be: 1-128 printable ASCII characters (space to tilde), in the header
# or the body's client_id alike.
_CLIENT_KEY = re.compile(r"[\x20-\x7e]{1,128}")
# Client ids the registry derives itself (the execution of operator action N, ...) start with this
# character, which no caller's key may contain: a caller can never name, replay or pre-empt them.
INTERNAL = "\u00a7"
T = TypeVar("T")
I = TypeVar("I")  # noqa: E741
# The fields in which an answer shows a secret once: an API key's token, a half of an enrollment code, a
# webhook's signing secret. No table keeps an answer holding one, and the audit trail redacts them.
SECRET_FIELDS = frozenset({"token", "first_half", "second_half", "secret"})


def fingerprint(payload: dict[str, Any]) -> bytes:
    return hashlib.sha256(canonical_json(payload)).digest()


def require_client_id(header: str | None, body_value: str | None) -> str:
    """The idempotency key, from the `Idempotency-Key` header or the body's `client_id`."""
    if header and body_value and header != body_value:
        raise Invalid("idempotency_key_mismatch", "Idempotency-Key header and client_id differ")
    key = header or body_value
    if not key:
        raise Invalid("idempotency_key_required", "send an Idempotency-Key header or a client_id")
    if not valid_client_key(key):
        raise Invalid("invalid_idempotency_key",
                      f"idempotency keys are 1-{MAX_CLIENT_ID} printable ASCII characters (space to ~)")
    return key


def valid_client_key(key: str) -> bool:
    """Whether a caller may use `key` as its idempotency key (never one of the registry's own, `internal`)."""
    return _CLIENT_KEY.fullmatch(key) is not None


def internal(*parts: object) -> str:
    """A client id the registry derives for its own work, e.g. internal("operator-action", 7): in a
    namespace no caller can type (callers' keys are ASCII; this starts with INTERNAL)."""
    return INTERNAL + ":".join(str(p) for p in parts)


def check_replay(stored: bytes | None, fp: bytes) -> None:
    if stored is not None and bytes(stored) != fp:
        raise DomainError("idempotency_conflict", "this client id was already used for a different request")


async def replay_on_refusal(work: Callable[[], Awaitable[T]], replay: Callable[[], Awaitable[T | None]]) -> T:
    """Run `work`. If it is refused (DomainError) or a unique index refuses its insert (IntegrityError),
    ask `replay` for what this client id already did — a concurrent twin may have committed first, after
    `work` looked — and answer that instead. `replay` raises `idempotency_conflict` if the client id was
    used for a different request, and returns None if it was not used: then the refusal stands."""
    try:
        return await work()
    except (DomainError, IntegrityError):
        prior = await replay()
        if prior is None:
            raise
        return prior


async def stored_answer(conn: AsyncConnection, actor: str, client_id: str, request_sha256: bytes) -> Answer | None:
    return await store.stored_answer(conn, actor, client_id, request_sha256)


_SECRET_NAMES = tuple(f'"{name}"'.encode() for name in SECRET_FIELDS)


def encoded_carries_secret(body: bytes) -> bool:
    """`carries_secret` of a body a JSON encoder of ours just wrote (an order's answer in its sequencer): without a
    backslash (no escaped name) and without any of the names in quotes, none of its keys is one, and it is not
    parsed to know it (an order's answer, every time); otherwise `carries_secret` looks through it."""
    if b"\\" not in body and not any(name in body for name in _SECRET_NAMES):
        return False
    return carries_secret(body)


def carries_secret(body: bytes) -> bool:
    """Whether an answer has a field named in SECRET_FIELDS anywhere in it. An answer that is not JSON
    cannot be looked through, so it counts as carrying one."""
    try:
        stack: list[Any] = [json.loads(body)]
    except (ValueError, RecursionError):
        return True
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if not SECRET_FIELDS.isdisjoint(value):
                return True
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


async def store_answer(conn: AsyncConnection, actor: str, client_id: str, request_sha256: bytes,
                       answer: Answer) -> bool:
    """Keep the answer for exact replays; False, and nothing kept, if it shows a secret."""
    if carries_secret(answer.body):
        return False
    await store.insert_answer(conn, actor, client_id, request_sha256, answer)
    return True


Request = tuple[str, str, bytes]  # (actor, client id, request digest)


class Grouped(Generic[I, T]):
    """Calls of one coroutine on lists: each `await grouped(item)` joins the list being gathered, and one task
    runs `run(list)` for everything that arrived while the previous list ran (at most MAX items each), then
    hands each caller its own result, or the list's exception. A caller that goes away (cancelled) only stops
    waiting: its item's work still runs with the others."""

    MAX = 500

    def __init__(self, run: Callable[[list[I]], Awaitable[list[T]]]) -> None:
        self._run = run
        self._pending: list[tuple[I, asyncio.Future[T]]] = []
        self._task: asyncio.Task[None] | None = None

    async def __call__(self, item: I) -> T:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[T] = loop.create_future()
        self._pending.append((item, done))
        if self._task is None:
            self._task = loop.create_task(self._drain())
        return await done

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending[:self.MAX], self._pending[self.MAX:]
                try:
                    results = await self._run([item for item, _ in batch])
                except Exception as exc:
                    for _, done in batch:
                        if not done.done():
                            done.set_exception(exc)
                except BaseException:
                    for _, done in [*batch, *self._pending]:
                        done.cancel()
                    self._pending = []
                    raise
                else:
                    for (_, done), result in zip(batch, results, strict=True):
                        if not done.done():
                            done.set_result(result)
        finally:
            self._task = None


class AnswerLog:
    """The stored answers of one runtime's database, looked up and kept in groups (see the module's doc)."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        # A look-up is one statement: no transaction around it (no BEGIN, no ROLLBACK), same pool.
        self._autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        self.find = Grouped[Request, Answer | None](self._find)
        self._keep = Grouped[tuple[str, str, bytes, Answer], None](self._insert)

    async def _find(self, requests: list[Request]) -> list[Answer | None]:
        async with self._autocommit.connect() as conn:
            found = await store.stored_answers_of(conn, requests)
        return [found.get(r) for r in requests]

    async def _insert(self, rows: list[tuple[str, str, bytes, Answer]]) -> list[None]:
        async with self.engine.begin() as conn:
            await store.insert_answers_of(conn, rows)
        return [None] * len(rows)

    async def keep(self, actor: str, client_id: str, request_sha256: bytes, answer: Answer) -> bool:
        """Keep the answer for exact replays, committed when this returns; False, and nothing kept, if it
        shows a secret (as `store_answer`)."""
        if carries_secret(answer.body):
            return False
        await self._keep((actor, client_id, request_sha256, answer))
        return True
