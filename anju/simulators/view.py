"""What the demo shows: a live panel while it runs and the scorecard at the end (rich)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table

from anju.simulators.scoring import Scorecard

__all__ = ["LiveState", "print_scorecard", "render_live", "scorecard_table"]


@dataclass
class LiveState:
    """Everything the live panel shows; the demo updates it, the panel reads it."""

    scenario: str = ""
    duration_s: float = 0.0
    speed: float = 1.0
    data_s: float = 0.0  # data time published so far, from the start
    published: int = 0
    acked: int = 0
    publish_rate: float = 0.0
    pipeline: dict[str, Any] = field(default_factory=dict)
    stored: int | None = None
    deliveries: int = 0
    bad_signatures: int = 0
    open_alarms: dict[str, dict[str, Any]] = field(default_factory=dict)
    recent: list[dict[str, Any]] = field(default_factory=list)
    detected: int = 0
    incidents: int = 0
    phase: str = "starting"


def _fmt(n: float | int | None) -> str:
    if n is None:
        return "…"
    return f"{n:,.0f}" if isinstance(n, int) or float(n).is_integer() else f"{n:,.1f}"


def render_live(s: LiveState) -> Panel:
    """The live panel: data time, rates, stored points, open alarms, deliveries."""
    head = Table.grid(padding=(0, 2))
    head.add_column(style="bold")
    head.add_column()
    p = s.pipeline
    head.add_row("scenario", f"{s.scenario}  ·  data time {s.data_s:5.0f} / {s.duration_s:g} s"
                             f"  (×{s.speed:.1f})  ·  {s.phase}")
    head.add_row("published", f"{_fmt(s.published)} messages ({_fmt(s.publish_rate)}/s), "
                              f"{_fmt(s.acked)} acknowledged")
    rejected = sum(p.get("rejected", {}).values()) if p else 0
    head.add_row("pipeline", f"{_fmt(p.get('readings'))} readings decoded, {_fmt(rejected)} "
                             f"rejected, {_fmt(p.get('stored'))} points written, "
                             f"{_fmt(p.get('spooled'))} spooled")
    head.add_row("InfluxDB", f"{_fmt(s.stored)} readings stored")
    head.add_row("alarms", f"{len(s.open_alarms)} open · {_fmt(s.deliveries)} webhooks "
                           f"delivered · {s.bad_signatures} bad signatures · incidents "
                           f"detected {s.detected}/{s.incidents}")
    recent = Table(title="latest alarms (webhooks received)", expand=True, show_edge=False)
    for col, width in (("data s", 6), ("event", 7), ("rule", 29), ("severity", 8),
                       ("subject", 15), ("teams", 8)):
        recent.add_column(col, no_wrap=True, min_width=width, overflow="ellipsis")
    for ev in s.recent[-10:]:
        subject = ev.get("device") or f"{ev.get('estate')}/{ev.get('building')}/{ev.get('floor')}"
        style = {"critical": "bold red", "major": "red", "minor": "yellow"}.get(
            str(ev.get("severity")), "")
        recent.add_row(f"{ev.get('_data_s', 0):.0f}", str(ev.get("event")), str(ev.get("rule")),
                       str(ev.get("severity")), subject, ",".join(ev.get("teams") or []),
                       style=style)
    return Panel(Group(head, recent), title="安居 anju demo", border_style="cyan")


def scorecard_table(card: Scorecard) -> Table:
    t = Table(title="detection scorecard", show_header=False, title_style="bold")
    t.add_column(style="bold")
    t.add_column()
    ok = "green" if card.perfect else "red"
    t.add_row("incidents", str(card.incidents))
    t.add_row("detected", f"[{ok}]{card.detected}[/{ok}]")
    t.add_row("missed", ", ".join(card.missed) or "none")
    t.add_row("false alarms", f"[{ok}]{card.false_alarms}[/{ok}]")
    lat = card.detection_latency_ms
    if lat.get("p50") is not None:
        t.add_row("detection latency", f"p50 {lat['p50']:.0f} ms, max {lat['max']:.0f} ms")
    if card.published is not None:
        t.add_row("readings published", f"{card.published:,}")
    if card.stored is not None:
        t.add_row("readings stored", f"{card.stored:,} (lost {card.lost:,})")
    for m in card.missing:
        t.add_row("[red]not raised[/red]", f"{m['incident']}: {m['rule']} on {m['subject']}")
    for f in card.false[:10]:
        subject = f.get("device") or f"{f.get('estate')}/{f.get('building')}/{f.get('floor')}"
        t.add_row("[red]false alarm[/red]", f"{f['rule']} on {subject}")
    return t


def print_scorecard(card: Scorecard, console: Console | None = None) -> None:
    (console or Console()).print(scorecard_table(card))
