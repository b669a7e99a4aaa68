"""Alarm events as InfluxDB line protocol, for the ``alarms`` measurement (CONTRACT.md §6).

Tags ``estate, building, kind, rule, severity, event`` (sorted by key, as InfluxDB
recommends); fields ``alarm_id, device, floor, zone, value, message`` (absent when null);
timestamp the event's ``ts`` in ms, so write with ``precision=ms``. The InfluxDB writer of
``anju/ingest/`` sends the bytes; this module only encodes.

Escaping follows the line-protocol reference: in tag keys and values commas, equals signs
and spaces take a backslash; string field values are double-quoted with ``"`` and ``\\``
escaped. Line protocol cannot carry a newline inside a tag value; inside a quoted string
field InfluxDB does take one, but then a point spans two lines and any batcher or spool that
splits on newlines cuts it, so newlines and carriage returns become ``\\n`` / ``\\r``
text everywhere: one point is always one line. A tag value cannot end in a backslash (it
would escape the separator; InfluxDB 1.6 refuses both spellings), so trailing backslashes
are dropped; an empty tag value is not allowed either, so an empty tag is left out.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from anju.alarms.model import AlarmEvent

__all__ = ["alarm_lines", "escape_field_string", "escape_tag"]

MEASUREMENT = "alarms"
_TAGS = ("building", "estate", "event", "kind", "rule", "severity")  # sorted

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ ", "\n": r"\n", "\r": r"\r"})
_STR_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": r"\n", "\r": r"\r"})


def escape_tag(value: str) -> str:
    """A tag key or value with commas, equals signs and spaces escaped."""
    return value.rstrip("\\").translate(_TAG_ESCAPES)


def escape_field_string(value: str) -> str:
    """A string field value, quoted, with ``"`` and ``\\`` escaped."""
    return '"' + value.translate(_STR_ESCAPES) + '"'


def _line(ev: AlarmEvent) -> str:
    tags = "".join(f",{k}={t}" for k in _TAGS if (t := escape_tag(getattr(ev, k))))
    fields = [f"alarm_id={escape_field_string(ev.alarm_id)}"]
    if ev.device is not None:
        fields.append(f"device={escape_field_string(ev.device)}")
    if ev.floor is not None:
        fields.append(f"floor={int(ev.floor)}i")
    if ev.zone is not None:
        fields.append(f"zone={escape_field_string(ev.zone)}")
    if ev.value is not None and math.isfinite(ev.value):
        # repr() of a float is the shortest round-trip form ("0.31", "1e-05"), which
        # InfluxDB parses as a float; an int-valued float keeps its ".0".
        fields.append(f"value={float(ev.value)!r}")
    fields.append(f"message={escape_field_string(ev.message)}")
    return f"{MEASUREMENT}{tags} {','.join(fields)} {int(ev.ts)}"


def alarm_lines(events: Iterable[AlarmEvent]) -> bytes:
    """Line protocol for the events, one line each, newline-terminated; ms timestamps."""
    out = "".join(_line(ev) + "\n" for ev in events)
    return out.encode("utf-8")
