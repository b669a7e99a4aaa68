"""Settings: defaults, environment, TOML file, validation, secrets."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from anju.config import Partition, Settings, load_settings


def test_defaults_are_the_contracts(monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("ANJU_CONFIG", "ANJU_MQTT_URL", "ANJU_INFLUX_URL", "ANJU_PARTITION"):
        monkeypatch.delenv(var, raising=False)
    s = Settings()
    assert s.mqtt_url.get_secret_value() == "mqtt://127.0.0.1:1883" and s.influx_url == "http://127.0.0.1:8086"
    assert s.influx_api == "v1" and s.influx_db == "anju" and s.api_addr == "127.0.0.1:8080"
    assert str(s.partition_spec) == "0/1" and s.state_dir == Path("./.anju/state")


def test_environment_beats_toml_beats_defaults(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "anju.toml"
    toml.write_text('influx_url = "http://influx:8086"\ntick_s = 2.0\n', encoding="utf-8")
    monkeypatch.setenv("ANJU_TICK_S", "3")
    s = load_settings(toml)
    assert s.influx_url == "http://influx:8086" and s.tick_s == 3.0


def test_mqtt_url_parts_and_secret_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANJU_MQTT_URL", "mqtts://anju-pipeline:s3cret@broker.example:8883")
    monkeypatch.setenv("ANJU_INFLUX_TOKEN", "tok-123")
    s = Settings()
    assert s.mqtt == {"hostname": "broker.example", "port": 8883, "username": "anju-pipeline",
                      "password": "s3cret", "tls": True}
    assert "tok-123" not in repr(s) and s.influx_token is not None
    assert s.influx_token.get_secret_value() == "tok-123"


@pytest.mark.parametrize(("var", "value"), [
    ("ANJU_MQTT_URL", "http://broker:1883"),
    ("ANJU_INFLUX_URL", "influx:8086"),
    ("ANJU_INFLUX_API", "v3"),
    ("ANJU_PARTITION", "2/2"),
    ("ANJU_PARTITION", "one"),
    ("ANJU_API_ADDR", "8080"),
    ("ANJU_BATCH_MAX", "0"),
])
def test_bad_settings_are_refused_naming_the_setting(var: str, value: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(var, value)
    with pytest.raises(ValidationError) as err:
        Settings()
    assert var.removeprefix("ANJU_").lower() in str(err.value)


def test_partition_owns_estates_round_robin() -> None:
    p = Partition.parse("1/3")
    assert [i for i in range(7) if p.owns(i)] == [1, 4]


def test_a_settings_file_is_not_left_behind_for_others(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANJU_CONFIG", raising=False)
    monkeypatch.delenv("ANJU_INFLUX_DB", raising=False)
    toml = tmp_path / "anju.toml"
    toml.write_text('influx_db = "other"\n', encoding="utf-8")
    assert load_settings(toml).influx_db == "other"
    assert Settings().influx_db == "anju"


def test_a_missing_settings_file_is_a_clear_error(tmp_path: Path) -> None:
    from anju.errors import ConfigError

    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load_settings(tmp_path / "nope.toml")


def test_load_settings_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from anju.errors import ConfigError

    monkeypatch.setenv("ANJU_MQTT_URL", "htp://broker")
    with pytest.raises(ConfigError, match="ANJU_MQTT_URL"):
        load_settings()


# -- secrets -----------------------------------------------------------------------------


def test_urls_with_passwords_are_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANJU_MQTT_URL", "mqtt://anju-pipeline:hunter2@broker:1883")
    s = load_settings()
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    assert str(s.mqtt_url) == "mqtt://anju-pipeline:***@broker:1883"
    assert "hunter2" not in s.model_dump_json()
    assert s.mqtt["password"] == "hunter2"


def test_user_info_is_percent_decoded() -> None:
    s = Settings(mqtt_url="mqtt://anju%2Dpipe:p%40ss%3Aw%2Frd%25@broker")
    assert (s.mqtt["username"], s.mqtt["password"]) == ("anju-pipe", "p@ss:w/rd%")


@pytest.mark.parametrize("url", [
    "mqtt://u:hunter2@broker:99999",  # port out of range
    "http://u:hunter2@broker:1883",  # wrong scheme
    "mqtt://u:hun/ter2@broker",  # an unescaped slash in the password
    "mqtt://u:hunter2@",  # no host
    "u:hunter2@broker",
])
def test_an_invalid_mqtt_url_is_not_echoed_with_its_password(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from anju.errors import ConfigError

    monkeypatch.setenv("ANJU_MQTT_URL", url)
    with pytest.raises(ConfigError) as err:
        load_settings()
    assert "ANJU_MQTT_URL" in str(err.value)
    assert "hunter2" not in str(err.value) and "ter2" not in str(err.value)
    with pytest.raises(ValidationError) as verr:  # nor pydantic's own message
        Settings()
    assert "ter2" not in str(verr.value)


def test_run_prints_no_password_on_a_bad_url(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from anju.cli import app

    monkeypatch.setenv("ANJU_MQTT_URL", "mqtts://anju-pipeline:hunter2@broker:port")
    r = CliRunner().invoke(app, ["run", "--site", str(tmp_path)])
    assert r.exit_code == 2 and "ANJU_MQTT_URL" in r.output
    assert "hunter2" not in r.output and "Traceback" not in r.output


def test_influx_url_with_credentials_is_refused_redacted() -> None:
    from anju.errors import ConfigError

    with pytest.raises(ConfigError, match="ANJU_INFLUX_TOKEN") as err:
        load_settings(influx_url="http://admin:hunter2@influx:8086")
    assert "hunter2" not in str(err.value)


@pytest.mark.parametrize(("url", "shown"), [
    ("mqtt://u:p@h:1", "mqtt://u:***@h:1"),
    ("mqtt://u@h", "mqtt://u@h"),
    ("mqtt://h", "mqtt://h"),
    ("mqtt://u:p@ss@h", "mqtt://u:***@h"),
    ("mqtt://u:a/b@h/x", "mqtt://u:***@h/x"),
])
def test_redact_url(url: str, shown: str) -> None:
    from anju.config import redact_url

    assert redact_url(url) == shown


# -- settings files ----------------------------------------------------------------------


def _file_error(tmp_path: Path, text: str) -> str:
    from anju.errors import ConfigError

    toml = tmp_path / "anju.toml"
    toml.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(toml)
    return str(err.value)


def test_toml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    msg = _file_error(tmp_path, 'tick_s = 2.0\ninflux_db = "anju\nbatch_max = 10\n')
    assert msg.startswith(f"{tmp_path / 'anju.toml'}:2:") and "not valid TOML" in msg


def test_unknown_keys_are_errors_with_a_suggestion(tmp_path: Path) -> None:
    msg = _file_error(tmp_path, 'tick_s = 2.0\ninflux_ulr = "http://x:8086"\n'
                                'ANJU_BATCH_MAX = 3\nwhatever = 1\n')
    toml = tmp_path / "anju.toml"
    assert f"{toml}:2: unknown setting 'influx_ulr' (did you mean 'influx_url'?)" in msg
    assert f"{toml}:3: unknown setting 'ANJU_BATCH_MAX' (did you mean 'batch_max'?)" in msg
    assert f"{toml}:4: unknown setting 'whatever'" in msg


def test_a_bad_value_names_file_line_and_key(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANJU_BATCH_MAX", raising=False)
    msg = _file_error(tmp_path, 'tick_s = 2.0\n\nbatch_max = 0\n')
    assert f"{tmp_path / 'anju.toml'}:3: batch_max: " in msg and "greater than" in msg


def test_unknown_override_is_an_error() -> None:
    from anju.errors import ConfigError

    with pytest.raises(ConfigError, match="did you mean 'tick_s'"):
        load_settings(tick=2.0)


def test_run_help_lists_every_setting_and_no_bool() -> None:
    from typer.testing import CliRunner

    from anju.cli import app

    r = CliRunner().invoke(app, ["run", "--help"], env={"COLUMNS": "200"})
    assert r.exit_code == 0
    for name, field in Settings.model_fields.items():
        line = next((ln for ln in r.output.splitlines() if f"ANJU_{name.upper()} " in ln), "")
        assert line, name
        if field.default is not None:
            assert str(field.default) in line, name
    assert "<bool>" not in r.output
    for cmd in (["devices", "credentials", "--help"], ["alarms", "outbox", "--help"]):
        assert "<bool>" not in CliRunner().invoke(app, cmd).output
