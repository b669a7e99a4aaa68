"""DingTalk, WeCom and Feishu robot targets against local fakes of the platforms
(anju/services/fake_robots.py): signatures checked as each platform does, error codes in an HTTP
200 retried, rate limits kept by waiting, messages within each platform's size limit."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from anju.alarms import AlarmManager, Backoff, SqliteAlarmStore, WebhookDispatcher
from anju.alarms.robot_digest import plan, render_digests
from anju.alarms.robot_message import render, utf8_len
from anju.alarms.robots import dingtalk_sign
from anju.devices.registry import Site, load_site
from anju.errors import ConfigError, RegistryError
from anju.rules.transition import Transition
from anju.services.fake_robots import FakeRobots, Robot, message_text
from tests.test_alarms_delivery import raises, states, until

FAST = Backoff(base_s=0.02, cap_s=0.1, min_s=0.01, client_cap_s=0.2,
               max_retry_after_s=0.2)
CONSOLE = "http://console.test:8080"


def site_with(root: Path, targets: str) -> Site:
    root.mkdir(parents=True, exist_ok=True)
    (root / "site.yaml").write_text(
        "estates:\n  - {id: e1, name: 蓝堡湾小区, buildings: [{id: b1, floors: 18}]}\n"
        "teams:\n  - id: prop\n    role: property\n    estates: [e1]\n    targets:\n"
        + targets, encoding="utf-8")
    (root / "devices.csv").write_text("device,kind,estate,building\n", encoding="utf-8")
    return load_site(root)


def dispatcher(site: Site, store: SqliteAlarmStore, reg: CollectorRegistry | None = None,
               **kw: object) -> WebhookDispatcher:
    from anju.config import load_settings

    args: dict[str, object] = {"timeout_s": 2.0, "horizon_s": 60.0, "backoff": FAST,
                               "poll_s": 0.05, "drain_s": 1.0}
    args.update(kw)
    return WebhookDispatcher(site, store, load_settings(console_url=CONSOLE), registry=reg,
                             **args)  # type: ignore[arg-type]


ALL_THREE = """\
      - {type: dingtalk, url_env: T_DT_URL, secret_env: T_DT_SECRET, mention: ["13800001111"]}
      - {type: wecom, url_env: T_WC_URL, mention: ["13800002222"]}
      - {type: feishu, url_env: T_FS_URL, secret_env: T_FS_SECRET, mention: [ou_duty]}
"""


# -- signatures and messages ------------------------------------------------------------------
def test_dingtalk_signature_matches_a_published_example() -> None:
    # the DingTalk algorithm's worked example in the `dingding` crate (docs.rs), which
    # follows the official 加签 description: timestamp 1700000000000, secret "secret"
    assert dingtalk_sign("secret", 1700000000000) == (
        "OuzzJR5%2BxZ4%2FEYwqtNt6sMYZQMTa%2FHEGvc9miJe7XzY%3D")


def _event(message: str, severity: str = "critical") -> dict[str, object]:
    return {"alarm_id": "3f2a9c0d1e4b5a6f7c8d", "event": "escalated", "rule": "heat.fixed",
            "severity": severity, "kind": "smoke", "device": "s-0001", "estate": "e1",
            "building": "b1", "floor": 12, "zone": "stair-A", "ts": 1763800000000,
            "started_at": 1763799990000, "value": 61.5, "message": message,
            "details": {"escalation": {"level": 2, "unacknowledged_s": 600},
                        "blob": "x" * 5000},
            "teams": ["prop"]}


@pytest.mark.parametrize(("limit", "measure"), [
    (4096, utf8_len), (2048, utf8_len), (20000, len), (18 * 1024, utf8_len)])
def test_messages_fit_the_limits_and_keep_the_essentials(limit: int, measure: object) -> None:
    msg = render(_event("烟感温度持续升高，请立即到场处置。" * 2000), console_url=CONSOLE,
                 limit=limit, measure=measure, estate_name="蓝堡湾小区",  # type: ignore[arg-type]
                 mentions=("13800001111",), mention=lambda m: f"@{m}")
    assert measure(msg.text) <= limit and msg.truncated  # type: ignore[operator]
    for essential in ("【紧急】", "heat.fixed", "蓝堡湾小区", "b1 栋", "12 层", "stair-A",
                      "设备 s-0001", "升级", "第 2 级", "61.5", "2025-11-22 16:26:30",
                      "烟感温度持续升高", f"{CONSOLE}/#/alarms/3f2a9c0d1e4b5a6f7c8d",
                      "@13800001111"):
        assert essential in msg.text, essential
    short = render(_event("温度 61.5 °C", severity="minor"), console_url=CONSOLE,
                   limit=20000)
    assert not short.truncated and "Minor · heat.fixed" in short.text  # English second
    assert short.text.index("**级别**") < short.text.index("Minor · heat.fixed")
    assert short.mentions == ()  # only critical alarms @ the duty staff


# -- against the fakes --------------------------------------------------------------------------
async def test_each_platform_gets_signed_messages_with_mentions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dt, wc, fs = (Robot("dingtalk", "dt-token", "SECdt"), Robot("wecom", "wc-key"),
                  Robot("feishu", "fs-hook", "fs-secret"))
    async with FakeRobots(dt, wc, fs) as fake:
        for env, r in (("T_DT_URL", dt), ("T_WC_URL", wc), ("T_FS_URL", fs)):
            monkeypatch.setenv(env, fake.url(r))
        monkeypatch.setenv("T_DT_SECRET", "SECdt")
        monkeypatch.setenv("T_FS_SECRET", "fs-secret")
        site = site_with(tmp_path / "site", ALL_THREE)
        reg = CollectorRegistry()
        with SqliteAlarmStore(tmp_path / "state") as store:
            mgr = AlarmManager(site, store)
            [ev] = mgr.on_transitions(raises(1, roles=("property",)))
            mgr.on_transitions([replace(raises(1, roles=("property",))[0], event="cleared",
                                        ts=2_000_000)])
            async with dispatcher(site, store, reg) as d:
                await until(lambda: states(store) == ["delivered"] * 6)
                assert set(d.health()["destinations"]) == {"prop/dingtalk", "prop/wecom",
                                                           "prop/feishu"}
    assert not (dt.refused or wc.refused or fs.refused)
    link = f"{CONSOLE}/#/alarms/{ev.alarm_id}"
    [raised, cleared] = dt.received
    assert raised["at"]["atMobiles"] == ["13800001111"] and "@13800001111" in \
        raised["markdown"]["text"] and link in raised["markdown"]["text"]
    assert cleared["at"]["atMobiles"] == [] and "已恢复" in cleared["markdown"]["title"]
    [w_raised, w_cleared] = wc.received
    assert w_raised["msgtype"] == "text"  # the type that can @ mobiles
    assert w_raised["text"]["mentioned_mobile_list"] == ["13800002222"]
    assert w_cleared["msgtype"] == "markdown" and link in w_cleared["markdown"]["content"]
    [f_raised, _] = fs.received
    md = f_raised["card"]["elements"][0]["content"]
    assert "<at id=ou_duty></at>" in md and "蓝堡湾小区" in md
    assert f_raised["card"]["header"]["template"] == "red"
    assert reg.get_sample_value("anju_webhook_deliveries_total",
                                {"team": "prop/feishu", "outcome": "delivered"}) == 2


async def test_wrong_secret_is_refused_in_a_200_and_retried_until_fixed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dt, fs = Robot("dingtalk", "dt-token", "SECright"), Robot("feishu", "fs-hook", "right")
    async with FakeRobots(dt, fs) as fake:
        monkeypatch.setenv("T_DT_URL", fake.url(dt))
        monkeypatch.setenv("T_FS_URL", fake.url(fs))
        monkeypatch.setenv("T_DT_SECRET", "SECwrong")
        monkeypatch.setenv("T_FS_SECRET", "wrong")
        site = site_with(tmp_path / "site", """\
      - {type: dingtalk, url_env: T_DT_URL, secret_env: T_DT_SECRET}
      - {type: feishu, name: duty, url_env: T_FS_URL, secret_env: T_FS_SECRET}
""")
        with SqliteAlarmStore(tmp_path / "state") as store:
            AlarmManager(site, store).on_transitions(raises(2, roles=("property",)))
            async with dispatcher(site, store) as d:
                await until(lambda: len(dt.refused) >= 3 and len(fs.refused) >= 3)
                errors = {r["team"]: r["last_error"] for r in store.outbox()}
                assert errors["prop/dingtalk"] == "errcode 310000: sign not match"
                assert errors["prop/duty"].startswith("code 19021: sign match fail")
                assert states(store) == ["pending"] * 4  # not delivered, not given up
                h = d.health()["destinations"]["prop/duty"]
                assert h["failing_since_ms"] is not None and h["target"] == "feishu"
                monkeypatch.setenv("T_DT_SECRET", "SECright")
                monkeypatch.setenv("T_FS_SECRET", "right")
                await until(lambda: states(store) == ["delivered"] * 4)
    assert len(dt.received) == 2 and len(fs.received) == 2


async def test_throttled_answer_is_retried_and_the_rate_limit_waits_never_drops(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a robot taking 4 messages in any 1 s, refusing beyond (DingTalk blocks past 20 a
    # minute); our target is told the same limit, and must never be refused
    dt = Robot("dingtalk", "dt-token", "SECdt", limit=(4, 1.0), block_s=30.0)
    wc = Robot("wecom", "wc-key", limit=(8, 1.0),
               inject=[{"errcode": 45009, "errmsg": "api freq out of limit"}])
    async with FakeRobots(dt, wc) as fake:
        monkeypatch.setenv("T_DT_URL", fake.url(dt))
        monkeypatch.setenv("T_WC_URL", fake.url(wc))
        monkeypatch.setenv("T_DT_SECRET", "SECdt")
        site = site_with(tmp_path / "site", """\
      - {type: dingtalk, url_env: T_DT_URL, secret_env: T_DT_SECRET, rate_limits: [[4, 1.0]]}
      - {type: wecom, url_env: T_WC_URL, rate_limits: [[8, 1.0]]}
""")
        events = []
        with SqliteAlarmStore(tmp_path / "state") as store:
            mgr = AlarmManager(site, store)
            async with dispatcher(site, store) as d:
                for k in range(4):  # four small bursts, each once the last is delivered
                    events += mgr.on_transitions(raises(3, start=3 * k, roles=("property",)))
                    d.wake()
                    want = ["delivered"] * len(events)
                    await until(lambda w=want: states(store, "prop/dingtalk") == w, within=15)
                await until(lambda: states(store) == ["delivered"] * 24, within=15)
                waited = d.destinations[0].limiter.waited_s  # type: ignore[union-attr]
    assert dt.refused == []  # never over the robot's limit: waited instead
    assert waited > 0
    assert wc.refused == [{"errcode": 45009, "errmsg": "api freq out of limit"}]
    for r in (dt, wc):
        text = "\n".join(message_text(b) for b in r.received)
        for e in events:  # every alarm named once: none dropped, none twice
            assert text.count(f"#/alarms/{e.alarm_id})") == 1, e.alarm_id
    assert len(dt.received) < 12  # what came faster than the limit went in digests


async def test_dispatcher_refuses_to_start_without_the_robot_env(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("T_DT_URL", raising=False)
    site = site_with(tmp_path / "site", "      - {type: dingtalk, url_env: T_DT_URL}\n")
    with SqliteAlarmStore(tmp_path / "state") as store:
        with pytest.raises(ConfigError, match="url_env 'T_DT_URL'") as err:
            dispatcher(site, store).validate()
    assert "http" not in str(err.value)


@pytest.mark.parametrize(("targets", "line", "field", "problem"), [
    ("      - {type: wecom, url_env: K, secret_env: S}\n", 8, "teams.0.targets.0",
     "wecom robots are not signed"),
    ("      - {type: slack, url_env: K}\n", 8, "teams.0.targets.0.type", "dingtalk"),
    ("      - {type: feishu, url_env: 'not an env'}\n", 8, "teams.0.targets.0.url_env",
     "pattern"),
    ("      - {type: feishu, url_env: A}\n      - {type: feishu, url_env: B}\n", 9,
     "teams.0.targets.1.name", "duplicate target name 'feishu'"),
    ("      - {type: dingtalk, url_env: A, rate_limits: [[0, 60]]}\n", 8,
     "teams.0.targets.0", "count ≥ 1"),
])
def test_bad_targets_name_the_line_and_key(tmp_path: Path, targets: str, line: int,
                                           field: str, problem: str) -> None:
    with pytest.raises(RegistryError) as err:
        site_with(tmp_path / "site", targets)
    e = err.value
    assert e.file.endswith("site.yaml") and e.line == line and e.field == field
    assert problem in str(e)


def test_window_limiter_keeps_every_limit() -> None:
    from anju.alarms.ratelimit import WindowLimiter

    now = [0.0]
    lim = WindowLimiter([(5, 1.0), (100, 60.0)], clock=lambda: now[0])  # Feishu's
    sends = []
    for _ in range(300):  # every send as soon as allowed
        now[0] += lim.wait_s()
        lim.record()
        sends.append(now[0])
    for count, per_s in lim.limits:
        assert all(sends[i + count] - sends[i] >= per_s - 1e-9
                   for i in range(len(sends) - count))
    assert sends[99] < 60 <= sends[100]  # 100 in the first minute, not 200 (a token bucket)
    with pytest.raises(ValueError):
        WindowLimiter([(0, 60.0)])


# -- bursts: critical first, the rest in digests, nothing lost ---------------------------------
_SEVERITIES = ("major", "minor", "warning", "major", "critical")


def burst(n: int, critical_every: int = 0, start: int = 0) -> list[Transition]:
    """``n`` raises on distinct devices; every ``critical_every``-th one critical, the rest
    major, minor or warning."""
    out = []
    for i in range(start, start + n):
        sev = ("critical" if critical_every and i % critical_every == 0
               else _SEVERITIES[i % 4])
        out.append(Transition(rule=f"test.{sev}", event="raised", kind="smoke", severity=sev,
                              roles=("property",), subject=f"s-{i}", device=f"s-{i}",
                              estate="e1", building="b1", floor=3, zone="hall",
                              ts=1_000_000 + i, started_at=1_000_000 + i, value=float(i),
                              message=f"读数 {i}"))
    return out


def _named(r: Robot) -> list[str]:
    """Alarm ids in the order the robot's accepted messages name them."""
    return re.findall(r"#/alarms/([0-9a-f]{20})\)", "\n".join(message_text(b)
                                                             for b in r.received))


def test_plan_sends_urgent_alone_and_digests_the_rest() -> None:
    evs = [{"severity": s, "event": e} for s, e in (
        ("minor", "raised"), ("critical", "raised"), ("major", "raised"),
        ("critical", "cleared"), ("critical", "escalated"), ("warning", "raised"))]
    assert plan(evs, 10) == ([1, 4, 3, 2, 0, 5], [])  # room for all: each alone, urgent first
    assert plan(evs, 2) == ([1], [4, 3, 2, 0, 5])  # one urgent alone, a slot for the digest
    assert plan(evs, 1) == ([], [1, 4, 3, 2, 0, 5])
    assert plan(evs[:2], 2) == ([1, 0], [])
    assert plan(evs[:2], 1) == ([], [1, 0])  # one slot: both now, in one message
    assert plan(evs[:3], 2) == ([1], [2, 0])  # the critical alone, a digest of two


@pytest.mark.parametrize(("limit", "measure", "text_limit"), [
    (20000, len, 20000), (4096, utf8_len, 2048), (18 * 1024, utf8_len, 18 * 1024)])
def test_digests_name_every_event_within_the_limit(limit: int, measure: Callable[[str], int],
                                                   text_limit: int) -> None:
    evs = []
    for i in range(300):
        ev = dict(_event(f"事件 {i} " + "很长的说明" * 30, severity="critical" if i < 20
                         else "minor"))
        ev.update(alarm_id=f"{i:020x}", event="raised", details={})
        evs.append(ev)
    parts = render_digests(evs, console_url=CONSOLE, measure=measure,
                           limit_for=lambda at: text_limit if at else limit,
                           mentions=("13800001111",), mention=lambda m: f"@{m}", why=" (20/60 s)")
    assert sorted(i for idx, _ in parts for i in idx) == list(range(300))
    assert [i for idx, _ in parts for i in idx] == list(range(300))  # order kept
    for idx, msg in parts:
        at = any(i < 20 for i in idx)
        assert measure(msg.text) <= (text_limit if at else limit)
        assert ("@13800001111" in msg.text) == at and bool(msg.mentions) == at
        for i in idx:
            assert f"#/alarms/{i:020x})" in msg.text
        assert msg.title.startswith("【告警汇总】") and "Digest of" in msg.text
    assert len(parts) > 1 and f"（1/{len(parts)}）" in parts[0][1].title


async def test_a_burst_of_200_reaches_a_20_a_minute_robot_as_a_few_digests(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # DingTalk's 20 a minute and 10-minute block, scaled: a 0.6 s minute, a 6 s block
    dt = Robot("dingtalk", "dt-token", "SECdt", limit=(20, 0.6), block_s=6.0)
    async with FakeRobots(dt) as fake:
        monkeypatch.setenv("T_DT_URL", fake.url(dt))
        monkeypatch.setenv("T_DT_SECRET", "SECdt")
        site = site_with(tmp_path / "site", """\
      - {type: dingtalk, url_env: T_DT_URL, secret_env: T_DT_SECRET, mention: ["13800001111"],
         rate_limits: [[20, 0.6]]}
""")
        reg = CollectorRegistry()
        with SqliteAlarmStore(tmp_path / "state") as store:
            events = AlarmManager(site, store).on_transitions(burst(200, critical_every=7))
            async with dispatcher(site, store, reg):
                await until(lambda: states(store) == ["delivered"] * 200, within=20)
    assert dt.refused == []  # never blocked
    sev = {e.alarm_id: e.severity for e in events}
    critical = [e.alarm_id for e in events if e.severity == "critical"]
    assert len(critical) == 29
    titles = [b["markdown"]["title"] for b in dt.received]
    singles = [t for t in titles if "汇总" not in t]
    digests = [b for b in dt.received if "汇总" in b["markdown"]["title"]]
    assert len(singles) >= 17 and all("【紧急】" in t for t in singles)  # critical alone
    assert 1 <= len(digests) <= 3  # a few digests, within DingTalk's 20 000 characters
    assert len(dt.received) <= 20
    named = _named(dt)
    assert sorted(named) == sorted(sev)  # every alarm named, exactly once
    assert all(sev[a] == "critical" for a in named[:29])  # critical first, then the rest
    ranks = [("critical", "major", "minor", "warning").index(sev[a]) for a in named]
    assert ranks == sorted(ranks)
    first = digests[0]
    assert "13800001111" in first["at"]["atMobiles"]  # it lists critical alarms: @ duty
    assert "@13800001111" in first["markdown"]["text"]
    assert reg.get_sample_value("anju_robot_digests_total",
                                {"team": "prop/dingtalk"}) == len(digests)


async def test_a_restart_in_the_middle_of_a_burst_loses_and_repeats_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # 2 messages in any second, blocked for 30 s beyond (a test would time out): the
    # second dispatcher must know what the first one sent just before it stopped. 300
    # alarms make three digests of DingTalk's 20 000 characters: two go, the third waits
    dt = Robot("dingtalk", "dt-token", "SECdt", limit=(2, 1.0), block_s=30.0)
    async with FakeRobots(dt) as fake:
        monkeypatch.setenv("T_DT_URL", fake.url(dt))
        monkeypatch.setenv("T_DT_SECRET", "SECdt")
        site = site_with(tmp_path / "site", """\
      - {type: dingtalk, url_env: T_DT_URL, secret_env: T_DT_SECRET, rate_limits: [[2, 1.0]]}
""")
        state = tmp_path / "state"
        with SqliteAlarmStore(state) as store:
            events = AlarmManager(site, store).on_transitions(burst(300, critical_every=7))
            async with dispatcher(site, store):
                await until(lambda: len(dt.received) >= 2)
            left = states(store).count("pending")
            assert 0 < left < 300  # stopped in the middle: some delivered, some not
            saved = store.target_state("prop/dingtalk")
            assert saved is not None and len(saved["sends_ms"]) == 2
        before = len(dt.received)
        with SqliteAlarmStore(state) as store:  # a new store and dispatcher on the same dir
            async with dispatcher(site, store):
                await until(lambda: states(store) == ["delivered"] * 300, within=15)
    assert dt.refused == []  # the restarted dispatcher kept the limit: never blocked
    assert len(dt.received) > before
    named = _named(dt)
    assert sorted(named) == sorted(e.alarm_id for e in events)  # nothing lost, none twice


async def test_a_refused_digest_leaves_every_event_pending_then_delivers_them_together(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    wc = Robot("wecom", "wc-key", limit=(2, 0.5),
               inject=[{"errcode": 45009, "errmsg": "api freq out of limit"}])
    async with FakeRobots(wc) as fake:
        monkeypatch.setenv("T_WC_URL", fake.url(wc))
        site = site_with(tmp_path / "site",
                         "      - {type: wecom, url_env: T_WC_URL, rate_limits: [[2, 0.5]]}\n")
        with SqliteAlarmStore(tmp_path / "state") as store:
            events = AlarmManager(site, store).on_transitions(burst(10))  # none critical
            async with dispatcher(site, store):
                await until(lambda: len(wc.refused) == 1)
                await until(lambda: states(store) == ["delivered"] * 10)
            rows = store.outbox()
    assert [r["attempts"] for r in rows] == [2] * 10  # refused together, delivered together
    [digest] = wc.received
    assert digest["msgtype"] == "markdown" and "汇总" in digest["markdown"]["content"]
    assert sorted(_named(wc)) == sorted(e.alarm_id for e in events)
