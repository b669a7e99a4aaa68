"""``site.yaml`` read and validated by pydantic: a problem is a :class:`RegistryError`
naming the file, the line and the field (the YAML keeps its lines, anju.devices.yaml_lines).
What the models hold is checked against the rest of the site by anju.devices.registry."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from anju.devices.site import Role
from anju.devices.supervision import ChainModel, SupervisionModel
from anju.devices.targets import RobotTargetModel
from anju.devices.textfile import read_text
from anju.devices.yaml_lines import LineLoader, line_of, strip_lines
from anju.errors import RegistryError

__all__ = ["JurisdictionModel", "SiteModel", "load_site_yaml", "override_lines"]

_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class _BuildingModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID_PATTERN)
    floors: int = Field(ge=1, le=300)
    floor_height_m: float = Field(3.0, gt=1.5, le=10)
    basements: int = Field(0, ge=0, le=20)
    name: str | None = None


class _EstateModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID_PATTERN)
    name: str = ""
    district: str = ""
    street: str = ""
    community: str = ""
    buildings: list[_BuildingModel] = Field(min_length=1)


class JurisdictionModel(BaseModel):
    """``jurisdiction:`` of a team: each level a name or a list of names (any of them);
    several levels narrow each other (``{district: 西城区, street: 东街街道}``);
    ``city: true`` (or the city's name) is the whole site."""

    model_config = ConfigDict(extra="forbid")
    city: bool | str | None = None
    district: str | list[str] | None = None
    street: str | list[str] | None = None
    community: str | list[str] | None = None


class _TeamModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str = Field(pattern=_ID_PATTERN)
    role: Role
    estates: list[str] = []
    jurisdiction: JurisdictionModel | None = None
    webhook: str | None = None
    secret_env: str | None = None
    token_env: str | None = None
    targets: list[RobotTargetModel] = []  # chat robots beside the webhook (devices/targets.py)

    @field_validator("webhook")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"^https?://[^/\s]+", v):
            raise ValueError("webhook must be an http(s) URL")
        return v


class _EscalationModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    unacknowledged_after_s: float = Field(300, gt=0)
    chains: dict[str, ChainModel] = {}  # severity or rule id → chain (devices/supervision.py)

    @field_validator("chains")
    @classmethod
    def _chain_keys(cls, v: dict[str, ChainModel]) -> dict[str, ChainModel]:
        for key in v:
            if key not in ("critical", "major", "minor", "warning") and "." not in key:
                raise ValueError(f"chain {key!r}: a severity (critical, major, minor, "
                                 "warning) or a rule id (kind.name)")
        return v


class SiteModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str = ""  # the site's name as the top of the supervision chain (市住建局)
    estates: list[_EstateModel] = Field(min_length=1)
    teams: list[_TeamModel] = []
    escalation: _EscalationModel = Field(
        default_factory=lambda: _EscalationModel.model_validate({}))
    rules: dict[str, dict[str, Any]] = {}  # per-site rule overrides: {rule_id: {param: value}}
    report: dict[str, Any] = {}  # accountability report settings (anju/report/scoring.py)
    supervision: SupervisionModel | None = None


def load_site_yaml(path: Path) -> tuple[SiteModel, Any]:
    name = str(path)
    text = read_text(path)
    try:
        raw = yaml.load(text, Loader=LineLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RegistryError(name, mark.line + 1 if mark else None, None,
                            f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise RegistryError(name, 1, None, "expected a mapping with 'estates'")
    try:
        model = SiteModel.model_validate(strip_lines(raw))
    except ValidationError as exc:
        # An unknown key first: "flors" is the cause of "floors is missing".
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        loc = tuple(err["loc"])
        raise RegistryError(name, line_of(raw, loc), ".".join(map(str, loc)) or None,
                            err["msg"]) from None
    return model, raw


def override_lines(raw: Any) -> dict[str, int]:
    """The site.yaml line of each rule override, for error messages."""
    if not isinstance(raw, dict):
        return {}
    return {k: v["__line__"] for k, v in raw.items()
            if k != "__line__" and isinstance(v, dict) and "__line__" in v}
