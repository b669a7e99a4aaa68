"""What a real Grafana 10/11 does with the dashboards (issue 14), held without a Grafana.

Each behaviour has its own test here, so the project keeps them when the workspace's
``grafana-check`` (../shared/tools/grafana-check: Grafana's published schemas and rules
taken from its source) is not at hand; when it is, it runs too and must report no error and
no warning for both Grafana 10.4 and 11.6.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from anju.cli import app
from anju.dashboards.build import DEFAULT_TIMEZONE, build_dashboards
from anju.dashboards.macros import iter_influx_queries
from anju.devices.registry import load_site
from anju.rules.model import load_rules

REPO = Path(__file__).resolve().parent.parent
# ../shared from the canonical repo; ../../shared from a worktree under wt/.
CHECKER = next((c / "shared" / "tools" / "grafana-check" for c in (REPO.parent, REPO.parent.parent)
                if (c / "shared" / "tools" / "grafana-check").is_dir()),
               REPO.parent / "shared" / "tools" / "grafana-check")


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d.get("panels") or []:
        out.append(p)
        out.extend(p.get("panels") or [])
    return out


def _by_uid(**kw: Any) -> dict[str, dict[str, Any]]:
    return {b.uid: b.data for b in build_dashboards(**kw)}


def _walk(node: Any) -> list[Any]:
    out = [node]
    if isinstance(node, dict):
        for v in node.values():
            out += _walk(v)
    elif isinstance(node, list):
        for v in node:
            out += _walk(v)
    return out


def test_template_variables_carry_no_shared_id() -> None:
    """The SDK writes one all-zero id on every variable; Grafana's legacy variable store keys
    by id and would keep only the last. Grafana's own save model has no id."""
    for uid, d in _by_uid().items():
        variables = d.get("templating", {}).get("list") or []
        assert all("id" not in v for v in variables), uid
        names = [v["name"] for v in variables]
        assert len(names) == len(set(names)), uid


def test_annotations_select_no_nullable_column() -> None:
    """Grafana drops an annotation row with a null column: device, floor, zone and value
    can be null on alarm points; the device travels in the never-null ``text`` field."""
    nullable = ('"device"', '"floor"', '"zone"', '"value"')
    seen = 0
    for uid, d in _by_uid().items():
        for ann in d.get("annotations", {}).get("list") or []:
            target = ann.get("target") or {}
            if "query" not in target:
                continue
            seen += 1
            select = target["query"].split(" FROM ")[0]
            assert not any(c in select for c in nullable), (uid, select)
            assert target["textColumn"] == "text" and '"text"' in select, uid
    assert seen >= 6


def test_range_mappings_have_no_open_null_ends() -> None:
    """Grafana reads a null range end as 0: ↑ up / ↓ down would never show."""
    ranges = [n for d in _by_uid().values() for n in _walk(d)
              if isinstance(n, dict) and n.get("type") == "range"]
    assert len(ranges) >= 3
    for r in ranges:
        assert r["options"].get("from") is not None and r["options"].get("to") is not None
    assert min(r["options"]["from"] for r in ranges) <= -1e6
    assert max(r["options"]["to"] for r in ranges) >= 1e6


def test_custom_units_have_no_space_after_suffix() -> None:
    units = [n["unit"] if "unit" in n else n["value"] for d in _by_uid().values()
             for n in _walk(d) if isinstance(n, dict)
             and (isinstance(n.get("unit"), str)
                  or (n.get("id") == "unit" and isinstance(n.get("value"), str)))]
    custom = [u for u in units if u.startswith("suffix:")]
    assert custom and all(not u.startswith("suffix: ") for u in custom), custom


def test_every_dashboard_links_to_every_other() -> None:
    """Each carries the tag ``anju`` and a drop-down of dashboards tagged ``anju``; the
    overview also links to the pipeline's health directly."""
    boards = _by_uid()
    assert "anju-pipeline" in boards
    for uid, d in boards.items():
        assert "anju" in d["tags"], uid
        assert any(link["type"] == "dashboards" and link["tags"] == ["anju"]
                   for link in d.get("links") or []), uid
    urls = [link.get("url") for link in boards["anju-overview"]["links"]]
    assert "/d/anju-pipeline" in urls


def test_time_zone_is_a_setting() -> None:
    assert DEFAULT_TIMEZONE == "Asia/Shanghai"
    assert {d["timezone"] for d in _by_uid().values()} == {"Asia/Shanghai"}
    assert {d["timezone"] for d in _by_uid(timezone="utc").values()} == {"utc"}


def test_build_cli_takes_time_zone_and_site(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "site.yaml").write_text(
        "estates:\n  - id: e1\n    name: 测试\n    buildings:\n"
        "      - {id: b1, floors: 6, floor_height_m: 3.0}\n"
        "rules:\n  smoke.alarm: {threshold: 0.2}\n", encoding="utf-8")
    (site / "devices.csv").write_text("device,kind,estate,building,floor,zone,params\n",
                                      encoding="utf-8")
    out = tmp_path / "out"
    res = CliRunner().invoke(app, ["dashboards", "build", "--out", str(out), "--env-refs",
                                   "--site", str(site), "--timezone", "Europe/Paris"])
    assert res.exit_code == 0, res.output
    text = (out / "dashboards" / "anju-kind-smoke.json").read_text(encoding="utf-8")
    assert '"timezone": "Europe/Paris"' in text
    assert '"value": 0.2' in text and '"value": 0.15' not in text


def _steps(d: dict[str, Any], title: str) -> list[tuple[float | None, str]]:
    p = next(p for p in _panels(d) if p["title"] == title)
    return [(s["value"], s["color"])
            for s in p["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_limits_come_from_the_rules_in_force(tmp_path: Path) -> None:
    """The catalogue's parameters by default; a site's overrides move the lines, and a rule
    the site disables draws none (and its panel goes)."""
    default = _by_uid()
    assert _steps(default["anju-kind-smoke"], "smoke_db_m") == [(None, "green"),
                                                                 (0.15, "orange")]
    assert _steps(default["anju-kind-smoke"], "temp_c") == [(None, "green"), (57.0, "red")]
    (tmp_path / "site.yaml").write_text(
        "estates:\n  - id: e1\n    name: 测试\n    buildings:\n"
        "      - {id: b1, floors: 6, floor_height_m: 3.0}\n"
        "rules:\n  heat.fixed: {limit_c: 62}\n  water.pressure_high: {max_mpa: 0.7}\n"
        "  smoke.battery_low: {enabled: false}\n", encoding="utf-8")
    (tmp_path / "devices.csv").write_text("device,kind,estate,building,floor,zone,params\n",
                                          encoding="utf-8")
    boards = _by_uid(rules=load_rules(load_site(tmp_path)))
    smoke, water = boards["anju-kind-smoke"], boards["anju-kind-water"]
    assert _steps(smoke, "temp_c") == [(None, "green"), (62.0, "red")]
    temp_by_floor = next(p for p in _panels(smoke) if p["title"] == "Temperature by floor")
    assert "62 °C" in temp_by_floor["description"]
    assert _steps(water, "pressure_mpa") == [(None, "red"), (0.15, "green"), (0.7, "red")]
    titles = {p["title"] for p in _panels(smoke)}
    assert not any(t.startswith("Batteries below") for t in titles)
    battery = next(p for p in _panels(smoke) if p["title"] == "battery_pct")
    assert "thresholds" not in battery["fieldConfig"]["defaults"]
    assert any(t == "Batteries below 20 %" for t in
               (p["title"] for p in _panels(default["anju-kind-smoke"])))


def test_open_alarms_are_counted_from_state() -> None:
    """No event arithmetic: every open-alarm target takes the last state per alarm_id and
    counts one state, and acknowledged alarms are a separate target."""
    for uid in ("anju-alarms", "anju-overview", "anju-estate"):
        queries = [q.query for q in iter_influx_queries(_by_uid()[uid])
                   if 'max("state_rank")' in q.query]
        assert queries, uid
        for text in queries:
            assert 'GROUP BY "alarm_id"' in text and "* -1" not in text
        assert any('"rank" = 0' in t for t in queries), uid
        assert any('"rank" = 1' in t for t in queries), uid
    esc = next(q.query for q in iter_influx_queries(_by_uid()["anju-alarms"])
               if "Escalated in range" in q.where)
    assert 'count(distinct("alarm_id"))' in esc


@pytest.mark.skipif(not CHECKER.is_dir(), reason="../shared/tools/grafana-check not present")
@pytest.mark.parametrize("version", ["v11.6.x", "v10.4.x"])
def test_grafana_check_reports_no_error_nor_warning(tmp_path: Path, version: str) -> None:
    pytest.importorskip("jsonschema")
    res = CliRunner().invoke(app, ["dashboards", "build", "--out", str(tmp_path), "--env-refs"])
    assert res.exit_code == 0, res.output
    proc = subprocess.run(
        [sys.executable, str(CHECKER / "grafana_check.py"),
         "--schemas", str(CHECKER / "schemas" / version),
         "--datasources", str(tmp_path / "provisioning" / "datasources" / "anju.yaml"),
         "--providers", str(tmp_path / "provisioning" / "dashboards" / "anju.yaml"),
         "--nullable", "alarms:device,floor,zone,value",
         *sorted(str(p) for p in (tmp_path / "dashboards").glob("*.json"))],
        capture_output=True, text=True, timeout=120, check=False)
    bad = [ln for ln in proc.stdout.splitlines() if ln.startswith(("ERROR", "WARN"))]
    assert proc.returncode == 0 and not bad, "\n".join(bad) or proc.stderr
    assert "summary:" in proc.stdout
