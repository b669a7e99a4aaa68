"""A simulated month of alarm handling by property companies of known behaviour, with the
ground truth of every figure of the accountability report (issue 19).

Three companies, two estates each, answer their alarms as their profile says: ``prompt``
(acknowledges nearly everything within a minute or two), ``slow`` (often past the
escalation deadline) and ``negligent`` (rarely; the street office acknowledges after
escalation, alarms and outages are left open). The alarms go through the real
:class:`~anju.alarms.lifecycle.AlarmManager` — raises and clears as the rule engine hands
them over, acknowledgements as the API makes them, escalation ticks at their due times — so
the store holds exactly what a live pipeline would. Some alarms begin before the month and
some acknowledgements come after it, so "as of the end of the period" is tested too.

The ground truth is computed here from the plan, by the definitions of
``docs/report.md``, with no code of :mod:`anju.report`: the report must reach the same
numbers from the store alone.
"""

from __future__ import annotations

import heapq
import itertools
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from anju.simulators.city import plan_city, write_site

__all__ = ["PROFILES", "MonthPlan", "Planned", "plan_month", "run_month", "write_month_site"]

DAY = 86_400_000
HOUR = 3_600_000
DEADLINE_S = 300
#: Profile → (ack probability, ack delay range s, share of unacked state alarms never
#: cleared, outages per estate, outage hours range, supervisor acks the unacked with p).
PROFILES: dict[str, dict[str, Any]] = {
    "prompt": {"ack_p": 0.97, "delay_s": (15, 150), "never_clear": 0.0, "outages": 3,
               "outage_h": (0.5, 3.0), "supervisor_p": 0.0},
    "slow": {"ack_p": 0.85, "delay_s": (60, 900), "never_clear": 0.1, "outages": 6,
             "outage_h": (2.0, 12.0), "supervisor_p": 0.2},
    "negligent": {"ack_p": 0.35, "delay_s": (600, 7200), "never_clear": 0.4, "outages": 10,
                  "outage_h": (6.0, 60.0), "supervisor_p": 0.5},
}
# rule → (kind, severity, roles, is_event, share of the alarm mix)
_RULES: dict[str, tuple[str, str, tuple[str, ...], bool, float]] = {
    "smoke.alarm": ("smoke", "major", ("property",), False, 0.15),
    "smoke.battery_low": ("smoke", "warning", ("property",), False, 0.2),
    "water.pressure_low": ("water", "major", ("property",), False, 0.1),
    "elevator.stopped_outside_zone": ("elevator", "major", ("property",), False, 0.15),
    "elevator.trapped": ("elevator", "critical", ("property", "fire"), False, 0.1),
    "camera.falling_object": ("camera", "major", ("property",), True, 0.2),
    "camera.obstructed": ("camera", "minor", ("property",), True, 0.1),
}


@dataclass
class Planned:
    """One alarm as the simulator decides it; times in ms, None when it does not happen."""

    rule: str
    kind: str
    severity: str
    roles: tuple[str, ...]
    is_event: bool
    device: str
    estate: str
    building: str
    floor: int | None
    raised: int
    started: int
    ack: int | None = None
    ack_team: str | None = None
    clear: int | None = None  # state alarms only (event alarms clear on their ack)


@dataclass
class MonthPlan:
    start_ms: int
    end_ms: int
    company_of: dict[str, str]  # estate → property team
    profile_of: dict[str, str]  # property team → profile
    alarms: list[Planned] = field(default_factory=list)
    devices: dict[tuple[str, str], list[str]] = field(default_factory=dict)  # (estate, kind)
    # maintenance windows (scope, target, estate, from, to): not expected online meanwhile
    windows: list[tuple[str, str, str, int, int]] = field(default_factory=list)


def write_month_site(out: str | Path, seed: int = 19) -> Path:
    """A site of six estates: companies ``property-prompt`` (e001, e002), ``property-slow``
    (e003, e004) and ``property-negligent`` (e005, e006), the district fire team and a street
    office over all six."""
    plan = plan_city(6, seed)
    teams: list[dict[str, Any]] = []
    for i, prof in enumerate(PROFILES):
        tid = f"property-{prof}"
        estates = [plan.estates[2 * i].id, plan.estates[2 * i + 1].id]
        teams.append(_team(tid, "property", estates))
    teams.append(_team("fire-district", "fire", ["*"]))
    teams.append(_team("supervisor-street", "supervisor", [e.id for e in plan.estates]))
    plan.teams = teams
    return write_site(plan, out)


def _team(tid: str, role: str, estates: list[str]) -> dict[str, Any]:
    env = tid.upper().replace("-", "_")
    return {"id": tid, "role": role, "estates": estates,
            "secret_env": f"ANJU_SECRET_{env}", "token_env": f"ANJU_TOKEN_{env}"}


def plan_month(site: Any, start_ms: int, end_ms: int, seed: int = 19,
               alarms_per_estate: int = 60) -> MonthPlan:
    """The alarms of every estate of ``site`` from 5 days before the start to a day after
    the end. A property team named ``property-<profile>`` behaves as that profile; the
    others (a generated city's) take the profiles in turn."""
    rng = np.random.default_rng([seed, 0x19])
    company_of: dict[str, str] = {}
    profile_of: dict[str, str] = {}
    names = list(PROFILES)
    for t in site.teams:
        if t.role == "property":
            name = t.id.removeprefix("property-")
            profile_of[t.id] = name if name in PROFILES else names[len(profile_of) % 3]
            for e in t.estates:
                company_of.setdefault(e, t.id)
    plan = MonthPlan(start_ms, end_ms, company_of, profile_of)
    dt = site.devices
    from anju.kinds import KIND_CODES

    for e in site.estates.values():
        for kind in KIND_CODES:  # every registered device counts in the report
            rows = np.flatnonzero((dt.estate == e.index) & (dt.kind == _code(kind)))
            plan.devices[(e.id, kind)] = [dt.ids[i] for i in rows.tolist()]
    rules = list(_RULES)
    mix = np.array([_RULES[r][4] for r in rules])
    mix = mix / mix.sum()
    for eid in site.estates:
        company = company_of[eid]
        sup = site.teams_for(eid, ("supervisor",))
        fire = site.teams_for(eid, ("fire",))
        prof = {**PROFILES[profile_of[company]], "company": company,
                "supervisor": sup[0].id if sup else None, "fire": fire[0].id if fire else None}
        hot = None  # the falling-object hot spot of the estate: one building, one floor
        for _ in range(alarms_per_estate):
            rule = str(rng.choice(rules, p=mix))
            raised = start_ms + int(rng.integers(0, end_ms - start_ms))
            p = _alarm(rng, site, plan, eid, rule, raised, prof)
            if rule == "camera.falling_object":
                if hot is None:
                    hot = (p.building, p.floor)
                elif rng.random() < 0.5:  # half of them from the hot spot
                    p.building, p.floor = hot
                    p.device = _camera_of(plan, eid, p.building, p.device)
            plan.alarms.append(p)
        # outages: device.offline of random devices, the last one still dark at the end
        for k in range(prof["outages"]):
            kind = str(rng.choice(["smoke", "elevator", "camera"]))
            dev = str(rng.choice(plan.devices[(eid, kind)]))
            hours = float(rng.uniform(*prof["outage_h"]))
            raised = start_ms + int(rng.integers(0, end_ms - start_ms - 2 * DAY))
            p = _base(site, eid, dev, "device.offline", kind, "minor", ("property",), False,
                      raised)
            p.clear = raised + int(hours * HOUR)
            if k == prof["outages"] - 1 and prof["never_clear"] > 0:
                p.raised = p.started = end_ms - int(hours * HOUR / 2)  # dark at the end
                p.clear = end_ms + DAY
            _answer(rng, p, prof, state=True)
            plan.alarms.append(p)
            if k == 0:  # maintenance over the first hour of the first outage
                plan.windows.append(("device", dev, eid, raised - HOUR, raised + HOUR))
        b = site.devices.building[site.devices.index[plan.devices[(eid, "smoke")][0]]]
        plan.windows.append(("building", f"{eid}/{site.buildings[int(b)].id}", eid,
                             start_ms + 10 * DAY, start_ms + 10 * DAY + 6 * HOUR))
        # carried in: offline since two days before the start, cleared within the month;
        # and one that began and ended before the start (not in the report at all)
        dev = plan.devices[(eid, "smoke")][0]
        p = _base(site, eid, dev, "device.offline", "smoke", "minor", ("property",), False,
                  start_ms - 2 * DAY - 123_457)
        p.clear = start_ms + int(rng.integers(1, 30)) * HOUR
        plan.alarms.append(p)
        dev = plan.devices[(eid, "smoke")][1]
        p = _base(site, eid, dev, "device.offline", "smoke", "minor", ("property",), False,
                  start_ms - 4 * DAY)
        p.clear = start_ms - 3 * DAY
        p.ack, p.ack_team = start_ms - 4 * DAY + 60_000, company_of[eid]
        plan.alarms.append(p)
    # the negligent answer some of what was left open, after the end: not in the report
    for p in plan.alarms:
        if (p.ack is None and p.raised < end_ms and (p.clear is None or p.clear > end_ms)
                and profile_of[company_of[p.estate]] == "negligent" and rng.random() < 0.5):
            late = end_ms + int(rng.integers(HOUR, DAY - HOUR))
            if p.clear is None or p.clear > late:
                p.ack, p.ack_team = late, company_of[p.estate]
    # one alarm per (rule, device) at a time: state alarms of a device must not overlap
    plan.alarms = _no_overlap(plan.alarms)
    return plan


def _code(kind: str) -> int:
    from anju.kinds import KIND_CODES

    return KIND_CODES[kind]


def _camera_of(plan: MonthPlan, estate: str, building: str, fallback: str) -> str:
    for dev in plan.devices[(estate, "camera")]:
        if dev.startswith(f"{estate}-{building}-"):
            return dev
    return fallback


def _base(site: Any, estate: str, dev: str, rule: str, kind: str, severity: str,
          roles: tuple[str, ...], is_event: bool, raised: int) -> Planned:
    i = site.devices.index[dev]
    b = site.buildings[int(site.devices.building[i])].id
    f = site.devices.floor[i]
    return Planned(rule, kind, severity, roles, is_event, dev, estate, b,
                   None if math.isnan(f) else int(f), raised, raised)


def _alarm(rng: np.random.Generator, site: Any, plan: MonthPlan, estate: str, rule: str,
           raised: int, prof: dict[str, Any]) -> Planned:
    kind, sev, roles, is_event, _ = _RULES[rule]
    dev = str(rng.choice(plan.devices[(estate, kind)]))
    p = _base(site, estate, dev, rule, kind, sev, roles, is_event, raised)
    if not is_event:
        p.started = raised - int(rng.integers(5_000, 60_000))  # the rule's duration
    if rule == "camera.falling_object":
        b = site.building(estate, p.building)
        p.floor = int(rng.integers(2, b.floors + 1))
    # only alarms of the last days are left open: an alarm open for weeks would be
    # reminded every deadline, thousands of events that add nothing to the test
    _answer(rng, p, prof, state=not is_event, late=raised > plan.end_ms - 3 * DAY)
    return p


def _answer(rng: np.random.Generator, p: Planned, prof: dict[str, Any], *,
            state: bool, late: bool = False) -> None:
    """Who acknowledges when, and when a state alarm clears, by the company's profile."""
    company = prof["company"]
    if state and p.clear is None and rng.random() < 0.25:
        p.clear = p.raised + int(rng.integers(20_000, 200_000))  # gone before anyone acts
        return
    if rng.random() < prof["ack_p"]:
        p.ack = p.raised + int(rng.uniform(*prof["delay_s"]) * 1000) + int(rng.integers(1, 997))
        p.ack_team = company
    elif rng.random() < prof["supervisor_p"]:
        other = prof["fire"] if p.rule == "elevator.trapped" else prof["supervisor"]
        if other is not None:
            p.ack = p.raised + int(rng.integers(400, 1800)) * 1000 + 333
            p.ack_team = other
    if not state and p.ack is None and (not late or rng.random() >= prof["never_clear"]):
        # an event alarm closes only on acknowledgement: answered at last, hours late
        p.ack = p.raised + int(rng.integers(2, 12)) * HOUR + 4_321
        p.ack_team = company
    if state and p.clear is None:
        if p.ack is not None:
            p.clear = p.ack + int(rng.integers(10, 180)) * 60_000
        elif not late or rng.random() >= prof["never_clear"]:
            p.clear = p.raised + int(rng.integers(1, 12)) * HOUR + 777
    if p.clear is not None and p.ack is not None and p.ack >= p.clear:
        p.ack = p.ack_team = None  # cleared first: there is nothing left to acknowledge


def _no_overlap(alarms: list[Planned]) -> list[Planned]:
    """Drops state alarms that would overlap an earlier one of the same rule and device."""
    busy: dict[tuple[str, str], int] = {}
    out = []
    for p in sorted(alarms, key=lambda p: (p.raised, p.device, p.rule)):
        key = (p.rule, p.device)
        if not p.is_event:
            if key in busy and busy[key] >= p.started:
                continue
            busy[key] = p.clear if p.clear is not None else 2**62
        out.append(p)
    return out


# -- driving the real lifecycle ----------------------------------------------------------------
def run_month(site: Any, plan: MonthPlan, state_dir: str | Path) -> int:
    """Plays the plan through an :class:`AlarmManager` and writes the store into
    ``state_dir`` (``alarms.sqlite3``); returns the number of events written.

    The manager runs over the in-memory store (a tick every escalation is tens of thousands
    of commits; one fsync each would take minutes) and its alarms and events are then
    committed to the SQLite store in one transaction, through the store's interface.
    """
    from anju.alarms.lifecycle import AlarmManager
    from anju.alarms.maintenance import MaintenanceBook
    from anju.alarms.memory_store import MemoryAlarmStore
    from anju.alarms.model import alarm_id_for
    from anju.alarms.sqlite_store import SqliteAlarmStore
    from anju.alarms.store import Commit
    from anju.rules.transition import Transition

    mem = MemoryAlarmStore(keep_outbox=False)
    mgr = AlarmManager(site, mem)
    d = round(site.unacknowledged_after_s * 1000)
    horizon = plan.end_ms + DAY
    # (time, order, n, action, plan index): at one instant clears and acks come before an
    # escalation tick, as an acknowledgement that arrives with the tick stops it
    heap: list[tuple[int, int, int, str, int]] = []
    n = 0
    for i, p in enumerate(plan.alarms):
        heap.append((p.raised, 0, n, "raise", i))
        n += 1
        if p.ack is not None:
            heap.append((p.ack, 1, n, "ack", i))
            n += 1
        if p.clear is not None and not p.is_event:
            heap.append((p.clear, 1, n, "clear", i))
            n += 1
    heapq.heapify(heap)
    ids: dict[int, str] = {}
    while heap:
        t, _, _, action, i = heapq.heappop(heap)
        if t > horizon:
            break
        if action == "tick":
            for ev in mgr.tick(t):
                rec = mem.get(ev.alarm_id)
                if rec is not None and rec.next_escalation_ms is not None:
                    heapq.heappush(heap, (rec.next_escalation_ms, 2, n, "tick", -1))
                    n += 1
            continue
        p = plan.alarms[i]
        if action == "raise":
            tr = Transition(rule=p.rule, event="raised", kind=p.kind, severity=p.severity,  # type: ignore[arg-type]
                            roles=p.roles, subject=p.device, device=p.device, estate=p.estate,
                            building=p.building, floor=p.floor, zone=None, ts=p.raised,
                            started_at=p.started, value=None, message=f"{p.rule} {p.device}",
                            details={"floor": p.floor} if p.is_event else {},
                            is_event=p.is_event)
            mgr.on_transitions([tr], now_ms=p.raised)
            ids[i] = alarm_id_for(p.rule, p.device, p.started)
            heapq.heappush(heap, (p.raised + d, 2, n, "tick", -1))
            n += 1
        elif action == "ack":
            mgr.acknowledge(ids[i], p.ack_team, "值班员", "", t)
        else:
            tr = Transition(rule=p.rule, event="cleared", kind=p.kind, severity=p.severity,  # type: ignore[arg-type]
                            roles=p.roles, subject=p.device, device=p.device, estate=p.estate,
                            building=p.building, floor=p.floor, zone=None, ts=t,
                            started_at=p.started, value=None, message="cleared")
            mgr.on_transitions([tr], now_ms=t)
    recs = mem.list_alarms(open_only=False)
    commit = Commit(alarms=recs)
    for rec in recs:
        commit.events.extend(enumerate(mem.events(rec.alarm_id), start=1))
    with SqliteAlarmStore(state_dir) as store:
        store.commit(commit)
    book = MaintenanceBook(state_dir)
    try:
        for scope, target, estate, a, b in plan.windows:
            book.add(scope, target, estate, a, b, "维保员", "simulated", now_ms=a)  # type: ignore[arg-type]
    finally:
        book.close()
    return len(commit.events)


# -- the ground truth ----------------------------------------------------------------------
def _nearest(values: list[float], q: float) -> float | None:
    v = sorted(values)
    return v[max(1, math.ceil(q * len(v))) - 1] if v else None


def ground_truth(site: Any, plan: MonthPlan) -> dict[str, Any]:
    """Per company, the figures the report must show, from the plan alone; and the order
    of the companies (prompt, slow, negligent)."""
    t0, t1 = plan.start_ms, plan.end_ms
    d = round(site.unacknowledged_after_s * 1000)
    own_ack: dict[str, list[float]] = defaultdict(list)
    clear_s: dict[str, list[float]] = defaultdict(list)
    out: dict[str, dict[str, Any]] = {}
    falling: dict[tuple[str, str, int | None], int] = defaultdict(int)
    trapped: list[tuple[str, float | None]] = []
    dark: dict[str, list[tuple[int, int]]] = defaultdict(list)
    cam_dark: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for c in plan.profile_of:
        out[c] = dict.fromkeys(
            ("alarms", "critical", "major", "minor", "warning", "due", "acked_in_deadline",
             "acked_by_fire", "acked_by_supervisor", "acked_by_other", "escalated",
             "max_escalation_level", "open_at_start", "open_at_end", "open_unacked_at_end",
             "falling_objects", "trapped"), 0)
    for p in plan.alarms:
        c = plan.company_of[p.estate]
        g = out[c]
        if p.raised >= t1:
            continue
        ack = p.ack if p.ack is not None and p.ack < t1 else None
        clear = p.ack if p.is_event else p.clear
        clear = clear if clear is not None and clear < t1 else None
        if clear is not None and clear < t0:
            continue
        if clear is None:
            g["open_at_end"] += 1
            g["open_unacked_at_end"] += ack is None
        end = clear if clear is not None else t1
        if p.rule == "device.offline":
            dark[p.device].append((max(p.started, t0), end))
            if p.kind == "camera":
                cam_dark[p.device].append((max(p.started, t0), end))
        elif p.rule == "camera.obstructed":
            cam_dark[p.device].append((max(p.raised, t0), end))
        if p.raised < t0:
            g["open_at_start"] += 1
            continue
        g["alarms"] += 1
        g[p.severity] += 1
        own = ack is not None and p.ack_team == c
        if own and ack is not None:
            own_ack[c].append((ack - p.raised) / 1000)
        elif ack is not None:
            role = {"fire-district": "fire", "supervisor-street": "supervisor"}.get(
                p.ack_team or "", "other")
            g[f"acked_by_{role}"] += 1
        in_time = own and ack is not None and ack - p.raised <= d
        pending = (p.raised + d <= t1 and (ack is None or ack - p.raised > d)
                   and (clear is None or clear - p.raised > d))
        g["due"] += in_time or pending
        g["acked_in_deadline"] += in_time
        stop = min(x for x in (ack, clear, t1) if x is not None)
        level = max(0, math.ceil((stop - p.raised) / d) - 1)  # ticks at r + k·d < stop
        if level:
            g["escalated"] += 1
            g["max_escalation_level"] = max(g["max_escalation_level"], level)
        if not p.is_event and clear is not None:
            clear_s[c].append((clear - p.raised) / 1000)
        if p.rule == "camera.falling_object":
            g["falling_objects"] += 1
            falling[(p.estate, p.building, p.floor)] += 1
        if p.rule == "elevator.trapped":
            g["trapped"] += 1
            trapped.append((p.device, None if ack is None else (ack - p.raised) / 1000))
    for c, g in out.items():
        g["acked_own"] = len(own_ack[c])
        g["ack_p50_s"] = _nearest(own_ack[c], 0.5)
        g["ack_p90_s"] = _nearest(own_ack[c], 0.9)
        g["ack_max_s"] = max(own_ack[c], default=None)
        g["cleared"] = len(clear_s[c])
        g["clear_p50_s"] = _nearest(clear_s[c], 0.5)
        g["clear_p90_s"] = _nearest(clear_s[c], 0.9)
        g["clear_max_s"] = max(clear_s[c], default=None)
        devs = [dev for (e, _k), ds in plan.devices.items() if plan.company_of[e] == c
                for dev in ds]
        cams = [dev for (e, k), ds in plan.devices.items()
                if plan.company_of[e] == c and k == "camera" for dev in ds]
        win = _windows_of(site, plan)
        g["devices"] = len(devs)
        registered = sum(t1 - t0 - _union([(max(a, t0), min(b, t1)) for a, b in win(x)])
                         for x in devs)
        g["offline_hours"] = sum(_union(_cut(dark[x], win(x))) for x in devs) / HOUR
        g["availability"] = 1 - g["offline_hours"] * HOUR / registered
        g["cameras"] = len(cams)
        cam_registered = sum(t1 - t0 - _union([(max(a, t0), min(b, t1)) for a, b in win(x)])
                             for x in cams)
        g["camera_dark_hours"] = sum(_union(_cut(cam_dark[x], win(x))) for x in cams) / HOUR
        g["camera_coverage"] = 1 - g["camera_dark_hours"] * HOUR / cam_registered
    return {"companies": out, "falling_objects": dict(falling), "trapped": trapped,
            "order": [f"property-{p}" for p in PROFILES]}


def _union(spans: list[tuple[int, int]]) -> int:
    total, cur_s, cur_e = 0, None, None
    for s, e in sorted(x for x in spans if x[1] > x[0]):
        if cur_e is None or s > cur_e:
            total += (cur_e - cur_s) if cur_e is not None and cur_s is not None else 0
            cur_s, cur_e = s, e
        else:
            cur_e = max(cur_e, e)
    return total + ((cur_e - cur_s) if cur_e is not None and cur_s is not None else 0)


def _windows_of(site: Any, plan: MonthPlan) -> Any:
    def of(dev: str) -> list[tuple[int, int]]:
        i = site.devices.index[dev]
        b = site.buildings[int(site.devices.building[i])]
        return [(a, z) for scope, target, _e, a, z in plan.windows
                if (scope == "device" and target == dev)
                or (scope == "building" and target == f"{b.estate}/{b.id}")]
    return of


def _cut(spans: list[tuple[int, int]], holes: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Spans with the holes taken out: cut at every edge, keep the pieces outside holes."""
    out = []
    for s, e in spans:
        edges = sorted({s, e, *(x for h in holes for x in h if s < x < e)})
        for a, b in itertools.pairwise(edges):
            if not any(ha <= a and b <= hb for ha, hb in holes):
                out.append((a, b))
    return out
