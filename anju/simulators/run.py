"""``anju simulate run``: a site's traffic (and a scenario's incidents) to a broker or a file.

Resolves the run's data time, seed and duration, then either records a replay or
publishes, in this process or in several (each a shard of the buildings, started with
the same wall-clock origin so their schedules agree). Progress can be streamed as JSON
lines for a supervising process (the demo).
"""

from __future__ import annotations

import os
import selectors
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from anju.devices.registry import Site
from anju.errors import ConfigError, ServiceError
from anju.simulators.scenario import BoundScenario, Scenario, bind, load_scenario
from anju.simulators.traffic import Traffic, record

__all__ = ["DEFAULT_START_MS", "RunOptions", "parse_start", "run", "shard_devices"]

#: Data time of a recording when neither the scenario nor --start says (a Monday 08:00 in
#: Shanghai): recordings are byte-identical run after run.
DEFAULT_START_MS = 1_772_409_600_000
_MAX_AHEAD_S = 540  # the decoder rejects readings > 10 min ahead of its clock (CONTRACT §2)


def parse_start(text: str) -> int:
    """``now``, epoch milliseconds, or an ISO 8601 time (with offset) → epoch ms."""
    if text == "now":
        return int(time.time()) * 1000
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        dt = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"--start {text!r}: expected now, epoch ms or ISO 8601") from None
    if dt.tzinfo is None:
        raise ConfigError(f"--start {text!r}: give a UTC offset, e.g. +08:00")
    return int(dt.timestamp() * 1000)


def shard_devices(site: Site, index: int, count: int) -> np.ndarray:
    """The devices of shard ``index`` of ``count``: whole buildings, round-robin."""
    return np.flatnonzero(site.devices.building % count == index)


@dataclass
class RunOptions:
    site: Path
    scenario: str | None = None
    duration_s: float | None = None
    seed: int | None = None
    start: str | None = None
    speed: float = 1.0
    rate: float | None = None
    mqtt_url: str = "mqtt://127.0.0.1:1883"
    credentials: Path | None = None
    via: Literal["device", "gateway"] = "device"
    record: Path | None = None
    max_messages: int | None = None
    timeout_s: float | None = None
    processes: int = 1
    shard: tuple[int, int] = (0, 1)
    wall_start: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class Resolved:
    site: Site
    scenario: Scenario | None
    bound: BoundScenario | None
    start_ms: int
    duration_s: float
    seed: int


def resolve(opts: RunOptions) -> Resolved:
    """Loads the site and the scenario and settles start, duration and seed."""
    from anju.devices.registry import load_site

    site = load_site(opts.site)
    sc = load_scenario(opts.scenario) if opts.scenario else None
    bound = bind(sc, site) if sc else None
    duration = opts.duration_s or (sc.duration_s if sc else 60.0)
    seed = opts.seed if opts.seed is not None else (sc.seed if sc else 0)
    if opts.start is not None:
        start = parse_start(opts.start)
    elif opts.record is not None:
        start = (sc.start_ms if sc and sc.start_ms is not None else DEFAULT_START_MS)
    elif opts.speed > 0:
        start = int(time.time()) * 1000
        ahead = duration * (1.0 - 1.0 / opts.speed)
        if ahead > _MAX_AHEAD_S:
            raise ConfigError(
                f"at --speed {opts.speed:g} the data of {duration:g} s would run {ahead:.0f} s "
                f"ahead of the clock, and readings > 10 min ahead are rejected (CONTRACT §2): "
                f"lower --speed, shorten --duration or pass --start")
    else:  # unpaced: all of it already in the past
        start = (int(time.time()) - int(duration)) * 1000
    return Resolved(site, sc, bound, start, duration, seed)


def _emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(orjson.dumps(obj).decode() + "\n")
    sys.stdout.flush()


def run(opts: RunOptions, *, progress: bool = False,
        on_progress: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Runs the simulator; returns its summary. ``progress`` streams JSON lines."""
    r = resolve(opts)
    if opts.record is not None:
        traffic = Traffic(r.site, start_ms=r.start_ms, duration_s=r.duration_s, seed=r.seed,
                          scenario=r.bound, via=opts.via)
        t0 = time.perf_counter()
        n, readings = record(traffic, opts.record)
        return {"recorded": str(opts.record), "messages": n, "readings": readings,
                "start_ms": r.start_ms, "duration_s": r.duration_s, "seed": r.seed,
                "seconds": round(time.perf_counter() - t0, 3)}
    if opts.processes > 1:
        return _run_shards(opts, r, progress=progress, on_progress=on_progress)
    return _publish(opts, r, progress=progress, on_progress=on_progress)


def _publish(opts: RunOptions, r: Resolved, *, progress: bool,
             on_progress: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    from anju.simulators.publish import Publisher, PublishStats, read_credentials

    i, n = opts.shard
    devices = shard_devices(r.site, i, n) if n > 1 else None
    traffic = Traffic(r.site, start_ms=r.start_ms, duration_s=r.duration_s, seed=r.seed,
                      scenario=r.bound, devices=devices, via=opts.via)
    creds = read_credentials(opts.credentials) if opts.credentials else None
    deadline = time.monotonic() + opts.timeout_s if opts.timeout_s else None

    def report(st: PublishStats, data_ms: int, event: str = "progress") -> None:
        line = {"event": event, "shard": i, "published": st.published, "readings": st.readings,
                "acked": st.acked, "data_ms": data_ms, "wall_ms": round(time.time() * 1000)}
        if progress:
            _emit(line)
        if on_progress is not None:
            on_progress(line)

    with Publisher(opts.mqtt_url, credentials=creds,
                   client_prefix=f"anju-sim-{os.getpid()}-{i}") as pub:
        if creds is not None:
            if opts.via == "gateway":
                names = [traffic.gateways[b.index] for b in r.site.buildings
                         if devices is None or b.index % n == i]
            else:
                ids = r.site.devices.ids
                names = [ids[d] for d in (range(len(ids)) if devices is None else devices)]
            pub.connect(names)
        else:
            pub.connect([])
        wall0 = opts.wall_start if opts.wall_start is not None else time.time()
        start_line = {"event": "start", "shard": i, "wall_start_ms": round(wall0 * 1000),
                      "data_start_ms": r.start_ms, "speed": opts.speed,
                      "duration_s": r.duration_s, "seed": r.seed}
        if progress:
            _emit(start_line)
        if on_progress is not None:
            on_progress(start_line)
        st = pub.run(traffic.messages(), data_start_ms=r.start_ms, speed=opts.speed,
                     rate=opts.rate, wall_start=wall0, max_messages=opts.max_messages,
                     deadline=deadline, on_progress=report)
    out = st.summary() | {"start_ms": r.start_ms, "duration_s": r.duration_s, "seed": r.seed}
    if progress:
        _emit({"event": "done", "shard": i} | out)
    return out


def _run_shards(opts: RunOptions, r: Resolved, *, progress: bool,
                on_progress: Callable[[dict[str, Any]], None] | None) -> dict[str, Any]:
    """Starts ``processes`` publishers, one shard each, and sums what they report."""
    n = opts.processes
    wall0 = time.time() + 2.0  # time for the children to import and connect
    children = []
    for i in range(n):
        child = replace(opts, processes=1, shard=(i, n), wall_start=wall0,
                        start=str(r.start_ms), duration_s=r.duration_s, seed=r.seed,
                        rate=None if opts.rate is None else opts.rate / n,
                        max_messages=None if opts.max_messages is None
                        else -(-opts.max_messages // n))
        children.append(subprocess.Popen(_argv(child), stdout=subprocess.PIPE))
    sel = selectors.DefaultSelector()
    for i, p in enumerate(children):
        assert p.stdout is not None
        sel.register(p.stdout, selectors.EVENT_READ, i)
    latest: dict[int, dict[str, Any]] = {}
    done: dict[int, dict[str, Any]] = {}
    buffers = {i: b"" for i in range(n)}
    try:
        while len(sel.get_map()):
            for key, _ in sel.select(1.0):
                i = key.data
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buffers[i] += chunk
                *lines, buffers[i] = buffers[i].split(b"\n")
                for line in lines:
                    ev = orjson.loads(line)
                    (done if ev.get("event") == "done" else latest)[i] = ev
                    total = _sum(list(latest.values()))
                    if on_progress is not None:
                        on_progress(total)
                    if progress and ev.get("event") == "progress":
                        _emit(total)
        codes = [p.wait() for p in children]
    finally:
        sel.close()
        for p in children:
            if p.poll() is None:
                p.kill()
                p.wait()
            if p.stdout is not None:
                p.stdout.close()
    if any(codes) or len(done) < n:
        raise ServiceError("publisher", f"shards exited with {codes}")
    out = _sum(list(done.values())) | {"processes": n, "start_ms": r.start_ms,
                                        "duration_s": r.duration_s, "seed": r.seed}
    out.pop("event", None)
    if progress:
        _emit({"event": "done"} | out)
    return out


def _sum(lines: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"event": "progress"}
    for k in ("published", "readings", "acked", "connections"):
        if any(k in ln for ln in lines):
            out[k] = sum(int(ln.get(k, 0)) for ln in lines)
    if lines:
        out["data_ms"] = min(int(ln.get("data_ms", 0)) for ln in lines)
        out["behind_ms"] = max(float(ln.get("behind_ms", 0)) for ln in lines)
    return out


def _argv(o: RunOptions) -> list[str]:
    argv = [sys.executable, "-m", "anju.cli", "simulate", "run", "--site", str(o.site),
            "--speed", repr(o.speed), "--mqtt-url", o.mqtt_url, "--via", o.via,
            "--shard", f"{o.shard[0]}/{o.shard[1]}", "--progress"]
    for flag, value in (("--scenario", o.scenario), ("--duration", o.duration_s),
                        ("--seed", o.seed), ("--start", o.start), ("--rate", o.rate),
                        ("--credentials", o.credentials), ("--max-messages", o.max_messages),
                        ("--timeout", o.timeout_s), ("--wall-start", o.wall_start)):
        if value is not None:
            argv += [flag, str(value)]
    return argv
