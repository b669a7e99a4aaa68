"""The alarm event of CONTRACT.md §4: webhook body, eval output line, API row, InfluxDB point."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = ["EVENTS", "SEVERITIES", "AckRequest", "AlarmEvent"]

EVENTS = ("raised", "escalated", "acknowledged", "cleared")
SEVERITIES = ("critical", "major", "minor", "warning")


class AlarmEvent(BaseModel):
    """One lifecycle event of one alarm. Field order is the contract's."""

    model_config = ConfigDict(frozen=True, extra="allow")

    alarm_id: str
    event: Literal["raised", "escalated", "acknowledged", "cleared"]
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

    by: str
    note: str = ""
