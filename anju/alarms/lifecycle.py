"""The alarm lifecycle: transitions and acknowledgements in, committed events out.

States and events (CONTRACT.md §4)::

    (none) ──raise──► raised ──ack──► acknowledged ──clear──► cleared
                        │  ▲                                    ▲
                        │  └─ escalated (tick; reminders)       │
                        └───────────────clear───────────────────┘

* State rules: at most one open alarm per (rule, subject). A raise while one is open is a
  duplicate and changes nothing; a new alarm only follows a clear. A clear with no open
  alarm changes nothing.
* Event rules (``Transition.is_event``, ``camera.*``): every event is its own alarm (its
  id includes ``started_at``, so a replayed event is recognised as a duplicate); data
  never clears it. Acknowledgement closes it: ``acknowledged`` and then ``cleared`` are
  emitted together, so every alarm ends with ``cleared`` for a receiver.
* Escalation: an alarm still ``raised`` ``unacknowledged_after_s`` after its raise gets an
  ``escalated`` event to the escalation targets (:mod:`anju.alarms.routing`), then a
  reminder each interval while it stays unacknowledged; the clock is the ``now_ms`` the
  caller passes (data time in replay, the wall clock live), never read here.
* Who is told: ``raised`` goes to the rule's roles; ``escalated`` to the escalation targets;
  ``acknowledged`` and ``cleared`` to every team told so far.

Every public method is one store commit holding the alarm states, the events and one outbox
row per event and delivery target (a team's webhook, its chat robots), whose delivery id is
fixed there.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import replace
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry

from anju.alarms.errors import AlarmNotFound, AlarmStateError
from anju.alarms.maintenance import MaintenanceBook, Window, window_covers
from anju.alarms.metrics import alarm_metrics
from anju.alarms.model import (
    AlarmEvent,
    AlarmRecord,
    Delivery,
    alarm_id_for,
    delivery_id_for,
)
from anju.alarms.stages import (
    GATEWAY_OFFLINE,
    MAINTAINED,
    OVERDUE_RULES,
    Escalator,
    GatewayWatch,
    Inhibitor,
    MaintenanceGate,
    OverdueWatch,
    Router,
)
from anju.alarms.store import AlarmQuery, AlarmStore, Commit
from anju.devices.registry import Site
from anju.devices.targets import destination_keys
from anju.kinds import KINDS
from anju.rules.transition import Transition

__all__ = ["AlarmManager"]

log = logging.getLogger(__name__)


class AlarmManager:
    """Lifecycle, de-duplication, routing and escalation over an :class:`AlarmStore`.

    Synchronous and thread-safe (one lock around each step); the only I/O is the store's,
    so the live pipeline calls it from a worker thread and a replay calls it inline.
    """

    def __init__(self, site: Site, store: AlarmStore, *,
                 registry: CollectorRegistry | None = None,
                 book: MaintenanceBook | None = None) -> None:
        self.store = store
        self.book = book
        self._metrics = alarm_metrics(registry)
        self._lock = threading.Lock()
        self._now: int | None = None
        # told every commit that wrote outbox rows, on the thread that made it, right after
        # it (the pipeline hands the rows to the webhooks' workers: WebhookDispatcher.committed)
        self.on_commit: Callable[[Commit], None] | None = None
        self._use(site)

    def _use(self, site: Site) -> None:
        self.site = site
        self.escalate_after_ms = round(site.unacknowledged_after_s * 1000)
        # the stages (stages.py): route → inhibit → maintenance → (dedupe) → escalate
        policy = site.policy()
        self.router = Router(site, policy)
        self.inhibitor = Inhibitor(site, policy)
        self.gate = MaintenanceGate(self.book)
        self.escalator = Escalator(self.router, policy)
        seen = getattr(self, "gateways", None)
        self.gateways = GatewayWatch(site, policy)
        if seen is not None:
            self.gateways.seen = seen.seen
        self.overdue = OverdueWatch(site, policy)
        self._watches_restored = False  # the watches take their open alarms from the store
        # outbox keys per team: its webhook (the team id) and its robots (team/name)
        self._targets = {t.id: destination_keys(t.id, bool(t.webhook), t.targets)
                         for t in site.teams}

    def reload(self, site: Site) -> None:
        """Uses a reloaded registry from the next step on (SIGHUP): routing, escalation
        chains, inhibition and the watches are rebuilt for it; open alarms stay as they
        are in the store."""
        with self._lock:
            self._use(site)

    # -- steps -----------------------------------------------------------------------------
    def on_transitions(self, transitions: Iterable[Transition], *,
                       now_ms: int | None = None) -> list[AlarmEvent]:
        """Applies the rule engine's transitions; returns the events committed, in order.

        ``now_ms`` is the receiving clock (data time in replay): escalation deadlines run
        from it, not from the raise's ``ts``, which is its device's clock — a device whose
        clock runs minutes slow must not have its alarms escalated minutes early.
        """
        with self._lock:
            return self._apply(list(transitions), now_ms)

    def watch_gateways(self, seen: dict[str, int]) -> None:
        """Shares the decoder's record of gateway batches (gateway → receiving ms)."""
        self.gateways.seen = seen

    def _apply(self, transitions: list[Transition], now_ms: int | None) -> list[AlarmEvent]:
        self._now = now_ms
        staged: dict[str, AlarmRecord] = {}  # alarm_id → newest record in this batch
        open_ids: dict[tuple[str, str], str | None] = {}  # (rule, subject) → open alarm
        commit = Commit()
        windows = self.book.windows(open_only=True) if self.book is not None else []
        cleared: list[AlarmRecord] = []
        for tr in transitions:
            if tr.event == "raised":
                if tr.rule == "device.offline" and now_ms is not None:
                    # a silent gateway explains it: the gateway's alarm first, which
                    # then inhibits this one and the rest of its building's
                    gw = self.gateways.explains(tr, now_ms)
                    if gw is not None and gw not in self.gateways.active:
                        self._raise(self.gateways.raise_now(gw, now_ms), staged, open_ids,
                                    commit, windows)
                self._raise(tr, staged, open_ids, commit, windows)
            else:
                rec = self._clear(tr, staged, open_ids, commit)
                if rec is not None and tr.rule in self.inhibitor.sources:
                    cleared.append(rec)
        for rec in cleared:  # what they inhibited and is still active is delivered now
            self._release_inhibited(rec, staged, commit, now_ms)
        commit.alarms = list(staged.values())
        return self._commit(commit)

    def tick(self, now_ms: int) -> list[AlarmEvent]:
        """Escalations and reminders due at ``now_ms``; returns the events committed."""
        with self._lock:
            events = self._close_windows(now_ms)
            events += self._watch(now_ms)
            commit = Commit()
            for rec in self.store.due_escalations(now_ms):
                if rec.held is not None:  # a deferred release (_release_inhibited)
                    commit.alarms.append(self._release(rec, now_ms, commit))
                    continue
                due = self.escalator.due(rec, now_ms)
                if not due.teams:
                    # nobody at this step: on to the next one; nobody to remind: stop asking
                    nxt = None if due.details["reminder"] else due.next_ms
                    commit.alarms.append(replace(rec, chain_step=due.step,
                                                 next_escalation_ms=nxt))
                    continue
                level = rec.escalations + 1
                details = {**rec.base.details, "escalation": due.details}
                ev = self._event(rec.base, "escalated", now_ms, due.teams, details=details)
                rec = replace(rec, escalations=level, chain_step=due.step,
                              next_escalation_ms=due.next_ms)
                commit.alarms.append(self._append(rec, ev, commit, new_teams=due.teams))
            return events + self._commit(commit)

    # -- supervision: watches, windows, inhibition -------------------------------------------
    def _watch(self, now_ms: int) -> list[AlarmEvent]:
        """gateway.offline and elevator.maintenance_overdue, judged at ``now_ms``."""
        if not self._watches_restored:
            self._watches_restored = True
            for rec in self.store.query_alarms(AlarmQuery(
                    state="open", rules=(GATEWAY_OFFLINE, *OVERDUE_RULES))):
                if rec.rule == GATEWAY_OFFLINE:
                    self.gateways.restore([(rec.subject, now_ms)])
                else:
                    self.overdue.active[rec.subject] = rec.base.started_at
        trs = self.gateways.tick(now_ms) if self.gateways.seen else []
        if self.book is not None:
            trs += self.overdue.tick(now_ms, self.book.maintained())
        return self._apply(trs, now_ms) if trs else []

    def _close_windows(self, now_ms: int) -> list[AlarmEvent]:
        """Windows that are over: their elevators are maintained as of the window's end,
        and their critical alarms still open are delivered now."""
        if self.book is None:
            return []
        commit = Commit()
        for w in self.book.to_close(now_ms):
            for rec in self.store.query_alarms(AlarmQuery(state="open", estates=(w.estate,))):
                if rec.held == "maintenance" and rec.held_by == str(w.id) \
                        and rec.base.severity == "critical":
                    commit.alarms.append(self._release(rec, now_ms, commit))
            for dev in self._maintained_in(w):
                self.book.set_maintained(dev, w.to_ms, w.ended_by or w.by, now_ms)
            self.book.mark_closed(w.id)
        return self._commit(commit)

    def _maintained_in(self, w: Window) -> list[str]:
        """Devices of kinds with a maintenance interval that the window covers: its end is
        their maintenance record."""
        devs = self.site.devices
        out = []
        for i in np.flatnonzero(np.isin(devs.kind, list(MAINTAINED))).tolist():
            b = self.site.buildings[int(devs.building[i])]
            if window_covers(w, b.estate, b.id, devs.ids[i]):
                out.append(devs.ids[i])
        return out

    def _release_inhibited(self, source: AlarmRecord, staged: dict[str, AlarmRecord],
                           commit: Commit, now_ms: int | None) -> None:
        now = source.cleared_ts if now_ms is None else now_ms
        assert now is not None
        held = {r.alarm_id: r for r in self.store.query_alarms(
            AlarmQuery(state="open", estates=(source.estate,)))}
        held.update({a: r for a, r in staged.items() if r.estate == source.estate})
        for aid, rec in held.items():
            if rec.is_open and rec.held == "inhibited" and rec.held_by == source.alarm_id:
                if source.rule == GATEWAY_OFFLINE and rec.rule == "device.offline" \
                        and rec.base.kind in KINDS:
                    # the gateway is back: its devices' next readings clear these within a
                    # heartbeat; only a device still silent then is told (by tick)
                    grace = round(KINDS[rec.base.kind].heartbeat_s * 1500)
                    staged[aid] = replace(rec, next_escalation_ms=now + grace)
                    continue
                staged[aid] = self._release(rec, now, commit)

    def _release(self, rec: AlarmRecord, now_ms: int, commit: Commit) -> AlarmRecord:
        """A held alarm delivered after all: a ``raised`` event at ``now_ms`` to its teams,
        its escalation chain starting now."""
        teams = list(rec.base.teams)
        details = {**rec.base.details, "released": {"held": rec.held, "by": rec.held_by}}
        ev = self._event(rec.base, "raised", now_ms, teams, details=details)
        step, due = self.escalator.first_due(rec.rule, rec.base.severity, now_ms)
        rec = replace(rec, held=None, held_by=None, chain_from_ms=now_ms, chain_step=step,
                      next_escalation_ms=due if rec.state == "raised" else None)
        return self._append(rec, ev, commit, new_teams=teams)

    def _open_of(self, staged: dict[str, AlarmRecord]) -> Any:
        def open_of(rule: str, estate: str, building: str) -> list[AlarmRecord]:
            found = {r.alarm_id: r for r in self.store.query_alarms(
                AlarmQuery(state="open", rules=(rule,), estates=(estate,)))}
            found.update({a: r for a, r in staged.items() if r.rule == rule})
            return [r for r in found.values() if r.is_open and r.estate == estate]
        return open_of

    def acknowledge(self, alarm_id: str, team_id: str | None, by: str, note: str,
                    now_ms: int) -> AlarmEvent:
        """Acknowledges an alarm for a team (``team_id`` None: an operator outside any team).

        Raises :class:`AlarmNotFound` for an unknown alarm or one outside the team's estates,
        :class:`AlarmStateError` when it is already acknowledged or cleared. For an event
        alarm the ``cleared`` that closes it is committed too; the ``acknowledged`` event is
        returned.
        """
        with self._lock:
            rec = self.store.get(alarm_id)
            if rec is None or not self._visible(rec, team_id):
                raise AlarmNotFound(alarm_id)
            if rec.state != "raised":
                raise AlarmStateError(alarm_id, rec.state, "acknowledged")
            details = {**rec.base.details,
                       "ack": {"by": by, "note": note, "team": team_id}}
            ev = self._event(rec.base, "acknowledged", now_ms, list(rec.teams), details=details)
            rec = replace(rec, state="acknowledged", acked_ts=now_ms, acked_by=by,
                          ack_note=note, ack_team=team_id, next_escalation_ms=None)
            commit = Commit()
            rec = self._append(rec, ev, commit)
            if rec.is_event:
                closing = self._event(rec.base, "cleared", now_ms, list(rec.teams),
                                      details=details)
                rec = self._append(replace(rec, state="cleared", cleared_ts=now_ms),
                                   closing, commit)
            commit.alarms.append(rec)
            self._commit(commit)
            return ev

    def assign(self, alarm_id: str, team_id: str | None, to: str, by: str, note: str,
               now_ms: int) -> AlarmEvent:
        """Assigns an open alarm to a named person: an ``assigned`` event, told to every team
        told so far. Raises :class:`AlarmNotFound` as :meth:`acknowledge` does, and
        :class:`AlarmStateError` for a cleared alarm. The state does not change."""
        with self._lock:
            rec = self.store.get(alarm_id)
            if rec is None or not self._visible(rec, team_id):
                raise AlarmNotFound(alarm_id)
            if not rec.is_open:
                raise AlarmStateError(alarm_id, rec.state, "assigned")
            details = {**rec.base.details,
                       "assign": {"to": to, "by": by, "note": note, "team": team_id}}
            return self._note(replace(rec, assignee=to), "assigned", now_ms, details)

    def comment(self, alarm_id: str, team_id: str | None, by: str, text: str,
                now_ms: int) -> AlarmEvent:
        """Adds a comment to an alarm, open or closed (a note after the fact belongs to its
        history too): a ``commented`` event, told to every team told so far."""
        with self._lock:
            rec = self.store.get(alarm_id)
            if rec is None or not self._visible(rec, team_id):
                raise AlarmNotFound(alarm_id)
            details = {**rec.base.details,
                       "comment": {"by": by, "text": text, "team": team_id}}
            return self._note(replace(rec, comments=rec.comments + 1), "commented", now_ms,
                              details)

    def _note(self, rec: AlarmRecord, event: str, now_ms: int,
              details: dict[str, Any]) -> AlarmEvent:
        """Commits a note event (``assigned``, ``commented``); the record's ``last`` stays
        its newest lifecycle event, which is what the API row shows."""
        ev = self._event(rec.base, event, now_ms, list(rec.teams), details=details)
        commit = Commit()
        rec = replace(self._append(rec, ev, commit), last=rec.last)
        commit.alarms.append(rec)
        self._commit(commit)
        return ev

    # -- reading ---------------------------------------------------------------------------
    def open_alarms(self, estates: Collection[str] | None = None) -> list[dict[str, Any]]:
        """API rows of the open alarms, newest first, optionally of some estates only."""
        return [r.row() for r in self.store.list_alarms(open_only=True, estates=estates)]

    def get(self, alarm_id: str, team_id: str | None = None) -> AlarmRecord:
        """One alarm, if visible to the team; raises :class:`AlarmNotFound` otherwise."""
        rec = self.store.get(alarm_id)
        if rec is None or not self._visible(rec, team_id):
            raise AlarmNotFound(alarm_id)
        return rec

    # -- internals -------------------------------------------------------------------------
    def _visible(self, rec: AlarmRecord, team_id: str | None) -> bool:
        if team_id is None:
            return True
        team = next((t for t in self.site.teams if t.id == team_id), None)
        return team is not None and team.covers(rec.estate)

    def _raise(self, tr: Transition, staged: dict[str, AlarmRecord],
               open_ids: dict[tuple[str, str], str | None], commit: Commit,
               windows: list[Window]) -> None:
        aid = alarm_id_for(tr.rule, tr.subject, tr.started_at)
        key = (tr.rule, tr.subject)
        if aid in staged or self.store.get(aid) is not None:
            self._metrics.duplicates.labels(tr.rule, "raised").inc()
            log.debug("alarm %s raised again (a redelivered reading): ignored", aid)
            return  # the same alarm again: replayed or re-sent
        open_id = None if tr.is_event else self._open_id(key, staged, open_ids)
        if open_id is not None:
            # The engine and the store disagree: the engine thinks nothing is open. A new
            # incident would be silenced, so say so loudly.
            self._metrics.duplicates.labels(tr.rule, "raised").inc()
            log.warning("%s on %s raised while alarm %s is still open: the new raise is "
                        "dropped (engine state out of step with the alarm store)",
                        tr.rule, tr.subject, open_id)
            return  # at most one open alarm per (rule, subject)
        now = tr.ts if self._now is None else self._now
        teams = self.router.raise_targets(tr)  # route
        details = dict(tr.details)
        held: str | None = None
        held_by: str | None = None
        inhibitor = (self.inhibitor.inhibitor(tr, self._open_of(staged))
                     if tr.rule in self.inhibitor.by_target else None)
        window = self.gate.window(tr, now, windows) if inhibitor is None else None
        if inhibitor is not None:  # inhibit: recorded, not delivered while it lasts
            held, held_by = "inhibited", inhibitor
            details["inhibited_by"] = inhibitor
        elif window is not None:  # maintenance: recorded, not delivered
            held, held_by = "maintenance", str(window.id)
            details["maintenance"] = True
            details["maintenance_window"] = window.id
        base = AlarmEvent(
            alarm_id=aid, event="raised", rule=tr.rule, severity=tr.severity, kind=tr.kind,
            device=tr.device, estate=tr.estate, building=tr.building, floor=tr.floor,
            zone=tr.zone, ts=tr.ts, started_at=tr.started_at, value=tr.value,
            message=tr.message, details=details, teams=teams,
        )
        step, due = self.escalator.first_due(tr.rule, tr.severity, now)  # escalate
        rec = AlarmRecord(
            alarm_id=aid, rule=tr.rule, subject=tr.subject, is_event=tr.is_event,
            state="raised", base=base, last=base, teams=(), seq=0, raised_ts=tr.ts,
            next_escalation_ms=None if held else due, chain_step=step, chain_from_ms=now,
            held=held, held_by=held_by,
        )
        # deliver: outbox rows to the teams, unless held (then nobody is told yet)
        staged[aid] = self._append(rec, base, commit, new_teams=None if held else teams,
                                   deliver=held is None)
        if not tr.is_event:
            open_ids[key] = aid

    def _clear(self, tr: Transition, staged: dict[str, AlarmRecord],
               open_ids: dict[tuple[str, str], str | None],
               commit: Commit) -> AlarmRecord | None:
        key = (tr.rule, tr.subject)
        aid = None if tr.is_event else self._open_id(key, staged, open_ids)
        if aid is None:  # nothing open, or an event alarm (closed by acknowledgement only)
            self._metrics.duplicates.labels(tr.rule, "cleared").inc()
            return None
        rec = staged.get(aid) or self.store.get(aid)
        assert rec is not None
        ev = self._event(rec.base, "cleared", tr.ts, list(rec.teams), value=tr.value,
                         message=tr.message, details={**rec.base.details, **tr.details})
        rec = replace(rec, state="cleared", cleared_ts=tr.ts, next_escalation_ms=None)
        staged[aid] = self._append(rec, ev, commit)
        open_ids[key] = None
        return staged[aid]

    def _open_id(self, key: tuple[str, str], staged: dict[str, AlarmRecord],
                 open_ids: dict[tuple[str, str], str | None]) -> str | None:
        if key not in open_ids:
            rec = self.store.find_open(*key)
            open_ids[key] = rec.alarm_id if rec is not None else None
        return open_ids[key]

    @staticmethod
    def _event(base: AlarmEvent, event: str, ts: int, teams: list[str], *,
               value: float | None = None, message: str | None = None,
               details: dict[str, Any] | None = None) -> AlarmEvent:
        update: dict[str, Any] = {"event": event, "ts": ts, "teams": teams}
        if value is not None:
            update["value"] = value
        if message is not None:
            update["message"] = message
        if details is not None:
            update["details"] = details
        return base.model_copy(update=update)

    def _append(self, rec: AlarmRecord, ev: AlarmEvent, commit: Commit, *,
                new_teams: list[str] | None = None, deliver: bool = True) -> AlarmRecord:
        """Adds ``ev`` as the next event of ``rec`` with its outbox rows (none when not
        ``deliver``: a held alarm is recorded only); the updated record."""
        seq = rec.seq + 1
        commit.events.append((seq, ev))
        for team in ev.teams if deliver else ():
            for key in self._targets.get(team, ()):
                commit.deliveries.append(Delivery(
                    delivery_id=delivery_id_for(rec.alarm_id, seq, key),
                    event_id=f"{rec.alarm_id}:{seq}", alarm_id=rec.alarm_id, team=key,
                    body=b""))  # the store keeps the body once, with the event
        teams = rec.teams
        for t in new_teams or ():
            if t not in teams:
                teams = (*teams, t)
        return replace(rec, seq=seq, last=ev, teams=teams)

    def _commit(self, commit: Commit) -> list[AlarmEvent]:
        self.store.commit(commit)
        if self.on_commit is not None and commit.deliveries:
            try:
                self.on_commit(commit)
            except Exception:  # committed all the same: the workers' own query finds the rows
                log.exception("alarms: telling the webhooks of a commit failed")
        events = [ev for _, ev in commit.events]
        for ev in events:
            self._metrics.events.labels(ev.rule, ev.event).inc()
        return events
