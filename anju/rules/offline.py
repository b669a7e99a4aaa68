"""Offline rules: a device silent for ``heartbeats`` × its kind's heartbeat.

Silence is judged on the device's own clock, which between readings advances with the
receiving clock from the moment its last reading arrived (:mod:`anju.rules.clock`). A
reading after a gap longer than the limit raises and clears at once (the gap was seen
after the fact); a tick raises a device still silent; its next reading clears it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from anju.devices.registry import Site
from anju.kinds import KIND_CODES, KINDS
from anju.rules.clock import NEVER
from anju.rules.jit import compiled
from anju.rules.model import CompiledRule
from anju.rules.render import Renderer
from anju.rules.transition import Transition

__all__ = ["Offline", "gap_scan"]

NO_SILENCE = int(np.iinfo(np.int64).max)


class Offline:
    """The offline rules of a rule set and their per-device state (arrays by device)."""

    def __init__(self, rules: list[CompiledRule], site: Site, served: np.ndarray) -> None:
        self.rules = rules
        n = len(site.devices)
        hb = np.array([KINDS[k].heartbeat_s for k in KINDS])
        kinds = site.devices.kind.astype(np.int64)
        # by rule (a row each) and device; the dicts hold row views, by rule id
        self.lim = np.full((len(rules), n), -1, np.int64)  # ms of silence allowed; -1 not judged
        self.act = np.zeros((len(rules), n), bool)
        self.since = np.zeros((len(rules), n), np.int64)
        self.limit: dict[str, np.ndarray] = {}
        self.active: dict[str, np.ndarray] = {}
        self.start: dict[str, np.ndarray] = {}
        for i, r in enumerate(rules):
            applies = np.ones(n, bool) if r.kind == "*" else kinds == KIND_CODES[r.kind]
            self.lim[i] = np.where(applies & served, np.round(hb[kinds] * r.heartbeats * 1000),
                                   -1)
            self.limit[r.id], self.active[r.id], self.start[r.id] = (
                self.lim[i], self.act[i], self.since[i])
        judged = self.lim[self.lim >= 0]
        self._min_lim = int(judged.min()) if len(judged) else None
        # The receiving time before which no device can fall silent past its limit: made
        # exact by a scanning tick; a reading can only move its device's limit later,
        # except a device back from offline, watched again from the batch's ``now``
        # (``heard``). The smallest int64 until the first tick: it scans.
        self.next_due = NEVER

    def heard(self, now: int) -> None:
        """A batch was applied at receiving time ``now``."""
        if self._min_lim is not None and now + self._min_lim < self.next_due:
            self.next_due = now + self._min_lim

    def shift(self, devs: np.ndarray, shift: np.ndarray) -> None:
        """Moves the devices' offline start times by ``shift`` (a clock step)."""
        for start in self.start.values():
            start[devs] += shift

    def transitions(self, rule: np.ndarray, dev: np.ndarray, t: np.ndarray, back: np.ndarray,
                    prev: np.ndarray, render: Renderer) -> list[Transition]:
        """The transitions of the gaps :func:`gap_scan` found (``rule``: row of the rule;
        ``dev`` and ``t``: the reading after the gap; ``prev``: the time before it)."""
        out: list[Transition] = []
        for ri, d, ti, is_back, p in zip(rule.tolist(), dev.tolist(), t.tolist(),
                                         back.tolist(), prev.tolist(), strict=True):
            r = self.rules[ri]
            if is_back:  # a first reading of a device already offline clears it
                out.append(_t(render, r, d, "cleared", ti, int(self.since[ri, d]), p))
            else:  # a gap seen after the fact: raised and cleared at once
                due = p + int(self.lim[ri, d])
                out.append(_t(render, r, d, "raised", due, due, p))
                out.append(_t(render, r, d, "cleared", ti, due, p))
        return out

    def tick(self, now: int, last_seen: np.ndarray, recv_at: np.ndarray, render: Renderer
             ) -> list[Transition]:
        """Devices silent past their limit at receiving time ``now``: raised."""
        if now < self.next_due:  # no device can be silent past its limit yet
            return []
        out: list[Transition] = []
        due = np.empty(len(recv_at), np.int64)
        nxt = np.empty(1, np.int64)
        self.next_due = NO_SILENCE
        for r in self.rules:
            lim = self.limit[r.id]
            act = self.active[r.id]
            k = _silent(lim, act, recv_at, now, due, nxt)
            self.next_due = min(self.next_due, int(nxt[0]))
            for d in due[:k].tolist():
                ts = int(last_seen[d] + lim[d])
                act[d] = True
                self.start[r.id][d] = ts
                out.append(_t(render, r, d, "raised", ts, ts, int(last_seen[d])))
        return out


def _t(render: Renderer, r: CompiledRule, d: int, event: str, ts: int, started: int,
       last_seen: int) -> Transition:
    return render.device(r, d, event, ts, started, None, {"last_seen": last_seen})


# One compiled pass over a batch's rows for one rule (numpy took ~15 array calls a kind a
# batch); explicit signature: compiled once at import, cached on disk.
@compiled("i8(i8[::1], i8[::1], i8, i8[::1], i8[::1], i8[::1], i8[::1], b1[::1], i8[::1],"
           " b1[::1], i8[::1])")
def gap_scan(dev: Any, t: Any, now: Any, newest: Any, last_seen: Any, recv_at: Any, lim: Any,
          active: Any, rows: Any, back: Any, prev: Any) -> int:  # pragma: no cover  (compiled)
    # The gap before each reading: before a device's first one, on its own clock when it
    # has reported before, else on the receiving clock since start (its clock unknown).
    k = 0
    for i in range(len(dev)):
        d = dev[i]
        first = i == 0 or dev[i - 1] != d
        if first:
            p = last_seen[d] if newest[d] != NEVER else t[i] - (now - recv_at[d])
        else:
            p = t[i - 1]
        if first and active[d]:
            rows[k], back[k], prev[k] = i, True, p
            k += 1
        elif lim[d] >= 0 and t[i] - p > lim[d]:
            rows[k], back[k], prev[k] = i, False, p
            k += 1
        if first:
            active[d] = False
    return k


@compiled("i8(i8[::1], b1[::1], i8[::1], i8, i8[::1], i8[::1])")
def _silent(lim: Any, active: Any, recv_at: Any, now: Any, due: Any, nxt: Any
            ) -> int:  # pragma: no cover  (compiled)
    # silent on its own clock ⇔ silent on the receiving clock since its last reading;
    # ``nxt``: the earliest receiving time at which one of the others will be
    k = 0
    nxt[0] = NO_SILENCE
    for d in range(len(lim)):
        if lim[d] < 0 or active[d]:
            continue
        if now - recv_at[d] > lim[d]:
            due[k] = d
            k += 1
        elif recv_at[d] + lim[d] + 1 < nxt[0]:
            nxt[0] = recv_at[d] + lim[d] + 1
    return k
