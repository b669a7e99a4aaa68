"""Elevator (电梯) monitoring terminal: car position, motion, doors and presence.

Reports every 1 s while moving or with doors open, every 30 s otherwise (CONTRACT §2).
Fault vocabulary after GB/T 24476-2023 (电梯、自动扶梯和自动人行道物联网的技术规范).
"""

from anju.devices.spec import FieldSpec, KindSpec, ParamSpec

KIND = KindSpec(
    name="elevator",
    title="电梯 / elevator",
    heartbeat_s=30.0,
    # TSG T5002-2017 (电梯维护保养规则) §4: maintenance at least every 15 days.
    maintenance_days=15.0,
    # A power cut stops the lift and, likely, everything else in its building.
    inhibits=(("elevator.power_failure", "device.offline"),),
    fields=(
        FieldSpec("floor", "int", "floor the car is at or passing (negative for basements)"),
        FieldSpec("speed_mps", "float", "car speed, + up, − down", unit="m/s"),
        FieldSpec("door_open", "bool", "car door not fully closed"),
        FieldSpec("in_door_zone", "bool", "car within the unlocking zone of a landing"),
        FieldSpec("occupied", "bool", "passenger presence detected in the car"),
        FieldSpec("alarm_button", "bool", "emergency call button pressed", required=False),
        FieldSpec("power_ok", "bool", "mains power present", required=False),
        FieldSpec("accel_rms_mg", "float", "car vibration, RMS acceleration", required=False,
                  unit="mg"),
        FieldSpec("ebike", "bool", "in-car camera sees an electric bicycle", required=False),
    ),
    params=(
        ParamSpec("rated_speed_mps", "float", "rated car speed", example=1.75),
        ParamSpec("top_floor", "int", "highest landing", example=18),
        ParamSpec("bottom_floor", "int", "lowest landing", example=-1),
    ),
)
