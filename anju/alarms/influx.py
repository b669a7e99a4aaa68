"""Alarm events as InfluxDB line protocol, for the ``alarms`` measurement (CONTRACT.md §6).

Tags ``estate, building, kind, rule, severity, event`` and ``alarm_id`` (sorted by key, as
InfluxDB recommends); fields ``alarm_id, device, floor, zone, value, message`` (absent when
null), ``state``, ``state_rank`` and ``text``; timestamp the event's ``ts`` in ms, so write with
``precision=ms``. The InfluxDB writer of ``anju/ingest/`` sends the bytes; this module only
encodes.

Two additions to CONTRACT §6 (docs/contract-notes.md), both for the dashboards:

- ``alarm_id`` is a tag as well as a field. Two events of one rule in one building with the
  same ``ts`` (two detectors of one gateway batch, escalations of one tick) would otherwise
  share series key and time, and the second would overwrite the first. With the id in the
  key only the same event of the same alarm maps to the same point, so writing an event
  twice (a replay, a retry) stays idempotent. It also lets a query take ``last()`` per alarm.
- ``state`` is the alarm's state once the event is committed: ``open`` (raised, escalated),
  ``acknowledged``, ``closed`` (cleared; and an event alarm's acknowledgement, which closes
  it in the same commit); ``state_rank`` is the same as 0, 1, 2. The lifecycle only moves
  forward, so dashboards count open alarms from the highest rank of each alarm (robust to
  event times on different clocks) instead of subtracting events.
- ``text`` is the device (when there is one) and the message, ``"s-0001: …"``: a column
  that is never null, for Grafana's annotations.

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
from collections.abc import Iterable, Sequence

from anju.alarms.model import AlarmEvent
from anju.ingest.lineproto import quote_string, tag_value

__all__ = ["alarm_lines", "escape_field_string", "escape_tag", "event_states"]

MEASUREMENT = "alarms"
_TAGS = ("alarm_id", "building", "estate", "event", "kind", "rule", "severity")  # sorted
# The lifecycle only moves forward (open → acknowledged → closed), so an alarm's state is
# its highest rank whatever the order of the points' times: acknowledgements and escalations
# carry the receiving clock, clears the device's, which may run behind.
_RANK = {"open": 0, "acknowledged": 1, "closed": 2}
_STATE = {"raised": "open", "escalated": "open", "acknowledged": "acknowledged",
          "cleared": "closed"}

# One line-protocol escaper for readings and alarms (anju.ingest.lineproto).


def escape_tag(value: str) -> str:
    """A tag value with commas, equals signs and spaces escaped; "" when the tag is omitted."""
    return tag_value(value) or ""


def escape_field_string(value: str) -> str:
    """A string field value, quoted, with ``"`` and ``\\`` escaped."""
    return quote_string(value)


def _line(ev: AlarmEvent, state: str) -> str:
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
    fields.append(f"state={escape_field_string(state)}")
    fields.append(f"state_rank={_RANK[state]}i")
    # held alarms (issue 18): recorded during a maintenance window or while inhibited
    if ev.details.get("maintenance"):
        fields.append("maintenance=true")
    if ev.details.get("inhibited_by"):
        fields.append("inhibited=true")
    # Never null, for Grafana annotations (a row with a null column is dropped there).
    text = f"{ev.device}: {ev.message}" if ev.device else ev.message
    fields.append(f"text={escape_field_string(text)}")
    return f"{MEASUREMENT}{tags} {','.join(fields)} {int(ev.ts)}"


def event_states(events: Sequence[AlarmEvent]) -> list[str]:
    """The ``state`` field of each event: the alarm's state once the events are committed.

    An ``acknowledged`` followed in the same commit by a ``cleared`` of the same alarm and
    time (an event alarm, CONTRACT §5) is ``closed`` already, so that the two points, which
    share a time, agree on the alarm's state whichever of them a ``last()`` picks.
    """
    closing = {(ev.alarm_id, ev.ts) for ev in events if ev.event == "cleared"}
    return ["closed" if ev.event == "acknowledged" and (ev.alarm_id, ev.ts) in closing
            else _STATE[ev.event] for ev in events]


def alarm_lines(events: Iterable[AlarmEvent]) -> bytes:
    """Line protocol for the events, one line each, newline-terminated; ms timestamps.

    Pass the events of one commit together (an acknowledgement with the ``cleared`` that
    closes an event alarm), so that their ``state`` is the state after the commit.
    """
    # Only lifecycle events are points: an assignment or a comment changes no state.
    evs = [ev for ev in events if ev.event in _STATE]
    out = "".join(_line(ev, st) + "\n" for ev, st in zip(evs, event_states(evs), strict=True))
    return out.encode("utf-8")
