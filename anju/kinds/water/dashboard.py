"""The pump room's dashboard panels: GB 5749-2022 limits from its rules, pressure and flow."""

from __future__ import annotations

from grafana_foundation_sdk.models import dashboard as dash

from anju.dashboards.panels import q, stat_panel, timeseries_panel
from anju.dashboards.tuning import (
    DEVICE_SCOPE as _DEVICE_SCOPE,
)
from anju.dashboards.tuning import (
    FieldTuning,
    KindTuning,
    PanelList,
    RulesInForce,
)
from anju.dashboards.tuning import (
    band as _band,
)
from anju.dashboards.tuning import (
    fmt as _g,
)
from anju.dashboards.tuning import (
    limit as _limit,
)
from anju.devices.spec import KindSpec

__all__ = ["panels", "tuning"]


def tuning(r: RulesInForce) -> KindTuning:
    """How to draw the pump room's fields, with the limits of the rules in force."""
    level_lo, level_hi = r.param("water.level_low", "min_pct"), r.param("water.overflow",
                                                                       "max_pct")
    p_lo, p_hi = r.param("water.pressure_low", "min_mpa"), r.param("water.pressure_high",
                                                                "max_mpa")
    cl_lo, cl_hi = r.param("water.chlorine", "min_mg_l"), r.param("water.chlorine", "max_mg_l")
    turb = r.param("water.turbidity", "max_ntu")
    ph_lo, ph_hi = r.param("water.ph", "min_ph"), r.param("water.ph", "max_ph")
    cl_base, cl_steps = _band(cl_lo, cl_hi)
    ph_base, ph_steps = _band(ph_lo, ph_hi)
    p_base, p_steps = _band(p_lo, p_hi)
    lv_base, lv_steps = ("red", _limit((level_lo, "green"), (level_hi, "yellow"))
                         ) if level_lo is not None else ("green", _limit((level_hi, "yellow")))
    return {
        "level_pct": FieldTuning(
            base=lv_base, steps=lv_steps, min_val=0, max_val=100,
            note=" ".join(t for t in (
                f"Rule water.level_low: below {_g(level_lo)} %." if level_lo is not None
                else "",
                f"Rule water.overflow: above {_g(level_hi)} %." if level_hi is not None
                else "") if t)),
        "pressure_mpa": FieldTuning(
            aggs=("min", "max"), base=p_base, steps=p_steps,
            note=" ".join(t for t in (
                f"Rule water.pressure_low: below {_g(p_lo)} MPa." if p_lo is not None
                else "",
                f"Rule water.pressure_high: above {_g(p_hi)} MPa." if p_hi is not None
                else "") if t)),
        # GB 5749-2022 (生活饮用水卫生标准) table A: free chlorine in the supply 0.05–2 mg/L,
        # turbidity ≤ 1 NTU, pH 6.5–8.5 — the catalogue's defaults of these rules.
        "chlorine_mg_l": FieldTuning(
            base=cl_base, steps=cl_steps,
            note=f"Rule water.chlorine: free chlorine {_g(cl_lo)}–{_g(cl_hi)} mg/L "
                 "(GB 5749-2022)." if cl_lo is not None and cl_hi is not None else ""),
        "turbidity_ntu": FieldTuning(
            aggs=("max",), steps=_limit((turb, "red")), min_val=0,
            note=f"Rule water.turbidity: at most {_g(turb)} NTU (GB 5749-2022)."
            if turb is not None else ""),
        "ph": FieldTuning(
            base=ph_base, steps=ph_steps,
            note=f"Rule water.ph: pH {_g(ph_lo)}–{_g(ph_hi)} (GB 5749-2022)."
            if ph_lo is not None and ph_hi is not None else ""),
    }


def panels(spec: KindSpec, t: KindTuning) -> PanelList:
    """The operator views of pump rooms: water quality now, pressure against flow."""
    quality = stat_panel(
        "Water quality now (GB 5749-2022)",
        "Last free chlorine, turbidity and pH across the selected pump rooms, red outside "
        "the limits of the water-quality rules. " + " ".join(
            t[f].note for f in ("chlorine_mg_l", "turbidity_ntu", "ph") if t[f].note),
        [
            q(f'SELECT last("chlorine_mg_l") AS "chlorine_mg_l" FROM "water" '
              f'WHERE {_DEVICE_SCOPE} GROUP BY "device"', "A", alias="$tag_device $col"),
            q(f'SELECT last("turbidity_ntu") AS "turbidity_ntu" FROM "water" '
              f'WHERE {_DEVICE_SCOPE} GROUP BY "device"', "B", alias="$tag_device $col"),
            q(f'SELECT last("ph") AS "ph" FROM "water" WHERE {_DEVICE_SCOPE} GROUP BY "device"',
              "C", alias="$tag_device $col"),
        ],
        span=24, height=5,
    )
    for pattern, tuned in ((".* chlorine_mg_l$", t["chlorine_mg_l"]),
                           (".* turbidity_ntu$", t["turbidity_ntu"]),
                           (".* ph$", t["ph"])):
        limits = tuned.limits()
        if limits is None:  # the rule is disabled at this site
            continue
        quality = quality.override_by_regexp(pattern, [
            dash.DynamicConfigValue(id_val="thresholds", value=limits.build()),
        ])
    return [
        quality,
        timeseries_panel(
            "Pressure and flow",
            "Outlet pressure (left) against supply flow: a pressure drop while flow jumps is "
            "rule water.burst.",
            [
                q(f'SELECT mean("pressure_mpa") AS "pressure_mpa" FROM "water" '
                  f'WHERE {_DEVICE_SCOPE} GROUP BY time($__interval), "device" fill(none)',
                  "A", alias="$tag_device $col"),
                q(f'SELECT mean("flow_m3h") AS "flow_m3h" FROM "water" WHERE {_DEVICE_SCOPE} '
                  'GROUP BY time($__interval), "device" fill(none)', "B",
                  alias="$tag_device $col"),
            ],
            span=24,
        ).override_by_regexp(".* flow_m3h$", [
            dash.DynamicConfigValue(id_val="custom.axisPlacement", value="right"),
            dash.DynamicConfigValue(id_val="unit", value="suffix:m³/h"),
        ]),
    ]
