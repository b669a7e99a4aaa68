"""DingTalk, WeCom and Feishu robot targets against local fakes of the platforms
(tests/robot_fakes.py): signatures checked as each platform does, error codes in an HTTP
200 retried, rate limits kept by waiting, messages within each platform's size limit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from prometheus_client import CollectorRegistry

from anju.alarms import AlarmManager, Backoff, SqliteAlarmStore, WebhookDispatcher
from anju.alarms.robot_message import render, utf8_len
from anju.alarms.robots import dingtalk_sign
from anju.devices.registry import Site, load_site
from anju.errors import ConfigError, RegistryError
from tests.robot_fakes import FakeRobots, Robot
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
    # a robot taking 4 messages in any 0.5 s, refusing beyond (as DingTalk blocks past
    # 20 a minute); our target is told the same limit, and must never be refused
    dt = Robot("dingtalk", "dt-token", "SECdt", limit=(4, 0.5))
    wc = Robot("wecom", "wc-key", limit=(4, 0.5),
               inject=[{"errcode": 45009, "errmsg": "api freq out of limit"}])
    async with FakeRobots(dt, wc) as fake:
        monkeypatch.setenv("T_DT_URL", fake.url(dt))
        monkeypatch.setenv("T_WC_URL", fake.url(wc))
        monkeypatch.setenv("T_DT_SECRET", "SECdt")
        site = site_with(tmp_path / "site", """\
      - {type: dingtalk, url_env: T_DT_URL, secret_env: T_DT_SECRET, rate_limits: [[4, 0.5]]}
      - {type: wecom, url_env: T_WC_URL, rate_limits: [[4, 0.5]]}
""")
        with SqliteAlarmStore(tmp_path / "state") as store:
            events = AlarmManager(site, store).on_transitions(raises(12, roles=("property",)))
            async with dispatcher(site, store) as d:
                await until(lambda: states(store) == ["delivered"] * 24, within=15)
                waited = d.destinations[0].limiter.waited_s  # type: ignore[union-attr]
    assert dt.refused == []  # never over the robot's limit: waited instead
    assert waited > 0
    assert wc.refused == [{"errcode": 45009, "errmsg": "api freq out of limit"}]
    names = {e.alarm_id for e in events}
    for bodies in (dt.received, [b for b in wc.received]):
        assert len(bodies) == 12
        text = orjson.dumps(bodies).decode()
        assert all(a in text for a in names)  # every alarm named, none dropped


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
