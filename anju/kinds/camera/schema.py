"""Falling-object camera (高空抛物监控) facing a facade, or a corridor camera.

Sends heartbeats, ``obstructed`` when its view is blocked, and ``falling_object`` with the
tracker's image track, from which the rules recover the origin floor. A camera in a
corridor, stairwell or lobby (registered with its floor, no calibration) sends
``ebike_charging`` when it sees an e-bike connected to a charger (电动车违规充电).
"""

from typing import Any

from anju.devices.spec import FieldSpec, KindSpec, ParamSpec
from anju.errors import PayloadError

_MIN_TRACK = 4  # a parabola has 3 unknowns; 4 points leave one to judge the fit


def _check(reading: dict[str, Any]) -> None:
    event = reading.get("event")
    track = reading.get("track")
    if event == "falling_object":
        if track is None or len(track) < _MIN_TRACK:
            raise PayloadError("bad_track", f"a falling_object needs ≥ {_MIN_TRACK} track points",
                               field="track")
    elif track is not None:
        raise PayloadError("bad_track", f"a track belongs to falling_object, not {event}",
                           field="track")


KIND = KindSpec(
    name="camera",
    title="高空抛物 / falling-object camera",
    heartbeat_s=60.0,
    fields=(
        FieldSpec("event", "enum", "what the camera reports",
                  choices=("heartbeat", "falling_object", "obstructed", "ebike_charging")),
        FieldSpec("track", "track", "[t_ms_since_first, x_px, y_px] points", required=False,
                  stored=False),
        FieldSpec("confidence", "float", "the camera's detection score, 0–1", required=False),
    ),
    # The calibration of a facade camera; a corridor camera has none (the registry cannot
    # tell the two apart, so none is required: a falling_object from a camera without one
    # is raised without its origin floor).
    params=(
        ParamSpec("mount_height_m", "float", "camera height above ground", example=2.5,
                  required=False),
        ParamSpec("distance_m", "float", "horizontal distance to the facade", example=25.0,
                  required=False),
        ParamSpec("tilt_deg", "float", "upward pitch of the optical axis", example=40.0,
                  required=False),
        ParamSpec("focal_px", "float", "focal length in pixels", example=1500.0,
                  required=False),
        ParamSpec("cy_px", "float", "principal point row", example=1080.0, required=False),
    ),
    check=_check,
    schema_extra={
        "if": {"properties": {"event": {"const": "falling_object"}}},
        "then": {"required": ["track"], "properties": {"track": {"minItems": _MIN_TRACK}}},
        "else": {"not": {"required": ["track"]}},
    },
)
