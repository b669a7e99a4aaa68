"""The detection scorecard: alarms raised against a scenario's ground truth.

An expectation (:class:`Truth`) is met by a ``raised`` alarm event (CONTRACT §4) of its
rule and subject whose ``ts`` falls in its window (and, for a falling object, that names
its floor) and, where the expectation gives a clear window, a ``cleared`` event of that
alarm in it. An incident is *detected* when every required expectation of it is met. A
*false alarm* is a raised alarm that meets no expectation of any incident —
``device.offline`` of a device the scenario silenced is expected whenever it comes.
The same alarm delivered to several teams counts once (by ``alarm_id``).

Detection latency is measured per met expectation, from when the publisher sent the
reading whose data time is the alarm's ``ts`` to when the webhook arrived (wall clock),
so it is the pipeline's latency whatever the time compression of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anju.simulators.scenario import GROUP_RE, BoundScenario

__all__ = ["Observed", "Scorecard", "Truth", "ground_truth", "score"]


@dataclass(frozen=True)
class Truth:
    """One expected alarm, with its window in absolute data time (ms)."""

    incident: str
    rule: str
    device: str | None
    group: tuple[str, str, int] | None
    lo_ms: int
    hi_ms: int
    optional: bool = False
    floor: int | None = None
    clear_lo_ms: int | None = None  # when the alarm must clear, if it must
    clear_hi_ms: int | None = None

    @property
    def subject(self) -> str:
        return self.device if self.device is not None else "/".join(map(str, self.group or ()))

    def matches(self, ev: Mapping[str, Any]) -> bool:
        if ev.get("rule") != self.rule or not self.lo_ms <= int(ev.get("ts", -1)) <= self.hi_ms:
            return False
        if self.device is not None:
            if ev.get("device") != self.device:
                return False
        elif self.group is not None:
            if ev.get("device") is not None or (ev.get("estate"), ev.get("building"),
                                                ev.get("floor")) != self.group:
                return False
        if self.floor is not None:
            details = ev.get("details") or {}
            if details.get("floor", ev.get("floor")) != self.floor:
                return False
        return True


def ground_truth(bs: BoundScenario, start_ms: int) -> list[Truth]:
    """The scenario's expectations for a run whose data time starts at ``start_ms``."""
    out = []
    for inc in bs.scenario.incidents:
        at = start_ms + round(inc.at * 1000)
        for ex in inc.expect:
            group = None
            if ex.group is not None:
                m = GROUP_RE.match(ex.group)
                assert m is not None
                group = (m.group(1), m.group(2), int(m.group(3)))
            clear = (None, None) if ex.cleared is None else (
                at + round(ex.cleared[0] * 1000), at + round(ex.cleared[1] * 1000))
            out.append(Truth(inc.id, ex.rule, ex.device, group, at + round(ex.within[0] * 1000),
                             at + round(ex.within[1] * 1000), ex.optional, ex.floor, *clear))
    return out


@dataclass(frozen=True)
class Observed:
    """An alarm event as received, with the wall-clock ms it arrived (None in replay)."""

    event: Mapping[str, Any]
    received_ms: float | None = None


@dataclass
class Scorecard:
    incidents: int
    detected: int
    missed: list[str]
    false_alarms: int
    detection_latency_ms: dict[str, float | None]
    stored: int | None = None
    lost: int | None = None
    published: int | None = None
    missing: list[dict[str, Any]] = field(default_factory=list)  # unmet expectations
    false: list[dict[str, Any]] = field(default_factory=list)  # the false alarms

    @property
    def perfect(self) -> bool:
        return not self.missed and self.false_alarms == 0

    def contract(self) -> dict[str, Any]:
        """The scorecard of CONTRACT §7, then extras."""
        return {
            "incidents": self.incidents,
            "detected": self.detected,
            "missed": self.missed,
            "false_alarms": self.false_alarms,
            "detection_latency_ms": self.detection_latency_ms,
            "stored": self.stored,
            "lost": self.lost,
            "published": self.published,
            "missing": self.missing,
            "false": self.false,
        }


def _brief(ev: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ev.get(k) for k in ("rule", "device", "estate", "building", "floor", "ts")}


def score(truth: list[Truth], observed: Iterable[Observed], *,
          silenced: Iterable[str] = (),
          wall_of: Callable[[int], float] | None = None,
          until_ms: int | None = None) -> Scorecard:
    """Scores raised alarms against ``truth``.

    ``wall_of(ts)`` is the wall-clock ms at which the publisher sent data time ``ts``
    (for latencies); alarms with ``ts`` after ``until_ms`` (the end of the data) are
    ignored: they are about the silence after the run, not the scenario.
    """
    silenced = set(silenced)
    raised: dict[str, Observed] = {}
    cleared: dict[str, int] = {}  # alarm_id → ts of its cleared event
    for ob in observed:
        ev = ob.event
        if ev.get("event") == "cleared" and ev.get("alarm_id"):
            cleared.setdefault(str(ev["alarm_id"]), int(ev.get("ts", 0)))
        if ev.get("event") != "raised":
            continue
        if until_ms is not None and int(ev.get("ts", 0)) > until_ms:
            continue
        key = str(ev.get("alarm_id") or id(ob))
        first = raised.get(key)
        if first is None or (ob.received_ms or 0) < (first.received_ms or 0):
            raised[key] = ob
    met: dict[int, list[Observed]] = {}
    false: list[Observed] = []
    for ob in sorted(raised.values(), key=lambda o: int(o.event.get("ts", 0))):
        hits = [i for i, t in enumerate(truth) if t.matches(ob.event)]
        for i in hits:
            met.setdefault(i, []).append(ob)
        if not hits and not (ob.event.get("rule") == "device.offline"
                             and ob.event.get("device") in silenced):
            false.append(ob)
    # an expectation with a clear window is met only by an alarm that cleared in it
    for i, obs in list(met.items()):
        t = truth[i]
        if t.clear_lo_ms is None or t.clear_hi_ms is None:
            continue
        lo, hi = t.clear_lo_ms, t.clear_hi_ms
        good = [o for o in obs
                if lo <= cleared.get(str(o.event.get("alarm_id")), -1) <= hi]
        if good:
            met[i] = good
        else:
            del met[i]
    incidents: dict[str, list[int]] = {}
    for i, t in enumerate(truth):
        incidents.setdefault(t.incident, []).append(i)
    missed = [name for name, idx in incidents.items()
              if any(not truth[i].optional and i not in met for i in idx)]
    latencies = []
    if wall_of is not None:
        for i, obs in met.items():
            if truth[i].optional:
                continue
            first = min(obs, key=lambda o: o.received_ms or 0)
            if first.received_ms is not None:
                latencies.append(first.received_ms - wall_of(int(first.event["ts"])))
    lat: dict[str, float | None] = {"p50": None, "max": None}
    if latencies:
        arr = np.asarray(latencies)
        lat = {"p50": round(float(np.median(arr)), 1), "max": round(float(arr.max()), 1)}
    return Scorecard(
        incidents=len(incidents),
        detected=len(incidents) - len(missed),
        missed=missed,
        false_alarms=len(false),
        detection_latency_ms=lat,
        missing=[{"incident": t.incident, "rule": t.rule, "subject": t.subject,
                  "window_ms": [t.lo_ms, t.hi_ms]}
                 | ({"cleared_window_ms": [t.clear_lo_ms, t.clear_hi_ms]}
                    if t.clear_lo_ms is not None else {})
                 for i, t in enumerate(truth) if not t.optional and i not in met],
        false=[_brief(o.event) for o in false],
    )
