"""What the rest of anju sees of a site (CONTRACT.md §3): estates and their buildings,
teams with their jurisdictions, and the devices as columns (:class:`DeviceTable`), each
device with a dense integer index; the rule engine keeps its per-device state in arrays
indexed by it. :func:`anju.devices.registry.load_site` builds a :class:`Site`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from anju.devices.supervision import Supervision
from anju.devices.targets import RobotTarget
from anju.kinds import KIND_CODES, KINDS

__all__ = [
    "ID_RE",
    "LEVELS",
    "PIPELINE_USER",
    "Building",
    "DeviceTable",
    "Estate",
    "Jurisdiction",
    "Level",
    "Role",
    "Site",
    "Team",
]

ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: The pipeline's broker username (CONTRACT §7); no device or gateway may take it.
PIPELINE_USER = "anju-pipeline"
Role = Literal["property", "fire", "supervisor"]
#: The supervision chain, broadest first: city (the site) → district (县区) → street
#: (街道) → community (社区); a team listing estates only is at level "estate".
LEVELS = ("city", "district", "street", "community")
Level = Literal["city", "district", "street", "community", "estate"]


@dataclass(frozen=True, slots=True)
class Building:
    index: int  # dense, across the whole site
    id: str
    estate: str
    floors: int
    floor_height_m: float
    basements: int = 0


@dataclass(frozen=True, slots=True)
class Estate:
    index: int  # position in site.yaml: the partition key
    id: str
    name: str
    district: str
    street: str
    buildings: dict[str, Building]
    community: str = ""

    def at(self, level: str) -> str:
        """The estate's name at one level of the chain ("" where site.yaml names none)."""
        return {"district": self.district, "street": self.street,
                "community": self.community}.get(level, "")


@dataclass(frozen=True, slots=True)
class Jurisdiction:
    """What a supervisor team oversees: names per level, each level a set (any of them),
    levels narrowing each other. ``city`` True is the whole site."""

    city: bool = False
    district: tuple[str, ...] = ()
    street: tuple[str, ...] = ()
    community: tuple[str, ...] = ()

    @property
    def level(self) -> Level:
        """The narrowest level named: the team's place in the chain."""
        for lv in ("community", "street", "district"):
            if getattr(self, lv):
                return lv
        return "city"

    def covers(self, estate: Estate) -> bool:
        """Whether an estate lies inside this jurisdiction."""
        return all(not names or estate.at(lv) in names
                   for lv, names in (("district", self.district), ("street", self.street),
                                     ("community", self.community)))

    def as_dict(self) -> dict[str, Any]:
        """The jurisdiction as site.yaml says it (levels named only)."""
        out: dict[str, Any] = {"city": True} if self.city else {}
        out.update({lv: list(getattr(self, lv)) for lv in ("district", "street", "community")
                    if getattr(self, lv)})
        return out


@dataclass(frozen=True, slots=True)
class Team:
    id: str
    role: Role
    estates: tuple[str, ...]
    webhook: str | None
    secret_env: str | None
    token_env: str | None
    targets: tuple[RobotTarget, ...] = ()
    # Set for teams scoped by jurisdiction; ``estates`` then holds the estates it resolves
    # to (with any listed ones), so every estate check keeps working unchanged.
    jurisdiction: Jurisdiction | None = None

    @property
    def level(self) -> Level:
        """Where the team sits in the supervision chain: its jurisdiction's level, "city"
        for ``estates: ["*"]``, else "estate"."""
        if self.jurisdiction is not None:
            return self.jurisdiction.level
        return "city" if "*" in self.estates else "estate"

    def covers(self, estate: str) -> bool:
        return "*" in self.estates or estate in self.estates

    def secret(self) -> bytes | None:
        """The HMAC key from the environment, or None when unset."""
        value = os.environ.get(self.secret_env) if self.secret_env else None
        return value.encode() if value else None

    def token(self) -> str | None:
        return (os.environ.get(self.token_env) or None) if self.token_env else None


@dataclass
class DeviceTable:
    """Devices as columns, indexed by a dense integer (their row in devices.csv)."""

    ids: list[str]
    index: dict[str, int]
    kind: np.ndarray  # int8 kind code (KIND_CODES)
    estate: np.ndarray  # int32 estate index
    building: np.ndarray  # int32 building index (site-wide)
    floor: np.ndarray  # float64, NaN when unknown
    zone: list[str | None]
    params: dict[str, np.ndarray]  # param name → float64 per device, NaN when not set
    lines: list[int] = field(default_factory=list)  # devices.csv line of each device

    def __len__(self) -> int:
        return len(self.ids)

    def of_kind(self, kind: str) -> np.ndarray:
        """Indices of the devices of one kind."""
        return np.flatnonzero(self.kind == KIND_CODES[kind])

    def param(self, name: str) -> np.ndarray:
        return self.params.get(name, np.full(len(self.ids), np.nan))


@dataclass
class Site:
    root: Path
    estates: dict[str, Estate]
    buildings: list[Building]
    teams: list[Team]
    unacknowledged_after_s: float
    devices: DeviceTable
    gateways: dict[str, tuple[str, str]]  # gateway → (estate, building)
    rule_overrides: dict[str, dict[str, Any]]
    load_s: float = 0.0
    rule_override_lines: dict[str, int] = field(default_factory=dict)  # site.yaml lines
    report_settings: dict[str, Any] = field(default_factory=dict)  # site.yaml report:
    supervision: Supervision | None = None  # None: built from unacknowledged_after_s

    def policy(self) -> Supervision:
        """Escalation chains, inhibitions and maintenance settings (devices/supervision.py)."""
        if self.supervision is None:
            self.supervision = Supervision.build(self.unacknowledged_after_s, {}, None)
        return self.supervision

    def building(self, estate: str, building: str) -> Building | None:
        e = self.estates.get(estate)
        return e.buildings.get(building) if e else None

    def teams_for(self, estate: str, roles: tuple[str, ...] | list[str]) -> list[Team]:
        return [t for t in self.teams if t.role in roles and t.covers(estate)]

    def supervisors_at(self, estate: str, level: str) -> list[Team]:
        """The supervisor teams at one level of the chain (city, district, street,
        community) that oversee an estate."""
        return [t for t in self.teams
                if t.role == "supervisor" and t.level == level and t.covers(estate)]

    def estate_ids(self) -> list[str]:
        return list(self.estates)

    def summary(self) -> dict[str, Any]:
        codes = np.bincount(self.devices.kind.astype(np.int64), minlength=len(KINDS))
        return {
            "estates": len(self.estates),
            "buildings": len(self.buildings),
            "devices": len(self.devices),
            "by_kind": {k: int(codes[c]) for k, c in KIND_CODES.items()},
            "load_s": round(self.load_s, 4),
        }
