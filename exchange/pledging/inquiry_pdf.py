"""The PDF face of a signed search certificate (查询证明): the query, every result, the ledger head it was read
at, the certificate's SHA-256 and the registry's signed note, with the signed JSON itself attached to the PDF
(so the PDF carries what a verifier checks). The font comes from a wheel (cvttf-NotoSansCJK-Regular)."""

from __future__ import annotations

import glob
import json
import sys
from functools import lru_cache
from typing import Any

from fpdf import FPDF

RECORD_TITLES = {"pledges": "质押登记", "freezes": "司法冻结", "retirements": "注销"}


@lru_cache(maxsize=1)
def _font() -> str:
    for root in {sys.prefix, sys.base_prefix}:
        found = glob.glob(f"{root}/**/NotoSansCJK*-Regular.otf", recursive=True)
        if found:
            return sorted(found)[0]
    raise RuntimeError("the Noto Sans CJK font is not installed (pip install cvttf-NotoSansCJK-Regular)")


def _line(kind: str, r: dict[str, Any]) -> str:
    if kind == "pledges":
        serials = ", ".join(f"{s['start']}-{s['end']}" for s in r["serials"])
        return (f"{r['registration_number']}（{r['type']}，顺位 {r['rank_on_lot']}，{r['status']}）出质人 {r['pledgor']}"  # noqa: E501
                f"{' ' + r['pledgor_uscc'] if r.get('pledgor_uscc') else ''}，质权人 {r['pledgee']}；{r['instrument']} "
                f"{r['quantity']}，序列号 {serials or '—'}；期限 {r.get('term_start') or '—'} 至 {r['term_end']}")
    if kind == "freezes":
        serials = ", ".join(f"{s['start']}-{s['end']}" for s in r["serials"])
        return (f"{r['freeze_no']} {r['court']} {r['case_number']}：持有人 {r['holder']}，{r['instrument']} {r['quantity']}，"  # noqa: E501
                f"序列号 {serials or '—'}；{r['term_start']} 至 {r['term_end']}")
    return (f"{r['serial']}：{r['quantity']}，持有人 {r['holder']}，用途 {r['purpose']}"
            f"{'，' + r['court'] + ' ' + (r.get('case_number') or '') if r.get('court') else ''}；注销于 {r['retired_at']}")  # noqa: E501


def render(answers: list[dict[str, Any]]) -> bytes:
    """One PDF for the signed certificates of one search (one per record kind searched)."""
    pdf = FPDF(format="A4")
    pdf.set_title("查询证明 envx public inquiry certificate")
    pdf.add_font("cjk", "", _font())
    for answer in answers:
        cert, sig = answer["certificate"], answer["signature"]
        pdf.add_page()
        pdf.set_font("cjk", size=16)
        pdf.multi_cell(0, 10, f"公示查询证明：{RECORD_TITLES.get(cert['record'], cert['record'])}", align="C",
                       new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("cjk", size=10)
        query = "，".join(f"{k} = {v}" for k, v in cert["query"].items())
        for label, value in (("登记机构", cert["registry"]), ("查询条件", query),
                             ("出具时间 (UTC)", cert["issued_at"]),
                             ("账本位置", f"seq {cert['ledger_head']['seq']}，hash {cert['ledger_head']['hash']}"),
                             ("结果", f"{cert['result_count']} 条{'（结果已截断）' if cert['truncated'] else ''}")):
            pdf.cell(32, 7, label)
            pdf.multi_cell(0, 7, value, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)
        for n, r in enumerate(cert["results"], 1):
            pdf.multi_cell(0, 6, f"{n}. {_line(cert['record'], r)}", new_x="LMARGIN", new_y="NEXT")
        if not cert["results"]:
            pdf.multi_cell(0, 6, "未找到记录。", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(3)
        pdf.set_font("cjk", size=8)
        pdf.multi_cell(0, 5, f"证书 SHA-256（RFC 8785 规范 JSON）：{sig['sha256']}\n签名公钥：{sig['verifier_key']}\n"
                             "签名（C2SP signed note，Ed25519）：", new_x="LMARGIN", new_y="NEXT")
        pdf.multi_cell(0, 5, sig["note"], new_x="LMARGIN", new_y="NEXT")
        pdf.multi_cell(0, 5, "本 PDF 附有已签名的 JSON 证明（附件）；可在 envx 公示平台“证书核验”页面或离线核验。",
                       new_x="LMARGIN", new_y="NEXT")
    data = json.dumps(answers if len(answers) > 1 else answers[0], ensure_ascii=False, indent=1).encode("utf-8")
    pdf.embed_file(bytes=data, basename="search-certificate.json", desc="signed search certificate")
    return bytes(pdf.output())
