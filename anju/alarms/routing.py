"""Routing: which teams an alarm, and its escalation, go to (CONTRACT.md §3 roles)."""

from __future__ import annotations

from anju.devices.registry import Site, Team

__all__ = ["escalation_targets", "route"]


def route(site: Site, estate: str, roles: tuple[str, ...] | list[str]) -> list[Team]:
    """The teams that receive a raised alarm: those of the rule's roles covering the estate."""
    return site.teams_for(estate, roles)


def escalation_targets(site: Site, estate: str, severity: str) -> list[Team]:
    """The teams an unacknowledged alarm is escalated to.

    CONTRACT.md §3: the estate's supervisor teams (the street or district housing office);
    where the estate has none, its fire team, and then for critical alarms only. An empty
    list means nobody to escalate to: no ``escalated`` event is produced.
    """
    supervisors = site.teams_for(estate, ("supervisor",))
    if supervisors:
        return supervisors
    if severity == "critical":
        return site.teams_for(estate, ("fire",))
    return []
