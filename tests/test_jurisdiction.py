"""Jurisdictions (issue 18): estates name district, street and community; supervisor teams
are scoped by ``jurisdiction:`` and resolve to the estates inside it; old sites load as
before; a name no estate has is an error with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from anju.devices.registry import load_site
from anju.errors import RegistryError

DEVICES = "device,kind,estate,building,floor,zone,params\ns-1,smoke,e1,b1,3,stair,\n"

SITE = """\
city: 安居市
estates:
  - {id: e1, district: 西城区, street: 东街街道, community: 花园社区,
     buildings: [{id: b1, floors: 6}]}
  - {id: e2, district: 西城区, street: 东街街道, community: 河畔社区,
     buildings: [{id: b1, floors: 6}]}
  - {id: e3, district: 西城区, street: 西街街道, community: 西苑社区,
     buildings: [{id: b1, floors: 6}]}
  - {id: e4, district: 东城区, street: 北街街道,
     buildings: [{id: b1, floors: 6}]}
teams:
  - {id: prop-e1, role: property, estates: [e1]}
  - {id: comm-huayuan, role: supervisor, jurisdiction: {community: 花园社区}}
  - {id: street-dongjie, role: supervisor, jurisdiction: {street: 东街街道}}
  - {id: streets-two, role: supervisor, jurisdiction: {street: [东街街道, 北街街道]}}
  - {id: district-xicheng, role: supervisor, jurisdiction: {district: 西城区}}
  - {id: bureau, role: supervisor, jurisdiction: {city: true}}
  - {id: old-style, role: supervisor, estates: [e3]}
"""


def make(root: Path, text: str) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "site.yaml").write_text(text, encoding="utf-8")
    (root / "devices.csv").write_text(DEVICES, encoding="utf-8")
    return root


def test_teams_resolve_to_the_estates_of_their_jurisdiction(tmp_path: Path) -> None:
    site = load_site(make(tmp_path, SITE))
    teams = {t.id: t for t in site.teams}
    assert teams["comm-huayuan"].estates == ("e1",)
    assert teams["street-dongjie"].estates == ("e1", "e2")
    assert teams["streets-two"].estates == ("e1", "e2", "e4")
    assert teams["district-xicheng"].estates == ("e1", "e2", "e3")
    assert teams["bureau"].estates == ("*",)
    assert [t.level for t in site.teams] == [
        "estate", "community", "street", "street", "district", "city", "estate"]
    assert site.estates["e1"].community == "花园社区"
    assert [t.id for t in site.supervisors_at("e2", "street")] == ["street-dongjie",
                                                                   "streets-two"]
    assert [t.id for t in site.supervisors_at("e3", "street")] == []
    assert [t.id for t in site.supervisors_at("e3", "city")] == ["bureau"]
    assert teams["street-dongjie"].jurisdiction is not None
    assert teams["street-dongjie"].jurisdiction.as_dict() == {"street": ["东街街道"]}


def test_levels_narrow_each_other(tmp_path: Path) -> None:
    text = SITE.replace("{street: [东街街道, 北街街道]}",
                        "{district: 东城区, street: [东街街道, 北街街道]}")
    site = load_site(make(tmp_path, text))
    assert next(t for t in site.teams if t.id == "streets-two").estates == ("e4",)


@pytest.mark.parametrize(("team", "field", "message"), [
    ("{id: x, role: supervisor, jurisdiction: {street: 南街街道}}",
     "teams.7.jurisdiction.street", "no estate has street '南街街道'"),
    ("{id: x, role: supervisor, jurisdiction: {district: 东城区, street: 东街街道}}",
     "teams.7.jurisdiction", "covers no estate"),
    ("{id: x, role: supervisor}", "teams.7.estates", "needs estates or a jurisdiction"),
    ("{id: x, role: supervisor, jurisdiction: {}}", "teams.7.jurisdiction", "name a city"),
    ("{id: x, role: supervisor, jurisdiction: {township: 某镇}}",
     "teams.7.jurisdiction.township", "Extra inputs"),
])
def test_bad_jurisdictions_name_line_and_field(tmp_path: Path, team: str, field: str,
                                               message: str) -> None:
    with pytest.raises(RegistryError) as err:
        load_site(make(tmp_path, SITE + f"  - {team}\n"))
    assert err.value.line == SITE.count("\n") + 1
    assert err.value.field == field
    assert message in str(err.value)
