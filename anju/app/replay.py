"""Replaying a recording through the live decode → rules → alarms path, in data time.

A recording is JSON lines, each ``{"topic": ..., "payload" | "payload_raw" |
"payload_b64": ...}`` (CONTRACT §7). Messages are gathered like the live batcher does and
the engine ticks whenever data time has moved on by a tick (1 s), so a replay behaves
like the live pipeline and is deterministic: the same input gives the same alarms. How a
batch is judged and a tick taken, and how either reaches the alarm lifecycle, is the
pipeline's own wiring (anju.app.evaluation); only the clock driving it differs.

The receiving clock of a replay is data time (DESIGN.md "Time"): the newest reading, each
device's ``ts`` taken less the lead its clock had over that clock when it first reported.
A device whose clock runs minutes fast therefore does not drag every other device's clock
(and their durations and offline) minutes ahead; one that runs slow holds nothing back.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson

from anju.alarms import AlarmEvent, AlarmManager, MemoryAlarmStore
from anju.app.evaluation import Evaluation
from anju.devices.batch import Batch, BatchBuilder
from anju.devices.decode import Decoder, Rejection
from anju.devices.registry import Site
from anju.rules.clock import CLOCK_STEP_MS
from anju.rules.engine import RuleEngine
from anju.rules.model import RuleSet

__all__ = ["ReplayResult", "iter_recording", "replay"]

_PAYLOAD_KEYS = ("payload", "payload_raw", "payload_b64")


@dataclass
class ReplayResult:
    messages: int = 0
    readings: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    alarms: int = 0
    raised: int = 0
    late: int = 0
    records: int = 0  # lines that were records (topic and payload), good or bad inside
    bad_lines: list[str] = field(default_factory=list)  # the first few, for the user
    by_rule: dict[str, int] = field(default_factory=dict)
    events: list[AlarmEvent] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The contract's summary (CONTRACT §7) and a few extras."""
        return {
            "messages": self.messages,
            "readings": self.readings,
            "rejected": dict(sorted(self.rejected.items())),
            "alarms": self.alarms,
            "raised": self.raised,
            "late": self.late,
            "by_rule": dict(sorted(self.by_rule.items())),
        }


def iter_recording(fh: IO[bytes]) -> Iterator[tuple[int, str | None, bytes | None, str]]:
    """Yields (line number, topic, payload bytes, problem) for each non-blank line.

    A line that is not a valid record yields ``payload=None`` and a problem string.
    """
    for lineno, line in enumerate(fh, 1):
        if not line.strip():
            continue
        try:
            rec = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            yield lineno, None, None, f"line {lineno}: not JSON ({exc})"
            continue
        if not isinstance(rec, dict) or not isinstance(rec.get("topic"), str):
            yield lineno, None, None, f"line {lineno}: no 'topic' string"
            continue
        topic = rec["topic"]
        given = [k for k in _PAYLOAD_KEYS if k in rec]
        if len(given) != 1:
            yield lineno, topic, None, (f"line {lineno}: needs exactly one of "
                                        f"{', '.join(_PAYLOAD_KEYS)}")
            continue
        k = given[0]
        v = rec[k]
        if k == "payload":
            yield lineno, topic, orjson.dumps(v), ""
        elif k == "payload_raw":
            if not isinstance(v, str):
                yield lineno, topic, None, f"line {lineno}: payload_raw must be a string"
            else:
                # surrogates can stand in a JSON string; keep them as the bytes they name
                yield lineno, topic, v.encode("utf-8", "surrogatepass"), ""
        else:
            try:
                yield lineno, topic, base64.b64decode(v, validate=True), ""
            except (binascii.Error, TypeError, ValueError):
                yield lineno, topic, None, f"line {lineno}: payload_b64 is not base64"


def replay(site: Site, rules: RuleSet, source: IO[bytes], *,
           tick_ms: int = 1000, max_batch: int = 5000,
           on_reject: Callable[[Rejection], None] | None = None,
           on_progress: Callable[[int], None] | None = None) -> ReplayResult:
    """Replays ``source`` (a binary file of JSON lines); returns counts and alarm events
    ordered by ``ts`` (stable: events of equal ``ts`` keep the order they happened in)."""
    decoder = Decoder(site, on_reject=on_reject)
    engine = RuleEngine(site, rules)
    evaluation = Evaluation(engine, AlarmManager(site, MemoryAlarmStore(keep_outbox=False)))
    builder = BatchBuilder()
    result = ReplayResult()
    events: list[AlarmEvent] = []
    last_tick: int | None = None
    pending = 0
    clock = _DataClock(len(site.devices))

    def flush() -> None:
        nonlocal last_tick, pending
        batch = builder.build()
        pending = 0
        if batch:
            events.extend(evaluation.batch(batch, clock.receive(batch)))
        now = clock.now
        if now is not None:
            events.extend(evaluation.tick(now))
            last_tick = decoder.newest_ts

    for n, (_lineno, topic, payload, problem) in enumerate(iter_recording(source), 1):
        if payload is None:
            decoder.reject_message(topic or "", "bad_record", problem, b"")
            if len(result.bad_lines) < 5:
                result.bad_lines.append(problem)
        else:
            result.records += 1
            pending += decoder.decode(topic or "", payload, builder)
        if last_tick is None and decoder.newest_ts:
            last_tick = decoder.newest_ts
        if pending >= max_batch or (last_tick is not None
                                    and decoder.newest_ts >= last_tick + tick_ms):
            flush()
        if on_progress is not None and n % 10000 == 0:
            on_progress(n)
    flush()
    events.sort(key=lambda e: e.ts)
    result.events = events
    result.messages = decoder.messages
    result.readings = decoder.accepted
    result.rejected = dict(decoder.rejected)
    result.alarms = len(events)
    result.raised = sum(1 for e in events if e.event == "raised")
    result.late = engine.stats.late
    for e in events:
        if e.event == "raised":
            result.by_rule[e.rule] = result.by_rule.get(e.rule, 0) + 1
    return result


class _DataClock:
    """A replay's receiving clock, from the readings themselves (see the module doc)."""

    def __init__(self, devices: int) -> None:
        self.now: int | None = None
        self._lead = np.full(devices, -1, np.int64)  # -1: not reported yet

    def receive(self, batch: Batch) -> int:
        for kb in batch.kinds.values():
            if not len(kb):
                continue
            dev = kb.device.astype(np.int64)
            new = self._lead[dev] < 0
            if new.any():
                ref = self.now if self.now is not None else int(kb.ts.min())
                # a device's lead: how far its first reading was ahead of the clock, when
                # that is more than reordering explains (a clock running fast)
                rows = np.flatnonzero(new)
                self._lead[dev[rows]] = np.iinfo(np.int64).max
                np.minimum.at(self._lead, dev[rows], kb.ts[rows] - ref)
                lead = self._lead[dev[rows]]
                self._lead[dev[rows]] = np.where(lead > CLOCK_STEP_MS, lead, 0)
            newest = int((kb.ts - self._lead[dev]).max())
            self.now = newest if self.now is None else max(self.now, newest)
        assert self.now is not None
        return self.now


def write_events(events: list[AlarmEvent], path: Path) -> None:
    """Writes alarm events as JSON lines (CONTRACT §4 objects)."""
    with path.open("wb") as fh:
        for e in events:
            fh.write(orjson.dumps(e.model_dump(mode="json")) + b"\n")
