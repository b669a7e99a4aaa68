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
    assert s.mqtt_url == "mqtt://127.0.0.1:1883" and s.influx_url == "http://127.0.0.1:8086"
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
