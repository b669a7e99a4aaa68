"""Assemble every dashboard and write the Grafana tree, byte-for-byte reproducibly.

Layout written by :func:`write_tree` (``anju dashboards build --out DIR``)::

    DIR/dashboards/<uid>.json               one file per dashboard
    DIR/provisioning/datasources/anju.yaml  InfluxDB (InfluxQL) + Prometheus
    DIR/provisioning/dashboards/anju.yaml   file provider → folder "anju"

Output is deterministic (sorted keys, stable uids, panel ids in layout order, no
timestamps), so the committed copy in ``grafana/`` can be compared with a fresh build.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as dash

from anju.dashboards.alarms import alarms_dashboard
from anju.dashboards.kinds import kind_dashboard
from anju.dashboards.overview import estate_dashboard, overview_dashboard
from anju.dashboards.pipeline import pipeline_dashboard
from anju.dashboards.provisioning import (
    DEFAULT_DASHBOARDS_PATH,
    Targets,
    dashboard_provider,
    datasources,
)
from anju.dashboards.report import report_dashboard
from anju.dashboards.tuning import tuning_for
from anju.devices.spec import KindSpec
from anju.rules.model import RuleSet, load_rules

# A wall screen in a control room shows the site's local time, not the browser's.
DEFAULT_TIMEZONE = "Asia/Shanghai"

__all__ = ["DEFAULT_TIMEZONE", "Built", "build_dashboards", "dashboard_json", "render_tree",
           "write_tree"]


@dataclass(frozen=True, slots=True)
class Built:
    """One dashboard: its uid, its typed model and its JSON as a plain dict."""

    uid: str
    model: dash.Dashboard

    @property
    def data(self) -> dict[str, Any]:
        return dict(json.loads(dashboard_json(self.model)))


def _number_panels(model: dash.Dashboard) -> None:
    """Give panels ids 1, 2, … in layout order (the SDK leaves them unset)."""
    n = 0
    for panel in model.panels or []:
        n += 1
        panel.id_val = n
        for inner in getattr(panel, "panels", None) or []:
            n += 1
            inner.id_val = n


def _finish(builder: db.Dashboard, timezone: str) -> Built:
    model = builder.build()
    model.timezone = timezone
    _number_panels(model)
    assert model.uid is not None
    return Built(model.uid, model)


def build_dashboards(kinds: Mapping[str, KindSpec] | None = None, *,
                     timezone: str = DEFAULT_TIMEZONE, rules: RuleSet | None = None
                     ) -> list[Built]:
    """Every anju dashboard, for ``kinds`` (default: the kind table ``KINDS``), shown in
    ``timezone`` (an IANA name, ``browser`` or ``utc``), with the limits of ``rules``
    (default: the rule catalogue; ``load_rules(site)`` adds a site's overrides)."""
    if kinds is None:
        from anju.kinds import KINDS

        kinds = KINDS
    tuning = tuning_for(rules if rules is not None else load_rules())
    builders = [
        overview_dashboard(kinds),
        estate_dashboard(kinds),
        *(kind_dashboard(spec, tuning.get(spec.name)) for spec in kinds.values()),
        alarms_dashboard(),
        pipeline_dashboard(),
        report_dashboard(),
    ]
    return [_finish(b, timezone) for b in builders]


def _save_model(data: dict[str, Any]) -> dict[str, Any]:
    """What Grafana itself would save. The 10.1 SDK gives every template variable the same
    ``id`` (all zeros); Grafana's legacy variable store keys variables by id, so only the last
    would survive and the others would never be filled in. Grafana's save model has no id."""
    for var in (data.get("templating") or {}).get("list") or []:
        var.pop("id", None)
    return data


def dashboard_json(model: dash.Dashboard) -> str:
    """The dashboard as Grafana JSON: sorted keys, 2-space indent, UTF-8 kept, final newline."""
    data = _save_model(json.loads(json.dumps(model, cls=JSONEncoder)))
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=True, allow_unicode=True, default_flow_style=False)


def render_tree(
    targets: Targets,
    *,
    dashboards_path: str = DEFAULT_DASHBOARDS_PATH,
    kinds: Mapping[str, KindSpec] | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    rules: RuleSet | None = None,
) -> dict[str, str]:
    """Relative path → file content of everything ``write_tree`` writes."""
    files = {f"dashboards/{b.uid}.json": dashboard_json(b.model)
             for b in build_dashboards(kinds, timezone=timezone, rules=rules)}
    files["provisioning/datasources/anju.yaml"] = _yaml(datasources(targets))
    files["provisioning/dashboards/anju.yaml"] = _yaml(dashboard_provider(dashboards_path))
    return dict(sorted(files.items()))


def write_tree(
    out: Path,
    targets: Targets,
    *,
    dashboards_path: str = DEFAULT_DASHBOARDS_PATH,
    kinds: Mapping[str, KindSpec] | None = None,
    timezone: str = DEFAULT_TIMEZONE,
    rules: RuleSet | None = None,
) -> list[Path]:
    """Write the tree under ``out``; stale ``dashboards/*.json`` of ours are removed."""
    files = render_tree(targets, dashboards_path=dashboards_path, kinds=kinds,
                        timezone=timezone, rules=rules)
    folder = out / "dashboards"
    stale = set(folder.glob("anju-*.json")) if folder.is_dir() else set()
    written: list[Path] = []
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        stale.discard(path)
        written.append(path)
    for path in stale:  # a kind that left the table takes its dashboard with it
        path.unlink()
    return written
