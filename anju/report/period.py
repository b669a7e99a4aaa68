"""The reporting period: ``--from``/``--to`` as dates in a time zone, or exact instants.

Month boundaries are local: the bureaus count a month from local midnight, so a date is
midnight in the report's time zone (Asia/Shanghai by default), not UTC.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["DEFAULT_TZ", "Period", "last_month", "month_of", "parse_instant",
           "parse_period"]

DEFAULT_TZ = "Asia/Shanghai"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass(frozen=True, slots=True)
class Period:
    """``[start_ms, end_ms)`` in ms since the epoch (data time), and how to show it."""

    start_ms: int
    end_ms: int
    tz: str = DEFAULT_TZ

    @property
    def hours(self) -> float:
        return (self.end_ms - self.start_ms) / 3_600_000

    def label(self, ms: int) -> str:
        """An instant as local ``YYYY-MM-DD HH:MM`` in the period's zone."""
        when = dt.datetime.fromtimestamp(ms / 1000, tz=ZoneInfo(self.tz))
        return when.strftime("%Y-%m-%d %H:%M")

    def as_dict(self) -> dict[str, object]:
        return {"from_ms": self.start_ms, "to_ms": self.end_ms, "timezone": self.tz,
                "from": self.label(self.start_ms), "to": self.label(self.end_ms),
                "hours": round(self.hours, 3)}


def parse_instant(text: str, tz: str = DEFAULT_TZ) -> int:
    """``2026-11-01`` (local midnight), an ISO 8601 date-time (local when it has no offset)
    or integer ms since the epoch; raises ValueError naming what it could not read."""
    s = text.strip()
    if s.isdigit():
        return int(s)
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {tz!r}") from exc
    try:
        when = (dt.datetime.combine(dt.date.fromisoformat(s), dt.time()) if _DATE.match(s)
                else dt.datetime.fromisoformat(s))
    except ValueError as exc:
        raise ValueError(f"{text!r} is not a date (2026-11-01), a date-time or ms") from exc
    if when.tzinfo is None:
        when = when.replace(tzinfo=zone)
    return int(when.timestamp() * 1000)


def parse_period(start: str, end: str, tz: str = DEFAULT_TZ) -> Period:
    """The period from ``start`` to ``end`` (excluded); ValueError when it is empty."""
    a, b = parse_instant(start, tz), parse_instant(end, tz)
    if b <= a:
        raise ValueError(f"the period is empty: --to {end!r} is not after --from {start!r}")
    return Period(a, b, tz)


def month_of(ms: int, tz: str = DEFAULT_TZ) -> Period:
    """The calendar month holding ``ms``, from local midnight to local midnight in ``tz``."""
    first = dt.datetime.fromtimestamp(ms / 1000, tz=ZoneInfo(tz)).date().replace(day=1)
    after = (first + dt.timedelta(days=32)).replace(day=1)
    return parse_period(first.isoformat(), after.isoformat(), tz)


def last_month(now_ms: int, tz: str = DEFAULT_TZ) -> Period:
    """The last full calendar month before ``now_ms``, local midnights in ``tz``."""
    return month_of(month_of(now_ms, tz).start_ms - 1, tz)
