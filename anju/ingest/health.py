"""What ``/healthz`` says: each dependency's ``status`` (ok | degraded | down) and a
``reason`` an operator can act on (docs/operations.md lists them all).

CONTRACT §6 keeps its status codes: 503 only when the broker is not connected. A pipeline
connected to the broker but spooling to disk, failing to deliver webhooks or seeing late
readings answers 200 with ``status: degraded``, because it still loses nothing.

The first time a dependency is seen failing for a given reason is a WARNING log line (the
MQTT consumer logs its own); until it has recovered, the same reason is not logged again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry

__all__ = ["LATE_WINDOW_S", "HealthReport", "dead_letters_by_team"]

log = logging.getLogger(__name__)

LATE_WINDOW_S = 300.0  # late readings degrade health while new ones arrived this recently

OK, DEGRADED, DOWN = "ok", "degraded", "down"
_RANK = {OK: 0, DEGRADED: 1, DOWN: 2}


def dead_letters_by_team(registry: CollectorRegistry) -> dict[str, int]:
    """Webhook deliveries parked (dead-lettered) since start, by team (the delivery metric),
    for a dispatcher without a ``health()`` of its own."""
    out: dict[str, int] = {}
    for metric in registry.collect():
        if metric.name != "anju_webhook_deliveries":
            continue
        for s in metric.samples:
            if s.name.endswith("_total") and s.labels.get("outcome") in ("dead", "parked"):
                team = s.labels.get("team", "?")
                out[team] = out.get(team, 0) + int(s.value)
    return out


def _broker(m: Mapping[str, Any]) -> tuple[str, str, str]:
    state = m.get("state")
    if m.get("ok"):
        if m.get("taken_over"):
            return DEGRADED, "session_taken_over", str(m.get("last_error") or "")
        return OK, "connected", ""
    if state == "refused":
        refused = m.get("refused") or {}
        return DOWN, "refused", (f"the broker refused the connection: {refused.get('reason')} "
                                 f"(reason code 0x{int(refused.get('code', 0)):02X})")
    if state == "taken_over" or m.get("taken_over"):
        return DOWN, "session_taken_over", str(m.get("last_error") or "")
    if state in ("starting", "connecting") and not m.get("last_error"):
        return DOWN, "connecting", ""
    return DOWN, "unreachable", str(m.get("last_error") or "not connected")


def _influx(i: Mapping[str, Any], now_ms: int) -> tuple[str, str, str, dict[str, Any]]:
    extra: dict[str, Any] = {}
    if i.get("mode") == "spooling":
        since = i.get("mode_since_ms")
        age_s = round(max(0, now_ms - since) / 1000, 1) if since else None
        extra = {"spool_points": i.get("spool_points", 0),
                 "spool_bytes": i.get("spool_bytes", 0), "spool_age_s": age_s}
        detail = (f"InfluxDB unavailable or behind: {i.get('spool_points', 0)} points "
                  f"({i.get('spool_bytes', 0)} bytes) spooled on disk for {age_s} s, "
                  "replayed once it answers")
        if i.get("last_error"):
            detail += f"; last error: {i['last_error']}"
        return DEGRADED, "spooling", detail, extra
    if i.get("reachable") is False:
        return DEGRADED, "unreachable", str(i.get("last_error") or ""), extra
    return OK, "ok", "", extra


def _deliveries(d: Mapping[str, Any] | None,
                dead: Mapping[str, int]) -> tuple[str, str, str, dict[str, Any]]:
    """From the dispatcher's own health (per team: undelivered, parked, failing), or else
    from the dead-letter counter."""
    teams: dict[str, dict[str, int]] = {}
    if d is not None and isinstance(d.get("destinations"), Mapping):
        # WebhookDispatcher.health(): per destination (a team's webhook or chat robot)
        for dest in d["destinations"].values():
            t = teams.setdefault(str(dest.get("team", "?")),
                                 {"pending": 0, "parked": 0, "failing": 0})
            t["pending"] += int(dest.get("pending") or 0)
            t["parked"] += int(dest.get("parked") or 0)
            t["failing"] += int(dest.get("failing_since_ms") is not None)
    elif d is not None:
        raw = d.get("teams", d)
        for team, v in raw.items() if isinstance(raw, Mapping) else ():
            if isinstance(v, Mapping):
                teams[str(team)] = {k: int(n) for k, n in v.items()
                                    if isinstance(n, int | float) and not isinstance(n, bool)}
    else:
        teams = {t: {"parked": n} for t, n in dead.items()}
    parked = {t: v.get("parked", v.get("dead", 0)) for t, v in teams.items()}
    failing = {t: v.get("failing", 0) for t, v in teams.items()}
    extra = {"teams": teams}
    if any(parked.values()):
        who = ", ".join(f"{t} {n}" for t, n in sorted(parked.items()) if n)
        return DEGRADED, "parked", (f"webhook deliveries retried past the horizon and parked: "
                                    f"{who}; fix the receiver, then `anju alarms requeue`"), extra
    if any(failing.values()):
        who = ", ".join(f"{t} {n}" for t, n in sorted(failing.items()) if n)
        return DEGRADED, "failing", f"webhook deliveries being retried: {who}", extra
    return OK, "ok", "", extra


class HealthReport:
    """Composes the dependencies' states into /healthz's body; remembers what it has
    logged and when late readings last grew."""

    def __init__(self) -> None:
        self._warned: set[tuple[str, str]] = set()
        self._late_seen = 0
        self._late_grew_at: float | None = None

    def compose(self, *, mqtt: Mapping[str, Any], influxdb: Mapping[str, Any],
                deliveries: Mapping[str, Any] | None, dead_by_team: Mapping[str, int],
                late: int, pipeline: Mapping[str, Any],
                now_ms: int | None = None) -> dict[str, Any]:
        """``{"status": ..., "mqtt": {...}, "influxdb": {...}, "deliveries": {...},
        "rules": {...}, "pipeline": {...}}``; each dependency keeps its own fields and gains
        ``status``, ``reason`` and ``detail``."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        out: dict[str, Any] = {}
        st, reason, detail = _broker(mqtt)
        out["mqtt"] = {**mqtt, "status": st, "reason": reason, "detail": detail}
        st, reason, detail, extra = _influx(influxdb, now_ms)
        out["influxdb"] = {**influxdb, **extra, "status": st, "reason": reason,
                           "detail": detail}
        st, reason, detail, extra = _deliveries(deliveries, dead_by_team)
        out["deliveries"] = {"ok": st == OK, **extra, "status": st, "reason": reason,
                             "detail": detail}
        out["rules"] = self._rules(late)
        out["pipeline"] = dict(pipeline)
        for name in ("influxdb", "deliveries", "rules"):
            self._log_first(name, out[name])
        worst = max((d["status"] for d in out.values() if "status" in d), key=_RANK.__getitem__)
        # CONTRACT §6: only the broker takes the pipeline down; the rest degrade it
        status = DOWN if out["mqtt"]["status"] == DOWN else (OK if worst == OK else DEGRADED)
        return {"status": status, **out}

    def _rules(self, late: int) -> dict[str, Any]:
        now = time.monotonic()
        if late > self._late_seen:
            self._late_seen = late
            self._late_grew_at = now
        recent = self._late_grew_at is not None and now - self._late_grew_at < LATE_WINDOW_S
        if recent:
            return {"ok": False, "late": late, "status": DEGRADED, "reason": "late_readings",
                    "detail": f"{late} readings older than their device's newest since start "
                              f"(some in the last {LATE_WINDOW_S:.0f} s): a device's clock "
                              "jumped back, or a gateway resent old data; they are stored, "
                              "state rules skip them (event rules still see them)"}
        return {"ok": True, "late": late, "status": OK, "reason": "ok", "detail": ""}

    def _log_first(self, name: str, dep: Mapping[str, Any]) -> None:
        key = (name, str(dep["reason"]))
        if dep["status"] == OK:
            self._warned = {k for k in self._warned if k[0] != name}  # recovered
        elif key not in self._warned:
            self._warned.add(key)
            log.warning("health: %s %s: %s", name, dep["reason"], dep["detail"])
