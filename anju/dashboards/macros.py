"""Grafana's substitution of macros and template variables in InfluxQL, done as Grafana does.

Used to run the dashboards' queries against a real InfluxDB without a Grafana (the tests,
``anju dashboards check``). What is mirrored, from Grafana's InfluxDB datasource:

- ``$timeFilter`` → ``time >= now() - 6h and time <= now()`` for a range ending now, else
  ``time >= <from>ms and time <= <to>ms``: always bounded above, as Grafana's
  ``getTimeFilter`` writes it (datasource.ts), so a point stamped in the future is outside;
- ``$__interval`` → the group-by interval (``10s``), ``$__interval_ms`` → its ms; Grafana
  derives it from the range and the panel's width in pixels (:func:`grafana_interval`);
- a multi-value or include-all variable → its value regex-escaped, several values as
  ``(a|b)``, "All" as the variable's custom all value (``.*``) unescaped.

This is a re-implementation on purpose: there is no Grafana on this machine to ask.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALL",
    "InfluxQuery",
    "TimeRange",
    "grafana_interval",
    "interpolate",
    "iter_influx_queries",
    "regex_escape",
    "variable_names",
]

ALL: tuple[str, ...] = ()  # a variable set to "All"
_VAR = re.compile(r"\$(\w+)|\$\{(\w+)\}|\[\[(\w+)\]\]")
# @grafana/data escapeRegex: the characters special in a JavaScript (and Go RE2) regex.
_REGEX_SPECIAL = re.compile(r"[\\^$*+?.()|\[\]{}/]")


@dataclass(frozen=True, slots=True)
class TimeRange:
    """A relative range ending now (``relative="6h"``) or an absolute one in epoch ms."""

    relative: str | None = "6h"
    from_ms: int | None = None
    to_ms: int | None = None

    def span_ms(self) -> int:
        """The length of the range in ms (``6h``, ``30d``, … or to − from)."""
        if self.relative is None:
            return int(self.to_ms or 0) - int(self.from_ms or 0)
        m = re.fullmatch(r"(\d+)(ms|s|m|h|d|w|y)", self.relative)
        if m is None:
            raise ValueError(f"relative range {self.relative!r} is not like 6h")
        return int(m.group(1)) * _UNIT_MS[m.group(2)]

    def filter(self, now_ms: int | None = None) -> str:
        """What Grafana puts in place of ``$timeFilter``.

        Grafana's ``getInfluxTime`` keeps ``now-<n><d|h|m|s>`` as ``now() - <n><unit>``
        and turns any other relative time (``now-1y``, ``now-2w``: units InfluxQL has not)
        into epoch ms; ``now`` is ``now()``. (A year here is 365 days; Grafana's date math
        subtracts a calendar year.)"""
        if self.relative is not None:
            if _INFLUXQL_DURATION.fullmatch(self.relative):
                return f"time >= now() - {self.relative} and time <= now()"
            now = int(time.time() * 1000) if now_ms is None else now_ms
            return f"time >= {now - self.span_ms()}ms and time <= now()"
        return f"time >= {self.from_ms}ms and time <= {self.to_ms}ms"


_INFLUXQL_DURATION = re.compile(r"\d+[dhms]")  # Grafana's /^now-(\d+)([dhms])$/
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 604_800_000, "y": 31_536_000_000}
# Grafana's rangeutil.ts roundInterval: (below this many ms, use this interval).
_ROUND_MS: tuple[tuple[int, int], ...] = (
    (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500), (1_500, 1_000),
    (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000), (25_000, 20_000),
    (45_000, 30_000), (90_000, 60_000), (210_000, 120_000), (450_000, 300_000),
    (750_000, 600_000), (1_050_000, 900_000), (1_500_000, 1_200_000),
    (2_700_000, 1_800_000), (5_400_000, 3_600_000), (9_000_000, 7_200_000),
    (16_200_000, 10_800_000), (32_400_000, 21_600_000), (86_400_000, 43_200_000),
    (604_800_000, 86_400_000), (1_814_400_000, 604_800_000), (3_628_800_000, 2_592_000_000),
)
_YEAR_MS = 31_536_000_000


def grafana_interval(range_ms: int, max_data_points: int, min_interval_ms: int = 1
                     ) -> tuple[str, int]:
    """``($__interval, $__interval_ms)`` as Grafana computes them (rangeutil.ts
    ``calculateInterval``): the range over the panel's data points (its width in pixels),
    rounded to a "nice" interval, never below the datasource's ``timeInterval``."""
    raw = range_ms / max(max_data_points, 1)
    ms = next((nice for below, nice in _ROUND_MS if raw < below), _YEAR_MS)
    ms = max(ms, min_interval_ms)
    return _hms(ms), ms


def _hms(ms: int) -> str:
    # Grafana's secondsToHms: the largest whole unit (y, d, h, m, s, ms; no weeks).
    for unit, size in (("y", 31_536_000_000), ("d", 86_400_000),
                       ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if ms >= size:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def regex_escape(value: str) -> str:
    """Escape ``value`` for use inside an InfluxQL ``/regex/``, as Grafana does."""
    return _REGEX_SPECIAL.sub(lambda m: "\\" + m.group(0), value)


def _format_var(values: Sequence[str], all_value: str) -> str:
    if not values:
        return all_value
    escaped = [v if _is_number(v) else regex_escape(v) for v in values]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def _is_number(v: str) -> bool:
    # Grafana leaves values that parse as numbers unescaped (parseFloat check).
    try:
        float(v)
    except ValueError:
        return False
    return True


def interpolate(
    query: str,
    *,
    time_range: TimeRange,
    interval: str = "10s",
    interval_ms: int = 10_000,
    variables: Mapping[str, Sequence[str]] | None = None,
    all_value: str = ".*",
) -> str:
    """``query`` with Grafana's macros and the template variables substituted.

    ``variables`` maps a name to its selected values; an empty sequence means "All".
    An unknown ``$name`` is left as is, as Grafana leaves it.
    """
    variables = variables or {}
    builtins = {
        "timeFilter": time_range.filter(),
        "__interval": interval,
        "__interval_ms": str(interval_ms),
    }

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        if name in builtins:
            return builtins[name]
        if name in variables:
            return _format_var(variables[name], all_value)
        return m.group(0)

    return _VAR.sub(sub, query)


@dataclass(frozen=True, slots=True)
class InfluxQuery:
    """One InfluxQL query of a dashboard, with where it sits and its panel's time override."""

    dashboard: str
    where: str
    query: str
    time_from: str | None = None
    width: int | None = None  # the panel's gridPos.w, of 24 columns


def _is_influx(ds: Any) -> bool:
    return isinstance(ds, dict) and ds.get("type") == "influxdb"


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for p in panels:
        yield p
        yield from _panels(p.get("panels") or [])


def iter_influx_queries(dashboard: Mapping[str, Any]) -> Iterator[InfluxQuery]:
    """Every InfluxQL query of a dashboard's JSON: panel targets, variables, annotations."""
    uid = str(dashboard.get("uid"))
    for var in (dashboard.get("templating") or {}).get("list") or []:
        if _is_influx(var.get("datasource")) and isinstance(var.get("query"), str):
            yield InfluxQuery(uid, f"variable {var['name']}", var["query"])
    for ann in (dashboard.get("annotations") or {}).get("list") or []:
        target = ann.get("target") or {}
        if _is_influx(ann.get("datasource")) and "query" in target:
            yield InfluxQuery(uid, f"annotation {ann['name']!r}", target["query"])
    for panel in _panels(dashboard.get("panels") or []):
        for target in panel.get("targets") or []:
            ds = target.get("datasource") or panel.get("datasource")
            if _is_influx(ds):
                yield InfluxQuery(
                    uid, f"panel {panel.get('id')} {panel.get('title')!r} {target['refId']}",
                    target["query"], panel.get("timeFrom"),
                    (panel.get("gridPos") or {}).get("w"))


def variable_names(dashboard: Mapping[str, Any]) -> list[str]:
    """The names of a dashboard's template variables, in order."""
    return [str(v["name"]) for v in (dashboard.get("templating") or {}).get("list") or []]
