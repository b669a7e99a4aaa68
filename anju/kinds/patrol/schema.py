"""Patrol check-point (巡更点) on a guard's route.

A check-point reports a heartbeat every 5 minutes and a ``checkin`` when a guard's card or
wand is read at it, with the guard's badge number. The route's schedule is registry params
of each of its check-points (every ``every_min`` minutes from ``from_hour`` until
``to_hour``, local time UTC + ``utc_offset_h``, each round within ± ``tolerance_min``), so
each route keeps its own; a point without them follows the rule ``patrol.missed``'s
defaults. The bureaus ask property companies to keep patrol records (巡查制度) and the
accountability report counts the rounds missed.
"""

from typing import Any

from anju.devices.spec import FieldSpec, KindSpec, ParamSpec
from anju.errors import PayloadError


def _check(reading: dict[str, Any]) -> None:
    # a check-in without a guard proves nothing about who walked the round
    if reading.get("event") == "checkin" and reading.get("guard_id") is None:
        raise PayloadError("missing_field", "a checkin needs the guard's guard_id",
                           field="guard_id")


KIND = KindSpec(
    name="patrol",
    title="巡更点 / patrol check-point",
    heartbeat_s=300.0,
    fields=(
        FieldSpec("event", "enum", "what the check-point reports",
                  choices=("heartbeat", "checkin")),
        FieldSpec("guard_id", "int", "badge number of the guard checking in (for `checkin`)",
                  required=False),
        FieldSpec("battery_pct", "float", "0–100", required=False, unit="%"),
    ),
    params=(
        ParamSpec("every_min", "float", "the route's rounds: one every this many minutes",
                  required=False, example=120.0),
        ParamSpec("from_hour", "float", "local hour of the first round of the day",
                  required=False, example=22.0),
        ParamSpec("to_hour", "float", "local hour the rounds stop (not a round itself)",
                  required=False, example=6.0),
        ParamSpec("tolerance_min", "float", "a round counts when checked in within ± this",
                  required=False, example=30.0),
        ParamSpec("utc_offset_h", "float", "the estate's offset from UTC (China: 8)",
                  required=False, example=8.0),
    ),
    check=_check,
    schema_extra={
        "if": {"properties": {"event": {"const": "checkin"}}},
        "then": {"required": ["guard_id"]},
    },
)
