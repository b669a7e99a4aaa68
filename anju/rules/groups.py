"""Group rules (``smoke.fire_confirmed``): k members of one floor alarmed within a window.

Members' raised / cleared transitions are rare, so they are fed one by one in time order;
the per-floor counts are arrays indexed by a dense group id. A floor's members are the
devices with that floor of every kind a member rule belongs to, so a group may correlate
kinds (``fire.ebike_risk``: a charging e-bike seen by a corridor camera and a heat
detector's rising temperature). Each device's member alarms are counted per entry of the
rule's ``members``: with ``all_members`` every entry must be live. An alarm that never
clears (event, schedule) is live for ``within`` after its raise; a group raised with no
member alarm still open clears at once (nothing would ever clear it).
"""

from __future__ import annotations

import numpy as np

from anju.devices.registry import Site
from anju.kinds import KIND_CODES
from anju.rules.model import CompiledRule
from anju.rules.render import Renderer
from anju.rules.transition import Transition

__all__ = ["Group"]


class Group:
    """One group rule's state: which floors are alarmed and which members count."""

    def __init__(self, rule: CompiledRule, site: Site) -> None:
        self.rule = rule
        self.site = site
        d = site.devices
        n = len(d)
        keys: dict[tuple[int, int], int] = {}
        gid = np.full(n, -1, np.int64)
        floor = d.floor
        kind_ok = np.ones(n, bool) if "*" in rule.member_kinds else \
            np.isin(d.kind, [KIND_CODES[k] for k in rule.member_kinds])
        for i in np.flatnonzero(kind_ok & ~np.isnan(floor)).tolist():
            key = (int(d.building[i]), int(floor[i]))
            gid[i] = keys.setdefault(key, len(keys))
        self.gid = gid
        self.keys = list(keys)
        ng = len(keys)
        self.entry = dict(rule.member_entry)
        m = max(self.entry.values(), default=0) + 1
        self.member_active = np.zeros((n, m), np.int32)  # open member alarms, device × entry
        self.last_clear = np.full((n, m), np.iinfo(np.int64).min // 2, np.int64)
        self.active = np.zeros(ng, bool)
        self.started = np.zeros(ng, np.int64)
        order = np.argsort(gid, kind="stable")
        order = order[gid[order] >= 0]
        self.members_sorted = order
        self.bounds = np.searchsorted(gid[order], np.arange(ng + 1))
        self.within_ms = round(rule.within_s * 1000)
        self.index = d.index

    def restore(self, subject: str, started: int) -> bool:
        """An open alarm of this rule on ``estate/building/floor``: active again."""
        estate, _, rest = subject.partition("/")
        building, _, floor = rest.partition("/")
        b = next((i for i, b in enumerate(self.site.buildings)
                  if b.estate == estate and b.id == building), None)
        try:
            g = self.keys.index((b, int(floor))) if b is not None else -1
        except ValueError:
            g = -1
        if g < 0:
            return False
        self.active[g] = True
        self.started[g] = started
        return True

    def restore_members(self, open_members: list[tuple[str, int]]) -> None:
        """Member alarms still open at start count as active members again, so that the
        group clears when the last of them clears."""
        for rule, dev in open_members:
            if rule in self.entry and rule not in self.rule.momentary and self.gid[dev] >= 0:
                self.member_active[dev, self.entry[rule]] += 1

    def feed(self, transitions: list[Transition], render: Renderer) -> list[Transition]:
        """The group transitions caused by members' ``transitions``."""
        hits = [t for t in transitions if t.rule in self.rule.members and t.device is not None]
        if not hits:
            return []
        hits.sort(key=lambda t: (t.ts, 0 if t.event == "cleared" else 1, t.device or ""))
        out: list[Transition] = []
        for h in hits:
            dev = self.index[h.device]  # type: ignore[index]
            g = int(self.gid[dev])
            if g < 0:
                continue
            members = self.members_sorted[self.bounds[g]:self.bounds[g + 1]]
            j = self.entry[h.rule]
            momentary = h.rule in self.rule.momentary
            if h.event == "raised":
                if momentary:
                    self.last_clear[dev, j] = h.ts
                else:
                    self.member_active[dev, j] += 1
                live_e = (self.member_active[members] > 0) | \
                    (self.last_clear[members] >= h.ts - self.within_ms)
                live = live_e.any(axis=1)
                n_live = int(live.sum())
                every = not self.rule.all_members or bool(live_e.any(axis=0).all())
                if n_live >= self.rule.min_members and every and not self.active[g]:
                    self.active[g] = True
                    self.started[g] = h.ts
                    out.append(self._t(g, "raised", h.ts, n_live, members[live], render))
                    if not (self.member_active[members] > 0).any():
                        self.active[g] = False
                        out.append(self._t(g, "cleared", h.ts, 0, members[:0], render))
            elif not momentary:
                self.member_active[dev, j] = max(0, self.member_active[dev, j] - 1)
                self.last_clear[dev, j] = h.ts
                if self.active[g] and not (self.member_active[members] > 0).any():
                    self.active[g] = False
                    out.append(self._t(g, "cleared", h.ts, 0, members[:0], render))
        return out

    def _t(self, g: int, event: str, ts: int, n: int, members: np.ndarray,
           render: Renderer) -> Transition:
        b_idx, floor = self.keys[g]
        b = self.site.buildings[b_idx]
        details = {"devices": [self.site.devices.ids[i] for i in members.tolist()]}
        return render.group(self.rule, b.estate, b.id, floor, event, ts,
                            int(self.started[g]), float(n), details)
