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
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from anju.devices.registry import Site
from anju.errors import ConfigError
from anju.kinds import KINDS
from anju.simulators.fleets import INCIDENT_TYPES, BoundIncident

__all__ = [
    "GROUP_RE",
    "BoundScenario",
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


class Expect(BaseModel):
    """One alarm an incident must raise: rule, subject and a window of data time."""

    model_config = ConfigDict(extra="forbid")
    rule: str = Field(pattern=r"^[a-z_]+\.[a-z_]+$")
    device: str | None = None
    group: str | None = Field(None, description="estate/building/floor, for floor alarms")
    within: tuple[float, float] = Field(description="seconds after the incident's `at`")
    cleared: tuple[float, float] | None = Field(
        None, description="seconds after `at` in which the alarm must clear, when it must")
    optional: bool = False
    floor: int | None = Field(None, description="the floor the alarm must name (cameras)")

    @model_validator(mode="after")
    def _subject(self) -> Expect:
        if (self.device is None) == (self.group is None):
            raise ValueError("give exactly one of device or group")
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
        if (self.device is None) == (self.devices is None):
            raise ValueError("give exactly one of device or devices")
        spec = INCIDENT_TYPES[self.type]
        n = len(self.device_ids)
        if not spec.devices[0] <= n <= spec.devices[1]:
            raise ValueError(f"{self.type} involves {spec.devices[0]}–{spec.devices[1]} devices")
        if spec.needs_floor and self.floor is None:
            raise ValueError(f"{self.type} needs `floor`")
        spec.params.model_validate(self.params)
        return self

    @property
    def device_ids(self) -> list[str]:
        return [self.device] if self.device is not None else list(self.devices or [])


class SiteRecipe(BaseModel):
    """The generated city a scenario was written for (``anju simulate site``)."""

    model_config = ConfigDict(extra="forbid")
    estates: int = Field(ge=1)
    seed: int = 0


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

    @property
    def duration_ms(self) -> int:
        return int(self.scenario.duration_s * 1000)

    def silenced(self) -> set[str]:
        """Ids of the devices a ``silent`` incident mutes."""
        return {d for inc in self.scenario.incidents if inc.type == "silent"
                for d in inc.device_ids}


def bind(scenario: Scenario, site: Site) -> BoundScenario:
    """Resolves the scenario's devices in ``site``; ConfigError names what does not fit."""
    devs = site.devices
    kind_names = list(KINDS)
    bound = []
    busy: dict[int, list[tuple[float, float, str]]] = {}
    for inc in scenario.incidents:
        spec = INCIDENT_TYPES[inc.type]
        where = f"scenario {scenario.name!r} incident {inc.id!r}"
        idx = []
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
            if ex.device is not None and ex.device not in devs.index:
                raise ConfigError(f"{where}: expected device {ex.device!r} is not in the site")
        params = spec.params.model_validate(inc.params)
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
    out = BoundScenario(scenario, bound)
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
