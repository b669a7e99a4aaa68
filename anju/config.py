"""Settings: the environment variables of CONTRACT.md §6, optionally from a TOML file.

Precedence, highest first: keyword arguments, ``ANJU_*`` environment variables, the TOML
file named by ``ANJU_CONFIG`` (or passed as ``--config``), the defaults below.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from anju.errors import ConfigError

__all__ = ["Partition", "Settings", "load_settings"]


class Partition:
    """``i/N``: this worker serves estates whose index in site.yaml ≡ i (mod N)."""

    def __init__(self, index: int, count: int) -> None:
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"partition {index}/{count}: need 0 ≤ i < N and N ≥ 1")
        self.index = index
        self.count = count

    @classmethod
    def parse(cls, text: str) -> Partition:
        try:
            i, n = text.split("/")
            return cls(int(i), int(n))
        except ValueError as exc:
            raise ValueError(f"partition {text!r} is not of the form i/N ({exc})") from None

    def owns(self, estate_index: int) -> bool:
        return estate_index % self.count == self.index

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


class Settings(BaseSettings):
    """Every setting of the pipeline. Secrets are ``SecretStr`` and never printed."""

    model_config = SettingsConfigDict(env_prefix="ANJU_", extra="ignore", toml_file=None)

    mqtt_url: str = Field(default="mqtt://127.0.0.1:1883",
                          description="broker URL, mqtt:// or mqtts://")
    mqtt_client_id: str = Field(default="anju-pipeline",
                                description="stable id: persistent session")
    influx_url: str = "http://127.0.0.1:8086"
    influx_api: Literal["v1", "v2"] = "v1"
    influx_db: str = "anju"
    influx_org: str | None = None
    influx_token: SecretStr | None = None
    state_dir: Path = Path("./.anju/state")
    api_addr: str = "127.0.0.1:8080"
    partition: str = "0/1"
    batch_max: int = Field(default=5000, ge=1, description="readings per decoded batch at most")
    batch_linger_ms: int = Field(default=50, ge=1,
                                 description="wait at most this long to fill a batch")
    tick_s: float = Field(default=1.0, gt=0, description="rule engine clock tick")
    spool_max_mb: int = Field(default=1024, ge=1, description="InfluxDB spool bound on disk")
    deadletter_max_mb: int = Field(default=64, ge=1,
                                   description="dead-letter file size before rotation")
    webhook_timeout_s: float = 10.0
    webhook_horizon_s: float = Field(
        default=24 * 3600, gt=0,
        description="retry a delivery this long, then park it for `anju alarms requeue`")
    # -- deliveries (docs/alarms.md): backoff, and the console link in chat messages --------
    webhook_backoff_base_s: float = Field(default=1.0, gt=0, description="first retry delay")
    webhook_backoff_cap_s: float = Field(default=300.0, gt=0,
                                         description="longest retry delay (5xx, timeouts)")
    webhook_backoff_refused_cap_s: float = Field(
        default=900.0, gt=0, description="longest retry delay after a refusal (401, 403, …)")
    console_url: str = Field(default="http://127.0.0.1:8080",
                             description="operators' console, linked from chat messages")

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"{v!r}: expected mqtt://[user:pass@]host[:port] or mqtts://")
        return v

    @field_validator("influx_url")
    @classmethod
    def _influx_url(cls, v: str) -> str:
        parts = urlsplit(v)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{v!r}: expected http(s)://host[:port]")
        return v.rstrip("/")

    @field_validator("partition")
    @classmethod
    def _partition(cls, v: str) -> str:
        Partition.parse(v)
        return v

    @field_validator("api_addr")
    @classmethod
    def _api_addr(cls, v: str) -> str:
        _host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"{v!r}: expected host:port")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = settings_cls.model_config.get("toml_file") or os.environ.get("ANJU_CONFIG")
        if toml:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)

    # -- derived -----------------------------------------------------------------------
    @property
    def partition_spec(self) -> Partition:
        return Partition.parse(self.partition)

    @property
    def mqtt(self) -> dict[str, Any]:
        """Host, port, credentials and TLS flag parsed from ``mqtt_url``."""
        p = urlsplit(self.mqtt_url)
        tls = p.scheme == "mqtts"
        return {
            "hostname": p.hostname,
            "port": p.port or (8883 if tls else 1883),
            "username": p.username,
            "password": p.password,
            "tls": tls,
        }

    @property
    def api_host_port(self) -> tuple[str, int]:
        host, _, port = self.api_addr.rpartition(":")
        return host.strip("[]"), int(port)


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, a TOML file (``config_file`` or ``ANJU_CONFIG``) and
    overrides."""
    cls: type[Settings] = Settings
    where = "environment"
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"{path}: no such settings file")

        class _FromFile(Settings):  # the file for this call only, not the whole process
            model_config = SettingsConfigDict(**{**Settings.model_config, "toml_file": path})

        cls, where = _FromFile, f"environment or {path}"
    try:
        return cls(**overrides)
    except ValidationError as exc:
        # name the variable a user sets (ANJU_MQTT_URL), not pydantic's field
        problems = "; ".join(
            f"ANJU_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid settings ({where}): {problems}") from None
