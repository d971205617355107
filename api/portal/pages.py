"""The public portal's pages: server-rendered (Jinja2), read-only, for anyone; they read through the same
services as the public API (exchange/...), so they show what the public API shows and nothing more.

What runs in the browser (api/portal/static/*.js) checks signatures and proofs itself against the keys the
registry publishes; the pages only carry data. Bad input is shown back escaped (Jinja2 autoescape) with a
message, never a 500; nothing here writes, so the pages work on a read replica (ENVX_READ_ONLY) too.
"""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote

from litestar import Request, Response, get
from litestar.datastructures import Cookie, State
from litestar.params import Parameter
from litestar.response import Template

from api.portal import i18n
from api.portal.pdfs import InquiryPdfs
from exchange.core.errors import DomainError, Invalid
from exchange.core.runtime import Runtime
from exchange.pledging import inquiry_pdf
from exchange.pledging import public as inquiry
from exchange.registry import queries as registry_queries
from exchange.trading import markets as market_service
from exchange.verifiable import proofs, tlog_serving

TAGS = ["portal"]
# Every value is taken as sent (up to the API's 1000-character query bound) and judged here: free text that
# is wrong is answered on the page, escaped, with what was wrong; a choice that is none of its options
# (a hand-made link) is its default.
Lang = Annotated[str | None, Parameter(max_length=1000, description="zh (default) or en; remembered in a cookie")]
Text = Annotated[str | None, Parameter(max_length=1000)]
By = Annotated[str | None, Parameter(max_length=1000, description="name (default), uscc or serial")]
Record = Annotated[str | None, Parameter(max_length=1000, description="pledges, freezes, retirements, else all")]
RECORDS = ("pledges", "freezes", "retirements")
MAX_NAME = 200
SECURITY_HEADERS = {
    # Scripts and styles from envx itself only, nothing inline, no framing, no referrer to other sites.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self' ws: wss:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin", "Cache-Control": "no-store",
}


def _page(request: Request[Any, Any, Any], name: str, lang_q: str | None, page: str, status: int = 200,
          **context: Any) -> Template:
    lang = i18n.lang_of(lang_q, request.cookies.get("lang"))
    t = i18n.table(lang)
    other = "en" if lang == "zh" else "zh"
    query = [(k, v) for k, v in request.query_params.items() if k != "lang"]
    switch = "?" + "&".join(f"{k}={_q(v)}" for k, v in [*query, ("lang", other)])
    cookies = [Cookie(key="lang", value=lang, path="/portal", max_age=365 * 86400, samesite="lax")] \
        if lang_q in i18n.LANGS else []
    return Template(template_name=name, status_code=status, headers=SECURITY_HEADERS, cookies=cookies,
                    media_type="text/html",
                    context={"t": t, "lang": lang, "html_lang": "zh-CN" if lang == "zh" else "en",
                             "switch_url": switch, "page": page, **context})


def _q(v: str) -> str:
    return quote(v, safe="")


# ------------------------------------------------------------------------------------------------- home


def _cosignatures(note: str, registry_names: set[str]) -> list[dict[str, Any]]:
    """The witnesses' cosignature lines of a checkpoint (C2SP tlog-cosignature: key id, 8-byte timestamp,
    signature), with their time; for display only -- the browser and `envx monitor` verify them."""
    out = []
    block = note[note.rfind("\n\n") + 2:]
    for line in block.splitlines():
        name, _, b64 = line.removeprefix("\u2014 ").partition(" ")
        if name in registry_names:
            continue
        try:
            raw = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            continue
        if len(raw) == 4 + 8 + 64:
            ts = int.from_bytes(raw[4:12], "big")
            out.append({"name": name, "ts": datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")})
    return out


@get("/portal", operation_id="portalHome", tags=TAGS, include_in_schema=True, media_type="text/html",
     summary="Portal: what the registry holds by instrument kind, and the latest signed checkpoint")
async def home(rt: Runtime, request: Request[Any, Any, Any], lang: Lang = None) -> Template:
    totals = await registry_queries.registry_totals(rt)
    kinds: dict[str, list[registry_queries.InstrumentTotals]] = {}
    for x in totals:
        kinds.setdefault(x.kind, []).append(x)
    latest = await proofs.checkpoint_list(rt, None, 1)
    cp = latest[0] if latest else None
    cosigned: list[dict[str, Any]] = []
    if cp is not None:
        keys = {k.name for k in await proofs.signing_keys(rt)}
        try:
            cosigned = _cosignatures(await tlog_serving.checkpoint(rt), keys)
        except DomainError:
            cosigned = []
    witnessing = getattr(request.app.state, "witnessing", None)
    witnesses = witnessing.status() if witnessing is not None else []
    chart = [{"label": f"{x.name} ({x.code})", "issued": x.issued, "retired": x.retired, "pledged": x.pledged,
              "frozen": x.frozen} for x in totals]
    return _page(request, "home.html", lang, "home", kinds=kinds, checkpoint=cp, cosigned=cosigned,
                 witnesses=witnesses, chart=chart,
                 root_b64=base64.b64encode(cp.root).decode() if cp else None,
                 signed_at=cp.created_at.isoformat().replace("+00:00", "Z") if cp and cp.created_at else None)


# ---------------------------------------------------------------------------------------------- inquiry


def _search_args(by: str | None, q: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """The search the form asks for, or the message key of what is wrong with it."""
    text = (q or "").strip()
    if not text:
        return None, "err_query_required"
    if by == "uscc":
        code = text.upper()
        if len(code) != 18 or not re.fullmatch(r"[0-9A-Z]{18}", code):
            return None, "err_uscc"
        return {"name": None, "uscc": code, "serial": None}, None
    if by == "serial":
        if not re.fullmatch(r"[1-9][0-9]{0,15}", text) or int(text) > 2**53 - 1:
            return None, "err_serial"
        return {"name": None, "uscc": None, "serial": int(text)}, None
    if len(text) > MAX_NAME:
        return None, "err_too_long"
    return {"name": text, "uscc": None, "serial": None}, None


async def _search(rt: Runtime, records: tuple[str, ...], args: dict[str, Any]) -> list[dict[str, Any]]:
    return [await inquiry.public_search(rt, r, instrument=None, limit=100, **args) for r in records]


def _records(record: str | None) -> tuple[str, ...]:
    return (record,) if record in RECORDS else RECORDS


@get("/portal/inquiry", operation_id="portalInquiry", tags=TAGS, media_type="text/html",
     summary="Portal: 公示查询 of pledges, freezes and retirements, with the signed search certificates")
async def inquiry_page(rt: Runtime, request: Request[Any, Any, Any], lang: Lang = None, by: By = None,
                       q: Text = None, record: Record = None) -> Template:
    by = by if by in ("name", "uscc", "serial") else "name"
    record = record if record in RECORDS else None  # anything else searches every record
    error, answers, api_links = None, None, []
    if q is not None:
        args, error = _search_args(by, q)
        if args is not None:
            try:
                answers = await _search(rt, _records(record), args)
            except DomainError as exc:
                error = f"err_{exc.code}" if f"err_{exc.code}" in i18n.table("zh") else "err_query_required"
        if answers is not None:
            key = {"name": "name", "uscc": "uscc", "serial": "serial"}[by]
            value = (q or "").strip().upper() if by == "uscc" else (q or "").strip()
            api_links = [f"/v1/public/{a['certificate']['record']}?{key}={_q(value)}" for a in answers]
    pdf_link = None
    if answers is not None:
        pdf_link = f"/portal/inquiry.pdf?by={by}&q={_q((q or '').strip())}&record={record or 'all'}"
    return _page(request, "inquiry.html", lang, "inquiry", by=by, q=q, record=record or "all", error=error,
                 max_name=MAX_NAME, answers=answers, api_links=api_links, pdf_link=pdf_link,
                 status=200)  # a refused search is a page saying why, not an error


def _refusal(key: str) -> Invalid:
    """What a refused search is, for the PDF (a download: a problem document rather than a page)."""
    text = i18n.table("en")[key].format(n=MAX_NAME)
    if key == "err_uscc":
        return Invalid("invalid_uscc", text)
    if key == "err_serial":
        return Invalid("validation_error", text)
    if key == "err_too_long":
        return Invalid("query_parameter_too_long", text)
    return Invalid("query_required", text)


@get("/portal/inquiry.pdf", operation_id="portalInquiryPdf", tags=TAGS, media_type="application/pdf",
     summary="Portal: the signed search certificates of one search as a PDF (the signed JSON attached)")
async def inquiry_pdf_file(rt: Runtime, state: State, request: Request, lang: Lang = None, by: By = None,
                           q: Text = None, record: Record = None) -> Response[bytes]:
    args, error = _search_args(by if by in ("name", "uscc", "serial") else "name", q)
    if args is None:
        raise _refusal(error or "err_query_required")
    answers = await _search(rt, _records(record), args)  # its refusals are 422 problem documents too
    pdfs = state.get("inquiry_pdfs")
    if pdfs is None:
        pdfs = state["inquiry_pdfs"] = InquiryPdfs(burst=rt.settings.inquiry_pdf_renders_per_address)
    body = await pdfs.render(answers, inquiry_pdf.render, request.client.host if request.client else "")
    return Response(body, media_type="application/pdf", headers={
        "Content-Disposition": 'attachment; filename="search-certificate.pdf"', "Cache-Control": "no-store"})


# ----------------------------------------------------------------------------------------------- verify


@get("/portal/verify", operation_id="portalVerify", tags=TAGS, media_type="text/html",
     summary="Portal: verify a certificate, receipt or .tlog-proof in the browser (by code or by file)")
async def verify_page(request: Request[Any, Any, Any], lang: Lang = None, code: Text = None) -> Template:
    # The code is handed to the page's script as data; the script fetches the certificate and checks it.
    bad = code is not None and not re.fullmatch(r"[0-9a-f]{16}", code.strip().lower())
    return _page(request, "verify.html", lang, "verify", code=(code or "").strip(), bad_code=bad)


# ---------------------------------------------------------------------------------------------- markets


@get("/portal/markets", operation_id="portalMarkets", tags=TAGS, media_type="text/html",
     summary="Portal: the markets and their trading rules")
async def markets_page(rt: Runtime, request: Request[Any, Any, Any], lang: Lang = None) -> Template:
    views = await market_service.listing(rt)
    return _page(request, "markets.html", lang, "markets", markets=[v.as_dict() for v in views])


@get("/portal/markets/{market_id:str}", operation_id="portalMarket", tags=TAGS, media_type="text/html",
     summary="Portal: one market live -- best-5 depth, recent trades, price chart, rules")
async def market_page(rt: Runtime, request: Request[Any, Any, Any], market_id: str, lang: Lang = None) -> Template:
    m = (await market_service.get(rt, market_id)).as_dict()  # an unknown market: 404 not_found, a problem document
    return _page(request, "market.html", lang, "markets", m=m,
                 config={"market": m["id"], "instrument": m["instrument"]})


# ----------------------------------------------------------------------------------------------- ledger

@get("/portal/ledger", operation_id="portalLedger", tags=TAGS, media_type="text/html",
     summary="Portal: checkpoints over time, a consistency check in the browser, the public keys")
async def ledger_page(rt: Runtime, request: Request[Any, Any, Any], lang: Lang = None) -> Template:
    cps = await proofs.checkpoint_list(rt, None, 200)
    keys = await proofs.signing_keys(rt)
    growth = [{"size": c.size, "at": c.created_at.isoformat().replace("+00:00", "Z") if c.created_at else None}
              for c in reversed(cps)]
    return _page(request, "ledger.html", lang, "ledger", checkpoints=cps, keys=keys, growth=growth,
                 b64=lambda b: base64.b64encode(b).decode())


PAGES = [home, inquiry_page, inquiry_pdf_file, verify_page, markets_page, market_page, ledger_page]
