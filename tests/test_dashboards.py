"""Dashboards as code: generated from the kind table, typed, deterministic, committed.

Fast unit tests, no network. The queries themselves run against a real InfluxDB in
test_dashboards_influx.py; push against a fake Grafana in test_dashboards_push.py.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from grafana_foundation_sdk.models import dashboard as dash
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

import anju.kinds as kinds_mod
from anju.cli import app
from anju.config import Settings
from anju.dashboards.build import build_dashboards, dashboard_json, render_tree
from anju.dashboards.influxql import INFLUX_UID, PROMETHEUS_UID, InfluxQLQuery
from anju.dashboards.kinds import kind_uid
from anju.dashboards.macros import (
    ALL,
    TimeRange,
    grafana_interval,
    interpolate,
    iter_influx_queries,
)
from anju.dashboards.pipeline import METRICS
from anju.dashboards.provisioning import Targets
from anju.devices.spec import FieldSpec, KindSpec
from anju.kinds import KINDS

REPO = Path(__file__).resolve().parent.parent
COMMITTED = REPO / "grafana"
REGENERATE = "anju dashboards build --out grafana --env-refs"

GAS = KindSpec(
    name="gas",
    title="燃气 / gas detector",
    heartbeat_s=60.0,
    fields=(
        FieldSpec("lel_pct", "float", "methane, % of the lower explosive limit", unit="%"),
        FieldSpec("valve_closed", "bool", "shut-off valve closed"),
        FieldSpec("state", "enum", "detector state", choices=("ok", "leak", "fault")),
        FieldSpec("raw", "track", "not stored", required=False, stored=False),
    ),
)


def _panels(d: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in d.get("panels") or []:
        out.append(p)
        out.extend(p.get("panels") or [])
    return out


def _by_uid() -> dict[str, dict[str, Any]]:
    return {b.uid: b.data for b in build_dashboards()}


def test_committed_copy_is_what_the_build_writes() -> None:
    """grafana/ is `anju dashboards build --out grafana --env-refs`, byte for byte."""
    files = render_tree(Targets.from_env_refs())
    on_disk = {str(p.relative_to(COMMITTED)): p.read_text(encoding="utf-8")
               for p in COMMITTED.rglob("*") if p.is_file()}
    assert sorted(on_disk) == sorted(files), f"regenerate: {REGENERATE}"
    for rel, text in files.items():
        assert on_disk[rel] == text, f"grafana/{rel} is stale: {REGENERATE}"


def test_build_is_deterministic() -> None:
    a = render_tree(Targets.from_env_refs())
    b = render_tree(Targets.from_env_refs())
    assert a == b
    for rel, text in a.items():
        if rel.endswith(".json"):
            assert text == json.dumps(json.loads(text), sort_keys=True, indent=2,
                                      ensure_ascii=False) + "\n"


def test_one_dashboard_per_kind_with_a_panel_per_stored_field() -> None:
    dashboards = _by_uid()
    assert {"anju-overview", "anju-estate", "anju-alarms", "anju-pipeline"} <= set(dashboards)
    for name, spec in KINDS.items():
        d = dashboards[kind_uid(name)]
        titles = {p.get("title") for p in _panels(d)}
        for f in spec.fields:
            assert (f.name in titles) == f.stored, (name, f.name)
        assert [v["name"] for v in d["templating"]["list"]] == ["estate", "building", "device"]


def test_a_new_kind_gets_its_dashboard_and_overview_targets(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Adding a kind module is enough: monkeypatch a fifth kind into the table."""
    monkeypatch.setitem(kinds_mod.KINDS, "gas", GAS)
    dashboards = _by_uid()
    d = dashboards["anju-kind-gas"]
    panels = {p["title"]: p for p in _panels(d)}
    assert {"lel_pct", "valve_closed", "state"} <= set(panels)
    assert "raw" not in panels
    assert panels["lel_pct"]["type"] == "timeseries"
    assert panels["lel_pct"]["fieldConfig"]["defaults"]["unit"] == "percent"
    assert panels["valve_closed"]["type"] == "state-timeline"
    assert [t["refId"] for t in panels["state"]["targets"]] == ["A", "B", "C"]
    assert "'leak'" in panels["state"]["targets"][1]["query"]
    for uid in ("anju-overview", "anju-estate"):
        queries = [q.query for q in iter_influx_queries(dashboards[uid])]
        assert any('FROM "gas"' in q for q in queries), uid
    # …and it leaves with the kind.
    monkeypatch.delitem(kinds_mod.KINDS, "gas")
    assert "anju-kind-gas" not in _by_uid()


def test_every_influx_target_is_raw_influxql_with_grafana_macros() -> None:
    for uid, d in _by_uid().items():
        for p in _panels(d):
            for t in p.get("targets") or []:
                if t["datasource"]["type"] != "influxdb":
                    assert t["datasource"]["uid"] == PROMETHEUS_UID
                    continue
                where = f"{uid} {p['title']!r} {t['refId']}"
                assert t["datasource"]["uid"] == INFLUX_UID, where
                assert t["rawQuery"] is True, where
                assert t["resultFormat"] in ("time_series", "table"), where
                assert "$timeFilter" in t["query"], where
                if "GROUP BY time(" in t["query"]:
                    assert "GROUP BY time($__interval)" in t["query"], where
        for ann in d["annotations"].get("list", []):
            assert ann["target"]["rawQuery"] is True
            assert "$timeFilter" in ann["target"]["query"]


def test_ids_and_uids() -> None:
    dashboards = _by_uid()
    for uid, d in dashboards.items():
        assert d["uid"] == uid and 8 <= len(uid) <= 40
        ids = [p["id"] for p in _panels(d)]
        assert ids == list(range(1, len(ids) + 1)), uid
        for p in _panels(d):
            assert p["gridPos"]["x"] + p["gridPos"]["w"] <= 24, (uid, p["title"])


def test_dashboards_read_back_with_typed_influxql_targets() -> None:
    """The SDK's runtime knows our query type: from_json gives InfluxQLQuery back."""
    for b in build_dashboards():
        text = dashboard_json(b.model)
        again = dash.Dashboard.from_json(json.loads(text))
        kinds = {type(t) for p in again.panels or [] if isinstance(p, dash.Panel)
                 for t in p.targets or []}
        if b.uid != "anju-pipeline":
            assert InfluxQLQuery in kinds, b.uid
        # Panels and variables survive the trip; the SDK reads annotation targets as its
        # built-in AnnotationTarget only, so annotations are not compared.
        mine, theirs = json.loads(text), json.loads(dashboard_json(again))
        for key in ("panels", "templating", "links", "uid", "title"):
            assert theirs.get(key) == mine.get(key), (b.uid, key)


def test_thresholds_of_the_standards() -> None:
    d = _by_uid()["anju-kind-water"]
    panels = {p["title"]: p for p in _panels(d)}

    def steps(title: str) -> list[tuple[float | None, str]]:
        th = panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        return [(s["value"], s["color"]) for s in th]

    # GB 5749-2022: free chlorine 0.05–2 mg/L, turbidity ≤ 1 NTU, pH 6.5–8.5.
    assert steps("chlorine_mg_l") == [(None, "red"), (0.05, "green"), (2.0, "red")]
    assert steps("turbidity_ntu") == [(None, "green"), (1.0, "red")]
    assert steps("ph") == [(None, "red"), (6.5, "green"), (8.5, "red")]
    assert "GB 5749-2022" in panels["ph"]["description"]
    smoke = {p["title"]: p for p in _panels(_by_uid()["anju-kind-smoke"])}
    assert smoke["smoke_db_m"]["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["value"] == 0.15


@pytest.mark.parametrize(("values", "expected"), [
    (ALL, '"estate" =~ /^.*$/'),
    (["e001"], '"estate" =~ /^e001$/'),
    (["e001", "e-002"], '"estate" =~ /^(e001|e-002)$/'),
    (["a.b/c"], '"estate" =~ /^a\\.b\\/c$/'),
])
def test_interpolate_variables_as_grafana(values: list[str], expected: str) -> None:
    out = interpolate('"estate" =~ /^$estate$/', time_range=TimeRange("6h"),
                      variables={"estate": values})
    assert out == expected


def test_interpolate_macros() -> None:
    q = ("SELECT count(x) * 1000 / $__interval_ms FROM m WHERE $timeFilter "
         "GROUP BY time($__interval) $unknown")
    assert interpolate(q, time_range=TimeRange("6h"), interval="10s", interval_ms=10_000) == (
        "SELECT count(x) * 1000 / 10000 FROM m WHERE time >= now() - 6h and time <= now() "
        "GROUP BY time(10s) $unknown")
    absolute = TimeRange(relative=None, from_ms=1_700_000_000_000, to_ms=1_700_003_600_000)
    assert interpolate("$timeFilter", time_range=absolute) == (
        "time >= 1700000000000ms and time <= 1700003600000ms")
    # InfluxQL has no years or weeks: Grafana sends such a range's start in ms
    assert TimeRange("1y").filter(now_ms=1_731_536_000_000) == (
        "time >= 1700000000000ms and time <= now()")
    assert TimeRange("7d").filter() == "time >= now() - 7d and time <= now()"


@pytest.mark.parametrize(("span", "px", "expected"), [
    ("6h", 960, ("20s", 20_000)),  # a half-width panel on a 1920-px screen
    ("6h", 1920, ("10s", 10_000)),
    ("30d", 480, ("2h", 7_200_000)),
    ("5m", 1920, ("1s", 1_000)),  # 156 ms rounds to 200 ms: held at the datasource's 1 s
    ("7d", 1, ("7d", 604_800_000)),  # Grafana writes no weeks
])
def test_interval_as_grafana_computes_it(span: str, px: int, expected: tuple[str, int]) -> None:
    """$__interval: the range over the panel's width in pixels, rounded to a nice interval
    (rangeutil.ts), not below the datasource's timeInterval."""
    assert grafana_interval(TimeRange(span).span_ms(), px, 1_000) == expected


def test_provisioning_points_at_the_dashboards_datasources(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, [
        "dashboards", "build", "--out", str(tmp_path), "--influx-url", "http://10.0.0.5:8086",
        "--influx-db", "city", "--dashboards-path", "/srv/anju/dashboards", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["files"] == len(report["dashboards"]) + 2
    ds = yaml.safe_load((tmp_path / "provisioning/datasources/anju.yaml").read_text())
    by_uid = {d["uid"]: d for d in ds["datasources"]}
    assert by_uid[INFLUX_UID]["url"] == "http://10.0.0.5:8086"
    assert by_uid[INFLUX_UID]["jsonData"]["dbName"] == "city"
    assert by_uid[INFLUX_UID]["jsonData"]["version"] == "InfluxQL"
    assert by_uid[PROMETHEUS_UID]["type"] == "prometheus"
    prov = yaml.safe_load((tmp_path / "provisioning/dashboards/anju.yaml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/srv/anju/dashboards"
    used = {t["datasource"]["uid"]
            for f in (tmp_path / "dashboards").glob("*.json")
            for p in _panels(json.loads(f.read_text())) for t in p.get("targets") or []}
    assert used == set(by_uid)


def test_a_token_is_referenced_never_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             ) -> None:
    monkeypatch.setenv("ANJU_INFLUX_TOKEN", "s3cr3t-influx")
    assert Settings().influx_token is not None
    result = CliRunner().invoke(app, ["dashboards", "build", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "provisioning/datasources/anju.yaml").read_text()
    assert "s3cr3t" not in text and "s3cr3t" not in result.output
    assert "Token ${ANJU_INFLUX_TOKEN}" in text


def test_build_removes_the_dashboard_of_a_kind_that_left(tmp_path: Path) -> None:
    stale = tmp_path / "dashboards" / "anju-kind-gone.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}")
    keep = tmp_path / "dashboards" / "someone-elses.json"
    keep.write_text("{}")
    assert CliRunner().invoke(app, ["dashboards", "build", "--out", str(tmp_path)]).exit_code == 0
    assert not stale.exists() and keep.exists()


def test_pipeline_metric_names_match_what_ingest_and_alarms_export() -> None:
    """Every metric the pipeline dashboard reads is registered under that name."""
    from anju.alarms.metrics import alarm_metrics
    from anju.ingest.metrics import ingest_metrics

    registry = CollectorRegistry()
    alarm_metrics(registry)
    ingest_metrics(registry)
    # Names as exposed: a counter family "x" is scraped as x_total, a histogram as x_bucket …
    suffix = {"counter": "_total", "histogram": "_bucket"}
    exported = {m.name + suffix.get(m.type, "") for m in registry.collect()}
    for metric in METRICS:
        names = ({metric.name + "_bucket"} if metric.type == "histogram" else {metric.name})
        assert names <= exported, metric.name
    exprs = [t["expr"] for d in _by_uid().values() for p in _panels(d)
             for t in p.get("targets") or [] if "expr" in t]
    exprs += [v["query"] for d in _by_uid().values() for v in d["templating"]["list"]
              if v["datasource"]["type"] == "prometheus"]
    assert len(exprs) > 10
    mentioned = {n for e in exprs for n in re.findall(r"\b(anju_[a-z_]+)", e)}
    declared = {m.name for m in METRICS} | {m.name + "_bucket" for m in METRICS}
    assert mentioned <= declared, mentioned - declared
