"""Errors of the alarm area, under :class:`anju.errors.AnjuError`."""

from __future__ import annotations

from anju.errors import AnjuError, DeliveryError

__all__ = ["AlarmNotFound", "AlarmStateError", "AlarmStoreError", "DeliveryRefused"]


class AlarmNotFound(AnjuError, KeyError):
    """No such alarm, or it lies outside the estates of the team that asked (the API's 404)."""

    def __init__(self, alarm_id: str) -> None:
        self.alarm_id = alarm_id
        super().__init__(f"no alarm {alarm_id!r}")

    def __str__(self) -> str:  # KeyError would print the repr of its argument
        return f"no alarm {self.alarm_id!r}"


class AlarmStateError(AnjuError):
    """The alarm exists but cannot take this step (already acknowledged, or closed): a 409."""

    def __init__(self, alarm_id: str, state: str, step: str) -> None:
        self.alarm_id = alarm_id
        self.state = state
        super().__init__(f"alarm {alarm_id!r} is {state}: cannot be {step}")


class AlarmStoreError(AnjuError):
    """The alarm store failed (disk full, corrupt file, locked): sqlite3 errors mapped here."""


class DeliveryRefused(DeliveryError):
    """The receiver understood the request and refused it (a 4xx other than 408/429, a chat
    robot's bad signature or unknown key): retried like any failure (CONTRACT §4), but
    slower, since people fix these (a rotated secret, a bad deploy), not time."""

    def __init__(self, detail: str, *, status: int | None = None,
                 retry_after_s: float | None = None) -> None:
        super().__init__(detail, retryable=True, status=status, retry_after_s=retry_after_s)
