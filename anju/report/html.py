"""The report as one self-contained HTML page: inline CSS and SVG, no script, no asset from
anywhere (it is mailed, archived and opened offline). Chinese text, English headings."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

from anju.report.figures import Report
from anju.report.scoring import COMPONENTS
from anju.report.svg import hbars

__all__ = ["render_html"]

_CSS = """
body{font-family:"Noto Sans CJK SC","Source Han Sans SC","Microsoft YaHei",
"WenQuanYi Micro Hei",sans-serif;
margin:24px auto;max-width:1100px;color:#1d2733;line-height:1.45;padding:0 16px}
h1{font-size:24px;margin-bottom:4px}h2{font-size:19px;border-bottom:2px solid #2f6fb0;
padding-bottom:4px;margin-top:32px}h2 small,h1 small{color:#5b6b7c;font-weight:normal}
.meta{color:#5b6b7c}.note{background:#fff6e0;border-left:4px solid #e0a030;padding:8px 12px}
table{border-collapse:collapse;margin:8px 0 16px;font-size:13px}
th,td{border:1px solid #cfd8e3;padding:4px 8px;text-align:right}
th{background:#eef3f9}td.t,th.t{text-align:left}.level{font-weight:bold}
.chart{display:block;margin:8px 0}.muted{color:#8a96a3}
@media print{h2{break-after:avoid}table,svg{break-inside:avoid}}
"""


def _v(x: Any, fmt: str = "") -> str:
    if x is None:
        return '<span class="muted">—</span>'
    if isinstance(x, float):
        if fmt == "%":
            return f"{100 * x:.2f} %"
        return f"{x:,.1f}"
    return escape(str(x))


def _table(rows: Sequence[dict[str, Any]], cols: Sequence[tuple[str, str, str]],
           limit: int | None = None) -> str:
    """``cols``: (key, header, format); text columns are those with format ``t``."""
    head = "".join(f'<th class="{"t" if f == "t" else ""}">{escape(h)}</th>'
                   for _, h, f in cols)
    body = []
    for r in rows[:limit] if limit else rows:
        body.append("<tr>" + "".join(
            f'<td class="{"t" if f == "t" else ""}">{_v(r.get(k), f)}</td>'
            for k, _, f in cols) + "</tr>")
    more = ""
    if limit and len(rows) > limit:
        more = (f'<p class="muted">前 {limit} 行，共 {len(rows)} 行；完整数据见 CSV。'
                f" First {limit} of {len(rows)} rows; all of them are in the CSV.</p>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>{more}"


def _h2(zh: str, en: str) -> str:
    return f"<h2>{escape(en)} <small>{escape(zh)}</small></h2>"


def render_html(report: Report) -> str:
    """The whole page."""
    m = report.meta
    t = report.tables
    period, scope = m["period"], m["scope"]
    companies = t["companies"]
    parts = [
        "<!DOCTYPE html><html lang=\"zh-CN\"><head><meta charset=\"utf-8\">",
        f"<title>{escape(m['title'])} {escape(period['from'])} – {escape(period['to'])}</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>Accountability report <small>物业企业告警处置情况报告</small></h1>",
        f'<p class="meta">统计期间 Period: {escape(period["from"])} — {escape(period["to"])}'
        f" ({escape(period['timezone'])}) · 范围 Scope: {escape(str(scope['label']))}"
        f" · {scope['estates']} 个小区 estates · 确认时限 deadline {m['deadline_s']:g} s</p>",
        '<p class="note">本报告的评分和参考等级是证据，供主管部门自行评定信用等级时参考，'
        "不是评定结论。The scores and suggested levels are evidence for the bureau's own "
        "credit rating, never its verdict.</p>",
        _h2("企业排名", "Ranking"),
        hbars([(r["company"], [r["score"]]) for r in t["ranking"]], maximum=100.0,
              title="score"),
        _table(t["ranking"], [("rank", "名次 Rank", ""), ("company", "企业 Company", "t"),
                              ("score", "得分 Score", ""),
                              ("suggested_level", "参考等级 Suggested level", "t")]),
        _components(companies, m["settings"]),
        _h2("告警确认", "Acknowledgement"),
        hbars([(r["company"], [r["ack_p50_s"], r["ack_p90_s"]]) for r in companies],
              series=["p50", "p90"], unit=" s", title="ack time"),
        _table(companies, [
            ("company", "企业 Company", "t"), ("alarms", "告警 Alarms", ""),
            ("critical", "危急", ""), ("major", "重要", ""), ("minor", "次要", ""),
            ("warning", "提示", ""), ("due", "需确认 Due", ""),
            ("ack_in_deadline_share", "按时确认率 In deadline", "%"),
            ("ack_p50_s", "p50 s", ""), ("ack_p90_s", "p90 s", ""), ("ack_max_s", "max s", ""),
            ("acked_by_fire", "消防代确认 By fire", ""),
            ("acked_by_supervisor", "监管代确认 By supervisor", ""),
            ("acked_by_other", "其他 Other", "")]),
        _h2("升级、消除与遗留", "Escalation, clearance and what was left open"),
        _table(companies, [
            ("company", "企业 Company", "t"), ("escalated", "升级 Escalated", ""),
            ("max_escalation_level", "最高级别 Max level", ""),
            ("clear_p50_s", "消除 p50 s", ""), ("clear_p90_s", "消除 p90 s", ""),
            ("clear_max_s", "消除 max s", ""), ("open_at_start", "期初未结 Open at start", ""),
            ("open_at_end", "期末未结 Open at end", ""),
            ("open_unacked_at_end", "期末未确认 Unacked at end", "")]),
        _levels(t["escalation_levels"]),
        _h2("设备在线率与监控覆盖", "Device availability and camera coverage"),
        hbars([(f"{r['company']} · {r['kind']}", [100 * r["availability"]
                if r["availability"] is not None else None])
               for r in t["availability_by_kind"]], unit="%", maximum=100.0,
              title="availability"),
        _table(companies, [
            ("company", "企业 Company", "t"), ("devices", "设备 Devices", ""),
            ("device_hours", "登记设备时 Device-hours", ""),
            ("offline_hours", "离线时 Offline hours", ""),
            ("availability", "在线率 Availability", "%"), ("cameras", "摄像机 Cameras", ""),
            ("camera_dark_hours", "失效时 Dark hours", ""),
            ("camera_coverage", "覆盖率 Coverage", "%")]),
        _h2("电梯维保超期", "Elevators past their 15-day maintenance"),
        _table(t["elevators_overdue"], [
            ("company", "企业 Company", "t"), ("estate", "小区 Estate", "t"),
            ("building", "楼栋 Building", "t"), ("device", "电梯 Elevator", "t"),
            ("days_overdue", "超期天数 Days overdue", ""),
            ("overdue_at_end", "期末仍超期 Still overdue", "t")], limit=30)
        if t["elevators_overdue"] else '<p class="muted">无 None.</p>',
        _h2("高空抛物热点", "Falling objects: hot spots"),
        hbars([(f"{r['estate']} {r['building']} {r['floor']}层", [float(r["count"])])
               for r in t["falling_objects"][:12]], title="falling objects"),
        _table(t["falling_objects"], [
            ("company", "企业 Company", "t"), ("estate", "小区 Estate", "t"),
            ("building", "楼栋 Building", "t"), ("floor", "楼层 Floor", ""),
            ("count", "次数 Count", "")], limit=20),
        *_counted(m.get("counted") or {}, companies, report.tables["estates"]),
        _h2("电梯困人", "Trapped passengers"),
        _table(t["trapped"], [
            ("company", "企业 Company", "t"), ("estate", "小区 Estate", "t"),
            ("device", "电梯 Elevator", "t"), ("raised", "发生 Raised", "t"),
            ("ack_s", "确认 s Ack", ""), ("acked_by", "确认方 By", "t"),
            ("clear_s", "解困 s Released", ""), ("escalation_level", "升级 Level", "")],
            limit=50),
        _h2("各小区", "Estates"),
        _table(report.tables["estates"], [
            ("company", "企业 Company", "t"), ("estate", "小区 Estate", "t"),
            ("name", "名称 Name", "t"), ("street", "街道 Street", "t"),
            ("alarms", "告警 Alarms", ""), ("ack_in_deadline_share", "按时确认率", "%"),
            ("ack_p90_s", "p90 s", ""), ("escalated", "升级", ""),
            ("open_at_end", "期末未结", ""), ("availability", "在线率", "%")], limit=60),
        f'<p class="muted">生成自告警库 From the alarm store: {m["alarms_read"]} alarms read. '
        "Figures: report.json and the CSV files beside this page.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)


def _counted(counted: dict[str, str], companies: Sequence[dict[str, Any]],
             estates: Sequence[dict[str, Any]]) -> list[str]:
    """The columns that rules ask the report to count (``report:`` in their rules.yaml):
    patrol rounds missed, e-bikes, per company and estate."""
    columns = sorted(set(counted.values()))
    if not columns:
        return []
    rules = {c: ", ".join(sorted(r for r, col in counted.items() if col == c)) for c in columns}
    cols = [(c, f"{c} ({rules[c]})", "") for c in columns]
    return [_h2("巡更与电动车等计数", "Counted by the rules: patrol rounds missed, e-bikes"),
            _table(companies, [("company", "企业 Company", "t"), *cols]),
            _table(estates, [("company", "企业 Company", "t"), ("estate", "小区 Estate", "t"),
                             *cols], limit=60)]


def _components(companies: Sequence[dict[str, Any]], settings: dict[str, Any]) -> str:
    weights = settings["weights"]
    cols = [("company", "企业 Company", "t")] + [
        (f"component_{k}", f"{k} ×{weights.get(k, 0):g}", "%") for k in COMPONENTS]
    legend = "".join(f"<li><b>{escape(k)}</b>: {escape(v)}</li>" for k, v in COMPONENTS.items())
    levels = ", ".join(f"{escape(k)} ≥ {v:g}" for k, v in settings["levels"].items())
    return (_table(companies, cols)
            + f'<ul class="muted">{legend}</ul><p class="muted">等级 Levels: {levels}, '
              f"otherwise {escape(settings['lowest_level'])}. Weights and thresholds: "
              "site.yaml <code>report:</code>; docs/report.md.</p>")


def _levels(rows: Sequence[dict[str, Any]]) -> str:
    """Escalated alarms per company by the highest level reached: 1, 2, 3 and 4 or more
    (every level is in escalation_levels.csv)."""
    pivot: dict[str, list[int]] = {}
    for r in rows:
        cells = pivot.setdefault(r["company"], [0, 0, 0, 0])
        cells[min(r["level"], 4) - 1] += r["alarms"]
    table = [{"company": c, "l1": v[0], "l2": v[1], "l3": v[2], "l4": v[3]}
             for c, v in pivot.items()]
    return _table(table, [("company", "企业 Company", "t"), ("l1", "升级至 Level 1", ""),
                          ("l2", "Level 2", ""), ("l3", "Level 3", ""), ("l4", "Level ≥ 4", "")])
