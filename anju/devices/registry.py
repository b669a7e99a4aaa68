"""The site registry (CONTRACT.md §3): estates, buildings, teams and devices.

``site.yaml`` and ``devices.csv`` (and optionally ``gateways.csv``) are validated with
errors that name the file, the line and the field. Devices get a dense integer index; the
rule engine keeps its per-device state in arrays indexed by it.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from anju.devices.supervision import ChainModel, Supervision, SupervisionModel
from anju.devices.targets import RobotTarget, RobotTargetModel
from anju.errors import RegistryError
from anju.kinds import KIND_CODES, KINDS

__all__ = [
    "ID_RE",
    "LEVELS",
    "PIPELINE_USER",
    "Building",
    "DeviceTable",
    "Estate",
    "Jurisdiction",
    "Site",
    "Team",
    "load_site",
]

ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: The pipeline's broker username (CONTRACT §7); no device or gateway may take it.
PIPELINE_USER = "anju-pipeline"
_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Role = Literal["property", "fire", "supervisor"]
#: The supervision chain, broadest first: city (the site) → district (县区) → street
#: (街道) → community (社区); a team listing estates only is at level "estate".
LEVELS = ("city", "district", "street", "community")
Level = Literal["city", "district", "street", "community", "estate"]


# -- site.yaml, validated by pydantic ------------------------------------------------------
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


class _JurisdictionModel(BaseModel):
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
    jurisdiction: _JurisdictionModel | None = None
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


class _SiteModel(BaseModel):
    model_config = ConfigDict(extra="forbid")
    city: str = ""  # the site's name as the top of the supervision chain (市住建局)
    estates: list[_EstateModel] = Field(min_length=1)
    teams: list[_TeamModel] = []
    escalation: _EscalationModel = Field(
        default_factory=lambda: _EscalationModel.model_validate({}))
    rules: dict[str, dict[str, Any]] = {}  # per-site rule overrides: {rule_id: {param: value}}
    report: dict[str, Any] = {}  # accountability report settings (anju/report/scoring.py)
    supervision: SupervisionModel | None = None


# -- what the rest of anju sees -------------------------------------------------------------
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


# -- loading --------------------------------------------------------------------------------
# libyaml's parser when present: 10× faster on a city's site.yaml, and it keeps marks.
_SafeLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _LineLoader(_SafeLoader):  # type: ignore[valid-type,misc]
    """A SafeLoader that remembers where every key and list item is, for error messages,
    and refuses duplicate keys (YAML 1.2 §3.2.1.1 forbids them; PyYAML keeps the last)."""


class _Lines(list[Any]):
    """A YAML sequence that knows the line of each of its items."""

    lines: list[int]


_LINE, _KEYS = "__line__", "__keys__"  # the mapping's own line; {key: line}


def _construct_mapping(loader: _LineLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    keys: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in keys:
            raise yaml.constructor.ConstructorError(
                "while constructing a mapping", node.start_mark,
                f"duplicate key {key!r} (first on line {keys[key]})", key_node.start_mark)
        keys[key] = key_node.start_mark.line + 1
    mapping = dict(loader.construct_mapping(node, deep=True))
    mapping[_LINE] = node.start_mark.line + 1
    mapping[_KEYS] = keys
    return mapping


def _construct_sequence(loader: _LineLoader, node: yaml.SequenceNode) -> _Lines:
    seq = _Lines(loader.construct_sequence(node, deep=True))
    seq.lines = [item.start_mark.line + 1 for item in node.value]
    return seq


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG,
                            _construct_sequence)


def _strip_lines(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _strip_lines(v) for k, v in obj.items() if k not in (_LINE, _KEYS)}
    if isinstance(obj, list):
        return [_strip_lines(v) for v in obj]
    return obj


def _line_of(raw: Any, loc: tuple[int | str, ...]) -> int | None:
    """The line of the deepest key or item on the path ``loc`` (of a pydantic error)."""
    line: int | None = raw.get(_LINE) if isinstance(raw, dict) else None
    node = raw
    for part in loc:
        if isinstance(node, dict):
            line = node.get(_KEYS, {}).get(part, line)
        elif isinstance(node, _Lines) and isinstance(part, int) and 0 <= part < len(node):
            line = node.lines[part]
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            break
    return line


def _read_text(path: Path) -> str:
    """A file's UTF-8 text; a decoding error names the line of the bad byte."""
    name = str(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise RegistryError(name, None, None, "file not found") from None
    except OSError as exc:
        raise RegistryError(name, None, None, f"unreadable: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RegistryError(name, line, None,
                            f"not UTF-8 (byte {data[exc.start]:#04x}: {exc.reason})") from None


def _load_site_yaml(path: Path) -> tuple[_SiteModel, Any]:
    name = str(path)
    text = _read_text(path)
    try:
        raw = yaml.load(text, Loader=_LineLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise RegistryError(name, mark.line + 1 if mark else None, None,
                            f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(raw, dict):
        raise RegistryError(name, 1, None, "expected a mapping with 'estates'")
    try:
        model = _SiteModel.model_validate(_strip_lines(raw))
    except ValidationError as exc:
        # An unknown key first: "flors" is the cause of "floors is missing".
        errors = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")
        err = errors[0]
        loc = tuple(err["loc"])
        raise RegistryError(name, _line_of(raw, loc), ".".join(map(str, loc)) or None,
                            err["msg"]) from None
    return model, raw


def load_site(root: str | Path) -> Site:
    """Loads and validates a site directory; raises :class:`RegistryError` on any problem."""
    t0 = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise RegistryError(str(root), None, None, "not a directory")
    model, raw = _load_site_yaml(root / "site.yaml")
    yname = str(root / "site.yaml")

    estates: dict[str, Estate] = {}
    buildings: list[Building] = []
    for ei, em in enumerate(model.estates):
        if em.id in estates:
            raise RegistryError(yname, _line_of(raw, ("estates", ei, "id")), f"estates.{ei}.id",
                                f"duplicate estate id {em.id!r}")
        blds: dict[str, Building] = {}
        for bi, bm in enumerate(em.buildings):
            if bm.id in blds:
                line = _line_of(raw, ("estates", ei, "buildings", bi, "id"))
                raise RegistryError(yname, line, f"estates.{ei}.buildings.{bi}.id",
                                    f"duplicate building id {bm.id!r} in estate {em.id!r}")
            b = Building(len(buildings), bm.id, em.id, bm.floors, bm.floor_height_m, bm.basements)
            blds[bm.id] = b
            buildings.append(b)
        estates[em.id] = Estate(ei, em.id, em.name, em.district, em.street, blds,
                                em.community)

    teams: list[Team] = []
    seen_teams: set[str] = set()
    for ti, tm in enumerate(model.teams):
        if tm.id in seen_teams:
            raise RegistryError(yname, _line_of(raw, ("teams", ti, "id")), f"teams.{ti}.id",
                                f"duplicate team id {tm.id!r}")
        seen_teams.add(tm.id)
        for j, e in enumerate(tm.estates):
            if e != "*" and e not in estates:
                raise RegistryError(yname, _line_of(raw, ("teams", ti, "estates", j)),
                                    f"teams.{ti}.estates.{j}", f"unknown estate {e!r}")
        jur = _jurisdiction(tm.jurisdiction, estates, yname, raw, ti)
        if jur is None and not tm.estates:
            raise RegistryError(yname, _line_of(raw, ("teams", ti)), f"teams.{ti}.estates",
                                "a team needs estates or a jurisdiction")
        scope = tuple(tm.estates)
        if jur is not None:
            scope = ("*",) if jur.city and jur.level == "city" else tuple(dict.fromkeys(
                [*tm.estates, *(e.id for e in estates.values() if jur.covers(e))]))
        names = [t.name or t.type for t in tm.targets]
        for k, n in enumerate(names):
            if n in names[:k]:
                raise RegistryError(yname, _line_of(raw, ("teams", ti, "targets", k)),
                                    f"teams.{ti}.targets.{k}.name",
                                    f"duplicate target name {n!r} (give each a name)")
        teams.append(Team(tm.id, tm.role, scope, tm.webhook, tm.secret_env,
                          tm.token_env, tuple(RobotTarget.from_model(t) for t in tm.targets),
                          jur))

    devices = _load_devices(root / "devices.csv", estates)
    gateways = _load_gateways(root / "gateways.csv", estates, devices)
    site = Site(
        root=root,
        estates=estates,
        buildings=buildings,
        teams=teams,
        unacknowledged_after_s=model.escalation.unacknowledged_after_s,
        devices=devices,
        gateways=gateways,
        rule_overrides=model.rules,
        rule_override_lines=_override_lines(raw.get("rules")),
        report_settings=model.report,
        supervision=Supervision.build(model.escalation.unacknowledged_after_s,
                                      model.escalation.chains, model.supervision),
    )
    site.load_s = time.perf_counter() - t0
    return site


def _jurisdiction(jm: _JurisdictionModel | None, estates: dict[str, Estate], yname: str,
                  raw: Any, ti: int) -> Jurisdiction | None:
    """A team's ``jurisdiction:`` checked against the estates: each name must be some
    estate's, and the whole must cover at least one estate (a typo would silence a team)."""
    if jm is None:
        return None

    def names(v: str | list[str] | None) -> tuple[str, ...]:
        return () if v is None else (v,) if isinstance(v, str) else tuple(v)

    jur = Jurisdiction(city=jm.city not in (None, False), district=names(jm.district),
                       street=names(jm.street), community=names(jm.community))
    if not jur.city and jur.level == "city":
        raise RegistryError(yname, _line_of(raw, ("teams", ti, "jurisdiction")),
                            f"teams.{ti}.jurisdiction",
                            "name a city, district, street or community")
    for lv in ("district", "street", "community"):
        known = {e.at(lv) for e in estates.values()}
        for name in getattr(jur, lv):
            if name not in known:
                raise RegistryError(yname, _line_of(raw, ("teams", ti, "jurisdiction", lv)),
                                    f"teams.{ti}.jurisdiction.{lv}",
                                    f"no estate has {lv} {name!r}")
    if not any(jur.covers(e) for e in estates.values()):
        raise RegistryError(yname, _line_of(raw, ("teams", ti, "jurisdiction")),
                            f"teams.{ti}.jurisdiction", "covers no estate")
    return jur


def _override_lines(raw: Any) -> dict[str, int]:
    """The site.yaml line of each rule override, for error messages."""
    if not isinstance(raw, dict):
        return {}
    return {k: v["__line__"] for k, v in raw.items()
            if k != "__line__" and isinstance(v, dict) and "__line__" in v}


_MAX_ERRORS = 20  # rows reported at once; past that the file is likely not a registry

_DEVICE_COLUMNS = ("device", "kind", "estate", "building", "floor", "zone", "params")
_REQUIRED_COLUMNS = ("device", "kind", "estate", "building")


def _load_devices(path: Path, estates: dict[str, Estate]) -> DeviceTable:
    name = str(path)
    fh = io.StringIO(_read_text(path), newline="")
    ids: list[str] = []
    index: dict[str, int] = {}
    kinds: list[int] = []
    est: list[int] = []
    bld: list[int] = []
    floors: list[float] = []
    zones: list[str | None] = []
    lines: list[int] = []
    params: dict[str, list[tuple[int, float]]] = {}
    seen_params: dict[tuple[str, str], list[tuple[str, float]]] = {}
    kind_needs_params = {k: any(p.required for p in spec.params) for k, spec in KINDS.items()}
    errors: list[RegistryError] = []
    with fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise RegistryError(name, 1, None, "empty file: a header is required") from None
        except csv.Error as exc:
            raise RegistryError(name, 1, None, f"malformed CSV: {exc}") from None
        header = [h.strip().lstrip("\ufeff") for h in header]
        for j, col in enumerate(header):
            if col not in _DEVICE_COLUMNS:
                raise RegistryError(name, 1, col, f"unknown column (expected {_DEVICE_COLUMNS})")
            if col in header[:j]:
                raise RegistryError(name, 1, col, "column named twice in the header")
        for col in _REQUIRED_COLUMNS:
            if col not in header:
                raise RegistryError(name, 1, col, "required column missing from the header")
        pos = {c: header.index(c) for c in header}
        width = len(header)
        p_floor, p_zone, p_params = pos.get("floor"), pos.get("zone"), pos.get("params")
        line, next_line = 1, reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except UnicodeDecodeError as exc:
                raise RegistryError(name, line + 1, None, f"not UTF-8 ({exc.reason})") from None
            except csv.Error as exc:
                raise RegistryError(name, reader.line_num, None, f"malformed CSV: {exc}") from None
            # where the row starts (a quoted field may span lines; line_num is where it ends)
            line, next_line = next_line, reader.line_num + 1
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            try:
                if len(row) != width:
                    raise RegistryError(name, line, None,
                                        f"{len(row)} columns where the header has {width}")
                dev = row[pos["device"]]
                if not ID_RE.fullmatch(dev):
                    raise RegistryError(name, line, "device",
                                        f"{dev!r} is not an id of [A-Za-z0-9_-]{{1,64}}")
                if dev in index:
                    raise RegistryError(name, line, "device",
                                        f"duplicate device {dev!r} (first on line "
                                        f"{lines[index[dev]]})")
                if dev == PIPELINE_USER:
                    raise RegistryError(name, line, "device",
                                        f"{dev!r} is reserved for the pipeline's broker user")
                kind = row[pos["kind"]]
                if kind not in KINDS:
                    raise RegistryError(name, line, "kind",
                                        f"unknown kind {kind!r} (known: {', '.join(KINDS)})")
                e = estates.get(row[pos["estate"]])
                if e is None:
                    raise RegistryError(name, line, "estate",
                                        f"unknown estate {row[pos['estate']]!r} (not in site.yaml)")
                b = e.buildings.get(row[pos["building"]])
                if b is None:
                    raise RegistryError(name, line, "building",
                                        f"unknown building {row[pos['building']]!r} "
                                        f"in estate {e.id!r}")
                floor = math.nan
                if p_floor is not None and row[p_floor].strip():
                    try:
                        floor = int(row[p_floor])
                    except ValueError:
                        raise RegistryError(name, line, "floor",
                                            f"{row[p_floor]!r} is not an integer") from None
                    # room below for basement plant (a pump room at -1 with no basements
                    # declared) and above for the roof and the lift machine room
                    lo, hi = -b.basements - 10, b.floors + 2
                    if not lo <= floor <= hi:
                        raise RegistryError(name, line, "floor",
                                            f"floor {floor} outside building {b.id!r}: it has "
                                            f"floors 1…{b.floors}; {lo}…{hi} are accepted")
                i = len(ids)
                raw_params = row[p_params].strip() if p_params is not None else ""
                if raw_params:
                    # Devices of one model share their params text: validate each text once.
                    parsed = seen_params.get((kind, raw_params))
                    if parsed is None:
                        parsed = _parse_params(name, line, kind, raw_params)
                        seen_params[(kind, raw_params)] = parsed
                    for key, value in parsed:
                        params.setdefault(key, []).append((i, value))
                elif kind_needs_params[kind]:
                    _parse_params(name, line, kind, raw_params)  # raises: what is missing
                index[dev] = i
                ids.append(dev)
                kinds.append(KIND_CODES[kind])
                est.append(e.index)
                bld.append(b.index)
                floors.append(floor)
                zones.append((row[p_zone] or None) if p_zone is not None else None)
                lines.append(line)
            except RegistryError as exc:
                # keep going: an installer fixes every row of a big file in one pass
                errors.append(exc)
                if len(errors) >= _MAX_ERRORS:
                    break
    if errors:
        raise RegistryError.many(errors)
    n = len(ids)
    param_cols: dict[str, np.ndarray] = {}
    for pname, values in params.items():
        column = np.full(n, np.nan)
        if values:
            idx, vals = zip(*values, strict=True)
            column[list(idx)] = vals
        param_cols[pname] = column
    return DeviceTable(
        ids=ids,
        index=index,
        kind=np.asarray(kinds, dtype=np.int8),
        estate=np.asarray(est, dtype=np.int32),
        building=np.asarray(bld, dtype=np.int32),
        floor=np.asarray(floors, dtype=np.float64),
        zone=zones,
        params=param_cols,
        lines=lines,
    )


def _parse_params(name: str, line: int, kind: str, text: str) -> list[tuple[str, float]]:
    """The ``params`` cell of one device: a JSON object of the kind's declared params."""
    spec = KINDS[kind]
    given: dict[str, Any] = {}
    if text:
        try:
            given = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise RegistryError(name, line, "params", f"invalid JSON: {exc}") from None
        if not isinstance(given, dict):
            raise RegistryError(name, line, "params", "must be a JSON object")
    known = {p.name: p for p in spec.params}
    out: list[tuple[str, float]] = []
    for key, value in given.items():
        p = known.get(key)
        if p is None:
            raise RegistryError(name, line, f"params.{key}",
                                f"unknown parameter for kind {kind!r} "
                                f"(known: {', '.join(known) or 'none'})")
        ok = (type(value) is int) if p.type == "int" else (type(value) in (int, float))
        if not ok or not math.isfinite(value):
            raise RegistryError(name, line, f"params.{key}", f"{value!r} is not a finite {p.type}")
        out.append((key, float(value)))
    for p in spec.params:
        if p.required and p.name not in given:
            raise RegistryError(name, line, f"params.{p.name}",
                                f"required for kind {kind!r} but missing")
    return out


def _load_gateways(path: Path, estates: dict[str, Estate],
                   devices: DeviceTable) -> dict[str, tuple[str, str]]:
    """gateways.csv (optional): ``gateway,estate,building``; a gateway id is a broker
    username, so it may not be a device's id nor the pipeline's."""
    if not path.exists():
        return {}
    name = str(path)
    out: dict[str, tuple[str, str]] = {}
    seen: dict[str, int] = {}
    try:
        with io.StringIO(_read_text(path), newline="") as fh:
            reader = csv.reader(fh)
            header = [h.strip().lstrip("\ufeff") for h in next(reader, [])]
            if header != ["gateway", "estate", "building"]:
                raise RegistryError(name, 1, None, "header must be gateway,estate,building")
            next_line = reader.line_num + 1
            for row in reader:
                line, next_line = next_line, reader.line_num + 1
                if not row or (len(row) == 1 and not row[0].strip()):
                    continue
                if len(row) != 3:
                    raise RegistryError(name, line, None, f"{len(row)} columns, expected 3")
                gw, estate, building = row
                if not ID_RE.fullmatch(gw):
                    raise RegistryError(name, line, "gateway",
                                        f"{gw!r} is not an id of [A-Za-z0-9_-]{{1,64}}")
                if gw in seen:
                    raise RegistryError(name, line, "gateway",
                                        f"duplicate gateway {gw!r} (first on line {seen[gw]})")
                if gw in devices.index or gw == PIPELINE_USER:
                    raise RegistryError(name, line, "gateway",
                                        f"{gw!r} is already a device's or the pipeline's "
                                        "broker username")
                e = estates.get(estate)
                if e is None:
                    raise RegistryError(name, line, "estate",
                                        f"unknown estate {estate!r} (not in site.yaml)")
                if building not in e.buildings:
                    raise RegistryError(name, line, "building",
                                        f"unknown building {building!r} in estate {e.id!r}")
                seen[gw] = line
                out[gw] = (e.id, building)
    except csv.Error as exc:
        raise RegistryError(name, None, None, f"malformed CSV: {exc}") from None
    return out
