"""Small charts as inline SVG strings: the report must open offline, with nothing fetched."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = ["PALETTE", "hbars"]

PALETTE = ("#2f6fb0", "#e07b39", "#6a9f3a", "#b04a6f", "#7a5db0", "#3aa3a3")
_ROW = 22
_LABEL_W = 190
_BAR_W = 360


def _fmt(v: float, unit: str) -> str:
    if unit == "%":
        return f"{v:.2f} %"
    return f"{v:,.1f}{unit}" if abs(v) < 1000 else f"{v:,.0f}{unit}"


def hbars(rows: Sequence[tuple[str, Sequence[float | None]]], *, series: Sequence[str] = (),
          unit: str = "", maximum: float | None = None, title: str = "") -> str:
    """Horizontal bars: one group per row, one bar per series value (None: no bar).

    ``series`` names the bars of a group (a legend is drawn when there are several)."""
    n_series = max((len(v) for _, v in rows), default=1)
    vals = [x for _, v in rows for x in v if x is not None]
    top = maximum if maximum is not None else (max(vals) if vals else 1.0) or 1.0
    group_h = _ROW * n_series + 8
    legend_h = 20 if len(series) > 1 else 0
    height = legend_h + group_h * len(rows) + 8
    width = _LABEL_W + _BAR_W + 90
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{width}" '
           f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
           f'aria-label="{escape(title)}"><title>{escape(title)}</title>']
    if legend_h:
        x = _LABEL_W
        for s_i, name in enumerate(series):
            out.append(f'<rect x="{x}" y="4" width="12" height="12" '
                       f'fill="{PALETTE[s_i % len(PALETTE)]}"/>'
                       f'<text x="{x + 16}" y="14" font-size="12">{escape(name)}</text>')
            x += 24 + 8 * len(name)
    for r_i, (label, values) in enumerate(rows):
        y0 = legend_h + r_i * group_h + 4
        out.append(f'<text x="{_LABEL_W - 8}" y="{y0 + group_h / 2}" font-size="13" '
                   f'text-anchor="end" dominant-baseline="middle">{escape(label)}</text>')
        for s_i, v in enumerate(values):
            y = y0 + s_i * _ROW
            if v is None:
                out.append(f'<text x="{_LABEL_W + 4}" y="{y + 15}" font-size="12" '
                           f'fill="#888">—</text>')
                continue
            w = max(1.0, _BAR_W * min(1.0, max(0.0, v / top)))
            out.append(f'<rect x="{_LABEL_W}" y="{y + 2}" width="{w:.1f}" height="{_ROW - 6}" '
                       f'fill="{PALETTE[s_i % len(PALETTE)]}"/>'
                       f'<text x="{_LABEL_W + w + 6:.1f}" y="{y + 15}" font-size="12">'
                       f'{escape(_fmt(v, unit))}</text>')
    out.append("</svg>")
    return "".join(out)
