"""Small, typed building blocks shared by every anju dashboard.

Each helper returns a grafana-foundation-sdk builder with our conventions applied: the
InfluxDB datasource by stable uid, template variables whose "All" is the regex ``.*``
(one cheap regex instead of a thousand-way alternation at city scale), severity colours,
Grafana unit ids for the units of the kind table.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import stat, statetimeline, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dash

from anju.dashboards.influxql import InfluxQL, ident, influx_ref

__all__ = [
    "BOOL_MAPPINGS",
    "SEVERITY_COLORS",
    "Target",
    "grafana_unit",
    "new_dashboard",
    "q",
    "ref_id",
    "severity_overrides",
    "stat_panel",
    "state_timeline",
    "table_panel",
    "tag_variable",
    "thresholds",
    "timeseries_panel",
]

Target = cogbuilder.Builder[cogvariants.Dataquery]

# Alarm severities of CONTRACT §4, most urgent first, with the colours operators expect.
SEVERITY_COLORS: dict[str, str] = {
    "critical": "red",
    "major": "orange",
    "minor": "yellow",
    "warning": "blue",
}

# Grafana's own unit ids where one exists; anything else is shown as a suffix.
_UNITS: dict[str, str] = {
    "m/s": "velocityms",
    "°C": "celsius",
    "%": "percent",
}

# Booleans are stored as InfluxDB booleans; 1/0 too in case a writer stores integers.
BOOL_MAPPINGS: list[dash.ValueMapping] = [
    dash.ValueMap(options={
        "true": dash.ValueMappingResult(text="yes", color="orange", index=0),
        "false": dash.ValueMappingResult(text="no", color="green", index=1),
        "1": dash.ValueMappingResult(text="yes", color="orange", index=2),
        "0": dash.ValueMappingResult(text="no", color="green", index=3),
    }),
]


def grafana_unit(unit: str) -> str:
    """The Grafana unit id for a FieldSpec unit (``"°C"`` → ``"celsius"``)."""
    if not unit:
        return "none"
    return _UNITS.get(unit, f"suffix:{unit}")


def ref_id(i: int) -> str:
    """Grafana's refIds: A, B, … Z, then Q26, Q27 …"""
    return chr(ord("A") + i) if i < 26 else f"Q{i}"


def q(query: str, ref_id: str = "A", *, alias: str | None = None, table: bool = False) -> InfluxQL:
    """A raw InfluxQL target."""
    target = InfluxQL(query).ref_id(ref_id)
    if alias is not None:
        target = target.alias(alias)
    return target.table() if table else target


def new_dashboard(uid: str, title: str, description: str, tags: Sequence[str]) -> db.Dashboard:
    """A dashboard with our defaults: last 6 h, refresh 30 s, a drop-down of every anju
    dashboard (all carry the tag ``anju``). The time zone is set when the tree is built
    (:func:`anju.dashboards.build.build_dashboards`)."""
    return (
        db.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["anju", *tags])
        .time("now-6h", "now")
        .refresh("30s")
        .tooltip(dash.DashboardCursorSync.CROSSHAIR)
        .readonly()
        .link(db.DashboardLink("anju").type(dash.DashboardLinkType.DASHBOARDS).tags(["anju"])
              .as_dropdown(True).include_vars(True).keep_time(True))
    )


def tag_variable(
    name: str,
    label: str,
    *,
    measurement: str | None = None,
    key: str | None = None,
    where: Iterable[str] = (),
) -> db.QueryVariable:
    """A multi-value template variable over the values of a tag, with "All" = ``.*``.

    ``where`` names the variables this one depends on (``building`` depends on ``estate``).
    """
    query = "SHOW TAG VALUES"
    if measurement is not None:
        query += f" FROM {ident(measurement)}"
    query += f" WITH KEY = {ident(key or name)}"
    conditions = [f"{ident(v)} =~ /^${v}$/" for v in where]
    if conditions:
        query += " WHERE " + " AND ".join(conditions)
    return (
        db.QueryVariable(name)
        .label(label)
        .datasource(influx_ref())
        .query(query)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(dash.VariableOption(selected=True, text=["All"], value=["$__all"]))
        .refresh(dash.VariableRefresh.ON_DASHBOARD_LOAD)
        .sort(dash.VariableSort.ALPHABETICAL_ASC)
    )


def thresholds(base: str, *steps: tuple[float, str]) -> db.ThresholdsConfig:
    """Absolute thresholds: ``base`` colour below the first step, then each step's colour."""
    return (
        db.ThresholdsConfig()
        .mode(dash.ThresholdsMode.ABSOLUTE)
        .steps([dash.Threshold(value=None, color=base)]
               + [dash.Threshold(value=v, color=c) for v, c in steps])
    )


def _legend() -> cb.VizLegendOptions:
    return (
        cb.VizLegendOptions()
        .display_mode(common.LegendDisplayMode.LIST)
        .placement(common.LegendPlacement.BOTTOM)
        .show_legend(True)
    )


def _tooltip() -> cb.VizTooltipOptions:
    return cb.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(
        common.SortOrder.DESCENDING)


def timeseries_panel(
    title: str,
    description: str,
    targets: Sequence[Target],
    *,
    unit: str = "none",
    span: int = 12,
    height: int = 8,
    bars: bool = False,
    points: bool = False,
    step: bool = False,
    limits: db.ThresholdsConfig | None = None,
    min_val: float | None = None,
    max_val: float | None = None,
) -> timeseries.Panel:
    """A time series panel; ``limits`` are drawn as dashed lines and shaded areas."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(influx_ref())
        .targets(list(targets))
        .unit(unit)
        .span(span)
        .height(height)
        .legend(_legend())
        .tooltip(_tooltip())
        .span_nulls(True)
    )
    if bars:
        panel = panel.draw_style(common.GraphDrawStyle.BARS).fill_opacity(60)
    elif points:
        panel = panel.draw_style(common.GraphDrawStyle.POINTS).point_size(8)
    else:
        panel = panel.draw_style(common.GraphDrawStyle.LINE).fill_opacity(10)
    if step:
        panel = panel.line_interpolation(common.LineInterpolation.STEP_AFTER)
    if limits is not None:
        panel = panel.thresholds(limits).thresholds_style(
            cb.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.LINE_AND_AREA))
    if min_val is not None:
        panel = panel.min(min_val)
    if max_val is not None:
        panel = panel.max(max_val)
    return panel


def stat_panel(
    title: str,
    description: str,
    targets: Sequence[Target],
    *,
    span: int = 6,
    height: int = 4,
    unit: str = "none",
    calc: str = "lastNotNull",
    time_from: str | None = None,
    limits: db.ThresholdsConfig | None = None,
) -> stat.Panel:
    """A single-stat panel reducing each series with ``calc``."""
    panel = (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(influx_ref())
        .targets(list(targets))
        .span(span)
        .height(height)
        .unit(unit)
        .reduce_options(cb.ReduceDataOptions().calcs([calc]).values(False))
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .thresholds(limits or thresholds("green"))
    )
    if time_from is not None:
        panel = panel.time_from(time_from)
    return panel


def table_panel(
    title: str,
    description: str,
    targets: Sequence[Target],
    *,
    span: int = 24,
    height: int = 9,
    merge: bool = False,
    hide_time: bool = False,
    time_from: str | None = None,
) -> table.Panel:
    """A table; ``merge`` joins the targets' frames on their common columns (tags).

    ``hide_time`` drops the Time column of aggregates without ``GROUP BY time()``, where
    InfluxDB puts one meaningless time on every row.
    """
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(influx_ref())
        .targets(list(targets))
        .span(span)
        .height(height)
        .show_header(True)
    )
    if merge:
        panel = panel.with_transformation(dash.DataTransformerConfig(id_val="merge", options={}))
    if merge or hide_time:
        panel = panel.with_transformation(dash.DataTransformerConfig(
            id_val="organize", options={"excludeByName": {"Time": True}}))
    if time_from is not None:
        panel = panel.time_from(time_from)
    return panel


def state_timeline(
    title: str,
    description: str,
    targets: Sequence[Target],
    *,
    mappings: list[dash.ValueMapping] | None = None,
    span: int = 12,
    height: int = 8,
) -> statetimeline.Panel:
    """A state timeline, one lane per series."""
    return (
        statetimeline.Panel()
        .title(title)
        .description(description)
        .datasource(influx_ref())
        .targets(list(targets))
        .span(span)
        .height(height)
        .mappings(BOOL_MAPPINGS if mappings is None else mappings)
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .legend(_legend())
    )


def severity_overrides(panel: stat.Panel | timeseries.Panel) -> stat.Panel | timeseries.Panel:
    """Colour series named after a severity with that severity's colour."""
    for severity, color in SEVERITY_COLORS.items():
        panel = panel.override_by_name(severity, [
            dash.DynamicConfigValue(id_val="color",
                                    value={"mode": "fixed", "fixedColor": color}),
        ])
    return panel
