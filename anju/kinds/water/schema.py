"""Secondary water supply (二次供水) pump room: tank, outlet pressure, flow, pumps, quality.

Reports every 10 s. Quality fields follow GB 5749-2022 (生活饮用水卫生标准).
"""

from anju.devices.spec import FieldSpec, KindSpec

KIND = KindSpec(
    name="water",
    title="二次供水 / water supply pump room",
    heartbeat_s=10.0,
    fields=(
        FieldSpec("level_pct", "float", "storage tank level, 0–100", unit="%"),
        FieldSpec("pressure_mpa", "float", "supply outlet pressure", unit="MPa"),
        FieldSpec("flow_m3h", "float", "supply flow", unit="m³/h"),
        FieldSpec("pump_running", "bool", "any pump running"),
        FieldSpec("pump_fault", "bool", "pump controller fault", required=False),
        FieldSpec("chlorine_mg_l", "float", "free residual chlorine", required=False, unit="mg/L"),
        FieldSpec("turbidity_ntu", "float", "turbidity", required=False, unit="NTU"),
        FieldSpec("ph", "float", "pH", required=False),
    ),
)
