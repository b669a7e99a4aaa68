"""The one interface of the alarm store and webhook outbox, and what crosses it.

:class:`SqliteAlarmStore` (one file, WAL) serves one pipeline process;
:class:`MemoryAlarmStore` serves replays. A PostgreSQL store for several workers sharing
alarms implements the same :class:`AlarmStore` protocol: every method is one short
transaction, and :meth:`AlarmStore.commit` writes alarm states, their events and the
events' outbox rows atomically (the transactional-outbox pattern: an event is durable
before any delivery of it is attempted, and a delivery row never exists without its event).

Times: alarm times (``ts``, escalation due times) are data time, chosen by the caller;
outbox times (``next_attempt_ms``, ``committed_ms``, ``now_ms`` of the ``mark_*`` calls)
are the wall clock of whoever delivers.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field, fields
from typing import Any, Literal, Protocol, runtime_checkable

import orjson

from anju.alarms.model import AlarmEvent, AlarmRecord, Delivery

__all__ = [
    "AlarmQuery",
    "AlarmStore",
    "Commit",
    "LoggedEvent",
    "record_from_json",
    "record_to_json",
]

Listener = Callable[[], None]


@dataclass(slots=True)
class Commit:
    """What one lifecycle step writes, all or nothing.

    ``events`` pairs each event with its sequence number within its alarm; its event id is
    ``f"{alarm_id}:{seq}"``.
    """

    alarms: list[AlarmRecord] = field(default_factory=list)
    events: list[tuple[int, AlarmEvent]] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.alarms or self.events or self.deliveries)


@dataclass(frozen=True, slots=True)
class AlarmQuery:
    """A filter over alarms (the console's list and history): each set None means any.

    ``since_ms``/``until_ms`` bound ``started_at`` (data time), ``until_ms`` excluded.
    """

    state: Literal["open", "cleared", "all"] = "open"
    estates: Collection[str] | None = None
    buildings: Collection[str] | None = None
    kinds: Collection[str] | None = None
    severities: Collection[str] | None = None
    rules: Collection[str] | None = None
    since_ms: int | None = None
    until_ms: int | None = None
    limit: int | None = None

    def matches(self, rec: AlarmRecord) -> bool:
        """Whether one alarm passes the filter (the limit aside)."""
        b = rec.base
        if self.state == "open" and not rec.is_open:
            return False
        if self.state == "cleared" and rec.is_open:
            return False
        return ((self.estates is None or b.estate in self.estates)
                and (self.buildings is None or b.building in self.buildings)
                and (self.kinds is None or b.kind in self.kinds)
                and (self.severities is None or b.severity in self.severities)
                and (self.rules is None or b.rule in self.rules)
                and (self.since_ms is None or b.started_at >= self.since_ms)
                and (self.until_ms is None or b.started_at < self.until_ms))


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One committed event with its position in the store's event log (ascending, never
    reused: the id of a Server-Sent Event) and its alarm as it is now."""

    id: int
    event: AlarmEvent
    alarm: AlarmRecord


@runtime_checkable
class AlarmStore(Protocol):
    """Alarms, their events and the webhook outbox. Implementations are thread-safe."""

    # -- alarms ----------------------------------------------------------------------------
    def get(self, alarm_id: str) -> AlarmRecord | None:
        """The alarm with this id, open or not."""
        ...

    def find_open(self, rule: str, subject: str) -> AlarmRecord | None:
        """The open alarm of a state rule on a subject (there is at most one)."""
        ...

    def commit(self, commit: Commit) -> None:
        """Upserts the alarms, appends the events and their outbox rows, atomically.

        Stamps each delivery's ``committed_ms`` with the wall clock when it is 0.
        """
        ...

    def due_escalations(self, now_ms: int) -> list[AlarmRecord]:
        """Alarms still unacknowledged whose next escalation is due at ``now_ms``."""
        ...

    def list_alarms(
        self, *, open_only: bool = True, estates: Collection[str] | None = None,
        limit: int | None = None,
    ) -> list[AlarmRecord]:
        """Alarms, newest start first; ``estates`` None means all."""
        ...

    def events(self, alarm_id: str) -> list[AlarmEvent]:
        """The events of one alarm in order."""
        ...

    def query_alarms(self, query: AlarmQuery) -> list[AlarmRecord]:
        """Alarms passing ``query``, newest start first."""
        ...

    def events_since(self, after_id: int, *, estates: Collection[str] | None = None,
                     limit: int = 500) -> list[LoggedEvent]:
        """Events committed after log position ``after_id``, oldest first, of alarms of
        ``estates`` (None: all)."""
        ...

    def last_event_id(self) -> int:
        """The log position of the newest event; 0 when there is none."""
        ...

    def add_listener(self, fn: Listener) -> None:
        """Calls ``fn()`` after each commit that wrote events, in the committing thread."""
        ...

    def remove_listener(self, fn: Listener) -> None:
        ...

    # -- outbox ----------------------------------------------------------------------------
    def due_deliveries(self, team: str, now_ms: int, limit: int = 100) -> list[Delivery]:
        """Pending deliveries of a team due at ``now_ms``, in commit order, each at the head
        of its alarm: a row whose alarm has an older pending row for the team waits for it,
        so a receiver gets each alarm's events in order (never ``cleared`` before ``raised``)
        while one alarm being retried holds back no other alarm."""
        ...

    def next_attempt_ms(self, team: str) -> int | None:
        """When the team's earliest pending head delivery (as in :meth:`due_deliveries`) is
        due; None when nothing is pending."""
        ...

    def mark_delivered(self, delivery_id: str, now_ms: int, status: int) -> None:
        """Marks a row delivered. Need not wait for the disk: a mark lost to a power cut
        means one more send under the same delivery id (delivery is at least once)."""
        ...

    def mark_retry(
        self, delivery_id: str, *, attempts: int, next_attempt_ms: int,
        status: int | None, error: str,
    ) -> None:
        ...

    def mark_delivered_many(self, delivery_ids: Collection[str], now_ms: int,
                            status: int) -> None:
        """Marks the rows of one digest message delivered, all in one transaction."""
        ...

    def mark_retry_many(self, delivery_ids: Collection[str], *, next_attempt_ms: int,
                        status: int | None, error: str) -> None:
        """The rows of one digest message failed: each one's attempts + 1, all due again at
        ``next_attempt_ms``, in one transaction."""
        ...

    def target_state(self, team: str) -> dict[str, Any] | None:
        """What a delivery target saved (:meth:`save_target_state`), or None."""
        ...

    def save_target_state(self, team: str, state: dict[str, Any]) -> None:
        """Keeps a delivery target's own state (a robot's recent sends) across restarts."""
        ...

    def mark_parked(
        self, delivery_id: str, now_ms: int, *, attempts: int, status: int | None, error: str,
    ) -> None:
        """The delivery failed until its horizon: it stays in the outbox, state ``parked``,
        and holds its alarm's later events for the team back, until :meth:`requeue`."""
        ...

    def undelivered(self) -> dict[str, dict[str, Any]]:
        """Per team (outbox destination) with anything not delivered: ``pending`` and
        ``parked`` counts, ``oldest_committed_ms`` (first commit of the oldest undelivered
        event) and ``last_parked_ms``."""
        ...

    def pending_counts(self) -> dict[str, int]:
        """Pending deliveries by team."""
        ...

    def outbox(self, *, state: str | None = None, team: str | None = None,
               alarm_id: str | None = None) -> list[dict[str, Any]]:
        """Outbox rows (without bodies) for inspection: delivery_id, event_id, team, state,
        attempts, last_status, last_error; optionally of one alarm only."""
        ...

    def requeue(self, now_ms: int, *, team: str | None = None,
                delivery_ids: Collection[str] | None = None) -> int:
        """Puts parked deliveries (of a team, or these ids) back in the queue under
        their ids, attempts reset and the horizon counted from ``now_ms``; returns how many."""
        ...

    def prune_outbox(self, before_ms: int) -> int:
        """Deletes delivered rows finished before ``before_ms`` (events and parked rows
        stay); returns how many."""
        ...

    def close(self) -> None:
        ...


# -- serialisation shared by the stores that keep records as JSON ----------------------------
def record_to_json(rec: AlarmRecord) -> bytes:
    """An :class:`AlarmRecord` as JSON (events as their contract dicts)."""
    d: dict[str, Any] = {f.name: getattr(rec, f.name) for f in fields(AlarmRecord)}
    d["base"] = rec.base.model_dump(mode="json")
    d["last"] = rec.last.model_dump(mode="json")
    d["teams"] = list(rec.teams)
    return orjson.dumps(d)


def record_from_json(data: bytes | str) -> AlarmRecord:
    """The inverse of :func:`record_to_json`."""
    d = orjson.loads(data)
    d["base"] = AlarmEvent.model_validate(d["base"])
    d["last"] = AlarmEvent.model_validate(d["last"])
    d["teams"] = tuple(d["teams"])
    return AlarmRecord(**d)
