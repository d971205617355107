"""Search-certificate PDFs cost the registry little however many anonymous visitors ask (red team round 4,
F7): a repeat of a search over the same ledger head is the PDF already rendered, renders run one at a time,
and only a few wait; the rest are told to retry (503 render_busy), never left to pile up."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from api.portal.pdfs import WAITING, InquiryPdfs
from exchange.core.errors import DomainError
from tests.helpers import Api

# (Here, not in tests/portal: the browser tests keep an event loop running in the main thread once Chromium is
# open, and these tests call asyncio.run.)


def _answers(q: str, head: int = 7) -> list[dict[str, Any]]:
    return [{"certificate": {"record": "pledges", "query": {"name": q}, "ledger_head": {"seq": head},
                             "results": [], "issued_at": time.time()}, "signature": {}}]


def test_one_render_at_a_time_a_few_waiting_the_rest_refused() -> None:
    running, most = [0], [0]
    lock = threading.Lock()

    def draw(answers: list[dict[str, Any]]) -> bytes:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return repr(answers[0]["certificate"]["query"]).encode()

    async def main() -> list[bytes | str]:
        pdfs = InquiryPdfs()

        async def one(q: str) -> bytes | str:
            try:
                return await pdfs.render(_answers(q), draw)
            except DomainError as exc:
                return str(exc.code)

        return await asyncio.gather(*(one(f"q{i}") for i in range(WAITING + 4)))

    out = asyncio.run(main())
    assert most[0] == 1  # never two renders at once
    assert sum(isinstance(o, bytes) for o in out) == WAITING  # the first and those that waited behind it
    assert out.count("render_busy") == 4


def test_the_same_search_over_the_same_head_is_rendered_once() -> None:
    calls = []

    def draw(answers: list[dict[str, Any]]) -> bytes:
        calls.append(1)
        return b"%PDF-" + str(len(calls)).encode()

    async def main() -> tuple[bytes, bytes, bytes]:
        pdfs = InquiryPdfs()
        first = await pdfs.render(_answers("张三"), draw)
        again = await pdfs.render(_answers("张三"), draw)  # signed later (another issued_at), same state
        later = await pdfs.render(_answers("张三", head=8), draw)  # the ledger moved on: a new certificate
        return first, again, later

    first, again, later = asyncio.run(main())
    assert first == again != later and len(calls) == 2


def test_over_http_a_repeated_pdf_is_the_same_bytes(api: Api) -> None:
    r1 = api.client.get("/portal/inquiry.pdf", params={"by": "name", "q": "无此人"})
    time.sleep(1.1)  # a certificate signed anew would carry another issued_at (whole seconds): other bytes
    r2 = api.client.get("/portal/inquiry.pdf", params={"by": "name", "q": "无此人"})
    assert r1.status_code == r2.status_code == 200 and r1.headers["content-type"] == "application/pdf"
    assert r1.content == r2.content
