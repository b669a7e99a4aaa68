"""What the rule engine hands to the alarm stage: a state change of one rule on one subject."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Transition"]


@dataclass(frozen=True, slots=True)
class Transition:
    """A rule raised or cleared on a subject (a device, or a building floor for group rules).

    ``ts`` is data time (the reading or clock tick that caused it); ``started_at`` is when
    the condition began to hold, which with ``rule`` and ``subject`` identifies the alarm.
    Event rules (``camera.*``) only ever raise.
    """

    rule: str
    event: Literal["raised", "cleared"]
    kind: str
    severity: Literal["critical", "major", "minor", "warning"]
    roles: tuple[str, ...]
    subject: str  # device id, or "estate/building/floor" for group rules
    device: str | None
    estate: str
    building: str
    floor: int | None
    zone: str | None
    ts: int
    started_at: int
    value: float | None
    message: str
    details: dict[str, Any] = field(default_factory=dict)
    is_event: bool = False  # closed by acknowledgement, not by data
