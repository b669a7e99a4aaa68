"""Every figure of the report, as flat tables: the CSV files, the JSON and the HTML's source.

Definitions (docs/report.md has them with their reasons):

- The alarms *of the period* are those raised in it; the ones *open at the start* were
  raised before it and not cleared by its start.
- Deadline: the escalation deadline of the alarm (``escalation.unacknowledged_after_s``).
  An alarm is *due* when, at its deadline, it was neither acknowledged nor cleared (so the
  company had to answer) — or the company had answered it in time. Alarms that cleared by
  themselves before the deadline are not due; nobody had to act.
- Acknowledgement times are the company's own (its property team's), raise to ack,
  nearest-rank p50 / p90 and the maximum, in seconds. Acknowledgements by the fire team,
  a supervisor or an operator outside any team are counted apart.
- Time to clear: raise to clearance of state alarms (event alarms close on acknowledgement).
- Open at the end: raised before the end and not cleared by it (whenever raised).
- Availability: device-hours online over device-hours registered, per kind; a device is
  offline from its ``device.offline`` alarm's start to its clearance (or the end).
- Camera coverage: falling-object camera hours not offline and not obstructed (an
  ``camera.obstructed`` alarm is open from its raise to its acknowledgement).
- Counted columns: a rule with ``report: COLUMN`` in its rules.yaml (``patrol.missed`` →
  ``patrol_missed``, the e-bike rules → ``ebike``, ``ebike_elevator``,
  ``ebike_fire_risk``) adds that column to the companies' and estates' rows: its alarms
  raised in the period.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anju.devices.registry import Site
from anju.kinds import KIND_CODES
from anju.report.load import NONE, AlarmTable
from anju.report.period import Period
from anju.report.scope import Scope
from anju.report.scoring import ReportSettings, components, level_for, score

__all__ = ["NO_COMPANY", "Report", "compute", "counted_rules", "deadline_ms", "maintenance_of",
           "nearest_rank"]

NO_COMPANY = "(none)"  # estates without a property team
_SEVERITIES = ("critical", "major", "minor", "warning")
_HOUR = 3_600_000.0
OFFLINE = "device.offline"
OBSTRUCTED = "camera.obstructed"
FALLING = "camera.falling_object"
TRAPPED = "elevator.trapped"
OVERDUE = "elevator.maintenance_overdue"

# An offline interval of a device: [start, end) in ms. The maintenance windows of issue 18
# arrive as a function giving each device's windows (empty until that store exists).
Windows = Callable[[str], Sequence[tuple[int, int]]]


@dataclass
class Report:
    """The tables of one report, and what it is about."""

    meta: dict[str, Any]
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, **self.tables}


def nearest_rank(sorted_values: Sequence[float] | np.ndarray, p: float) -> float | None:
    """The nearest-rank percentile (the ⌈p·n⌉-th smallest) of sorted values; None if empty.

    Nearest rank, not interpolation: every reported percentile is an actual response time
    someone can look up in the alarm's history."""
    n = len(sorted_values)
    if n == 0:
        return None
    return float(sorted_values[max(1, math.ceil(p * n)) - 1])


def deadline_ms(site: Site, severity: str, rule: str) -> int:
    """The acknowledgement deadline of an alarm: the first step of its escalation chain
    after the raise (issue 18); ``unacknowledged_after_s`` when the chain has none."""
    chain = site.policy().chain_for(rule, severity)
    return next((s.after_ms for s in chain.steps if s.after_ms > 0),
                round(site.unacknowledged_after_s * 1000))


def maintenance_of(site: Site, windows: Sequence[tuple[str, str, int, int]]) -> Windows:
    """Device → its maintenance windows, from (scope, target, from, to) rows: a window on
    a device, its building (``estate/building``) or its estate."""
    by_target: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for _scope, target, a, b in windows:
        by_target[target].append((a, b))
    if not by_target:
        return lambda dev: ()
    dt = site.devices

    def of(dev: str) -> Sequence[tuple[int, int]]:
        i = dt.index.get(dev)
        if i is None:
            return ()
        b = site.buildings[int(dt.building[i])]
        return [*by_target.get(dev, ()), *by_target.get(f"{b.estate}/{b.id}", ()),
                *by_target.get(b.estate, ())]
    return of


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(x, nd)


def _stats(values_ms: list[int]) -> tuple[float | None, float | None, float | None]:
    v = np.sort(np.asarray(values_ms, dtype=np.int64)) / 1000.0
    return (_r(nearest_rank(v, 0.5)), _r(nearest_rank(v, 0.9)),
            _r(float(v[-1])) if len(v) else None)


def _union_ms(intervals: list[tuple[int, int]]) -> int:
    """Length of the union of ``[start, end)`` intervals."""
    total = 0
    cur_s = cur_e = None
    for s, e in sorted(intervals):
        if cur_e is None or s > cur_e:
            if cur_e is not None and cur_s is not None:
                total += cur_e - cur_s
            cur_s, cur_e = s, e
        elif e > cur_e:
            cur_e = e
    if cur_e is not None and cur_s is not None:
        total += cur_e - cur_s
    return total


def _minus(intervals: list[tuple[int, int]], holes: Sequence[tuple[int, int]]
           ) -> list[tuple[int, int]]:
    """``intervals`` with the ``holes`` (maintenance windows) cut out."""
    out = intervals
    for hs, he in holes:
        nxt: list[tuple[int, int]] = []
        for s, e in out:
            if he <= s or hs >= e:
                nxt.append((s, e))
                continue
            if s < hs:
                nxt.append((s, hs))
            if he < e:
                nxt.append((he, e))
        out = nxt
    return out


class _Acc:
    """Accumulates one group's figures (a company or an estate)."""

    def __init__(self, counted: Sequence[str] = ()) -> None:
        self.counts: dict[str, int] = dict.fromkeys(counted, 0)  # report: columns of rules
        self.alarms = 0
        self.by_sev: dict[str, int] = dict.fromkeys(_SEVERITIES, 0)
        self.due = 0
        self.in_deadline = 0
        self.own_ack_ms: list[int] = []
        self.by_role: dict[str, int] = {"fire": 0, "supervisor": 0, "other": 0}
        self.escalated = 0
        self.max_level = 0
        self.clear_ms: list[int] = []
        self.open_at_start = 0
        self.open_at_end = 0
        self.open_unacked_at_end = 0
        self.devices = 0
        self.device_ms = 0
        self.offline_ms = 0
        self.cameras = 0
        self.camera_ms = 0
        self.camera_dark_ms = 0
        self.falling = 0
        self.trapped = 0
        self.held = 0

    def row(self) -> dict[str, Any]:
        p50, p90, mx = _stats(self.own_ack_ms)
        c50, c90, cmx = _stats(self.clear_ms)
        avail = 1 - self.offline_ms / self.device_ms if self.device_ms else None
        cover = 1 - self.camera_dark_ms / self.camera_ms if self.camera_ms else None
        return {
            "alarms": self.alarms, **{s: self.by_sev[s] for s in _SEVERITIES},
            "due": self.due, "acked_in_deadline": self.in_deadline,
            "ack_in_deadline_share": _r(self.in_deadline / self.due, 4) if self.due else None,
            "acked_own": len(self.own_ack_ms), "ack_p50_s": p50, "ack_p90_s": p90,
            "ack_max_s": mx, "acked_by_fire": self.by_role["fire"],
            "acked_by_supervisor": self.by_role["supervisor"],
            "acked_by_other": self.by_role["other"], "escalated": self.escalated,
            "max_escalation_level": self.max_level, "cleared": len(self.clear_ms),
            "clear_p50_s": c50, "clear_p90_s": c90, "clear_max_s": cmx,
            "open_at_start": self.open_at_start, "open_at_end": self.open_at_end,
            "open_unacked_at_end": self.open_unacked_at_end,
            "devices": self.devices, "device_hours": _r(self.device_ms / _HOUR),
            "offline_hours": _r(self.offline_ms / _HOUR),
            "availability": _r(avail, 6), "cameras": self.cameras,
            "camera_hours": _r(self.camera_ms / _HOUR),
            "camera_dark_hours": _r(self.camera_dark_ms / _HOUR),
            "camera_coverage": _r(cover, 6), "falling_objects": self.falling,
            "trapped": self.trapped, "held": self.held, **self.counts,
        }


def counted_rules(site: Site) -> dict[str, str]:
    """Rule id → the report column counting its alarms (the rules' ``report:`` key)."""
    from anju.rules import load_rules

    return {r.id: r.report for r in load_rules(site).rules if r.report}


def compute(site: Site, scope: Scope, period: Period, table: AlarmTable,
            settings: ReportSettings, *, maintenance: Windows | None = None,
            counted: dict[str, str] | None = None) -> Report:
    """All tables of a report over ``table`` (alarms of ``scope``'s estates); maintenance
    windows come from the table unless given, counted rules from the site's rules."""
    if maintenance is None:
        maintenance = maintenance_of(site, table.windows)
    if counted is None:
        counted = counted_rules(site)
    columns = sorted(set(counted.values()))
    t0, t1 = period.start_ms, period.end_ms
    in_scope = set(scope.estates)
    company_of = _companies(site, scope.estates)
    role_of: dict[str, str] = {t.id: str(t.role) for t in site.teams}
    own_teams = {e: {t.id for t in site.teams if t.role == "property" and t.covers(e)}
                 for e in scope.estates}
    comp: dict[str, _Acc] = {c: _Acc(columns) for c in dict.fromkeys(company_of.values())}
    est: dict[str, _Acc] = {e: _Acc(columns) for e in scope.estates}
    by_rule: dict[tuple[str, str, str, str], int] = defaultdict(int)
    levels: dict[tuple[str, int], int] = defaultdict(int)
    falling: dict[tuple[str, str, float], int] = defaultdict(int)
    trapped: list[dict[str, Any]] = []
    overdue: dict[str, dict[str, Any]] = {}
    dark: dict[str, list[tuple[int, int]]] = defaultdict(list)  # device → offline spans
    cam_dark: dict[str, list[tuple[int, int]]] = defaultdict(list)

    raised, acked, cleared = table.raised, table.acked, table.cleared
    for i in range(len(table)):
        e = table.estate[i]
        if e not in in_scope:
            continue
        accs = (comp[company_of[e]], est[e])
        r, a, c = int(raised[i]), int(acked[i]), int(cleared[i])
        rule, dev = table.rule[i], table.device[i]
        open_end = c == NONE
        for acc in accs:
            if open_end:
                acc.open_at_end += 1
                if a == NONE:
                    acc.open_unacked_at_end += 1
        # device spans (availability, camera coverage) count whenever the alarm was raised
        if rule == OFFLINE and dev is not None:
            span = (max(int(table.started[i]), t0), t1 if open_end else c)
            if span[1] > span[0]:
                dark[dev].append(span)
                if table.kind[i] == "camera":
                    cam_dark[dev].append(span)
        elif rule == OBSTRUCTED and dev is not None:
            span = (max(r, t0), t1 if open_end else c)
            if span[1] > span[0]:
                cam_dark[dev].append(span)
        elif rule == OVERDUE and dev is not None:
            days = ((t1 if open_end else c) - int(table.started[i])) / 86_400_000
            prev = overdue.get(dev)
            if prev is None or days > prev["days_overdue"]:
                overdue[dev] = {"company": company_of[e], "estate": e,
                                "building": table.building[i], "device": dev,
                                "days_overdue": round(days, 2), "overdue_at_end": open_end}
        if r < t0:
            for acc in accs:
                acc.open_at_start += 1
            continue
        # -- an alarm of the period -------------------------------------------------------
        sev = table.severity[i]
        held = bool(table.held[i])
        d = deadline_ms(site, sev, rule)
        # the company's clock starts when it was told: the raise, or the release of an alarm
        # held by a maintenance window or an inhibition (issue 18)
        q = int(table.asked[i])
        role = None if a == NONE else _role(table.ack_team[i], own_teams[e], role_of)
        answered_in_time = role == "own" and a - q <= d
        # at the deadline: neither acknowledged nor cleared, and the deadline within the
        # period; an alarm still held was never put to the company
        pending_at_deadline = (not held and q + d <= t1 and (a == NONE or a - q > d)
                               and (c == NONE or c - q > d))
        esc, lvl = int(table.escalations[i]), int(table.level[i])
        for acc in accs:
            acc.alarms += 1
            acc.by_sev[sev] += 1
            if answered_in_time or pending_at_deadline:
                acc.due += 1
            if answered_in_time:
                acc.in_deadline += 1
            if held:
                acc.held += 1
            if role == "own":
                acc.own_ack_ms.append(a - q)
            elif role is not None:
                acc.by_role[role] += 1
            if esc:
                acc.escalated += 1
                acc.max_level = max(acc.max_level, lvl)
            if not table.is_event[i] and c != NONE:
                acc.clear_ms.append(c - r)
            if rule == FALLING:
                acc.falling += 1
            elif rule == TRAPPED:
                acc.trapped += 1
            if rule in counted:
                acc.counts[counted[rule]] += 1
        by_rule[(company_of[e], e, rule, sev)] += 1
        if esc:
            levels[(company_of[e], lvl)] += 1
        if rule == FALLING:
            falling[(e, table.building[i], float(table.floor[i]))] += 1
        elif rule == TRAPPED:
            trapped.append({
                "company": company_of[e], "estate": e, "building": table.building[i],
                "device": dev, "alarm_id": table.alarm_id[i], "raised": period.label(r),
                "raised_ms": r, "ack_s": None if a == NONE else _r((a - q) / 1000),
                "acked_by": None if role is None else (
                    "property" if role == "own" else role),
                "clear_s": None if c == NONE else _r((c - r) / 1000),
                "escalation_level": lvl})

    per_kind = _devices_and_hours(site, scope, period, company_of, comp, est, dark,
                                  cam_dark, maintenance)
    tables = _tables(site, scope, settings, company_of, comp, est, by_rule, levels, falling,
                     trapped, overdue, per_kind)
    meta = {"title": "物业企业告警处置情况报告 / Accountability report",
            "period": period.as_dict(), "scope": scope.as_dict(),
            "deadline_s": site.unacknowledged_after_s,
            "maintenance_windows": len(table.windows),
            "settings": settings.model_dump(), "alarms_read": len(table),
            "counted": counted}
    return Report(meta, tables)


def _role(team: str | None, own: set[str], role_of: dict[str, str]) -> str:
    """Who acknowledged: ``own`` (the estate's property team), ``fire``, ``supervisor`` or
    ``other`` (an operator outside any team, a team of another estate)."""
    if team in own:
        return "own"
    r = role_of.get(team or "")
    return r if r in ("fire", "supervisor") else "other"


def _companies(site: Site, estates: Sequence[str]) -> dict[str, str]:
    """Estate → its property company (the first property team naming it, then one for
    every estate, "*"); :data:`NO_COMPANY` when it has none."""
    out: dict[str, str] = {}
    named = [t for t in site.teams if t.role == "property" and "*" not in t.estates]
    anywhere = [t for t in site.teams if t.role == "property" and "*" in t.estates]
    for e in estates:
        t = next((t for t in named if e in t.estates), None) or next(iter(anywhere), None)
        out[e] = t.id if t is not None else NO_COMPANY
    return out


def _devices_and_hours(site: Site, scope: Scope, period: Period, company_of: dict[str, str],
                       comp: dict[str, _Acc], est: dict[str, _Acc],
                       dark: dict[str, list[tuple[int, int]]],
                       cam_dark: dict[str, list[tuple[int, int]]],
                       maintenance: Windows | None) -> dict[tuple[str, str], list[int]]:
    """Device-hours registered, offline and camera-dark per company and estate (on the
    accumulators); returns (company, kind) → [devices, registered ms, offline ms]."""
    dt = site.devices
    span = period.end_ms - period.start_ms
    per_kind: dict[tuple[str, str], list[int]] = {}
    camera = KIND_CODES.get("camera")
    for e in scope.estates:
        idx = site.estates[e].index
        rows = np.flatnonzero(dt.estate == idx)
        for d in rows.tolist():
            dev = dt.ids[d]
            kind_code = int(dt.kind[d])
            holes = maintenance(dev) if maintenance is not None else ()
            registered = span - _union_ms(
                [(max(s, period.start_ms), min(t, period.end_ms)) for s, t in holes
                 if t > period.start_ms and s < period.end_ms])
            spans = dark.get(dev)
            off = _union_ms(_minus(spans, holes)) if spans else 0
            accs = (comp[company_of[e]], est[e])
            for acc in accs:
                acc.devices += 1
                acc.device_ms += registered
                acc.offline_ms += off
            key = (company_of[e], _kind_name(kind_code))
            cell = per_kind.setdefault(key, [0, 0, 0])
            cell[0] += 1
            cell[1] += registered
            cell[2] += off
            if kind_code == camera:
                cspans = cam_dark.get(dev)
                cdark = _union_ms(_minus(cspans, holes)) if cspans else 0
                for acc in accs:
                    acc.cameras += 1
                    acc.camera_ms += registered
                    acc.camera_dark_ms += cdark
    return per_kind


_KIND_NAMES = {v: k for k, v in KIND_CODES.items()}


def _kind_name(code: int) -> str:
    return _KIND_NAMES.get(code, str(code))


def _tables(site: Site, scope: Scope, settings: ReportSettings, company_of: dict[str, str],
            comp: dict[str, _Acc], est: dict[str, _Acc],
            by_rule: dict[tuple[str, str, str, str], int], levels: dict[tuple[str, int], int],
            falling: dict[tuple[str, str, float], int], trapped: list[dict[str, Any]],
            overdue: dict[str, dict[str, Any]], per_kind: dict[tuple[str, str], list[int]],
            ) -> dict[str, list[dict[str, Any]]]:
    companies = []
    for c, acc in comp.items():
        row = {"company": c, "estates": sum(1 for e in scope.estates if company_of[e] == c),
               **acc.row()}
        comps = components(row, settings)
        row["score"] = score(comps, settings)
        row["suggested_level"] = level_for(row["score"], settings)
        row.update({f"component_{k}": _r(v, 4) for k, v in comps.items()})
        companies.append(row)
    # ranking: best score first; unscored last; ties by name so the order is stable
    companies.sort(key=lambda r: (r["score"] is None, -(r["score"] or 0.0), r["company"]))
    ranking = [{"rank": i + 1, "company": r["company"], "score": r["score"],
                "suggested_level": r["suggested_level"]} for i, r in enumerate(companies)]
    estates = []
    for e, acc in est.items():
        info = site.estates[e]
        estates.append({"company": company_of[e], "estate": e, "name": info.name,
                        "district": info.district, "street": info.street,
                        "community": str(getattr(info, "community", "") or ""), **acc.row()})
    return {
        "ranking": ranking,
        "companies": companies,
        "estates": estates,
        "alarms_by_rule": [{"company": k[0], "estate": k[1], "rule": k[2], "severity": k[3],
                            "alarms": n} for k, n in sorted(by_rule.items())],
        "escalation_levels": [{"company": k[0], "level": k[1], "alarms": n}
                              for k, n in sorted(levels.items())],
        "availability_by_kind": [
            {"company": k[0], "kind": k[1], "devices": v[0],
             "device_hours": _r(v[1] / _HOUR), "offline_hours": _r(v[2] / _HOUR),
             "availability": _r(1 - v[2] / v[1], 6) if v[1] else None}
            for k, v in sorted(per_kind.items())],
        "falling_objects": [
            {"company": company_of[k[0]], "estate": k[0], "building": k[1],
             "floor": None if math.isnan(k[2]) else int(k[2]), "count": n}
            for k, n in sorted(falling.items(), key=lambda kv: (-kv[1], kv[0][0], kv[0][1],
                                                                 kv[0][2]))],
        "trapped": sorted(trapped, key=lambda r: (r["raised_ms"], r["alarm_id"])),
        "elevators_overdue": sorted(overdue.values(),
                                    key=lambda r: (-r["days_overdue"], r["device"])),
    }
