"""Smoke and heat detector (烟感/温感), networked: heartbeat every 60 s and on any change."""

from anju.devices.spec import FieldSpec, KindSpec

KIND = KindSpec(
    name="smoke",
    title="烟感 / smoke & heat detector",
    heartbeat_s=60.0,
    fields=(
        FieldSpec("smoke_db_m", "float", "optical obscuration", unit="dB/m"),
        FieldSpec("temp_c", "float", "air temperature at the detector", unit="°C"),
        FieldSpec("battery_pct", "float", "battery, 0–100", required=False, unit="%"),
        FieldSpec("tamper", "bool", "detector removed from its base", required=False),
    ),
)
