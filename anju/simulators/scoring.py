"""The detection scorecard: alarms raised against a scenario's ground truth.

An expectation (:class:`Truth`) is met by a ``raised`` alarm event (CONTRACT §4) of its
rule and subject whose ``ts`` falls in its window (and, for a falling object, that names
its floor) and, where the expectation gives a clear window, a ``cleared`` event of that
alarm in it. An incident is *detected* when every required expectation of it is met. A
*false alarm* is a raised alarm that meets no expectation of any incident —
``device.offline`` of a device the scenario silenced is expected whenever it comes.
The same alarm delivered to several teams counts once (by ``alarm_id``).

Supervision (issue 18): an observed event is *delivered* when a team received it (a
webhook), or, in a replay's event list, unless it is held (``details.maintenance`` or
``details.inhibited_by``, not ``released``). An expectation is met by a delivered alarm,
or, with ``delivered: false``, by a recorded one of which nothing was delivered (a
delivered one fails it, even when optional). ``to`` / ``not_to`` name teams that must / must
not have been told of the alarm; ``escalated`` the exact escalation levels, each in its
window after the alarm's (first delivered) raise and to its teams; ``acknowledged`` that
an ``acknowledged`` event of the alarm was seen (the run acknowledges it: see
:func:`acknowledgements`). With ``covers``, a
delivery to a team outside its estates is listed in ``out_of_scope`` and spoils the card.

Detection latency is measured per met expectation, from when the publisher sent the
reading whose data time is the alarm's ``ts`` to when the webhook arrived (wall clock),
so it is the pipeline's latency whatever the time compression of the run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anju.kinds import KINDS
from anju.simulators.scenario import GROUP_RE, BoundScenario

__all__ = ["LIFECYCLE_RULES", "Observed", "Scorecard", "Truth", "acknowledgements",
           "ground_truth", "score"]


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
    building: tuple[str, str] | None = None  # any device of it
    delivered: bool = True
    to: tuple[str, ...] = ()
    not_to: tuple[str, ...] = ()
    # (level, lo, hi ms after the raise, teams); None: not checked
    escalated: tuple[tuple[int, int, int, tuple[str, ...]], ...] | None = None
    # (ms after the raise, team): the run acknowledges the alarm; None: nobody does
    acknowledged: tuple[int, str] | None = None

    @property
    def subject(self) -> str:
        if self.device is not None:
            return self.device
        return "/".join(map(str, self.group or self.building or ()))

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
        elif self.building is not None:
            if ev.get("device") is None or (ev.get("estate"), ev.get("building")) \
                    != self.building:
                return False
        if self.floor is not None:
            details = ev.get("details") or {}
            if details.get("floor", ev.get("floor")) != self.floor:
                return False
        return True


#: Rules raised by the alarm lifecycle's watches, not by the rule engine (issue 18).
LIFECYCLE_RULES = frozenset({"gateway.offline", *(f"{k}.maintenance_overdue"
                                                   for k, s in KINDS.items()
                                                   if s.maintenance_days)})


def ground_truth(bs: BoundScenario, start_ms: int, *, lifecycle: bool = True) -> list[Truth]:
    """The scenario's expectations for a run whose data time starts at ``start_ms``.

    ``lifecycle=False`` for the events of the rule engine alone (a replay through ``anju
    rules eval``): no alarm lifecycle there, so the expectations of its watches are left
    out, held alarms are expected as plain ones, and who is told is not checked.
    """
    out = []
    for inc in bs.scenario.incidents:
        at = start_ms + round(inc.at * 1000)
        for ex in inc.expect:
            if not lifecycle:
                if ex.rule in LIFECYCLE_RULES:
                    continue
                ex = ex.model_copy(update={"delivered": True, "to": [], "not_to": [],
                                           "escalated": None, "acknowledged": None})
            group = None
            if ex.group is not None:
                m = GROUP_RE.match(ex.group)
                assert m is not None
                group = (m.group(1), m.group(2), int(m.group(3)))
            clo = None if ex.cleared is None else at + round(ex.cleared[0] * 1000)
            chi = None if ex.cleared is None else at + round(ex.cleared[1] * 1000)
            building = None
            if ex.building is not None:
                estate, _, bid = ex.building.partition("/")
                building = (estate, bid)
            esc = None if ex.escalated is None else tuple(
                (e.level, round(e.after[0] * 1000), round(e.after[1] * 1000), tuple(e.to))
                for e in ex.escalated)
            ack = None if ex.acknowledged is None else (
                round(ex.acknowledged.after * 1000), ex.acknowledged.by)
            out.append(Truth(inc.id, ex.rule, ex.device, group, at + round(ex.within[0] * 1000),
                             at + round(ex.within[1] * 1000), ex.optional, ex.floor, clo, chi,
                             building=building, delivered=ex.delivered, to=tuple(ex.to),
                             not_to=tuple(ex.not_to), escalated=esc, acknowledged=ack))
    return out


@dataclass(frozen=True)
class Observed:
    """An alarm event as received, with the wall-clock ms it arrived (None in replay)."""

    event: Mapping[str, Any]
    received_ms: float | None = None
    team: str | None = None  # who received it (a webhook); None: the event's own ``teams``
    delivered: bool | None = None  # None: unless the event says it is held

    def was_delivered(self) -> bool:
        if self.delivered is not None:
            return self.delivered
        d = self.event.get("details") or {}
        held = bool(d.get("maintenance") or d.get("inhibited_by")) and "released" not in d
        return not held

    def told(self) -> set[str]:
        """The teams this event reached."""
        if self.team is not None:
            return {self.team} if self.was_delivered() else set()
        return set(self.event.get("teams") or ()) if self.was_delivered() else set()


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
    out_of_scope: list[dict[str, Any]] = field(default_factory=list)  # team ∌ estate

    @property
    def perfect(self) -> bool:
        return not self.missed and self.false_alarms == 0 and not self.out_of_scope

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
            "out_of_scope": self.out_of_scope,
        }


def _brief(ev: Mapping[str, Any]) -> dict[str, Any]:
    return {k: ev.get(k) for k in ("rule", "device", "estate", "building", "floor", "ts")}


def score(truth: list[Truth], observed: Iterable[Observed], *,
          silenced: Iterable[str] = (),
          wall_of: Callable[[int], float] | None = None,
          until_ms: int | None = None,
          covers: Callable[[str, str], bool] | None = None) -> Scorecard:
    """Scores raised alarms against ``truth``.

    ``wall_of(ts)`` is the wall-clock ms at which the publisher sent data time ``ts``
    (for latencies); alarms with ``ts`` after ``until_ms`` (the end of the data) are
    ignored: they are about the silence after the run, not the scenario. ``covers(team,
    estate)`` tells whether a team may be told of an estate's alarms.
    """
    silenced = set(silenced)
    raised: dict[str, Observed] = {}  # alarm → its raise (the earliest ts)
    delivered: dict[str, Observed] = {}  # alarm → its first delivered raise
    cleared: dict[str, int] = {}  # alarm_id → ts of its cleared event
    acked: set[str] = set()  # alarm_ids with an acknowledged event
    told: dict[str, set[str]] = {}  # alarm → teams told of it
    escalations: dict[str, dict[int, tuple[int, set[str]]]] = {}  # alarm → level → ts, teams
    out_of_scope: list[dict[str, Any]] = []
    for ob in observed:
        ev = ob.event
        aid = str(ev.get("alarm_id") or id(ob))
        teams = ob.told()
        told.setdefault(aid, set()).update(teams)
        if covers is not None and ev.get("estate") is not None:
            out_of_scope += [{"team": t, "event": ev.get("event"), **_brief(ev)}
                             for t in sorted(teams) if not covers(t, str(ev["estate"]))]
        if ev.get("event") == "acknowledged" and ev.get("alarm_id"):
            acked.add(str(ev["alarm_id"]))
        if ev.get("event") == "cleared" and ev.get("alarm_id"):
            cleared.setdefault(str(ev["alarm_id"]), int(ev.get("ts", 0)))
        if ev.get("event") == "escalated":
            level = int(((ev.get("details") or {}).get("escalation") or {}).get("level", 0))
            at, who = escalations.setdefault(aid, {}).get(level, (int(ev.get("ts", 0)), set()))
            escalations[aid][level] = (min(at, int(ev.get("ts", 0))), who | teams)
        if ev.get("event") != "raised":
            continue
        if until_ms is not None and int(ev.get("ts", 0)) > until_ms:
            continue
        first = raised.get(aid)
        if first is None or _earlier(ob, first):
            raised[aid] = ob
        if ob.was_delivered():
            d = delivered.get(aid)
            if d is None or _earlier(ob, d):
                delivered[aid] = ob
    hits_of: dict[int, list[str]] = {}
    false: list[Observed] = []
    for aid, ob in sorted(raised.items(), key=lambda kv: int(kv[1].event.get("ts", 0))):
        hits = [i for i, t in enumerate(truth) if t.matches(ob.event)]
        for i in hits:
            hits_of.setdefault(i, []).append(aid)
        if not hits and not (ob.event.get("rule") == "device.offline"
                             and ob.event.get("device") in silenced):
            false.append(ob)

    def why_not(t: Truth, aid: str) -> str | None:
        """Why alarm ``aid`` does not meet ``t`` (None: it does)."""
        if not t.delivered:
            return "delivered, should be held" if aid in delivered else None
        if aid not in delivered:
            return "recorded, never delivered"
        if t.clear_lo_ms is not None and t.clear_hi_ms is not None \
                and not t.clear_lo_ms <= cleared.get(aid, -1) <= t.clear_hi_ms:
            return "not cleared in its window"
        teams = told.get(aid, set())
        if set(t.to) - teams:
            return f"not told: {sorted(set(t.to) - teams)}"
        if set(t.not_to) & teams:
            return f"told: {sorted(set(t.not_to) & teams)}"
        if t.acknowledged is not None and aid not in acked:
            return "not acknowledged"
        if t.escalated is not None:
            got = escalations.get(aid, {})
            start = int(delivered[aid].event.get("ts", 0))
            want = {lv: (lo, hi, to) for lv, lo, hi, to in t.escalated}
            if set(got) != set(want):
                return f"escalation levels {sorted(got)}, expected {sorted(want)}"
            for lv, (lo, hi, to) in want.items():
                at, who = got[lv]
                if not lo <= at - start <= hi:
                    return f"level {lv} at {(at - start) / 1000:g} s after the raise"
                if set(to) - who:
                    return f"level {lv} did not tell {sorted(set(to) - who)}"
        return None

    met: dict[int, list[Observed]] = {}
    reasons: dict[int, str] = {}
    for i, t in enumerate(truth):
        aids = hits_of.get(i, [])
        if not t.delivered:
            bad = [why for a in aids if (why := why_not(t, a)) is not None]
            if bad:
                reasons[i] = bad[0]
            elif aids or t.optional:
                met[i] = [raised[a] for a in aids]
            continue
        good = [a for a in aids if why_not(t, a) is None]
        if good:
            met[i] = [delivered[a] for a in good]
        elif aids:
            reasons[i] = str(why_not(t, aids[0]))
    incidents: dict[str, list[int]] = {}
    for i, t in enumerate(truth):
        incidents.setdefault(t.incident, []).append(i)

    def unmet(i: int) -> bool:  # a held expectation broken fails even when optional
        return i not in met and (not truth[i].optional or (i in reasons and
                                 not truth[i].delivered))

    missed = [name for name, idx in incidents.items() if any(unmet(i) for i in idx)]
    latencies = []
    if wall_of is not None:
        for i, obs in met.items():
            if truth[i].optional or not truth[i].delivered:
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
                 | ({"why": reasons[i]} if i in reasons else {})
                 for i, t in enumerate(truth) if unmet(i)],
        false=[_brief(o.event) for o in false],
        out_of_scope=out_of_scope,
    )


def acknowledgements(truth: Iterable[Truth], raised: Iterable[Mapping[str, Any]]
                     ) -> list[tuple[int, str, str]]:
    """What the run must acknowledge, of the alarms ``raised`` so far: (data time ms at
    which to do it, alarm_id, team) for each raise that meets an expectation with
    ``acknowledged``, in time order, each alarm once."""
    out: dict[str, tuple[int, str, str]] = {}
    for ev in raised:
        if ev.get("event") != "raised" or not ev.get("alarm_id"):
            continue
        for t in truth:
            if t.acknowledged is not None and t.matches(ev):
                after, team = t.acknowledged
                aid = str(ev["alarm_id"])
                out.setdefault(aid, (int(ev.get("ts", 0)) + after, aid, team))
    return sorted(out.values())


def _earlier(a: Observed, b: Observed) -> bool:
    """Whether ``a`` is the earlier of two observations of one alarm's raise."""
    ta, tb = int(a.event.get("ts", 0)), int(b.event.get("ts", 0))
    return (ta, a.received_ms or 0) < (tb, b.received_ms or 0)
