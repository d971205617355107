"""The search certificate's PDF, rendered for anonymous visitors without letting them slow the registry.

One render costs about 2 s of CPU (subsetting the CJK font), in the serving process: unbounded, a few
anonymous clients would slow every write (red team round 4, F7). So renders run one at a time, only a few
wait (the rest are told to retry: 503 `render_busy`), and a rendered PDF is kept for the same search over
the same ledger head, so asking again costs nothing.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from exchange.core.errors import DomainError, Refusal

KEPT = 64  # PDFs kept, most recently asked first
WAITING = 4  # renders that may wait for the one running


class InquiryPdfs:
    def __init__(self, kept: int = KEPT, waiting: int = WAITING) -> None:
        self._kept: OrderedDict[bytes, bytes] = OrderedDict()
        self._size, self._most_waiting, self._waiting = kept, waiting, 0
        self._one = asyncio.Lock()

    @staticmethod
    def key(answers: list[dict[str, Any]]) -> bytes:
        """The searches and what they found, at which ledger head -- not when the certificate was signed."""
        certs = [{k: v for k, v in a["certificate"].items() if k != "issued_at"} for a in answers]
        return hashlib.sha256(json.dumps(certs, sort_keys=True, ensure_ascii=False).encode()).digest()

    async def render(self, answers: list[dict[str, Any]], draw: Callable[[list[dict[str, Any]]], bytes]) -> bytes:
        key = self.key(answers)
        if (kept := self._kept.get(key)) is not None:
            self._kept.move_to_end(key)
            return kept
        if self._waiting >= self._most_waiting:
            raise DomainError(Refusal.RENDER_BUSY, "the certificate PDF renderer is busy; retry in a few seconds "
                              "(the signed JSON certificate is available at once)", retry_after=5)
        self._waiting += 1
        try:
            async with self._one:
                if (kept := self._kept.get(key)) is None:  # rendered while this one waited?
                    kept = await asyncio.to_thread(draw, answers)
                    self._kept[key] = kept
                    if len(self._kept) > self._size:
                        self._kept.popitem(last=False)
                return kept
        finally:
            self._waiting -= 1
