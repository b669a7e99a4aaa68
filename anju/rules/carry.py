"""Carrying rule state from one engine to another across a registry reload (SIGHUP).

A reload builds a new :class:`RuleEngine` for the new site and rules; this moves the state
of every device present in both (same id, same kind) into it, so that a run, a clear delay
or a window in progress goes on as if nothing had happened: a detector that has seen smoke
for 8 s raises 2 s later, not 10 s after the reload. Devices new to the site start as if
they had been silent since the reload; removed devices' state is dropped (their open
alarms are cleared by the caller, with a reason).

State is matched by rule id (a rule whose thresholds changed keeps its runs: the next
reading is judged on the new thresholds) and, for floor groups, by (estate, building,
floor).
"""

from __future__ import annotations

import numpy as np

from anju.rules.engine import RuleEngine
from anju.rules.windows import RING

__all__ = ["carry_state"]


def _device_map(old: RuleEngine, new: RuleEngine) -> tuple[np.ndarray, np.ndarray]:
    """(new index, old index) of the devices in both sites with the same kind."""
    od, nd = old.site.devices, new.site.devices
    pairs = [(i, od.index[d]) for i, d in enumerate(nd.ids)
             if d in od.index and int(od.kind[od.index[d]]) == int(nd.kind[i])]
    if not pairs:
        e = np.empty(0, np.int64)
        return e, e
    a = np.array(pairs, np.int64)
    return a[:, 0], a[:, 1]


def carry_state(old: RuleEngine, new: RuleEngine) -> int:
    """Moves ``old``'s state of the devices both know into ``new`` (built for the new site
    and not yet used); returns how many devices were carried over."""
    ni, oi = _device_map(old, new)
    new.stats = old.stats
    if old.received_ms is not None:
        now = old.received_ms
        new.received_ms, new.start_ms = now, old.start_ms
        # devices new to the site: silent since the reload, as at a start
        new.recv_at[:] = now
        new.last_seen[:] = now
    for a in ("newest", "recv_at", "skew_base", "last_seen"):
        getattr(new, a)[ni] = getattr(old, a)[oi]
    _carry_runs(old, new, ni, oi)
    for rule, act in new._off_active.items():
        if rule in old._off_active:
            act[ni] = old._off_active[rule][oi]
            new._off_start[rule][ni] = old._off_start[rule][oi]
    _carry_rings(old, new, ni, oi)
    _carry_groups(old, new, ni, oi)
    for rule, nd in new._schedules.next_due.items():  # rounds: the watch carries on
        if rule in old._schedules.next_due:
            nd[ni] = old._schedules.next_due[rule][oi]
            new._schedules.last_hit[rule][ni] = old._schedules.last_hit[rule][oi]
    return len(ni)


def _carry_runs(old: RuleEngine, new: RuleEngine, ni: np.ndarray, oi: np.ndarray) -> None:
    for kind, nks in new._kstate.items():
        oks = old._kstate.get(kind)
        if oks is None:
            continue
        mine = new._local[ni] >= 0
        mine &= np.isin(ni, nks.members)
        n_loc, o_loc = new._local[ni[mine]], old._local[oi[mine]]
        old_rule = {r.id: j for j, r in enumerate(oks.rules)}
        for j, r in enumerate(nks.rules):
            k = old_rule.get(r.id)
            if k is None:
                continue
            dst = j * len(nks.members) + n_loc
            src = k * len(oks.members) + o_loc
            for a in ("pol", "start", "dur", "active", "alarm_start", "last_t"):
                getattr(nks.st, a)[dst] = getattr(oks.st, a)[src]
            w = min(nks.width, oks.width)
            nks.st.out[dst, :w] = oks.st.out[src, :w]
            nks.touched()


def _carry_rings(old: RuleEngine, new: RuleEngine, ni: np.ndarray, oi: np.ndarray) -> None:
    for key, ring in old._rings.items():
        dst = new._rings.get(key)
        if dst is None:  # no rule of the new set windows it (an engine has all its rings)
            continue
        slot = np.arange(RING)
        d_slots = (ni[:, None] * RING + slot).ravel()
        s_slots = (oi[:, None] * RING + slot).ravel()
        dst.t[d_slots] = ring.t[s_slots]
        dst.v[d_slots] = ring.v[s_slots]
        dst.n[ni] = ring.n[oi]
        dst.head[ni] = ring.head[oi]


def _carry_groups(old: RuleEngine, new: RuleEngine, ni: np.ndarray, oi: np.ndarray) -> None:
    olds = {g.rule.id: g for g in old._groups}
    for g in new._groups:
        og = olds.get(g.rule.id)
        if og is None:
            continue
        if g.member_active.shape[1:] == og.member_active.shape[1:]:  # same member entries
            g.member_active[ni] = og.member_active[oi]
            g.last_clear[ni] = og.last_clear[oi]
        where = {_group_key(old, b, f): i for i, (b, f) in enumerate(og.keys)}
        for i, (b, f) in enumerate(g.keys):
            j = where.get(_group_key(new, b, f))
            if j is not None:
                g.active[i] = og.active[j]
                g.started[i] = og.started[j]


def _group_key(engine: RuleEngine, building: int, floor: int) -> tuple[str, str, int]:
    b = engine.site.buildings[building]
    return b.estate, b.id, floor
