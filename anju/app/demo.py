"""``anju demo``: the whole system on one machine, scored against a scenario's ground truth.

1. Local Mosquitto and InfluxDB (:class:`anju.services.LocalServices`).
2. A webhook receiver standing in for the property companies, the fire team and the
   housing offices (:class:`anju.alarms.receiver.WebhookReceiver`: checks every
   signature, CONTRACT §4), with a fresh secret per team in the environment.
3. The scenario's city, generated with its webhooks pointing at that receiver.
4. The pipeline, in this process (:class:`anju.app.pipeline.Pipeline`).
5. The publisher, in its own process (``anju simulate run``), replaying the scenario
   ``duration_s / seconds`` times faster than real time.

The pipeline's clock is the scenario's data time (wall time mapped through the
publisher's schedule), so clock-judged rules — ``device.offline``, durations — mean the
same under time compression as in the scenario. When the data is all in, the scorecard
compares the webhooks received with the ground truth (:mod:`anju.simulators.scoring`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.live import Live

from anju.errors import ServiceError
from anju.kinds import KINDS
from anju.simulators.scenario import SiteRecipe, bind, bundled_scenarios, load_scenario
from anju.simulators.scoring import (
    Observed,
    Scorecard,
    Truth,
    acknowledgements,
    ground_truth,
    score,
)
from anju.simulators.view import LiveState, render_live, scorecard_table
from anju.web.hint import console_hint

__all__ = ["DataClock", "run_demo"]

_STARTUP_S = 5.0  # the publisher's process imports, builds the fleets and connects
_GRACE_S = 15.0  # after the data is in, how long to wait for the last alarms
_DB = "anju"
log = logging.getLogger(__name__)


class DataClock:
    """The pipeline's clock during the demo: the scenario's data time (ms).

    Wall time is mapped through the publisher's schedule, held at the start before it
    and at the end after it, and never ahead of what the publisher has actually sent
    (``published_ms``, from its progress reports): a publisher slowed by a busy machine
    must not make every device look offline.
    """

    def __init__(self, data_start_ms: int, wall_start_s: float, speed: float,
                 data_end_ms: int) -> None:
        self.data_start_ms = data_start_ms
        self.wall_start_s = wall_start_s
        self.speed = speed
        self.data_end_ms = data_end_ms
        self.published_ms = data_start_ms

    def __call__(self) -> int:
        elapsed = max(0.0, time.time() - self.wall_start_s)
        scheduled = self.data_start_ms + int(elapsed * 1000 * self.speed)
        return min(scheduled, self.published_ms, self.data_end_ms)

    def wall_ms(self, data_ms: int) -> float:
        """When (wall ms) the publisher sends data time ``data_ms``."""
        return self.wall_start_s * 1000 + (data_ms - self.data_start_ms) / self.speed


@contextlib.contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """Sets environment variables (the teams' secrets) and restores them afterwards."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _grafana_dir() -> Path | None:
    root = Path(__file__).resolve().parents[2] / "grafana"
    return root if root.is_dir() else None


def _scenario_path(ref: str) -> Path:
    return Path(ref) if Path(ref).exists() else bundled_scenarios()[ref]


def run_demo(*, seconds: float = 60.0, scenario: str = "demo", workdir: Path | None = None,
             quiet: bool = False, robot: str | None = None, services: Any = None,
             db: str = _DB) -> dict[str, Any]:
    """Runs the demo; returns the scorecard (CONTRACT §7) with a few extras.

    ``services`` (a started :class:`~anju.services.LocalServices`): run on those, into
    database ``db`` (emptied first), and leave them running with the data in — how a test
    looks at what the demo stored; by default the demo starts its own and stops them."""
    keep = workdir is not None
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="anju-demo-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(_demo(seconds, scenario, root, quiet, robot, services, db))
    finally:
        if not keep:
            shutil.rmtree(root, ignore_errors=True)


async def _demo(seconds: float, scenario_ref: str, root: Path, quiet: bool,
                robot: str | None = None, given: Any = None, db: str = _DB) -> dict[str, Any]:
    from anju.services import LocalServices

    sc = load_scenario(scenario_ref)
    scenario_path = _scenario_path(scenario_ref)
    console = Console(stderr=True)
    if not quiet:
        console.print(f"[bold]anju demo[/bold]: scenario [cyan]{sc.name}[/cyan] "
                      f"({sc.duration_s:g} s of data, {len(sc.incidents)} incidents) in "
                      f"{seconds:g} s; work directory {root}")
    services = given if given is not None else LocalServices(root / "services")
    if given is None:
        await asyncio.to_thread(services.start)
    try:
        # A --workdir used before keeps its data: start from nothing, or the counts lie.
        await asyncio.to_thread(services.influx.drop_database, db)
        await asyncio.to_thread(services.influx.create_database, db)
        await asyncio.to_thread(shutil.rmtree, root / "state", True)
        return await _with_services(sc, scenario_path, seconds, root, services, console, quiet,
                                    robot, db)
    finally:
        if given is None:
            await asyncio.to_thread(services.stop)


async def _with_services(sc: Any, scenario_path: Path, seconds: float, root: Path,
                         services: Any, console: Console, quiet: bool,
                         robot: str | None = None, db: str = _DB) -> dict[str, Any]:
    from anju.alarms.receiver import WebhookReceiver
    from anju.devices.registry import load_site
    from anju.services.fake_robots import DemoRobots
    from anju.simulators.city import write_site
    from anju.simulators.recipe import plan_recipe

    recipe = sc.site or SiteRecipe(estates=2, seed=7)
    plan = plan_recipe(recipe)  # teams first: they need secrets
    env: dict[str, str] = {}
    hook_secrets: dict[str, bytes] = {}
    tokens: dict[str, str] = {}  # the teams' API tokens: the operators acknowledge with them
    for team in plan.teams:
        secret = secrets.token_hex(24)
        env[team["secret_env"]] = secret
        tokens[team["id"]] = env[team["token_env"]] = secrets.token_urlsafe(24)
        hook_secrets[team["id"]] = secret.encode()
    robots = DemoRobots(robot) if robot else None  # fake chat robots, one per property team
    async with contextlib.AsyncExitStack() as stack:
        receiver = await stack.enter_async_context(WebhookReceiver(hook_secrets))
        plan = plan_recipe(recipe, webhook_port=receiver.port)
        if robots is not None:
            robots.add_to(plan.teams)
            await stack.enter_async_context(robots.serving())
            env.update(robots.env())
        site_dir = write_site(plan, root / "site")
        site = load_site(site_dir)
        bound = bind(sc, site)
        with _env(env):
            out = await _run(sc, scenario_path, bound, site, seconds, root, services,
                             receiver, console, quiet, db, tokens)
        if robots is not None:
            out["robot"] = robots.report()
            if not quiet:
                Console().print_json(data=out["robot"])
        return out


async def _run(sc: Any, scenario_path: Path, bound: Any, site: Any, seconds: float,
               root: Path, services: Any, receiver: Any, console: Console,
               quiet: bool, db: str = _DB, tokens: dict[str, str] | None = None
               ) -> dict[str, Any]:
    from anju.app.pipeline import Pipeline
    from anju.config import Settings
    from anju.services import free_port

    speed = sc.duration_s / seconds
    wall_start = time.time() + _STARTUP_S
    # The data ends when the run does: no reading is ever ahead of the wall clock (the
    # decoder refuses those > 10 min ahead), and at the end the dashboards' "last few
    # minutes" hold the whole scenario.
    data_start = int((wall_start + seconds) * 1000) - bound.duration_ms
    data_end = data_start + bound.duration_ms
    clock = DataClock(data_start, wall_start, speed, data_end)
    truth = ground_truth(bound, data_start)
    settings = Settings.model_validate({
        "mqtt_url": services.mosquitto.url, "influx_url": services.influx.url,
        "influx_db": db, "state_dir": root / "state", "api_addr": f"127.0.0.1:{free_port()}",
        "mqtt_client_id": f"anju-demo-{os.getpid()}", "tick_s": 0.25})
    state = LiveState(scenario=sc.name, duration_s=sc.duration_s, speed=speed,
                      incidents=len(sc.incidents))
    progress: dict[str, Any] = {}
    offset = time.time() - time.monotonic()  # the receiver stamps arrivals monotonically

    held: list[Observed] = []  # alarms recorded but not delivered (supervision)

    def observed() -> list[Observed]:
        out = list(held)
        for team, attempts in receiver.accepted.items():
            for a in attempts:
                out.append(Observed(a.event(), (a.at + offset) * 1000, team=team,
                                    delivered=True))
        return out

    teams = {t.id: t for t in site.teams}

    def covers(team: str, estate: str) -> bool:
        return team in teams and teams[team].covers(estate)

    def card_now() -> Scorecard:
        return score(truth, observed(), silenced=bound.silenced(), wall_of=clock.wall_ms,
                     until_ms=data_end, covers=covers)

    log = (root / "publisher.log").open("wb")
    live = Live(render_live(state), console=console, refresh_per_second=4,
                transient=False) if not quiet else None
    try:
        pipeline = Pipeline(settings, site, clock=clock)
        async with pipeline:
            await asyncio.to_thread(_maintenance, pipeline, bound, site, data_start)
            refresher = asyncio.create_task(_follow_held(pipeline, held), name="demo:held")
            operators = asyncio.create_task(
                _operators(truth, receiver, clock, settings.api_addr, tokens or {}),
                name="demo:operators")
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "anju.cli", "simulate", "run",
                "--site", str(site.root), "--scenario", str(scenario_path),
                "--speed", repr(speed), "--start", str(data_start),
                "--wall-start", repr(wall_start), "--mqtt-url", services.mosquitto.url,
                "--timeout", str(seconds + 120), "--progress",
                stdout=asyncio.subprocess.PIPE, stderr=log)
            if not quiet:  # the operators' console, live while the demo runs
                console.print(console_hint(site, settings.api_addr), soft_wrap=True)
            if live is not None:
                live.start()
            try:
                await _watch(proc, pipeline, receiver, services, state, progress,
                             card_now, live, clock, seconds, db)
            finally:
                if proc.returncode is None and progress.get("event") != "done":
                    proc.kill()
                await proc.wait()
            state.phase = "draining the pipeline"
            if live is not None:
                live.update(render_live(state))
            for task in (refresher, operators):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            held[:] = await asyncio.to_thread(_held, pipeline)
        stats = pipeline.stats()
        state.pipeline = stats
        state.stored = await asyncio.to_thread(_stored, services, db)
        report_points = await _report(site, settings, data_start, data_end)
        state.phase = "done"
        if live is not None:
            live.update(render_live(state))
    finally:
        if live is not None:
            live.stop()
            console.print()
        log.close()
    if progress.get("event") != "done":
        tail = (root / "publisher.log").read_text(errors="replace")[-2000:]
        raise ServiceError("publisher", f"did not finish (exit {proc.returncode})", tail)
    stored = state.stored or 0
    card = card_now()
    card.published = int(progress.get("readings", 0))
    card.stored = stored
    card.lost = max(card.published - stored, 0)
    out = card.contract() | {
        "scenario": sc.name,
        "seconds": seconds,
        "speed": round(speed, 3),
        "pipeline": {k: stats.get(k) for k in ("messages", "readings", "rejected", "stored",
                                                "spooled", "alarms", "deliveries")},
        "webhooks": sum(len(v) for v in receiver.accepted.values()),
        "bad_signatures": sum(1 for a in receiver.attempts if not a.signature_ok),
        "grafana": str(_grafana_dir()) if _grafana_dir() else None,
        "report_points": report_points,
    }
    if not quiet:
        console = Console()
        console.print(scorecard_table(card))
        grafana = _grafana_dir()
        where = (f"{grafana}/dashboards (provisioning: {grafana}/provisioning)" if grafana
                 else "`anju dashboards build --out grafana`")
        console.print(f"Grafana dashboards for operators: {where} (docs/dashboards.md). The "
                      "demo's broker and InfluxDB are stopped now; to browse its data in "
                      "Grafana, run the pipeline against services that stay up: "
                      "`anju services up`, `anju run`, `anju simulate run`.")
        console.print(f"{console_hint(site, settings.api_addr)} (served while the demo "
                      "ran; docs/console.md)", soft_wrap=True)
    return out


async def _watch(proc: asyncio.subprocess.Process, pipeline: Any, receiver: Any,
                 services: Any, state: LiveState, progress: dict[str, Any],
                 card_now: Callable[[], Scorecard], live: Live | None, clock: DataClock,
                 seconds: float, db: str = _DB) -> None:
    """Follows the publisher and the pipeline until the data is in and the alarms are."""
    assert proc.stdout is not None
    stdout = proc.stdout
    seen = 0
    last_count = 0.0
    last_rate = (time.monotonic(), 0)

    async def read_progress() -> None:
        while line := await stdout.readline():
            with contextlib.suppress(orjson.JSONDecodeError):
                progress.update(orjson.loads(line))

    reader = asyncio.create_task(read_progress(), name="demo:publisher-progress")
    deadline = time.monotonic() + seconds + _STARTUP_S + 120
    in_since: float | None = None
    try:
        while True:
            await asyncio.sleep(0.25)
            now = time.monotonic()
            state.published = int(progress.get("published", 0))
            state.acked = int(progress.get("acked", 0))
            t, n = last_rate
            if now - t >= 1.0:
                state.publish_rate = (state.published - n) / (now - t)
                last_rate = (now, state.published)
            if "data_ms" in progress:
                clock.published_ms = max(clock.published_ms, int(progress["data_ms"]))
                state.data_s = (int(progress["data_ms"]) - clock.data_start_ms) / 1000
            state.pipeline = pipeline.stats()
            if now - last_count > 2.0:
                last_count = now
                state.stored = await asyncio.to_thread(_stored, services, db)
            accepted = [a for v in receiver.accepted.values() for a in v]
            state.deliveries = len(accepted)
            state.bad_signatures = sum(1 for a in receiver.attempts if not a.signature_ok)
            for a in sorted(accepted, key=lambda a: a.at)[seen:]:
                ev = a.event()
                ev["_data_s"] = (int(ev.get("ts", 0)) - clock.data_start_ms) / 1000
                if ev.get("event") in ("raised", "cleared") and \
                        not any(r.get("alarm_id") == ev.get("alarm_id")
                                and r.get("event") == ev.get("event") for r in state.recent[-40:]):
                    state.recent.append(ev)
                if ev.get("event") == "raised":
                    state.open_alarms[str(ev.get("alarm_id"))] = ev
                elif ev.get("event") == "cleared":
                    state.open_alarms.pop(str(ev.get("alarm_id")), None)
            seen = len(accepted)
            card = card_now()
            state.detected = card.detected
            done = progress.get("event") == "done"
            state.phase = "publishing" if not done else "waiting for the last alarms"
            if live is not None:
                live.update(render_live(state))
            if proc.returncode is not None and not done and reader.done():
                return  # the publisher failed; the caller reports it
            if done:
                p = state.pipeline
                decoded = int(p.get("readings", 0)) + sum(p.get("rejected", {}).values())
                if decoded >= int(progress.get("readings", 0)) and in_since is None:
                    in_since = now
                if in_since is not None and (not card.missing or now - in_since > _GRACE_S):
                    return
            if now > deadline:
                return
    finally:
        if not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader


async def _report(site: Any, settings: Any, data_start: int, data_end: int) -> int:
    """The accountability report of the run (its four minutes as the period, the whole
    site), written into InfluxDB as ``anju report --influx`` writes a month's, so the
    ``anju-report`` dashboard has the demo's companies too. Returns the points written
    (0 when InfluxDB refused them: the demo's own scorecard does not depend on it)."""
    from anju.app.report_points import write_report_points
    from anju.errors import AnjuError
    from anju.report.build import build_report
    from anju.report.period import Period
    from anju.report.scope import scope_for

    report = await asyncio.to_thread(build_report, site, settings.state_dir,
                                     Period(data_start, data_end), scope_for(site))
    try:
        return await write_report_points(report, settings)
    except AnjuError as exc:
        log.warning("demo: the report's points were not written: %s", exc)
        return 0


def _stored(services: Any, db: str = _DB) -> int:
    """Readings in InfluxDB, all kinds."""
    return sum(services.influx.count(kind, db) for kind in KINDS)


def _maintenance(pipeline: Any, bound: Any, site: Any, data_start: int) -> None:
    """The scenario's maintenance windows and records, as the property company would file
    them (``anju maintenance add``), in the pipeline's alarm store."""
    from anju.simulators.supervision import maintenance_actions

    incs = [(inc.id, site.devices.ids[inc.devices[0]], inc.at_ms, inc.params)
            for inc in bound.incidents if inc.type == "maintenance"]
    policy = site.policy()
    kinds = list(KINDS)

    def limit(dev: str) -> int | None:
        return policy.overdue_ms(kinds[int(site.devices.kind[site.devices.index[dev]])])

    for act in maintenance_actions(incs, data_start, limit):
        if act.maintained_at_ms is not None:
            pipeline.book.set_maintained(act.device, act.maintained_at_ms, act.by, data_start)
        i = site.devices.index[act.device]
        estate = site.buildings[int(site.devices.building[i])].estate
        pipeline.book.add("device", act.device, estate, act.from_ms, act.to_ms, act.by,
                          act.reason, data_start)


def _held(pipeline: Any) -> list[Observed]:
    """Raises that were held (maintenance, inhibition): recorded, not delivered."""
    out = []
    for rec in pipeline.store.list_alarms(open_only=False):
        d = rec.base.details or {}
        if d.get("maintenance") or d.get("inhibited_by"):
            out.append(Observed(rec.base.model_dump(mode="json"), None, delivered=False))
    return out


async def _operators(truth: list[Truth], receiver: Any, clock: DataClock, api_addr: str,
                     tokens: dict[str, str]) -> None:
    """The operators of the scenario: each alarm it says a team acknowledges is acknowledged
    through the API, with that team's token, once the data time given has come — as the
    property company's control room would, so the ``acknowledged`` event, its point and the
    acknowledged-but-open panels are those of a real acknowledgement."""
    import aiohttp

    done: set[str] = set()
    async with aiohttp.ClientSession() as http:
        while True:
            await asyncio.sleep(0.25)
            raised = [a.event() for v in list(receiver.accepted.values()) for a in list(v)]
            for due, aid, team in acknowledgements(truth, raised):
                if aid in done or clock() < due or team not in tokens:
                    continue
                done.add(aid)  # once: a refusal shows on the scorecard as not acknowledged
                async with http.post(
                        f"http://{api_addr}/alarms/{aid}/ack",
                        json={"by": "值班员 (demo)", "note": "已派人处理"},
                        headers={"Authorization": f"Bearer {tokens[team]}"}) as resp:
                    if resp.status != 200:
                        log.warning("demo: %s could not acknowledge %s: %s %s", team, aid,
                                    resp.status, (await resp.text())[:200])


async def _follow_held(pipeline: Any, held: list[Observed]) -> None:
    """Keeps ``held`` current while the demo runs, for the live scorecard."""
    while True:
        await asyncio.sleep(1.0)
        held[:] = await asyncio.to_thread(_held, pipeline)
