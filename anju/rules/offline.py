"""Offline rules: a device silent for ``heartbeats`` × its kind's heartbeat.

Silence is judged on the device's own clock, which between readings advances with the
receiving clock from the moment its last reading arrived (:mod:`anju.rules.clock`). A
reading after a gap longer than the limit raises and clears at once (the gap was seen
after the fact); a tick raises a device still silent; its next reading clears it.
"""

from __future__ import annotations

import numpy as np

from anju.devices.registry import Site
from anju.kinds import KIND_CODES, KINDS
from anju.rules.arrays import changes as _changes
from anju.rules.arrays import ends as _ends
from anju.rules.arrays import shift as _shift
from anju.rules.clock import NEVER
from anju.rules.model import CompiledRule
from anju.rules.render import Renderer
from anju.rules.transition import Transition

__all__ = ["Offline"]


class Offline:
    """The offline rules of a rule set and their per-device state (arrays by device)."""

    def __init__(self, rules: list[CompiledRule], site: Site, served: np.ndarray) -> None:
        self.rules = rules
        n = len(site.devices)
        hb = np.array([KINDS[k].heartbeat_s for k in KINDS])
        kinds = site.devices.kind.astype(np.int64)
        self.limit: dict[str, np.ndarray] = {}  # ms of silence allowed; -1 not judged
        self.active: dict[str, np.ndarray] = {}
        self.start: dict[str, np.ndarray] = {}
        for r in rules:
            applies = np.ones(n, bool) if r.kind == "*" else kinds == KIND_CODES[r.kind]
            lim = np.where(applies & served, np.round(hb[kinds] * r.heartbeats * 1000),
                           -1).astype(np.int64)
            self.limit[r.id] = lim
            self.active[r.id] = np.zeros(n, bool)
            self.start[r.id] = np.zeros(n, np.int64)

    def shift(self, devs: np.ndarray, shift: np.ndarray) -> None:
        """Moves the devices' offline start times by ``shift`` (a clock step)."""
        for start in self.start.values():
            start[devs] += shift

    def on_readings(self, dev: np.ndarray, t: np.ndarray, now: int, newest: np.ndarray,
                    last_seen: np.ndarray, recv_at: np.ndarray, render: Renderer
                    ) -> list[Transition]:
        """Gaps before the readings (sorted by device then time) and devices they bring
        back; ``last_seen`` is updated, ``newest`` and ``recv_at`` are read (as before the
        readings)."""
        out: list[Transition] = []
        first = _changes(dev)
        # the gap before a device's first reading: on its own clock when it has reported
        # before, else on the receiving clock since start (its clock is unknown yet)
        seen = newest[dev] != NEVER
        before = np.where(seen, last_seen[dev], t - (now - recv_at[dev]))
        prev = np.where(first, before, _shift(t, 0))
        for r in self.rules:
            lim = self.limit[r.id][dev]
            act = self.active[r.id]
            start = self.start[r.id]
            gap = (lim >= 0) & (t - prev > lim)
            was = first & act[dev]
            if not (gap.any() or was.any()):
                continue  # nothing offline, no gap: nothing to clear (act is already False)
            # a first reading of a device already offline clears it
            for i in np.flatnonzero(was).tolist():
                d = int(dev[i])
                out.append(_t(render, r, d, "cleared", int(t[i]), int(start[d]),
                              int(prev[i])))
            for i in np.flatnonzero(gap & ~was).tolist():
                d = int(dev[i])
                due = int(prev[i] + lim[i])
                out.append(_t(render, r, d, "raised", due, due, int(prev[i])))
                out.append(_t(render, r, d, "cleared", int(t[i]), due, int(prev[i])))
            act[dev[first]] = False
        last = _ends(dev)
        last_seen[dev[last]] = t[last]
        return out

    def tick(self, now: int, last_seen: np.ndarray, recv_at: np.ndarray, render: Renderer
             ) -> list[Transition]:
        """Devices silent past their limit at receiving time ``now``: raised."""
        out: list[Transition] = []
        for r in self.rules:
            lim = self.limit[r.id]
            act = self.active[r.id]
            # silent on its own clock ⇔ silent on the receiving clock since its last reading
            due = np.flatnonzero((lim >= 0) & ~act & (now - recv_at > lim))
            for d in due.tolist():
                ts = int(last_seen[d] + lim[d])
                act[d] = True
                self.start[r.id][d] = ts
                out.append(_t(render, r, d, "raised", ts, ts, int(last_seen[d])))
        return out


def _t(render: Renderer, r: CompiledRule, d: int, event: str, ts: int, started: int,
       last_seen: int) -> Transition:
    return render.device(r, d, event, ts, started, None, {"last_seen": last_seen})
