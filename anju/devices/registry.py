"""The site registry (CONTRACT.md §3): estates, buildings, teams and devices.

``site.yaml`` and ``devices.csv`` (and optionally ``gateways.csv``) are validated with
errors that name the file, the line and the field. Devices get a dense integer index; the
rule engine keeps its per-device state in arrays indexed by it.

:func:`load_site` puts a site together and checks what spans files (ids, teams'
estates and jurisdictions); each file has its own module: ``site_yaml`` (its pydantic
models, with lines from ``yaml_lines``), ``devices_csv``, ``gateways_csv``. What it
returns is in ``site`` and re-exported here, the import path the rest of anju uses.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from anju.devices.devices_csv import load_devices
from anju.devices.gateways_csv import load_gateways
from anju.devices.site import (
    ID_RE,
    LEVELS,
    PIPELINE_USER,
    Building,
    DeviceTable,
    Estate,
    Jurisdiction,
    Site,
    Team,
)
from anju.devices.site_yaml import JurisdictionModel, load_site_yaml, override_lines
from anju.devices.supervision import Supervision
from anju.devices.targets import RobotTarget
from anju.devices.yaml_lines import line_of
from anju.errors import RegistryError

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


def load_site(root: str | Path) -> Site:
    """Loads and validates a site directory; raises :class:`RegistryError` on any problem."""
    t0 = time.perf_counter()
    root = Path(root)
    if not root.is_dir():
        raise RegistryError(str(root), None, None, "not a directory")
    model, raw = load_site_yaml(root / "site.yaml")
    yname = str(root / "site.yaml")

    estates: dict[str, Estate] = {}
    buildings: list[Building] = []
    for ei, em in enumerate(model.estates):
        if em.id in estates:
            raise RegistryError(yname, line_of(raw, ("estates", ei, "id")), f"estates.{ei}.id",
                                f"duplicate estate id {em.id!r}")
        blds: dict[str, Building] = {}
        for bi, bm in enumerate(em.buildings):
            if bm.id in blds:
                line = line_of(raw, ("estates", ei, "buildings", bi, "id"))
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
            raise RegistryError(yname, line_of(raw, ("teams", ti, "id")), f"teams.{ti}.id",
                                f"duplicate team id {tm.id!r}")
        seen_teams.add(tm.id)
        for j, e in enumerate(tm.estates):
            if e != "*" and e not in estates:
                raise RegistryError(yname, line_of(raw, ("teams", ti, "estates", j)),
                                    f"teams.{ti}.estates.{j}", f"unknown estate {e!r}")
        jur = _jurisdiction(tm.jurisdiction, estates, yname, raw, ti)
        if jur is None and not tm.estates:
            raise RegistryError(yname, line_of(raw, ("teams", ti)), f"teams.{ti}.estates",
                                "a team needs estates or a jurisdiction")
        scope = tuple(tm.estates)
        if jur is not None:
            scope = ("*",) if jur.city and jur.level == "city" else tuple(dict.fromkeys(
                [*tm.estates, *(e.id for e in estates.values() if jur.covers(e))]))
        names = [t.name or t.type for t in tm.targets]
        for k, n in enumerate(names):
            if n in names[:k]:
                raise RegistryError(yname, line_of(raw, ("teams", ti, "targets", k)),
                                    f"teams.{ti}.targets.{k}.name",
                                    f"duplicate target name {n!r} (give each a name)")
        teams.append(Team(tm.id, tm.role, scope, tm.webhook, tm.secret_env,
                          tm.token_env, tuple(RobotTarget.from_model(t) for t in tm.targets),
                          jur))

    devices = load_devices(root / "devices.csv", estates)
    gateways = load_gateways(root / "gateways.csv", estates, devices)
    site = Site(
        root=root,
        estates=estates,
        buildings=buildings,
        teams=teams,
        unacknowledged_after_s=model.escalation.unacknowledged_after_s,
        devices=devices,
        gateways=gateways,
        rule_overrides=model.rules,
        rule_override_lines=override_lines(raw.get("rules")),
        report_settings=model.report,
        supervision=Supervision.build(model.escalation.unacknowledged_after_s,
                                      model.escalation.chains, model.supervision),
    )
    site.load_s = time.perf_counter() - t0
    return site


def _jurisdiction(jm: JurisdictionModel | None, estates: dict[str, Estate], yname: str,
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
        raise RegistryError(yname, line_of(raw, ("teams", ti, "jurisdiction")),
                            f"teams.{ti}.jurisdiction",
                            "name a city, district, street or community")
    for lv in ("district", "street", "community"):
        known = {e.at(lv) for e in estates.values()}
        for name in getattr(jur, lv):
            if name not in known:
                raise RegistryError(yname, line_of(raw, ("teams", ti, "jurisdiction", lv)),
                                    f"teams.{ti}.jurisdiction.{lv}",
                                    f"no estate has {lv} {name!r}")
    if not any(jur.covers(e) for e in estates.values()):
        raise RegistryError(yname, line_of(raw, ("teams", ti, "jurisdiction")),
                            f"teams.{ti}.jurisdiction", "covers no estate")
    return jur
