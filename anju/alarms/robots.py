"""Chat robot targets (DingTalk, WeCom, Feishu)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from anju.config import Settings
from anju.devices.registry import Team

if TYPE_CHECKING:
    from anju.alarms.delivery import Destination

__all__ = ["robot_destinations"]


def robot_destinations(team: Team, settings: Settings, timeout_s: float) -> list[Destination]:
    """The robot targets of a team."""
    return []
