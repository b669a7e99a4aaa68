"""The chat message of one alarm event: markdown, Chinese first and English second, cut to
a platform's size limit without losing the essentials.

Essentials, always kept: severity, rule, event, place (estate, building, floor, zone),
what happened (the event's message, shortened if it must be), since when, the value, the
escalation level and the console link. What goes first when a message is too long: the
details, then the English block, then the tail of the human message.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson

__all__ = ["SEVERITY_ZH", "Message", "console_link", "render", "utf8_len"]

# China has one time zone and no daylight saving: a fixed offset needs no tz database
_CST = timezone(timedelta(hours=8), "UTC+8")

SEVERITY_ZH = {"critical": "紧急", "major": "重要", "minor": "次要", "warning": "提示"}
_EVENT_ZH = {"raised": "告警", "escalated": "升级", "acknowledged": "已确认", "cleared": "已恢复"}
_COLOUR = {"critical": "red", "major": "orange", "minor": "yellow", "warning": "blue"}


def console_link(console_url: str, alarm_id: str) -> str:
    """The alarm in the operators' console."""
    return f"{console_url.rstrip('/')}/#/alarms/{alarm_id}"


def _when(ms: int, tz: timezone) -> str:
    return datetime.fromtimestamp(ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S")


class Message:
    """A rendered event: ``title`` (one line) and ``text`` (markdown) within ``limit`` as
    counted by ``measure``; ``mentions`` to @ (critical raises and escalations only)."""

    def __init__(self, title: str, text: str, mentions: tuple[str, ...], colour: str,
                 truncated: bool) -> None:
        self.title = title
        self.text = text
        self.mentions = mentions
        self.colour = colour
        self.truncated = truncated


def render(ev: dict[str, Any], *, console_url: str, limit: int,
           measure: Callable[[str], int] = len, estate_name: str = "",
           mentions: tuple[str, ...] = (), mention: Callable[[str], str] | None = None,
           ) -> Message:
    """The message of event ``ev`` (a CONTRACT §4 dict) in at most ``limit`` units of
    ``measure`` (characters by default; pass a UTF-8 byte count where the platform counts
    bytes). ``mention(m)`` is how the platform writes an @ inside the text."""
    sev = str(ev.get("severity", ""))
    event = str(ev.get("event", ""))
    rule = str(ev.get("rule", ""))
    esc = (ev.get("details") or {}).get("escalation") or {}
    level = esc.get("level")
    at = mentions if sev == "critical" and event in ("raised", "escalated") else ()
    place_zh = " · ".join(p for p in (
        f"{estate_name}（{ev.get('estate')}）" if estate_name else str(ev.get("estate", "")),
        f"{ev.get('building')} 栋",
        f"{ev['floor']} 层" if ev.get("floor") is not None else "",
        str(ev.get("zone") or ""),
        f"设备 {ev['device']}" if ev.get("device") else "") if p)
    place_en = " / ".join(str(p) for p in (
        ev.get("estate"), ev.get("building"),
        f"floor {ev['floor']}" if ev.get("floor") is not None else None,
        ev.get("zone"), ev.get("device")) if p)
    started = int(ev.get("started_at") or 0)
    value = ev.get("value")
    link = console_link(console_url, str(ev.get("alarm_id", "")))
    title = f"【{SEVERITY_ZH.get(sev, sev)}】{rule} {_EVENT_ZH.get(event, event)}"
    head = f"### {title}\n"

    def zh(what: str) -> str:
        lines = [
            f"**级别**：{SEVERITY_ZH.get(sev, sev)}（{sev}）",
            f"**地点**：{place_zh}",
            f"**事件**：{_EVENT_ZH.get(event, event)}（{event}）· {rule}",
            f"**内容**：{what}",
            f"**开始**：{_when(started, _CST)}（UTC+8）",
            f"**数值**：{value if value is not None else '—'}",
            f"**升级**：第 {level} 级" if level else "**升级**：未升级",
            f"[在控制台查看 / Open in console]({link})",
        ]
        if at and mention is not None:
            lines.append(" ".join(mention(m) for m in at))
        return "\n\n".join(lines)

    en = (f"{sev.capitalize()} · {rule} · {event} · {place_en} · since "
          f"{_when(started, UTC)} UTC · value {value if value is not None else '—'}"
          + (f" · escalation level {level}" if level else ""))
    details = ev.get("details") or {}
    det = orjson.dumps(details).decode() if details else ""
    what = str(ev.get("message", ""))

    def build(what: str, with_en: bool, with_details: bool) -> str:
        text = head + zh(what)
        if with_en:
            text += "\n\n---\n\n" + en
        if with_details and det:
            text += f"\n\n`{det}`"
        return text

    for with_en, with_details in ((True, True), (True, False), (False, False)):
        text = build(what, with_en, with_details)
        if measure(text) <= limit:
            return Message(title, text, at, _COLOUR.get(sev, "grey"),
                           truncated=(with_en, with_details) != (True, True))
    # still too long: shorten the human message (binary search on its length)
    lo, hi = 0, len(what)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if measure(build(what[:mid] + "…", False, False)) <= limit:
            lo = mid
        else:
            hi = mid - 1
    text = build(what[:lo] + "…", False, False)
    if measure(text) > limit:  # only a limit smaller than the essentials themselves
        raise ValueError(f"message limit {limit} is below the essentials ({measure(text)})")
    return Message(title, text, at, _COLOUR.get(sev, "grey"), truncated=True)


def utf8_len(text: str) -> int:
    """Bytes of ``text`` in UTF-8: what WeCom and Feishu count."""
    return len(text.encode("utf-8"))
