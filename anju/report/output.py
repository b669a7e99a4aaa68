"""Writing a report: ``report.html``, ``report.json`` and one CSV per table."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

import orjson

from anju.report.figures import Report
from anju.report.html import render_html

__all__ = ["table_csv", "write_report"]


def table_csv(rows: list[dict[str, Any]]) -> str:
    """One table as CSV (header from the first row; UTF-8 with BOM so spreadsheet programs
    common in the bureaus show the Chinese names right)."""
    buf = io.StringIO()
    buf.write("\ufeff")
    if rows:
        w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        for r in rows:
            w.writerow({k: "" if v is None else v for k, v in r.items()})
    return buf.getvalue()


def write_report(report: Report, out: str | Path) -> dict[str, Path]:
    """Writes every file of the report into ``out`` (created if needed); name → path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    p = out / "report.html"
    p.write_text(render_html(report), encoding="utf-8")
    files["html"] = p
    p = out / "report.json"
    p.write_bytes(orjson.dumps(report.as_dict(), option=orjson.OPT_INDENT_2))
    files["json"] = p
    for name, rows in report.tables.items():
        p = out / f"{name}.csv"
        p.write_text(table_csv(rows), encoding="utf-8")
        files[name] = p
    return files
