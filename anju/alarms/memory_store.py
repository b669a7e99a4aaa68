"""An in-memory :class:`~anju.alarms.store.AlarmStore` for replays and tests.

Same semantics as the SQLite store, nothing durable. A replay has no webhooks to drive, so
``keep_outbox=False`` drops outbox rows instead of accumulating them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any, Self

from anju.alarms.model import AlarmEvent, AlarmRecord, Delivery
from anju.alarms.store import AlarmQuery, Commit, Listener, LoggedEvent

__all__ = ["MemoryAlarmStore"]


@dataclass(slots=True)
class _Row:
    delivery: Delivery
    state: str = "pending"
    last_status: int | None = None
    last_error: str | None = None
    done_ms: int | None = None
    first_ms: int = 0  # the first commit: requeue restarts the horizon, not the age


class MemoryAlarmStore:
    """Alarms, events and outbox in dicts, guarded by one lock."""

    def __init__(self, *, keep_outbox: bool = True,
                 wall_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self._lock = threading.RLock()
        self._alarms: dict[str, AlarmRecord] = {}
        self._open: dict[tuple[str, str], str] = {}  # (rule, subject) → alarm_id, state rules
        # alarms with an escalation timer: a replay ticks every second of data time, so a
        # tick must cost the alarms waiting for escalation, not every alarm ever raised
        self._escalating: dict[str, int] = {}
        self._events: dict[str, list[AlarmEvent]] = {}
        self._outbox: dict[str, _Row] = {}  # insertion order = commit order
        self._keep_outbox = keep_outbox
        self._wall_ms = wall_ms
        self._log: list[AlarmEvent] = []  # every event in commit order; its id = index + 1
        self._listeners: list[Listener] = []
        self._targets: dict[str, dict[str, Any]] = {}  # a delivery target's saved state

    # -- alarms ----------------------------------------------------------------------------
    def get(self, alarm_id: str) -> AlarmRecord | None:
        with self._lock:
            return self._alarms.get(alarm_id)

    def find_open(self, rule: str, subject: str) -> AlarmRecord | None:
        with self._lock:
            aid = self._open.get((rule, subject))
            return self._alarms[aid] if aid is not None else None

    def commit(self, commit: Commit) -> None:
        with self._lock:
            for rec in commit.alarms:
                key = (rec.rule, rec.subject)
                if not rec.is_event:
                    holder = self._open.get(key)
                    if rec.is_open:
                        if holder is not None and holder != rec.alarm_id:
                            raise ValueError(f"second open alarm for {key}")
                        self._open[key] = rec.alarm_id
                    elif holder == rec.alarm_id:
                        del self._open[key]
                self._alarms[rec.alarm_id] = rec
                if rec.state == "raised" and rec.next_escalation_ms is not None:
                    self._escalating[rec.alarm_id] = rec.next_escalation_ms
                else:
                    self._escalating.pop(rec.alarm_id, None)
            for _seq, ev in commit.events:
                self._events.setdefault(ev.alarm_id, []).append(ev)
                self._log.append(ev)
            if self._keep_outbox:
                now = self._wall_ms()
                for d in commit.deliveries:
                    if d.delivery_id in self._outbox:
                        raise ValueError(f"duplicate delivery id {d.delivery_id}")
                    if not d.committed_ms:
                        d = replace(d, committed_ms=now)
                    self._outbox[d.delivery_id] = _Row(d, first_ms=d.committed_ms)
        if commit.events:
            for fn in list(self._listeners):
                fn()

    def due_escalations(self, now_ms: int) -> list[AlarmRecord]:
        with self._lock:
            due = [self._alarms[aid] for aid, t in self._escalating.items() if t <= now_ms]
        return sorted(due, key=lambda r: (r.next_escalation_ms or 0, r.alarm_id))

    def list_alarms(self, *, open_only: bool = True, estates: Collection[str] | None = None,
                    limit: int | None = None) -> list[AlarmRecord]:
        with self._lock:
            recs = [r for r in self._alarms.values()
                    if (not open_only or r.is_open) and (estates is None or r.estate in estates)]
        recs.sort(key=lambda r: (-r.base.started_at, r.alarm_id))
        return recs[:limit] if limit is not None else recs

    def events(self, alarm_id: str) -> list[AlarmEvent]:
        with self._lock:
            return list(self._events.get(alarm_id, ()))

    def query_alarms(self, query: AlarmQuery) -> list[AlarmRecord]:
        with self._lock:
            recs = [r for r in self._alarms.values() if query.matches(r)]
        recs.sort(key=lambda r: (-r.base.started_at, r.alarm_id))
        return recs[:query.limit] if query.limit is not None else recs

    def events_since(self, after_id: int, *, estates: Collection[str] | None = None,
                     limit: int = 500) -> list[LoggedEvent]:
        out: list[LoggedEvent] = []
        with self._lock:
            for i in range(max(after_id, 0), len(self._log)):
                ev = self._log[i]
                if estates is None or ev.estate in estates:
                    out.append(LoggedEvent(i + 1, ev, self._alarms[ev.alarm_id]))
                    if len(out) >= limit:
                        break
        return out

    def last_event_id(self) -> int:
        with self._lock:
            return len(self._log)

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def remove_listener(self, fn: Listener) -> None:
        if fn in self._listeners:
            self._listeners.remove(fn)

    # -- outbox ----------------------------------------------------------------------------
    def _heads(self, team: str) -> list[Delivery]:
        """The oldest pending delivery of each alarm of a team, in commit order."""
        seen: set[str] = set()
        out = []
        for row in self._outbox.values():
            d = row.delivery
            if row.state in ("pending", "parked") and d.team == team and d.alarm_id not in seen:
                seen.add(d.alarm_id)  # a parked row holds its alarm's later events back
                if row.state == "pending":
                    out.append(d)
        return out

    def due_deliveries(self, team: str, now_ms: int, limit: int = 100) -> list[Delivery]:
        with self._lock:
            return [d for d in self._heads(team) if d.next_attempt_ms <= now_ms][:limit]

    def next_attempt_ms(self, team: str) -> int | None:
        with self._lock:
            times = [d.next_attempt_ms for d in self._heads(team)]
        return min(times) if times else None

    def mark_delivered(self, delivery_id: str, now_ms: int, status: int) -> None:
        with self._lock:
            row = self._outbox[delivery_id]
            row.state, row.last_status, row.done_ms = "delivered", status, now_ms
            row.delivery = replace(row.delivery, attempts=row.delivery.attempts + 1)

    def mark_delivered_many(self, delivery_ids: Collection[str], now_ms: int,
                            status: int) -> None:
        with self._lock:
            for did in delivery_ids:
                self.mark_delivered(did, now_ms, status)

    def mark_retry_many(self, delivery_ids: Collection[str], *, next_attempt_ms: int,
                        status: int | None, error: str) -> None:
        with self._lock:
            for did in delivery_ids:
                row = self._outbox[did]
                self.mark_retry(did, attempts=row.delivery.attempts + 1,
                                next_attempt_ms=next_attempt_ms, status=status, error=error)

    def target_state(self, team: str) -> dict[str, Any] | None:
        with self._lock:
            return self._targets.get(team)

    def save_target_state(self, team: str, state: dict[str, Any]) -> None:
        with self._lock:
            self._targets[team] = state

    def mark_retry(self, delivery_id: str, *, attempts: int, next_attempt_ms: int,
                   status: int | None, error: str) -> None:
        with self._lock:
            row = self._outbox[delivery_id]
            row.delivery = replace(row.delivery, attempts=attempts,
                                   next_attempt_ms=next_attempt_ms)
            row.last_status, row.last_error = status, error

    def mark_parked(self, delivery_id: str, now_ms: int, *, attempts: int,
                    status: int | None, error: str) -> None:
        with self._lock:
            row = self._outbox[delivery_id]
            row.delivery = replace(row.delivery, attempts=attempts)
            row.state, row.last_status, row.last_error, row.done_ms = (
                "parked", status, error, now_ms)

    def pending_counts(self) -> dict[str, int]:
        with self._lock:
            out: dict[str, int] = {}
            for r in self._outbox.values():
                if r.state == "pending":
                    out[r.delivery.team] = out.get(r.delivery.team, 0) + 1
            return out

    def undelivered(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            out: dict[str, dict[str, Any]] = {}
            for r in self._outbox.values():
                if r.state == "delivered":
                    continue
                t = out.setdefault(r.delivery.team, {"pending": 0, "parked": 0,
                                                     "oldest_committed_ms": None,
                                                     "last_parked_ms": None})
                t[r.state] += 1
                c = r.first_ms
                if t["oldest_committed_ms"] is None or c < t["oldest_committed_ms"]:
                    t["oldest_committed_ms"] = c
                if r.state == "parked" and r.done_ms is not None:
                    t["last_parked_ms"] = max(t["last_parked_ms"] or 0, r.done_ms)
            return out

    def outbox(self, *, state: str | None = None, team: str | None = None,
               alarm_id: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"delivery_id": r.delivery.delivery_id, "event_id": r.delivery.event_id,
                 "alarm_id": r.delivery.alarm_id, "team": r.delivery.team, "state": r.state,
                 "attempts": r.delivery.attempts, "last_status": r.last_status,
                 "last_error": r.last_error}
                for r in self._outbox.values()
                if (state is None or r.state == state) and (team is None or r.delivery.team == team)
                and (alarm_id is None or r.delivery.alarm_id == alarm_id)
            ]

    def requeue(self, now_ms: int, *, team: str | None = None,
                delivery_ids: Collection[str] | None = None) -> int:
        with self._lock:
            n = 0
            held: set[tuple[str, str]] = set()
            for row in self._outbox.values():
                d = row.delivery
                if (row.state == "parked" and (team is None or d.team == team)
                        and (delivery_ids is None or d.delivery_id in delivery_ids)):
                    row.state, row.done_ms = "pending", None
                    row.delivery = replace(d, attempts=0, next_attempt_ms=0,
                                           committed_ms=now_ms)
                    held.add((d.team, d.alarm_id))
                    n += 1
                elif row.state == "pending" and (d.team, d.alarm_id) in held:
                    row.delivery = replace(d, committed_ms=now_ms)  # its horizon restarts
            return n

    def prune_outbox(self, before_ms: int) -> int:
        with self._lock:
            gone = [k for k, r in self._outbox.items()
                    if r.state == "delivered" and r.done_ms is not None
                    and r.done_ms < before_ms]
            for k in gone:
                del self._outbox[k]
            return len(gone)

    def close(self) -> None:
        """Nothing to release."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
