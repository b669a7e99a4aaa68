"""Fire-lane camera (消防车通道占用监测) watching a fire lane of an estate.

The camera's video analytics report whether something stands in the lane and how many
vehicles it counts there: a heartbeat every 60 s, at once on any change, and every 30 s
while the lane is occupied. Many such cameras also time how long the lane has been
occupied (``occupied_s``, their "dwell time"); when they do, an occupation that began
before the pipeline first heard of it (a camera back online, a pipeline restarted) is
still judged from when it began.
"""

from anju.devices.spec import FieldSpec, KindSpec

KIND = KindSpec(
    name="firelane",
    title="消防车通道 / fire-lane camera",
    heartbeat_s=60.0,
    fields=(
        FieldSpec("occupied", "bool", "something stands in the fire lane"),
        FieldSpec("vehicles", "int", "vehicles counted in the lane"),
        FieldSpec("occupied_s", "int", "how long the lane has been continuously occupied, "
                  "by the camera's own timer (0 when free)", required=False, unit="s"),
    ),
)
