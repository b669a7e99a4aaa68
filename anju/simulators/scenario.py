"""Scenarios: incidents at given times and places, each with the alarms it must produce.

A scenario is YAML validated by pydantic (the bundled ones are in
``anju/simulators/scenarios/``)::

    name: demo
    duration_s: 240
    site: {estates: 2, seed: 7}          # the city it was written for
    incidents:
      - id: fire-b03-f12
        type: fire                       # see INCIDENT_TYPES
        at: 30                           # seconds of data time from the start
        devices: [e001-b03-f12-a, e001-b03-f12-b]
        params: {spread_s: 40}
        expect:                          # the ground truth
          - {rule: smoke.alarm, device: e001-b03-f12-a, within: [10, 30]}
          - {rule: smoke.fire_confirmed, group: e001/b03/12, within: [50, 75]}

``within`` is the window, in seconds after the incident's ``at``, in which the alarm's
``ts`` (data time) must fall; ``optional`` expectations may or may not happen (neither
missed nor false when they do not / do). ``bind`` checks a scenario against a site.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from anju.devices.registry import Site
from anju.errors import ConfigError
from anju.kinds import KINDS
from anju.simulators.fleets import INCIDENT_TYPES, BoundIncident

__all__ = [
    "BUILDING_RE",
    "GROUP_RE",
    "AckAction",
    "BoundScenario",
    "EscalationExpect",
    "Expect",
    "Incident",
    "Scenario",
    "SiteRecipe",
    "bind",
    "bundled_scenarios",
    "load_scenario",
]

_ID = r"^[A-Za-z0-9_.-]{1,64}$"
GROUP_RE = re.compile(r"^([A-Za-z0-9_-]{1,64})/([A-Za-z0-9_-]{1,64})/(-?\d+)$")
BUILDING_RE = re.compile(r"^([A-Za-z0-9_-]{1,64})/([A-Za-z0-9_-]{1,64})$")


class EscalationExpect(BaseModel):
    """One ``escalated`` event an alarm must get: its level, when (seconds after the
    alarm's raise) and, optionally, teams that must receive it."""

    model_config = ConfigDict(extra="forbid")
    level: int = Field(ge=1)
    after: tuple[float, float] = Field(description="seconds after the raise's ts")
    to: list[str] = []


class AckAction(BaseModel):
    """An operator's answer to the alarm: team ``by`` acknowledges it through the API
    ``after`` seconds of data time after its raise (the demo does it; a replay has no API)."""

    model_config = ConfigDict(extra="forbid")
    after: float = Field(ge=0, description="seconds after the raise's ts")
    by: str = Field(pattern=_ID, description="the team that acknowledges")


class Expect(BaseModel):
    """One alarm an incident must raise: rule, subject and a window of data time.

    Supervision (issue 18): ``delivered: false`` — recorded (held by a maintenance window
    or an inhibition) but never delivered; ``to`` / ``not_to`` — teams that must / must not
    be told of the alarm; ``escalated`` — exactly these escalation levels, each in its
    window. ``building`` (estate/building) matches any device of the building.
    ``acknowledged`` — a team acknowledges the alarm (an action of the run), and the
    ``acknowledged`` event must then be seen.
    """

    model_config = ConfigDict(extra="forbid")
    rule: str = Field(pattern=r"^[a-z_]+\.[a-z_]+$")
    device: str | None = None
    group: str | None = Field(None, description="estate/building/floor, for floor alarms")
    building: str | None = Field(None, description="estate/building: any device in it")
    within: tuple[float, float] = Field(description="seconds after the incident's `at`")
    cleared: tuple[float, float] | None = Field(
        None, description="seconds after `at` in which the alarm must clear, when it must")
    optional: bool = False
    floor: int | None = Field(None, description="the floor the alarm must name (cameras)")
    delivered: bool = Field(True, description="false: recorded, never delivered (held)")
    to: list[str] = Field([], description="teams that must be told of the alarm")
    not_to: list[str] = Field([], description="teams that must never be told of it")
    escalated: list[EscalationExpect] | None = Field(
        None, description="exactly these escalation levels (none: not checked)")
    acknowledged: AckAction | None = Field(
        None, description="a team acknowledges it through the API, after its raise")

    @model_validator(mode="after")
    def _subject(self) -> Expect:
        if sum(x is not None for x in (self.device, self.group, self.building)) != 1:
            raise ValueError("give exactly one of device, group or building")
        if self.building is not None and not BUILDING_RE.match(self.building):
            raise ValueError(f"building {self.building!r} is not estate/building")
        if not self.delivered and (self.to or self.escalated or self.acknowledged):
            raise ValueError("an alarm that is not delivered tells nobody (to, escalated, "
                             "acknowledged)")
        if self.escalated is not None:
            levels = [e.level for e in self.escalated]
            if len(set(levels)) != len(levels):
                raise ValueError(f"escalated levels {levels} repeat")
        if self.group is not None and not GROUP_RE.match(self.group):
            raise ValueError(f"group {self.group!r} is not estate/building/floor")
        lo, hi = self.within
        if not 0 <= lo <= hi:
            raise ValueError(f"within [{lo}, {hi}] must satisfy 0 ≤ lo ≤ hi")
        if self.cleared is not None and not hi <= self.cleared[0] <= self.cleared[1]:
            raise ValueError(f"cleared {list(self.cleared)} must come after within {[lo, hi]}")
        return self


class Incident(BaseModel):
    """Something that happens to one or more devices at ``at`` seconds."""

    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID)
    type: str
    at: float = Field(ge=0)
    device: str | None = None
    devices: list[str] | None = None
    building: str | None = Field(None, description="estate/building (gateway_silent)")
    floor: int | None = Field(None, description="falling_object: the floor it is thrown from")
    params: dict[str, Any] = {}
    expect: list[Expect] = Field(min_length=1)
    note: str = ""

    @field_validator("type")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in INCIDENT_TYPES:
            raise ValueError(f"unknown incident type {v!r} (known: {', '.join(INCIDENT_TYPES)})")
        return v

    @model_validator(mode="after")
    def _check(self) -> Incident:
        spec = INCIDENT_TYPES[self.type]
        if spec.building:
            if self.device is not None or self.devices is not None or self.building is None \
                    or not BUILDING_RE.match(self.building):
                raise ValueError(f"{self.type} names a building: estate/building")
        elif (self.device is None) == (self.devices is None) or self.building is not None:
            raise ValueError("give exactly one of device or devices")
        n = len(self.device_ids)
        if not spec.building and not spec.devices[0] <= n <= spec.devices[1]:
            raise ValueError(f"{self.type} involves {spec.devices[0]}–{spec.devices[1]} devices")
        if spec.needs_floor and self.floor is None:
            raise ValueError(f"{self.type} needs `floor`")
        spec.params.model_validate(self.params)
        return self

    @property
    def device_ids(self) -> list[str]:
        return [self.device] if self.device is not None else list(self.devices or [])


class SiteRecipe(BaseModel):
    """The generated city a scenario was written for (``anju simulate site``), and what
    supervision adds to it (issue 18): ``places`` moves estates to other streets and
    communities (``{e002: {street: 建设街道, community: 和平社区}}``), ``teams`` adds teams
    (supervisors by ``jurisdiction``; webhook and secrets are filled in), ``city``,
    ``escalation`` and ``supervision`` are site.yaml's own blocks."""

    model_config = ConfigDict(extra="forbid")
    estates: int = Field(ge=1)
    seed: int = 0
    city: str | None = None
    places: dict[str, dict[Literal["district", "street", "community"], str]] = {}
    teams: list[dict[str, Any]] = []
    escalation: dict[str, Any] | None = None
    supervision: dict[str, Any] | None = None


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    description: str = ""
    duration_s: float = Field(gt=0, le=30 * 86400)
    seed: int = Field(0, description="seed of the traffic")
    start: datetime | None = Field(None, description="data time of a recording's start")
    site: SiteRecipe | None = None
    incidents: list[Incident] = []

    @model_validator(mode="after")
    def _unique(self) -> Scenario:
        seen: set[str] = set()
        for inc in self.incidents:
            if inc.id in seen:
                raise ValueError(f"duplicate incident id {inc.id!r}")
            seen.add(inc.id)
            if inc.at >= self.duration_s:
                raise ValueError(f"incident {inc.id!r} at {inc.at} s is after the end")
        return self

    @property
    def start_ms(self) -> int | None:
        return None if self.start is None else int(self.start.timestamp() * 1000)


def bundled_scenarios() -> dict[str, Path]:
    """Name → path of the scenarios shipped with anju."""
    root = resources.files("anju.simulators") / "scenarios"
    return {Path(str(p)).stem: Path(str(p)) for p in root.iterdir()
            if str(p).endswith((".yaml", ".yml"))}


def load_scenario(ref: str | Path) -> Scenario:
    """A scenario from a file, or a bundled one by name (``demo``); raises ConfigError."""
    path = Path(ref)
    if not path.exists():
        bundled = bundled_scenarios()
        if str(ref) in bundled:
            path = bundled[str(ref)]
        else:
            raise ConfigError(f"scenario {ref}: no such file, and not one of the bundled "
                              f"scenarios ({', '.join(sorted(bundled))})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(f"scenario {path}: {exc}") from None
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f"scenario {path}: {where}: {err['msg']}") from None


@dataclass(frozen=True)
class BoundScenario:
    """A scenario whose places were found in a site."""

    scenario: Scenario
    incidents: list[BoundIncident]
    quiet: frozenset[str] = frozenset()  # devices behind a silent gateway

    @property
    def duration_ms(self) -> int:
        return int(self.scenario.duration_s * 1000)

    def silenced(self) -> set[str]:
        """Ids of the devices a ``silent`` incident mutes."""
        return {d for inc in self.scenario.incidents if inc.type == "silent"
                for d in inc.device_ids} | set(self.quiet)


def bind(scenario: Scenario, site: Site) -> BoundScenario:
    """Resolves the scenario's devices in ``site``; ConfigError names what does not fit."""
    devs = site.devices
    kind_names = list(KINDS)
    bound = []
    busy: dict[int, list[tuple[float, float, str]]] = {}
    quiet: set[str] = set()
    for inc in scenario.incidents:
        spec = INCIDENT_TYPES[inc.type]
        where = f"scenario {scenario.name!r} incident {inc.id!r}"
        idx = []
        if inc.building is not None:
            estate, _, bid = inc.building.partition("/")
            b = site.building(estate, bid)
            if b is None:
                raise ConfigError(f"{where}: building {inc.building!r} is not in the site "
                                  f"{site.root}")
            idx = np.flatnonzero(devs.building == b.index).tolist()
            if not idx:
                raise ConfigError(f"{where}: building {inc.building!r} has no devices")
            if inc.type == "gateway_silent":
                quiet.update(devs.ids[i] for i in idx)
        for dev in inc.device_ids:
            i = devs.index.get(dev)
            if i is None:
                raise ConfigError(f"{where}: device {dev!r} is not in the site {site.root}")
            kind = kind_names[int(devs.kind[i])]
            if spec.kind != "*" and kind != spec.kind:
                raise ConfigError(f"{where}: {inc.type} happens to a {spec.kind}, "
                                  f"{dev!r} is a {kind}")
            idx.append(i)
        if inc.at < spec.min_at_s:
            raise ConfigError(f"{where}: a {inc.type} needs {spec.min_at_s:g} s of run before "
                              f"it to set the scene (at ≥ {spec.min_at_s:g})")
        b = site.buildings[int(devs.building[idx[0]])]
        if inc.floor is not None and not 1 <= inc.floor <= b.floors:
            raise ConfigError(f"{where}: floor {inc.floor} is not in building {b.id} "
                              f"(1…{b.floors})")
        if inc.type == "fire":
            places = {(int(devs.building[i]), float(devs.floor[i])) for i in idx}
            if len(places) != 1:
                raise ConfigError(f"{where}: a fire's detectors are on one floor of one building")
        for ex in inc.expect:
            if ex.device is not None and ex.device not in devs.index \
                    and ex.device not in site.gateways:
                raise ConfigError(f"{where}: expected device {ex.device!r} is not in the site")
            if ex.building is not None and site.building(*ex.building.split("/")) is None:
                raise ConfigError(f"{where}: expected building {ex.building!r} is not in the "
                                  "site")
            for team in [*ex.to, *ex.not_to, *(t for e in ex.escalated or () for t in e.to)]:
                if not any(t.id == team for t in site.teams):
                    raise ConfigError(f"{where}: expected team {team!r} is not in the site")
        params = spec.params.model_validate(inc.params)
        if inc.type == "maintenance" and getattr(params, "overdue", False) \
                and kind_names[int(devs.kind[idx[0]])] != "elevator":
            raise ConfigError(f"{where}: only an elevator's maintenance can be overdue")
        if spec.kind == "elevator":
            # One scripted episode at a time per car: they take the car over.
            span = (inc.at - 120.0, inc.at + float(getattr(params, "duration_s", 0) or 0) + 60)
            for lo, hi, other in busy.get(idx[0], []):
                if span[0] < hi and lo < span[1]:
                    raise ConfigError(f"{where}: overlaps incident {other!r} on the same car; "
                                      f"space them further apart")
            busy.setdefault(idx[0], []).append((*span, inc.id))
        bound.append(BoundIncident(inc.id, inc.type, spec.kind if spec.kind != "*" else
                                   kind_names[int(devs.kind[idx[0]])],
                                   round(inc.at * 1000), tuple(idx), params, inc.floor))
    out = BoundScenario(scenario, bound, frozenset(quiet))
    _check_tracks(out, site)
    return out


def _check_tracks(bs: BoundScenario, site: Site) -> None:
    """A falling object must be in view of its camera: fail at bind time, not mid-run."""
    from anju.kinds.camera.simulator import camera_track
    from anju.simulators.fleet import FleetContext

    ctx = FleetContext(site, bs.scenario.seed, 0, bs.duration_ms)
    for inc in bs.incidents:
        if inc.type == "falling_object":
            try:
                camera_track(ctx, inc)
            except ValueError as exc:
                raise ConfigError(f"scenario {bs.scenario.name!r} incident {inc.id!r}: "
                                  f"{exc}") from None
