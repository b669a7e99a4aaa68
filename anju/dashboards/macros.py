"""Grafana's substitution of macros and template variables in InfluxQL, done as Grafana does.

Used to run the dashboards' queries against a real InfluxDB without a Grafana (the tests,
``anju dashboards check``). What is mirrored, from Grafana's InfluxDB datasource:

- ``$timeFilter`` → ``time >= now() - 6h and time <= now()`` for a range ending now, else
  ``time >= <from>ms and time <= <to>ms``: always bounded above, as Grafana's
  ``getTimeFilter`` writes it (datasource.ts), so a point stamped in the future is outside;
- ``$__interval`` → the group-by interval (``10s``), ``$__interval_ms`` → its ms;
- a multi-value or include-all variable → its value regex-escaped, several values as
  ``(a|b)``, "All" as the variable's custom all value (``.*``) unescaped.

This is a re-implementation on purpose: there is no Grafana on this machine to ask.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "ALL",
    "InfluxQuery",
    "TimeRange",
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

    def filter(self) -> str:
        """What Grafana puts in place of ``$timeFilter``."""
        if self.relative is not None:
            return f"time >= now() - {self.relative} and time <= now()"
        return f"time >= {self.from_ms}ms and time <= {self.to_ms}ms"


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
                    target["query"], panel.get("timeFrom"))


def variable_names(dashboard: Mapping[str, Any]) -> list[str]:
    """The names of a dashboard's template variables, in order."""
    return [str(v["name"]) for v in (dashboard.get("templating") or {}).get("list") or []]
