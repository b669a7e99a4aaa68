"""Turning an engine decision into a :class:`Transition`: place, subject and message.

Both engines decide *what* happens (rule, subject, event, ts, started_at, value,
details); this module, shared by both, says it in words a property manager can act on.
"""

from __future__ import annotations

import math
from typing import Any

from anju.devices.registry import Site
from anju.rules.model import CompiledRule
from anju.rules.transition import Transition

__all__ = ["Renderer"]


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, float):
        return f"{v:.0f}" if v.is_integer() and abs(v) < 1e6 else f"{v:.3g}"
    return str(v)


class _Safe(dict[str, str]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


class Renderer:
    """Builds transitions with their place and message for one site."""

    def __init__(self, site: Site) -> None:
        self.site = site
        d = site.devices
        self._floor = d.floor.tolist()
        self._bld = [site.buildings[b] for b in d.building.tolist()]
        self._names = {e.id: e.name or e.id for e in site.estates.values()}

    def place(self, estate: str, building: str, floor: int | None, zone: str | None
              ) -> tuple[str, str]:
        zh = f"{self._names.get(estate, estate)} {building}栋"
        en = f"building {building} of {self._names.get(estate, estate)}"
        if floor is not None:
            zh += f"{floor}层"
            en = f"floor {floor} of {en}"
        if zone:
            zh += f" {zone}"
            en += f" ({zone})"
        return zh, en

    def device(self, rule: CompiledRule, dev: int, event: str, ts: int, started: int,
               value: float | None, details: dict[str, Any] | None = None,
               floor_override: int | None = None) -> Transition:
        site = self.site
        b = self._bld[dev]
        f = self._floor[dev]
        floor = floor_override if floor_override is not None else (
            None if math.isnan(f) else int(f))
        zone = site.devices.zone[dev]
        dev_id = site.devices.ids[dev]
        details = details or {}
        value = None if value is None or math.isnan(value) else float(value)
        return self._make(rule, event, dev_id, dev_id, b.estate, b.id, floor, zone, ts, started,
                          value, details)

    def group(self, rule: CompiledRule, estate: str, building: str, floor: int, event: str,
              ts: int, started: int, value: float, details: dict[str, Any]) -> Transition:
        return self._make(rule, event, f"{estate}/{building}/{floor}", None, estate, building,
                          floor, None, ts, started, value, details)

    def _make(self, rule: CompiledRule, event: str, subject: str, device: str | None,
              estate: str, building: str, floor: int | None, zone: str | None, ts: int,
              started: int, value: float | None, details: dict[str, Any]) -> Transition:
        zh, en = self.place(estate, building, floor, zone)
        ctx = _Safe({k: _fmt(v) for k, v in details.items()})
        ctx.update(place_zh=zh, place_en=en, value=_fmt(value), device=device or "",
                   estate=estate, building=building, floor=_fmt(floor), zone=zone or "")
        ctx.update({k: _fmt(v) for k, v in rule.params.items() if k not in ctx})
        message = rule.message.format_map(ctx) if rule.message else f"{rule.id} {event} {en}"
        return Transition(
            rule=rule.id, event=event,  # type: ignore[arg-type]
            kind=rule.kind if rule.kind != "*" else self._kind_of(device),
            severity=rule.severity, roles=rule.roles, subject=subject, device=device,
            estate=estate, building=building, floor=floor, zone=zone, ts=int(ts),
            started_at=int(started), value=value, message=message, details=details,
            is_event=rule.type in ("event", "schedule"),  # never cleared by data
        )

    def _kind_of(self, device: str | None) -> str:
        from anju.kinds import KINDS

        if device is None:
            return "*"
        return list(KINDS)[int(self.site.devices.kind[self.site.devices.index[device]])]
