"""The PDF face of a restoration certificate. The font comes from a wheel (cvttf-NotoSansCJK-Regular)."""

from __future__ import annotations

import glob
import sys
from functools import lru_cache
from typing import Any

from fpdf import FPDF


@lru_cache(maxsize=1)
def cjk_font() -> str:
    for root in {sys.prefix, sys.base_prefix}:
        found = glob.glob(f"{root}/**/NotoSansCJK*-Regular.otf", recursive=True)
        if found:
            return sorted(found)[0]
    raise RuntimeError("the Noto Sans CJK font is not installed (pip install cvttf-NotoSansCJK-Regular)")


def _money_rows(body: dict[str, Any]) -> list[tuple[str, str]]:
    """What was paid: the value of the credits, the exchange's fees, the total (fees shown, not folded in)."""
    totals = body.get("totals")
    if not totals:
        return [("支付金额", f"人民币 {body['paid']} 元")]
    return [("成交金额", f"人民币 {totals['value']} 元"), ("交易手续费", f"人民币 {totals['fees']} 元"),
            ("支付金额", f"人民币 {totals['paid']} 元（成交金额 + 手续费）")]


def render(body: dict[str, Any], code: str, verify_url: str) -> bytes:
    o = body["order"]
    unit = body.get("unit", "tCO2e")
    pdf = FPDF(format="A4")
    pdf.set_title(body["title"])
    pdf.set_author(o["court"])
    pdf.add_page()
    pdf.add_font("cjk", "", cjk_font())
    pdf.add_font("cjk", "B", cjk_font())  # table headings ask for bold; one weight ships
    pdf.set_font("cjk", size=18)
    pdf.multi_cell(0, 12, body["title"], align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(4)
    pdf.set_font("cjk", size=11)
    rows = [
        ("法院", o["court"]), ("案号", o["case_number"]), ("案件类型", o["case_type"]),
        ("裁判文书", o.get("judgment_reference") or "—"),
        ("被告人 / 缴纳人", "、".join(d["name"] if isinstance(d, dict) else str(d) for d in o["defendants"])
         + f"（缴纳人：{o['payer']}）"),
        ("生态损害评估", f"{o.get('assessed_loss') or '—'} {unit}，方法：{o.get('assessment_method') or '—'}，"
                        f"评估机构：{o.get('assessing_body') or '—'}，倍数：{o.get('multiplier') or '—'}"),
        ("应认购并注销", f"{o['required_quantity']} {unit}，期限 {o['deadline']}"),
        ("已注销", f"{body['retired_quantity']} {unit}（{'已履行' if body['status'] == 'fulfilled' else '部分履行'}）"),
        *_money_rows(body),
    ]
    for label, value in rows:
        pdf.set_font("cjk", size=10)
        pdf.cell(38, 8, label)
        pdf.set_font("cjk", size=11)
        pdf.multi_cell(0, 8, value, align="L", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("cjk", size=11)
    pdf.cell(0, 8, "注销的序列号区块（用途：judicial_restoration，不可再交易、转让或质押）",
             new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=9)
    itemised = all("fee" in b for b in body["blocks"])
    if itemised:  # price, quantity, value, fee and paid of every block (a fill's shared over its blocks)
        with pdf.table(col_widths=(20, 30, 16, 20, 22, 16, 22, 14, 30), text_align="LEFT") as table:
            table.row(["品种", "序列号", "数量", "单价(元)", "成交金额(元)", "手续费(元)", "支付(元)", "账本条目",
                       "交易"])
            for b in body["blocks"]:
                table.row([b["instrument"], f"{b['serial_start']} – {b['serial_end']}", b["quantity"], b["price"],
                           b["value"], b["fee"], b["paid"], f"#{b['entry_seq']}",
                           f"{b['market']} 成交 {b['trade_id']}"])
            t = body["totals"]
            table.row(["合计", "", "", "", t["value"], t["fees"], t["paid"], "", ""])
    else:  # a certificate signed before fees were itemised
        with pdf.table(col_widths=(22, 46, 20, 20, 24, 58), text_align="LEFT") as table:
            table.row(["品种", "序列号", "数量", "单价(元)", "账本条目", "条目哈希/交易"])
            for b in body["blocks"]:
                table.row([b["instrument"], f"{b['serial_start']} – {b['serial_end']}", b["quantity"], b["price"],
                           f"#{b['entry_seq']}", f"{b['market']} 成交 {b['trade_id']}"])
    pdf.ln(4)
    pdf.set_font("cjk", size=10)
    pdf.multi_cell(0, 6, f"登记机构：{body['registry']}    签发时间：{body['issued_at']}",
                   new_x="LMARGIN", new_y="NEXT")
    pdf.multi_cell(0, 6, "本见证由登记机构的 Ed25519 密钥签署；每个注销条目均附有在已签名检查点下的默克尔包含证明，"
                   "可离线核验：envx verify-receipt <证书JSON> --key <登记机构公钥>。", new_x="LMARGIN", new_y="NEXT")
    pdf.ln(2)
    pdf.set_font("cjk", size=14)
    pdf.cell(0, 10, f"验证码：{code}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("cjk", size=9)
    pdf.multi_cell(0, 6, f"在线核验：{verify_url}", new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
