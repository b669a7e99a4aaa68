"""The alarm lifecycle's policies as small stages, each judging with the time it is given:

    route → inhibit → maintenance → deduplicate → escalate → deliver

:class:`AlarmManager` (lifecycle.py) runs them in that order for a raise; de-duplication
(one open alarm per rule and subject) and delivery (outbox rows in the same commit) are its
own. A new policy is a new stage here, not an edit of the manager.

* :class:`Router` — who is told of a raise (the rule's roles, plus the chain's 0 s steps)
  and whom each escalation step names (roles, or levels of the supervision chain).
* :class:`Inhibitor` — whether an open alarm of an inhibiting rule (``gateway.offline``,
  ``elevator.power_failure``) covers the raise (same building, estate or device).
* :class:`MaintenanceGate` — whether a maintenance window covers the raise.
* :class:`Escalator` — the escalation chain: when the next step is due and whom it tells.
* :class:`GatewayWatch` — ``gateway.offline`` from the gateways' batches (gateways.csv).
* :class:`OverdueWatch` — ``elevator.maintenance_overdue`` from maintenance records.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from anju.alarms.maintenance import MaintenanceBook, Window, window_covers
from anju.alarms.model import AlarmRecord
from anju.devices.registry import LEVELS, Site
from anju.devices.supervision import Chain, Inhibit, Supervision
from anju.kinds import KIND_CODES, KINDS
from anju.rules.transition import Transition

__all__ = ["MAINTAINED", "OVERDUE_RULES", "Escalator", "GatewayWatch", "Inhibitor",
           "MaintenanceGate", "OverdueWatch", "Router", "StepDue"]

GATEWAY_OFFLINE = "gateway.offline"
#: Kinds with a statutory maintenance interval (KindSpec.maintenance_days) and the rule
#: each raises past it: ``{kind}.maintenance_overdue``.
MAINTAINED = {KIND_CODES[k]: k for k, spec in KINDS.items() if spec.maintenance_days}
OVERDUE_RULES = tuple(f"{k}.maintenance_overdue" for k in MAINTAINED.values())


class Router:
    """Routing: which teams an alarm, and each step of its escalation, go to."""

    def __init__(self, site: Site, policy: Supervision) -> None:
        self.site, self.policy = site, policy

    def raise_targets(self, tr: Transition) -> list[str]:
        """The rule's roles covering the estate, then the chain's steps due at once."""
        teams = [t.id for t in self.site.teams_for(tr.estate, tr.roles)]
        chain = self.policy.chain_for(tr.rule, tr.severity)
        for step in chain.steps:
            if step.after_ms == 0:
                teams += [t for t in self.notify(tr.estate, tr.severity, step.notify, chain)
                          if t not in teams]
        return teams

    def notify(self, estate: str, severity: str, names: Iterable[str],
               chain: Chain) -> list[str]:
        """Team ids named by a step: roles, or supervisor teams at a level of the chain."""
        out: list[str] = []
        for name in names:
            if name in LEVELS or name == "estate":
                teams = self.site.supervisors_at(estate, name)
            else:
                teams = self.site.teams_for(estate, (name,))
                if not teams and name == "supervisor" and chain.fallback_fire \
                        and severity == "critical":
                    # CONTRACT §3: no supervisor over the estate → its fire team, critical only
                    teams = self.site.teams_for(estate, ("fire",))
            out += [t.id for t in teams if t.id not in out]
        return out


@dataclass(frozen=True, slots=True)
class StepDue:
    """One escalation due now: whom to tell and what to say, and the next due time."""

    teams: list[str]
    details: dict[str, Any]
    step: int  # chain step index after this one
    next_ms: int | None


class Escalator:
    """Escalation chains on the receiving clock: ``after_ms`` of each step counts from the
    alarm's ``chain_from_ms`` (when it was raised, or delivered after being held)."""

    def __init__(self, router: Router, policy: Supervision) -> None:
        self.router, self.policy = router, policy

    def first_due(self, rule: str, severity: str, start_ms: int) -> tuple[int, int | None]:
        """(step index, due ms) of the first step after the raise (0 s steps are the
        raise's); (len(steps), None) when the chain has nothing later."""
        chain = self.policy.chain_for(rule, severity)
        for i, step in enumerate(chain.steps):
            if step.after_ms > 0:
                return i, start_ms + step.after_ms
        if chain.repeat_ms:
            return len(chain.steps), start_ms + chain.repeat_ms
        return len(chain.steps), None

    def due(self, rec: AlarmRecord, now_ms: int) -> StepDue:
        """The step of ``rec`` due at ``now_ms``: whom it tells (possibly nobody), and when
        the next one is due (None: the chain is done)."""
        b = rec.base
        chain = self.policy.chain_for(b.rule, b.severity)
        start = rec.chain_from_ms if rec.chain_from_ms is not None else rec.raised_ts
        i = rec.chain_step
        if i < len(chain.steps):
            names = chain.steps[i].notify
            nxt = i + 1
        else:  # a reminder: the steps from repeat_from on
            names = tuple(n for s in chain.steps[chain.repeat_from:] for n in s.notify)
            nxt = i
        teams = self.router.notify(b.estate, b.severity, names, chain)
        if nxt < len(chain.steps):
            next_ms: int | None = start + chain.steps[nxt].after_ms
        elif chain.repeat_ms:
            next_ms = now_ms + chain.repeat_ms
        else:
            next_ms = None
        details = {"level": rec.escalations + 1, "step": i, "notify": list(names),
                   "reminder": i >= len(chain.steps),
                   "unacknowledged_s": (now_ms - start) / 1000}
        return StepDue(teams, details, nxt, next_ms)


class Inhibitor:
    """Inhibition: a raise is held while an open alarm of a rule that inhibits it covers
    the same place. ``open_of(rule, estate, building)`` finds open alarms."""

    def __init__(self, site: Site, policy: Supervision) -> None:
        self.site = site
        self.by_target: dict[str, list[Inhibit]] = {}
        for inh in policy.inhibits:
            self.by_target.setdefault(inh.target, []).append(inh)
        self.sources = {i.source for i in policy.inhibits}

    def inhibitor(self, tr: Transition,
                  open_of: Callable[[str, str, str], list[AlarmRecord]]) -> str | None:
        """The open alarm that inhibits this raise, or None."""
        for inh in self.by_target.get(tr.rule, ()):
            for rec in open_of(inh.source, tr.estate, tr.building):
                b = rec.base
                if inh.scope == "estate" or (inh.scope == "building"
                                             and b.building == tr.building) \
                        or (inh.scope == "device" and b.device == tr.device):
                    return rec.alarm_id
        return None


class MaintenanceGate:
    """Maintenance: a raise inside a window of its device, building or estate is held."""

    def __init__(self, book: MaintenanceBook | None) -> None:
        self.book = book

    def window(self, tr: Transition, now_ms: int,
               windows: list[Window] | None = None) -> Window | None:
        if self.book is None:
            return None
        for w in windows if windows is not None else self.book.windows(open_only=True):
            if w.active(now_ms) and window_covers(w, tr.estate, tr.building, tr.device):
                return w
        return None


class GatewayWatch:
    """``gateway.offline``: a gateway heard from since start (its batches, recorded by the
    decoder in ``seen``) that has been silent ``silent_ms`` on the receiving clock; cleared
    by its next batch. Gateways never heard from (devices publishing directly) are not
    watched. Also tells whether a silent gateway explains a device going offline."""

    def __init__(self, site: Site, policy: Supervision) -> None:
        self.site = site
        self.silent_ms = policy.gateway_silent_ms
        self.seen: dict[str, int] = {}
        self.active: dict[str, int] = {}  # gateway → when it was raised (receiving clock)
        self.by_building: dict[tuple[str, str], list[str]] = {}
        for gw, place in site.gateways.items():
            self.by_building.setdefault(place, []).append(gw)

    def restore(self, open_gateways: Iterable[tuple[str, int]]) -> None:
        """Open gateway.offline alarms from the store: their gateway's next batch clears."""
        for gw, since in open_gateways:
            if gw in self.site.gateways:
                self.active[gw] = since

    def explains(self, tr: Transition, now_ms: int) -> str | None:
        """The building's gateway that has been silent at least as long as the device of a
        ``device.offline`` raise: the gateway, not the device, is what went quiet."""
        limit = tr.ts - int(tr.details.get("last_seen", tr.ts))
        for gw in self.by_building.get((tr.estate, tr.building), ()):
            last = self.seen.get(gw)
            if last is not None and now_ms - last >= limit - 2000:
                return gw
        return None

    def raise_now(self, gw: str, now_ms: int) -> Transition:
        self.active[gw] = now_ms
        return self._transition(gw, "raised", now_ms, now_ms)

    def tick(self, now_ms: int) -> list[Transition]:
        """Raises for gateways silent too long, clears for those heard from again."""
        out = []
        for gw, last in list(self.seen.items()):
            since = self.active.get(gw)
            if since is None and now_ms - last > self.silent_ms:
                out.append(self.raise_now(gw, now_ms))
            elif since is not None and last > since:
                del self.active[gw]
                out.append(self._transition(gw, "cleared", last, since))
        return out

    def _transition(self, gw: str, event: str, ts: int, started: int) -> Transition:
        estate, building = self.site.gateways[gw]
        name = self.site.estates[estate].name or estate
        return Transition(
            rule=GATEWAY_OFFLINE, event=event,  # type: ignore[arg-type]
            kind="gateway", severity="major", roles=("property",), subject=gw, device=gw,
            estate=estate, building=building, floor=None, zone=None, ts=ts,
            started_at=started, value=None,
            message=f"{name} {building}栋 网关离线（{gw}） / {estate} {building}: "
                    f"gateway {gw} offline",
            details={"last_seen": self.seen.get(gw)})


class OverdueWatch:
    """``{kind}.maintenance_overdue`` for the kinds with a statutory maintenance interval
    (``KindSpec.maintenance_days``; elevators: TSG T5002, every 15 days): raised when a
    device's last maintenance record is older than the limit, cleared when a newer record
    arrives. Devices without a record are not judged (nothing is known of them)."""

    def __init__(self, site: Site, policy: Supervision) -> None:
        self.site = site
        override = policy.maintenance_overdue_ms
        self.limits = {code: override if override is not None
                       else round(float(KINDS[k].maintenance_days or 0) * 86_400_000)
                       for code, k in MAINTAINED.items()}
        self.active: dict[str, int] = {}  # device → started_at of its open alarm

    def tick(self, now_ms: int, maintained: dict[str, int]) -> list[Transition]:
        out = []
        for dev, at in maintained.items():
            i = self.site.devices.index.get(dev)
            if i is None:
                continue
            limit = self.limits.get(int(self.site.devices.kind[i]))
            if limit is None:
                continue
            overdue = now_ms - at > limit
            started = self.active.get(dev)
            if overdue and started is None:
                due = at + limit
                self.active[dev] = due
                out.append(self._transition(i, "raised", now_ms, due, at, now_ms))
            elif not overdue and started is not None:
                del self.active[dev]
                out.append(self._transition(i, "cleared", now_ms, started, at, now_ms))
        return out

    def _transition(self, i: int, event: str, ts: int, started: int, at: int,
                    now_ms: int) -> Transition:
        site = self.site
        dev = site.devices.ids[i]
        b = site.buildings[int(site.devices.building[i])]
        name = site.estates[b.estate].name or b.estate
        days = (now_ms - at) / 86_400_000
        kind = MAINTAINED[int(site.devices.kind[i])]
        limit = self.limits[int(site.devices.kind[i])]
        return Transition(
            rule=f"{kind}.maintenance_overdue", event=event,  # type: ignore[arg-type]
            kind=kind, severity="major", roles=("property",), subject=dev, device=dev,
            estate=b.estate, building=b.id, floor=None, zone=site.devices.zone[i], ts=ts,
            started_at=started, value=round(days, 2),
            message=f"{name} {b.id}栋 {KINDS[kind].title.split(' / ')[0]}超期未维保（{dev}，"
                    f"{days:.1f} 天） / {b.estate} {b.id}: {kind} {dev} not maintained for "
                    f"{days:.1f} days",
            details={"last_maintained_at": at, "limit_days": limit / 86_400_000})

