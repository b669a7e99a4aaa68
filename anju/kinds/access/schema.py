"""Access-control door controller (门禁) of an estate gate or a building's unit door.

Reports a heartbeat every 60 s, and at once each event: a credential granted or denied
(card, face, licence plate, QR code or PIN), the door forced (opened with no valid
credential and no exit request), the controller or its reader tampered with. While the
door is open it reports every 10 s with how long it has been open (``open_s``), so the
rules judge a door held open against the door's own ``held_open_s``. Event vocabulary
after GB 50396-2007 (出入口控制系统工程设计规范) and GA/T 394 (出入口控制系统技术要求).
"""

from anju.devices.spec import FieldSpec, KindSpec, ParamSpec

KIND = KindSpec(
    name="access",
    title="门禁 / access-control door",
    heartbeat_s=60.0,
    fields=(
        FieldSpec("event", "enum", "what the controller reports",
                  choices=("heartbeat", "granted", "denied", "forced", "tamper")),
        FieldSpec("door_open", "bool", "door contact open"),
        FieldSpec("open_s", "int", "how long the door has been open (0 when closed)",
                  required=False, unit="s"),
        FieldSpec("credential", "enum", "how the credential of a granted or denied event "
                  "was presented", required=False,
                  choices=("card", "face", "plate", "qr", "pin")),
    ),
    params=(
        # A gate that prams, wheelchairs and deliveries pass through may need longer.
        ParamSpec("held_open_s", "int", "open longer than this is held open "
                  "(access.held_open; 60 s when not given)", required=False, example=60),
    ),
)
