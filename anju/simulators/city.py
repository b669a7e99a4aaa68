"""A generated city written as a site directory (CONTRACT.md §3).

Numbers follow Chinese residential practice: estates (小区) of 4–20 buildings; six-storey
walk-ups in older estates, 12–18 storey slabs and 19–33 storey towers in newer ones; at
least two lifts from 12 storeys (GB 50096-2011 §6.4.1, one of them a fire lift) and more in
towers; two networked smoke detectors on every landing (stair front room and lift lobby);
one secondary water-supply pump room (二次供水泵房) per estate; one falling-object camera
(高空抛物) facing each facade; an access-control door (门禁) at each building's unit door
and at the estate's gate; a camera over the estate's fire lane (消防车通道).

Ids are readable and unique city-wide, so a scenario can name its places:
``e001`` / ``b03`` / smoke ``e001-b03-f12-a`` (basement floors ``fB1``), lift
``e001-b03-L2``, camera ``e001-b03-cam-S``, pump room ``e001-pump``, gateway ``e001-b03-gw``,
unit door ``e001-b03-door``, estate gate ``e001-gate``, fire-lane camera ``e001-firelane``.
"""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

__all__ = [
    "FACADES",
    "BuildingPlan",
    "CityPlan",
    "EstatePlan",
    "camera_id",
    "door_id",
    "elevator_id",
    "firelane_id",
    "gate_id",
    "plan_city",
    "pump_id",
    "smoke_id",
    "write_site",
]

FACADES = ("N", "E", "S", "W")

_NAME_HEADS = (
    "锦绣", "阳光", "翠湖", "金桂", "碧水", "龙湖", "紫荆", "海棠", "枫林", "春华", "滨江",
    "望江", "丽景", "和园", "馨苑", "怡景", "东方", "天鹅", "花溪", "兰亭", "蓝堡", "银杏",
    "香樟", "明珠", "御景", "学府", "长乐", "永安", "新华", "朝阳",
)
_NAME_TAILS = ("花园", "小区", "家园", "苑", "府", "新村", "名邸", "雅居", "公寓", "华庭")
_DISTRICTS = ("红旗区", "青山区", "江岸区", "东湖区", "南湖区", "西城区", "高新区")
_STREETS = ("解放", "建设", "人民", "和平", "友谊", "胜利", "光明", "团结", "幸福", "文化")


def smoke_id(estate: str, building: str, floor: int, slot: str) -> str:
    """Id of a landing smoke detector; ``slot`` is ``a`` (stair) or ``b`` (lift lobby)."""
    f = f"B{-floor}" if floor < 0 else str(floor)
    return f"{estate}-{building}-f{f}-{slot}"


def elevator_id(estate: str, building: str, car: int) -> str:
    return f"{estate}-{building}-L{car}"


def camera_id(estate: str, building: str, facade: str) -> str:
    return f"{estate}-{building}-cam-{facade}"


def pump_id(estate: str) -> str:
    return f"{estate}-pump"


def door_id(estate: str, building: str) -> str:
    """Id of a building's unit-door access controller."""
    return f"{estate}-{building}-door"


def gate_id(estate: str) -> str:
    """Id of the access controller of the estate's main gate."""
    return f"{estate}-gate"


def firelane_id(estate: str) -> str:
    """Id of the camera over the estate's fire lane."""
    return f"{estate}-firelane"


#: A row of devices.csv: device, kind, estate, building, floor, zone, params.
DeviceRow = tuple[str, str, str, str, int | None, str, dict[str, Any] | None]


@dataclass(frozen=True)
class BuildingPlan:
    id: str
    floors: int
    floor_height_m: float
    basements: int
    elevators: int
    rated_speed_mps: float
    cameras: dict[str, dict[str, float]]  # facade → calibration params


@dataclass(frozen=True)
class EstatePlan:
    id: str
    name: str
    district: str
    street: str
    buildings: list[BuildingPlan]
    community: str = ""


@dataclass
class CityPlan:
    """What :func:`write_site` writes; :func:`plan_city` makes one from a seed."""

    estates: list[EstatePlan]
    teams: list[dict[str, Any]]
    seed: int
    devices: list[DeviceRow] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)  # more site.yaml (city, escalation…)


def _lifts_and_speed(rng: np.random.Generator, floors: int) -> tuple[int, float]:
    # Lift count and rated speed grow with height: GB 50096 asks for 2 lifts from 12
    # storeys; towers get 4–6 and faster cars so that a trip stays under a minute.
    if floors <= 11:
        return 2, 1.0
    if floors <= 18:
        return int(rng.integers(2, 4)), float(rng.choice([1.5, 1.75]))
    if floors <= 26:
        return int(rng.integers(3, 5)), float(rng.choice([1.75, 2.0]))
    return int(rng.integers(4, 7)), float(rng.choice([2.0, 2.5]))


def _calibration(rng: np.random.Generator, top_m: float) -> dict[str, float]:
    """A camera on a short pole across the road or courtyard, aimed at the whole facade.

    Its image is 2160 rows (4K), so cy = 1080. The tilt centres the facade when it fits
    the vertical field of view, and otherwise keeps the roof line just inside the top
    edge: objects thrown from high floors must be in view from the start.
    """
    mount = round(float(rng.uniform(1.0, 3.0)), 1)
    dist = round(float(rng.uniform(15.0, 40.0)), 1)
    focal = float(round(float(rng.uniform(1450.0, 1550.0))))
    cy = 1080.0
    a_top = math.atan((top_m - mount) / dist)
    a_bottom = math.atan(-mount / dist)
    top_aligned = a_top - math.atan((cy - 60.0) / focal)  # roof line at row 60
    tilt = max((a_top + a_bottom) / 2.0, top_aligned)
    return {"mount_height_m": mount, "distance_m": dist, "tilt_deg": round(math.degrees(tilt), 2),
            "focal_px": focal, "cy_px": cy}


def _estate_name(rng: np.random.Generator, used: set[str]) -> str:
    for _ in range(50):
        name = str(rng.choice(_NAME_HEADS)) + str(rng.choice(_NAME_TAILS))
        if name not in used:
            used.add(name)
            return name
    name = f"{rng.choice(_NAME_HEADS)}{len(used) + 1}期"
    used.add(name)
    return name


def plan_city(estates: int, seed: int, *, webhook_port: int = 9000,
              webhook_host: str = "127.0.0.1", estate_prefix: str = "e") -> CityPlan:
    """A city of ``estates`` estates, the same for the same seed.

    Teams: a property company per estate, one district fire team covering every estate,
    and a street housing office (supervisor) for the estates of about half the streets.
    Webhooks point at ``http://{webhook_host}:{webhook_port}/hooks/{team}``. Estate ids
    are ``{estate_prefix}001``…: another prefix keeps two cities apart on one broker.
    """
    if estates < 1:
        raise ValueError("a city needs at least one estate")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", estate_prefix):
        raise ValueError(f"estate prefix {estate_prefix!r} is not [A-Za-z0-9_-]{{1,40}}")
    rng = np.random.default_rng([seed, 0xC17])
    width = max(3, len(str(estates)))
    names: set[str] = set()
    n_streets = max(1, min(len(_STREETS), math.ceil(estates / 3)))
    streets = [_STREETS[i] + "街道" for i in range(n_streets)]
    plans: list[EstatePlan] = []
    for ei in range(estates):
        eid = f"{estate_prefix}{ei + 1:0{width}d}"
        era = rng.choice(["walkup", "slab", "tower"], p=[0.25, 0.4, 0.35])
        n_b = int(rng.integers(4, 21))
        buildings = []
        for bi in range(n_b):
            lo, hi = {"walkup": (6, 11), "slab": (11, 18), "tower": (18, 33)}[str(era)]
            floors = int(rng.integers(lo, hi + 1))
            fh = float(rng.choice([2.8, 2.9, 3.0]))
            basements = 0 if floors <= 11 else int(rng.integers(1, 3))
            lifts, speed = _lifts_and_speed(rng, floors)
            top_m = floors * fh + 1.5  # parapet
            cams = {f: _calibration(rng, top_m) for f in FACADES}
            buildings.append(BuildingPlan(f"b{bi + 1:02d}", floors, fh, basements, lifts, speed,
                                          cams))
        street = streets[ei % n_streets]
        plans.append(EstatePlan(eid, _estate_name(rng, names),
                                _DISTRICTS[(ei // 6) % len(_DISTRICTS)], street, buildings))

    base = f"http://{webhook_host}:{webhook_port}/hooks"
    teams: list[dict[str, Any]] = []
    for e in plans:
        tid = f"property-{e.id}"
        teams.append(_team(tid, "property", [e.id], base))
    teams.append(_team("fire-district", "fire", ["*"], base))
    for si, street in enumerate(streets):
        covered = [e.id for e in plans if e.street == street]
        if si % 2 == 0 and covered:  # about half the streets have an office on the system
            teams.append(_team(f"supervisor-s{si + 1:02d}", "supervisor", covered, base))

    plan = CityPlan(plans, teams, seed)
    plan.devices = list(_devices(plans))
    return plan


def _team(tid: str, role: str, estates: list[str], base: str) -> dict[str, Any]:
    env = tid.upper().replace("-", "_")
    return {"id": tid, "role": role, "estates": estates, "webhook": f"{base}/{tid}",
            "secret_env": f"ANJU_SECRET_{env}", "token_env": f"ANJU_TOKEN_{env}"}


def _devices(plans: list[EstatePlan]) -> Iterator[DeviceRow]:
    """Rows of devices.csv: (device, kind, estate, building, floor, zone, params)."""
    for e in plans:
        first = e.buildings[0]
        pump_floor = -1 if first.basements else 1
        yield (pump_id(e.id), "water", e.id, first.id, pump_floor, "pump-room", None)
        # the gate lets cars, prams and deliveries through: it may stand open longer
        yield (gate_id(e.id), "access", e.id, first.id, 1, "main-gate", {"held_open_s": 120})
        yield (firelane_id(e.id), "firelane", e.id, first.id, None, "fire-lane", None)
        for b in e.buildings:
            for car in range(1, b.elevators + 1):
                params = {"rated_speed_mps": b.rated_speed_mps, "top_floor": b.floors,
                          "bottom_floor": -b.basements if b.basements else 1}
                yield (elevator_id(e.id, b.id, car), "elevator", e.id, b.id, None, f"car-{car}",
                       params)
            for facade, cal in b.cameras.items():
                yield (camera_id(e.id, b.id, facade), "camera", e.id, b.id, None,
                       f"facade-{facade}", cal)
            yield (door_id(e.id, b.id), "access", e.id, b.id, 1, "unit-door", None)
            for floor in [*range(-b.basements, 0), *range(1, b.floors + 1)]:
                yield (smoke_id(e.id, b.id, floor, "a"), "smoke", e.id, b.id, floor, "stair", None)
                yield (smoke_id(e.id, b.id, floor, "b"), "smoke", e.id, b.id, floor, "lift-lobby",
                       None)


def write_site(plan: CityPlan, out: str | Path) -> Path:
    """Writes site.yaml, devices.csv and gateways.csv into ``out`` (created if needed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "estates": [
            {"id": e.id, "name": e.name, "district": e.district, "street": e.street,
             **({"community": e.community} if e.community else {}),
             "buildings": [{"id": b.id, "floors": b.floors, "floor_height_m": b.floor_height_m,
                            "basements": b.basements} for b in e.buildings]}
            for e in plan.estates
        ],
        "teams": plan.teams,
        "escalation": {"unacknowledged_after_s": 300},
    }
    doc = {**{k: v for k, v in plan.extra.items() if k == "city"}, **doc,
           **{k: v for k, v in plan.extra.items() if k != "city"}}
    header = (f"# generated by `anju simulate site --estates {len(plan.estates)} "
              f"--seed {plan.seed}`\n")
    (out / "site.yaml").write_text(
        header + yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120),
        encoding="utf-8")
    with (out / "devices.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["device", "kind", "estate", "building", "floor", "zone", "params"])
        for dev, kind, est, bld, floor, zone, params in plan.devices:
            w.writerow([dev, kind, est, bld, "" if floor is None else floor, zone,
                        orjson.dumps(params).decode() if params else ""])
    with (out / "gateways.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["gateway", "estate", "building"])
        for e in plan.estates:
            for b in e.buildings:
                w.writerow([f"{e.id}-{b.id}-gw", e.id, b.id])
    return out
