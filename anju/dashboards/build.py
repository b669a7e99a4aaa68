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
from anju.devices.spec import KindSpec

__all__ = ["Built", "build_dashboards", "dashboard_json", "render_tree", "write_tree"]


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


def _finish(builder: db.Dashboard) -> Built:
    model = builder.build()
    _number_panels(model)
    assert model.uid is not None
    return Built(model.uid, model)


def build_dashboards(kinds: Mapping[str, KindSpec] | None = None) -> list[Built]:
    """Every anju dashboard, for ``kinds`` (default: the kind table ``KINDS``)."""
    if kinds is None:
        from anju.devices.kinds import KINDS

        kinds = KINDS
    builders = [
        overview_dashboard(kinds),
        estate_dashboard(kinds),
        *(kind_dashboard(spec) for spec in kinds.values()),
        alarms_dashboard(),
        pipeline_dashboard(),
    ]
    return [_finish(b) for b in builders]


def dashboard_json(model: dash.Dashboard) -> str:
    """The dashboard as Grafana JSON: sorted keys, 2-space indent, UTF-8 kept, final newline."""
    return json.dumps(model, cls=JSONEncoder, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def _yaml(data: dict[str, Any]) -> str:
    return yaml.safe_dump(data, sort_keys=True, allow_unicode=True, default_flow_style=False)


def render_tree(
    targets: Targets,
    *,
    dashboards_path: str = DEFAULT_DASHBOARDS_PATH,
    kinds: Mapping[str, KindSpec] | None = None,
) -> dict[str, str]:
    """Relative path → file content of everything ``write_tree`` writes."""
    files = {f"dashboards/{b.uid}.json": dashboard_json(b.model) for b in build_dashboards(kinds)}
    files["provisioning/datasources/anju.yaml"] = _yaml(datasources(targets))
    files["provisioning/dashboards/anju.yaml"] = _yaml(dashboard_provider(dashboards_path))
    return dict(sorted(files.items()))


def write_tree(
    out: Path,
    targets: Targets,
    *,
    dashboards_path: str = DEFAULT_DASHBOARDS_PATH,
    kinds: Mapping[str, KindSpec] | None = None,
) -> list[Path]:
    """Write the tree under ``out``; stale ``dashboards/*.json`` of ours are removed."""
    files = render_tree(targets, dashboards_path=dashboards_path, kinds=kinds)
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
