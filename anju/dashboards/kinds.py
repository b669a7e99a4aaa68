"""One dashboard per device kind, generated from the kind table.

Every stored field of a :class:`~anju.devices.spec.KindSpec` gets a panel chosen by its
type (numbers: a time series per device; booleans: a state timeline; enums: counts per
choice), so a new kind folder in ``anju/kinds/`` gets its dashboard with no change
here. Hand-tuned limits and extra panels of a kind live in its
``anju/kinds/<kind>/dashboard.py`` (see :mod:`anju.dashboards.tuning`).
"""

from __future__ import annotations

from grafana_foundation_sdk.builders import dashboard as db

from anju.dashboards.influxql import InfluxQLAnnotation, ident, influx_ref, literal, scope
from anju.dashboards.panels import (
    Target,
    grafana_unit,
    new_dashboard,
    q,
    ref_id,
    severity_overrides,
    stat_panel,
    state_timeline,
    table_panel,
    tag_variable,
    timeseries_panel,
)
from anju.dashboards.tuning import (
    FieldTuning,
    KindTuning,
    PanelBuilder,
    PanelList,
    extra_panels,
)
from anju.devices.spec import FieldSpec, KindSpec

__all__ = ["SCOPE_VARS", "kind_dashboard", "kind_uid", "presence_field"]

SCOPE_VARS = ("estate", "building", "device")
# One series per device with no row for an interval without readings: fill(null) would
# write every empty interval of the range for every device (2 160 rows × 1 320 detectors of
# the demo on "All" over 6 h, ~10 s of InfluxDB each) and draw the same picture, since
# the time series connect nulls (span_nulls) and a state timeline holds a state until
# the next one.
PER_DEVICE = 'GROUP BY time($__interval), "device" fill(none)'


def kind_uid(kind: str) -> str:
    """The stable uid of a kind's dashboard."""
    return f"anju-kind-{kind}"


def presence_field(spec: KindSpec) -> FieldSpec:
    """The field counted to tell that a device reported: its first required stored field."""
    stored = [f for f in spec.fields if f.stored]
    if not stored:
        raise ValueError(f"kind {spec.name!r} stores no field: nothing to chart")
    return next((f for f in stored if f.required), stored[0])


def _field_panel(spec: KindSpec, f: FieldSpec, tuning: FieldTuning | None) -> PanelBuilder:
    m, col = ident(spec.name), ident(f.name)
    where = scope(*SCOPE_VARS)
    desc = f"{f.doc}" + (f" ({f.unit})" if f.unit else "") + "."
    if tuning and tuning.note:
        desc += " " + tuning.note
    if f.type == "bool":
        return state_timeline(
            f.name, desc + " One lane per device, its last value in each interval.",
            [q(f"SELECT last({col}) FROM {m} WHERE {where} "
               + PER_DEVICE, alias="$tag_device")],
        )
    if f.type == "enum":
        targets: list[Target] = [
            q(f"SELECT count({col}) AS {ident(choice)} FROM {m} WHERE {col} = {literal(choice)} "
              f"AND {where} GROUP BY time($__interval) fill(0)", ref_id(i),
              alias="$col")
            for i, choice in enumerate(f.choices)
        ]
        return timeseries_panel(f.name, desc + " Count of each value per interval.", targets,
                                bars=True)
    # Numbers. Integers are discrete (a floor): last value, drawn as steps.
    default_agg = "last" if f.type == "int" else "mean"
    aggs = tuning.aggs if tuning and tuning.aggs else (default_agg,)
    alias = "$tag_device" if len(aggs) == 1 else "$tag_device $col"
    targets = [
        q(f"SELECT {agg}({col}) AS {ident(agg)} FROM {m} WHERE {where} "
          + PER_DEVICE, ref_id(i), alias=alias)
        for i, agg in enumerate(aggs)
    ]
    how = "/".join(aggs)
    return timeseries_panel(
        f.name, desc + f" {how.capitalize()} per device and interval.", targets,
        unit=grafana_unit(f.unit), step=f.type == "int",
        limits=tuning.limits() if tuning else None,
        min_val=tuning.min_val if tuning else None,
        max_val=tuning.max_val if tuning else None,
    )


def _summary_panels(spec: KindSpec) -> PanelList:
    m, p = ident(spec.name), ident(presence_field(spec).name)
    where = scope(*SCOPE_VARS)
    stored = [f for f in spec.fields if f.stored]
    latest = ", ".join(f"last({ident(f.name)}) AS {ident(f.name)}" for f in stored)
    return [
        stat_panel(
            "Devices reporting",
            f"Devices of kind {spec.name} with at least one reading in the time range.",
            [q(f"SELECT count(\"n\") AS \"devices\" FROM (SELECT count({p}) AS \"n\" FROM {m} "
               f"WHERE {where} GROUP BY \"device\")", alias="$col")],
        ),
        stat_panel(
            "Readings per second",
            "Stored readings per second, averaged over the time range.",
            [q(f"SELECT count({p}) * 1000 / $__interval_ms AS \"readings_per_s\" FROM {m} "
               f"WHERE {where} GROUP BY time($__interval) fill(0)", alias="$col")],
            unit="suffix:/s", calc="mean",
        ),
        severity_overrides(stat_panel(
            "Alarms raised",
            f"Alarms raised on {spec.name} devices in the time range, by severity.",
            [q(f"SELECT count(\"alarm_id\") FROM \"alarms\" WHERE \"kind\" = {literal(spec.name)} "
               f"AND \"event\" = 'raised' AND {scope('estate', 'building')} GROUP BY \"severity\"",
               alias="$tag_severity")],
            span=12, calc="sum",
        )),
        table_panel(
            "Latest reading per device",
            "The last value of every field, per device, within the time range.",
            [q(f"SELECT {latest} FROM {m} WHERE {where} "
               "GROUP BY \"estate\", \"building\", \"device\"", table=True)],
            height=8, hide_time=True,
        ),
    ]


def kind_dashboard(spec: KindSpec, tuning: KindTuning | None = None) -> db.Dashboard:
    """The dashboard of one kind: summary, one panel per stored field, hand-tuned extras
    (``tuning``: the kind's entry of :func:`~anju.dashboards.tuning.tuning_for`)."""
    tuning = tuning or {}
    d = (
        new_dashboard(kind_uid(spec.name), f"anju · {spec.title}",
                      f"Readings of every {spec.name} device: {spec.doc or spec.title}.",
                      ["anju-kind", spec.name])
        .with_variable(tag_variable("estate", "Estate", measurement=spec.name))
        .with_variable(tag_variable("building", "Building", measurement=spec.name,
                                    where=["estate"]))
        .with_variable(tag_variable("device", "Device", measurement=spec.name,
                                    where=["estate", "building"]))
        .annotation(
            db.AnnotationQuery()
            .name(f"{spec.name} alarms raised")
            .datasource(influx_ref())
            .enable(True)
            .icon_color("red")
            .target(
                InfluxQLAnnotation(
                    # Only never-null columns: Grafana drops an annotation row with a null
                    # (group alarms have no device): the text field holds device and message.
                    "SELECT \"text\", \"rule\", \"severity\", \"building\" "
                    f"FROM \"alarms\" WHERE \"kind\" = {literal(spec.name)} "
                    f"AND \"event\" = 'raised' AND {scope('estate', 'building')}")
                .text_column("text").tags_column("rule,severity,building"))
        )
        .with_row(db.Row("Summary"))
    )
    for panel in _summary_panels(spec):
        d = d.with_panel(panel)
    d = d.with_row(db.Row("Readings"))
    for f in spec.fields:
        if f.stored and f.type != "track":
            d = d.with_panel(_field_panel(spec, f, tuning.get(f.name)))
    extras = extra_panels(spec, tuning)
    if extras is not None:
        d = d.with_row(db.Row(f"{spec.name}: operator views"))
        for panel in extras:
            d = d.with_panel(panel)
    return d
