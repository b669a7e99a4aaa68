"""The alarm event of CONTRACT.md §4: webhook body, eval output line, API row, InfluxDB point.

Besides the contract's models this module holds the records the lifecycle keeps about an
alarm (:class:`AlarmRecord`) and about one webhook delivery (:class:`Delivery`), which the
store persists, and the derivation of the stable ids.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "EVENTS",
    "NOTE_EVENTS",
    "SEVERITIES",
    "AckRequest",
    "AlarmEvent",
    "AlarmRecord",
    "AlarmState",
    "AssignRequest",
    "CommentRequest",
    "Delivery",
    "alarm_id_for",
    "delivery_id_for",
    "event_body",
]

EVENTS = ("raised", "escalated", "acknowledged", "cleared")
# Events of an alarm's history that change no state (docs/contract-notes.md): people at work.
NOTE_EVENTS = ("assigned", "commented")
SEVERITIES = ("critical", "major", "minor", "warning")

AlarmState = Literal["raised", "acknowledged", "cleared"]


class AlarmEvent(BaseModel):
    """One lifecycle event of one alarm. Field order is the contract's."""

    model_config = ConfigDict(frozen=True, extra="allow")

    alarm_id: str
    event: Literal["raised", "escalated", "acknowledged", "cleared", "assigned", "commented"]
    rule: str
    severity: Literal["critical", "major", "minor", "warning"]
    kind: str
    device: str | None
    estate: str
    building: str
    floor: int | None
    zone: str | None
    ts: int
    started_at: int
    value: float | None
    message: str
    details: dict[str, Any] = {}
    teams: list[str] = []


class AckRequest(BaseModel):
    """Body of ``POST /alarms/{alarm_id}/ack``."""

    model_config = ConfigDict(extra="forbid")

    by: str = Field(min_length=1, max_length=200)
    note: str = Field("", max_length=4000)


class AssignRequest(BaseModel):
    """Body of ``POST /alarms/{alarm_id}/assign``: who is assigned, by whom."""

    model_config = ConfigDict(extra="forbid")

    to: str = Field(min_length=1, max_length=200)
    by: str = Field(min_length=1, max_length=200)
    note: str = Field("", max_length=4000)


class CommentRequest(BaseModel):
    """Body of ``POST /alarms/{alarm_id}/comments``."""

    model_config = ConfigDict(extra="forbid")

    by: str = Field(min_length=1, max_length=200)
    text: str = Field(min_length=1, max_length=4000)


def alarm_id_for(rule: str, subject: str, started_at: int) -> str:
    """The stable id of an alarm: the first 20 hex digits of sha256("rule|subject|started_at").

    The same transition replayed (after a crash, or in ``anju rules eval``) yields the same id,
    which is what makes a duplicate raise recognisable.
    """
    return hashlib.sha256(f"{rule}|{subject}|{started_at}".encode()).hexdigest()[:20]


def delivery_id_for(alarm_id: str, seq: int, team: str) -> str:
    """The ``X-Anju-Delivery`` id of event ``seq`` of an alarm to one team, in UUID form.

    Derived rather than random so that an event re-created after a crash before its commit
    gets the id it would have had; it is stored with the outbox row at commit time in any case.
    """
    h = hashlib.sha256(f"{alarm_id}|{seq}|{team}".encode()).hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


def event_body(event: AlarmEvent) -> bytes:
    """The event as compact JSON (orjson), in the contract's field order: the webhook body."""
    return orjson.dumps(event.model_dump(mode="json"))


@dataclass(frozen=True, slots=True)
class AlarmRecord:
    """What the store keeps about one alarm between events.

    ``base`` is the ``raised`` event (its fields are copied into every later event);
    ``last`` the newest event of any kind. ``teams`` is every team told so far (raise and
    escalation targets): acknowledgement and clearance go to all of them.
    """

    alarm_id: str
    rule: str
    subject: str
    is_event: bool
    state: AlarmState
    base: AlarmEvent
    last: AlarmEvent
    teams: tuple[str, ...]
    seq: int  # number of events so far; the next event gets seq + 1
    raised_ts: int
    acked_ts: int | None = None
    acked_by: str | None = None
    ack_note: str | None = None
    ack_team: str | None = None
    cleared_ts: int | None = None
    escalations: int = 0
    next_escalation_ms: int | None = None
    assignee: str | None = None  # the person now assigned (the newest ``assigned`` event)
    comments: int = 0
    # Supervision (issue 18): the escalation chain's next step and the receiving-clock time
    # its steps count from; ``held`` ("inhibited", "maintenance") while recorded but not
    # delivered, ``held_by`` the inhibiting alarm or the window id.
    chain_step: int = 0
    chain_from_ms: int | None = None
    held: str | None = None
    held_by: str | None = None

    @property
    def is_open(self) -> bool:
        return self.state != "cleared"

    @property
    def estate(self) -> str:
        return self.base.estate

    def row(self) -> dict[str, Any]:
        """The API row: the newest event (contract §4) plus the alarm's state."""
        out = self.last.model_dump(mode="json")
        out["state"] = self.state
        out["escalations"] = self.escalations
        out["acknowledged_at"] = self.acked_ts
        out["acknowledged_by"] = self.acked_by
        out["cleared_at"] = self.cleared_ts
        out["assigned_to"] = self.assignee
        out["comments"] = self.comments
        out["raised_at"] = self.raised_ts
        out["next_escalation_ms"] = self.next_escalation_ms
        out["held"] = self.held
        out["held_by"] = self.held_by
        return out


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row: one event to one team's webhook."""

    delivery_id: str
    event_id: str  # alarm_id:seq
    alarm_id: str
    team: str
    body: bytes
    attempts: int = 0
    next_attempt_ms: int = 0  # wall clock; 0 = at once
    committed_ms: int = 0  # wall clock of the commit: the retry horizon counts from it
