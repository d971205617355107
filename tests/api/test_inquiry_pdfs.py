"""Search-certificate PDFs cost the registry little however many anonymous visitors ask (red team round 4,
F7; round 5, F5): a repeat of a search over the same ledger head is the PDF already rendered, renders run one
at a time, only a few wait (the rest are told to retry, 503 render_busy), and each address gets a share: one
render at a time, a small budget, and a waiting place ahead of the addresses that rendered more."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from api.portal.pdfs import PER_ADDRESS_BURST, WAITING, InquiryPdfs, in_thread
from exchange.core.errors import DomainError
from exchange.core.settings import Settings
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
        pdfs = InquiryPdfs(runner=in_thread)

        async def one(q: str) -> bytes | str:
            try:
                return await pdfs.render(_answers(q), draw, f"10.0.0.{q}")
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
        pdfs = InquiryPdfs(runner=in_thread)
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


def _slow(answers: list[dict[str, Any]]) -> bytes:
    time.sleep(0.2)
    return repr(answers[0]["certificate"]["query"]).encode()


async def _try(pdfs: InquiryPdfs, q: str, address: str) -> bytes | str:
    try:
        return await pdfs.render(_answers(q), _slow, address)
    except DomainError as exc:
        return str(exc.code)


def test_one_render_at_a_time_per_address_and_a_budget_per_address() -> None:
    async def main() -> tuple[list[bytes | str], list[bytes | str]]:
        pdfs = InquiryPdfs(runner=in_thread)
        together = await asyncio.gather(_try(pdfs, "a", "10.0.0.1"), _try(pdfs, "b", "10.0.0.1"),
                                        _try(pdfs, "c", "10.0.0.2"))
        one_by_one = [await _try(pdfs, f"d{i}", "10.0.0.3") for i in range(PER_ADDRESS_BURST + 1)]
        return together, one_by_one

    together, one_by_one = asyncio.run(main())
    assert isinstance(together[0], bytes) and together[1] == "rate_limited" and isinstance(together[2], bytes)
    assert all(isinstance(o, bytes) for o in one_by_one[:-1]) and one_by_one[-1] == "rate_limited"


def test_a_newcomer_takes_the_place_of_the_address_that_rendered_most() -> None:
    async def main() -> tuple[list[bytes | str], bytes | str]:
        pdfs = InquiryPdfs(runner=in_thread)
        for i in range(2):  # 10.0.0.9 has rendered twice lately, the others once
            assert isinstance(await _try(pdfs, f"warm9-{i}", "10.0.0.9"), bytes)
        for k in range(1, WAITING):
            assert isinstance(await _try(pdfs, f"warm{k}", f"10.0.0.{k}"), bytes)
        loopers = [asyncio.create_task(_try(pdfs, f"loop{k}", f"10.0.0.{k}")) for k in (9, *range(1, WAITING))]
        await asyncio.sleep(0)  # all queued; the first is rendering
        visitor = await _try(pdfs, "visitor", "192.0.2.7")
        return list(await asyncio.gather(*loopers)), visitor

    loopers, visitor = asyncio.run(main())
    assert isinstance(visitor, bytes)
    assert loopers.count("render_busy") == 1 and loopers[0] == "render_busy"  # 10.0.0.9 gave up its place


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # The default budget, not the one tests/conftest.py sets through the environment for other tests.
    default = Settings.model_fields["inquiry_pdf_renders_per_address"].default
    return Settings(data_dir=tmp_path, database_url=None, scheduler=False, inquiry_pdf_renders_per_address=default)


def test_over_http_an_address_gets_a_few_renders_then_429(api: Api, settings: Settings) -> None:
    assert settings.inquiry_pdf_renders_per_address == PER_ADDRESS_BURST
    codes = [api.client.get("/portal/inquiry.pdf", params={"by": "name", "q": f"预算{i}"}).status_code
             for i in range(PER_ADDRESS_BURST + 1)]
    assert codes[:-1] == [200] * PER_ADDRESS_BURST and codes[-1] == 429


def test_a_queue_of_addresses_that_never_rendered_does_not_keep_a_visitor_out() -> None:
    """Round 6, F3: waiters from fresh addresses (each 0 renders) turned away every later fresh visitor."""
    async def main() -> tuple[list[bytes | str], bytes | str]:
        pdfs = InquiryPdfs(runner=in_thread)
        loopers = [asyncio.create_task(_try(pdfs, f"fresh{k}", f"10.0.1.{k}")) for k in range(WAITING)]
        await asyncio.sleep(0)
        visitor = await _try(pdfs, "visitor", "192.0.2.8")
        return list(await asyncio.gather(*loopers)), visitor

    loopers, visitor = asyncio.run(main())
    assert isinstance(visitor, bytes) and loopers.count("render_busy") == 1
