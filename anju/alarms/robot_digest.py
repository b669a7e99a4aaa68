"""When alarms come faster than a chat robot may post: critical ones first, the rest grouped
into digest messages, nothing dropped.

A robot takes 20 messages a minute (DingTalk, WeCom) or 5 a second and 100 a minute
(Feishu). A storm of 200 alarms sent one by one would take ten minutes to reach the duty
group, and the critical one among them might be the last. So, for each round of what is
due (:func:`plan`):

- if the robot can take all of it now (its free slots, :meth:`WindowLimiter.free`), each
  event goes as its own message, urgent first;
- otherwise the urgent ones (``critical`` alarms being ``raised`` or ``escalated``) go
  first, one message each, up to the free slots but one, and everything else goes as a
  digest: one message listing every event, urgent before the rest, then by severity
  and commit order, split into several messages where one would pass the platform's size
  limit (:func:`render_digests`).

Each outbox row keeps its state: rows of a digest are marked delivered together, and only
when the platform accepted that digest; a digest refused or unanswered leaves all its rows
pending, to be sent again (grouped afresh) at their next attempt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from anju.alarms.robot_message import _CST, _EVENT_ZH, SEVERITY_ZH, Message, console_link

__all__ = ["is_urgent", "plan", "priority", "render_digests"]

_RANK = {"critical": 0, "major": 1, "minor": 2, "warning": 3}
_MESSAGE_CHARS = 40  # of each event's human message in a digest line


def is_urgent(ev: dict[str, Any]) -> bool:
    """A critical alarm being raised or escalated: never waits in a digest if it can help."""
    return ev.get("severity") == "critical" and ev.get("event") in ("raised", "escalated")


def priority(ev: dict[str, Any]) -> tuple[int, int]:
    """Sort key: urgent first, then by severity (stable sorts keep commit order within)."""
    return (0 if is_urgent(ev) else 1, _RANK.get(str(ev.get("severity")), 4))


def plan(events: Sequence[dict[str, Any]], free: int,
         parts: Callable[[list[int]], int] | None = None) -> tuple[list[int], list[int]]:
    """Which of ``events`` (due, in commit order) go alone and which in a digest, given the
    robot's ``free`` slots now: ``(singles, digested)`` as indexes, each in sending order.

    ``parts(digested)`` says how many messages that digest takes (default 1): urgent events
    go alone only as far as the slots left for the digest's messages allow, so a burst fits
    in the robot's window when it can."""
    order = sorted(range(len(events)), key=lambda i: priority(events[i]))
    if len(order) <= max(free, 1):
        return order, []
    urgent = [i for i in order if is_urgent(events[i])]
    alone = max(free - 1, 0)  # one slot kept for the digest
    for _ in range(8):  # each step only lowers ``alone``; a few steps settle it
        taken = set(urgent[:alone])
        rest = [i for i in order if i not in taken]
        need = parts(rest) if parts is not None and len(rest) > 1 else 1
        if alone == 0 or alone + need <= free:
            break
        alone = max(free - need, 0)
    singles = urgent[:alone]
    taken = set(singles)
    rest = [i for i in order if i not in taken]
    if len(rest) == 1:  # a digest of one is just a message
        return singles + rest, []
    return singles, rest


def _line(n: int, ev: dict[str, Any], console_url: str, estate_name: str) -> str:
    sev = str(ev.get("severity", ""))
    event = str(ev.get("event", ""))
    aid = str(ev.get("alarm_id", ""))
    place = " ".join(p for p in (
        estate_name or str(ev.get("estate", "")), f"{ev.get('building')} 栋",
        f"{ev['floor']} 层" if ev.get("floor") is not None else "",
        str(ev.get("zone") or ""), str(ev.get("device") or "")) if p)
    started = datetime.fromtimestamp(int(ev.get("started_at") or 0) / 1000, _CST)
    value = ev.get("value")
    what = str(ev.get("message", ""))
    if len(what) > _MESSAGE_CHARS:
        what = what[:_MESSAGE_CHARS] + "…"
    # the alarm id first: if a line must be cut, its end goes, never which alarm it is
    return (f"{n}. [{aid}]({console_link(console_url, aid)}) "
            f"**{SEVERITY_ZH.get(sev, sev)}** {_EVENT_ZH.get(event, event)} "
            f"{ev.get('rule', '')} · {place} · {value if value is not None else '—'} · "
            f"{started:%m-%d %H:%M:%S} · {what}")


def render_digests(
    events: Sequence[dict[str, Any]], *, console_url: str,
    limit_for: Callable[[bool], int], measure: Callable[[str], int] = len,
    estate_names: dict[str, str] | None = None, mentions: tuple[str, ...] = (),
    mention: Callable[[str], str] | None = None, why: str = "",
) -> list[tuple[list[int], Message]]:
    """Digest messages listing every one of ``events`` (already in sending order), each
    within ``limit_for(mentioning)`` units of ``measure``; returns, per message, the indexes
    of the events it names and the message. Mentions are made in a message naming an urgent
    event. ``why`` says in a few words which limit made this a digest."""
    names = estate_names or {}
    lines = [_line(0, ev, console_url, names.get(str(ev.get("estate")), "")) for ev in events]

    def text(part: list[int], no: int, of: int, at: bool) -> tuple[str, str]:
        urgent = sum(1 for i in part if is_urgent(events[i]))
        title = (f"【告警汇总】{len(part)} 条" + (f"，紧急 {urgent} 条" if urgent else "")
                 + (f"（{no}/{of}）" if of > 1 else ""))
        head = (f"### {title}\n\n"
                f"告警过快，超过本机器人的发送频率限制{why}，合并发送，紧急在前。\n\n"
                f"Digest of {len(part)} alarm events"
                + (f", {urgent} critical" if urgent else "")
                + f": more than this robot may post{why}; critical first.\n\n")
        body = "\n".join(f"{k}.{lines[i].split('.', 1)[1]}" for k, i in enumerate(part, 1))
        tail = ("\n\n" + " ".join(mention(m) for m in mentions)
                if at and mention is not None and mentions else "")
        return title, head + body + tail

    def fits(part: list[int]) -> bool:
        at = bool(mentions) and any(is_urgent(events[i]) for i in part)
        return measure(text(part, 999, 999, at)[1]) <= limit_for(at)

    parts: list[list[int]] = []
    cur: list[int] = []
    for i in range(len(events)):
        if fits([*cur, i]):
            cur.append(i)
            continue
        if cur:
            parts.append(cur)
        cur = [i]
        while not fits(cur):  # one line alone too long (a very long place): cut its end
            if len(lines[i]) <= 60:
                raise ValueError(f"digest limit {limit_for(True)} is too small for one line")
            lines[i] = lines[i][:len(lines[i]) * 3 // 4] + "…"
    if cur:
        parts.append(cur)
    out = []
    for no, part in enumerate(parts, 1):
        at = bool(mentions) and any(is_urgent(events[i]) for i in part)
        title, body = text(part, no, len(parts), at)
        colour = "red" if any(events[i].get("severity") == "critical" for i in part) \
            else "orange"
        out.append((part, Message(title, body, mentions if at else (), colour,
                                  truncated=False)))
    return out
