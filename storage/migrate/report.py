"""The plan report: one HTML file that opens offline (no CDN, no script), charts as inline SVG.

Operators pass it around to people who approve the move (finance, the teams owning the
buckets), often as an attachment, so it must stand alone and render the same anywhere.
"""
from __future__ import annotations

import html
import time

from ..tools.status import size
from .estimate import Prices

_CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}.warn{color:#a40000;font-weight:600}
section{border-top:2px solid #ddd;margin-top:2em}svg text{font:11px system-ui,sans-serif}
"""


def render(stats: list[dict], order: list[str], prices: Prices, bandwidth: float, policy_note: str,
           source: str) -> str:
    """The whole report for these buckets (stats from estimate.bucket_stats), in `order`."""
    by_name = {s["bucket"]: s for s in stats}
    ordered = [by_name[b] for b in order if b in by_name]
    total = {k: sum(s[k] for s in stats) for k in ("objects", "version_bytes", "egress_cost", "request_cost",
                                                   "move_cost", "monthly_bill", "pocket_raw_bytes", "needs_restore")}
    seconds = sum(s["transfer_seconds"] or 0 for s in stats)
    e = html.escape
    out = [f"<!doctype html><html><head><meta charset='utf-8'><title>Pocket migration plan</title>"
           f"<style>{_CSS}</style></head><body>",
           f"<h1>Migration plan</h1><p>Source: {e(source)} · generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
           f" · bandwidth {size(bandwidth)}/s · Pocket storage: {e(policy_note)}</p>",
           "<h2>Suggested order</h2><p>Smallest and least written first; override with "
           "<code>pocket migrate plan --order a,b,c</code>.</p>",
           _bar_chart("order-chart", [(s["bucket"], s["version_bytes"]) for s in ordered], size),
           "<h2>Cost and time</h2>", _cost_table(ordered, total, seconds),
           "<p>AWS waives data-transfer-out charges for customers moving off AWS when asked in advance "
           "(since March 2024); the egress figures are what it costs without that waiver.</p>"]
    if total["needs_restore"]:
        out.append(f"<p class='warn'>{total['needs_restore']} objects are in Glacier or Deep Archive: they must be "
                   "restored (S3 RestoreObject) before they can be copied.</p>")
    for s in ordered:
        out.append(_bucket_section(s))
    out.append("<h2>Prices used (USD)</h2><table><tr><th>item</th><th>price</th></tr>")
    out += [f"<tr><td>egress per GB up to {lim or '∞'} GB/month</td><td>{p}</td></tr>" for lim, p in prices.egress_tiers]
    out += [f"<tr><td>GET/HEAD per 1,000</td><td>{prices.get_per_1000}</td></tr>",
            f"<tr><td>LIST per 1,000</td><td>{prices.list_per_1000}</td></tr>"]
    out += [f"<tr><td>storage {e(c)} per GB-month</td><td>{p}</td></tr>" for c, p in prices.storage_gb_month.items()]
    out.append("</table></body></html>")
    return "\n".join(out)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _cost_table(ordered: list[dict], total: dict, seconds: float) -> str:
    rows = ["<table id='costs'><tr><th>bucket</th><th>objects</th><th>bytes (all versions)</th><th>transfer time</th>"
            "<th>egress $</th><th>requests $</th><th>move $</th><th>S3 bill ended $/month</th>"
            "<th>Pocket raw disk</th></tr>"]
    for s in ordered + [{"bucket": "total", **total, "transfer_seconds": seconds}]:
        rows.append(f"<tr><td>{html.escape(s['bucket'])}</td><td>{s['objects']:,}</td><td>{size(s['version_bytes'])}</td>"
                    f"<td>{duration(s['transfer_seconds'])}</td><td>{s['egress_cost']:,.2f}</td>"
                    f"<td>{s['request_cost']:,.4f}</td><td>{s['move_cost']:,.2f}</td><td>{s['monthly_bill']:,.2f}</td>"
                    f"<td>{size(s['pocket_raw_bytes'])}</td></tr>")
    return "".join(rows) + "</table>"


def _bucket_section(s: dict) -> str:
    e = html.escape
    facts = [("versioning", s["versioning"]), ("inventory from", s["method"]),
             ("current objects", f"{s['objects']:,} ({size(s['bytes'])})"),
             ("versions / delete markers", f"{s['versions']:,} / {s['delete_markers']:,}"),
             ("multipart objects", f"{s['multipart']:,} ({s['parts']:,} parts)"),
             ("objects over 5 GiB", f"{s['over_5gib']:,}"),
             ("written in the last 30 days", f"{s['written_last_30_days']:,}")]
    out = [f"<section id='bucket-{e(s['bucket'])}'><h2>{e(s['bucket'])}</h2><table>"]
    out += [f"<tr><td>{k}</td><td>{e(str(v))}</td></tr>" for k, v in facts]
    out.append("</table><h3>Size histogram (objects)</h3>")
    out.append(_bar_chart("histogram", [(h["label"], h["objects"]) for h in s["histogram"]], lambda n: f"{n:,}"))
    out.append("<h3>Top prefixes</h3><table><tr><th>prefix</th><th>objects</th><th>bytes</th></tr>")
    out += [f"<tr><td>{e(p['prefix'])}</td><td>{p['objects']:,}</td><td>{size(p['bytes'])}</td></tr>"
            for p in s["top_prefixes"]]
    out.append("</table><h3>Storage classes</h3><table><tr><th>class</th><th>objects</th><th>bytes</th>"
               "<th>$/month</th><th></th></tr>")
    out += [f"<tr><td>{e(c['class'])}</td><td>{c['objects']:,}</td><td>{size(c['bytes'])}</td>"
            f"<td>{c['monthly']:,.2f}</td><td class='warn'>{'needs restore' if c['needs_restore'] else ''}</td></tr>"
            for c in s["storage_classes"]]
    out.append("</table></section>")
    return "".join(out)


def _bar_chart(cls: str, bars: list[tuple[str, float]], label) -> str:
    """Horizontal bars, one per (name, value), with the value written beside each."""
    width, row, name_w = 640, 22, 150
    top = max((v for _, v in bars), default=0) or 1
    parts = [f"<svg class='chart {cls}' width='{width}' "
             f"height='{row * len(bars) + 4}' role='img'>"]
    for i, (name, value) in enumerate(bars):
        y = i * row + 2
        w = max(1 if value else 0, round((width - name_w - 110) * value / top))
        parts.append(f"<text x='0' y='{y + 15}'>{html.escape(str(name))[:24]}</text>"
                     f"<rect x='{name_w}' y='{y}' width='{w}' height='{row - 6}' fill='#3b7dd8'/>"
                     f"<text x='{name_w + w + 6}' y='{y + 15}'>{html.escape(label(value))}</text>")
    parts.append("</svg>")
    return "".join(parts)
