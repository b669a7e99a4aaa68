"""Settings: the environment variables of CONTRACT.md §6, optionally from a TOML file.

Precedence, highest first: keyword arguments, ``ANJU_*`` environment variables, the TOML
file named by ``ANJU_CONFIG`` (or passed as ``--config``), the defaults below.

Secrets: a URL that may carry a password (``ANJU_MQTT_URL``) is a :class:`SecretUrl`,
whose ``str`` and ``repr`` show the password as ``***``; tokens are ``SecretStr``. Every
error message built here goes through :func:`redact_url`. A settings file is read by us,
not by pydantic-settings, so that a syntax error, an unknown key or a bad value names the
file, the line and the key (and the key probably meant).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import unquote, urlsplit

from pydantic import Field, GetCoreSchemaHandler, SecretStr, ValidationError, field_validator
from pydantic.fields import FieldInfo
from pydantic_core import core_schema
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from anju.errors import ConfigError

__all__ = ["Partition", "SecretUrl", "Settings", "load_settings", "read_settings_file",
           "redact_url", "settings_help"]

_USERINFO = re.compile(r"^(?P<head>[^@]*?//)?(?P<info>.*)@(?P<tail>[^@]*)$", re.S)


def redact_url(text: str) -> str:
    """``text`` with the password of its user info shown as ``***``.

    Works on malformed URLs too (those are the ones echoed in errors): everything between
    ``//`` and the last ``@`` but the user name is hidden, so a password holding an
    unescaped ``/``, ``@`` or ``:`` is hidden as well.
    """
    m = _USERINFO.match(text)
    if m is None:
        return text
    user, sep, _password = m["info"].partition(":")
    if not sep:
        return text  # a user name only: nothing secret
    return f"{m['head'] or ''}{user}:***@{m['tail']}"


class SecretUrl:
    """A URL whose password is secret: ``str``/``repr`` redact it; :meth:`get_secret_value`
    gives the URL as set."""

    __slots__ = ("_url",)

    def __init__(self, url: str) -> None:
        self._url = url

    def get_secret_value(self) -> str:
        """The URL with its password (for connecting, never for printing)."""
        return self._url

    def __str__(self) -> str:
        return redact_url(self._url)

    def __repr__(self) -> str:
        return f"SecretUrl({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretUrl) and other._url == self._url

    def __hash__(self) -> int:
        return hash(self._url)

    @classmethod
    def __get_pydantic_core_schema__(cls, _source: Any,
                                     _handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        def validate(value: Any) -> SecretUrl:
            if isinstance(value, SecretUrl):
                return value
            if isinstance(value, str):
                return cls(value)
            raise ValueError("expected a URL (a string)")

        return core_schema.no_info_plain_validator_function(
            validate, serialization=core_schema.plain_serializer_function_ser_schema(str))


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
    """Every setting of the pipeline. Secrets are ``SecretStr``/``SecretUrl``, never printed."""

    model_config = SettingsConfigDict(env_prefix="ANJU_", extra="forbid",
                                      hide_input_in_errors=True)
    # values read from the settings file (set per call by load_settings, see _FromFile)
    _file: ClassVar[tuple[Path, dict[str, Any], dict[str, int]] | None] = None

    mqtt_url: SecretUrl = Field(
        default=SecretUrl("mqtt://127.0.0.1:1883"),
        description="broker: mqtt://[user:pass@]host[:port], mqtts:// for TLS; user and "
                    "password percent-encoded")
    mqtt_client_id: str = Field(default="anju-pipeline",
                                description="stable MQTT client id: the persistent session "
                                            "(two pipelines with one id take over each other)")
    influx_url: str = Field(default="http://127.0.0.1:8086", description="InfluxDB")
    influx_api: Literal["v1", "v2"] = Field(
        default="v1", description="v1 (/write, database) or v2 (/api/v2/write, bucket, org)")
    influx_db: str = Field(default="anju", description="v1 database, or v2 bucket")
    influx_org: str | None = Field(default=None, description="v2 organisation")
    influx_token: SecretStr | None = Field(default=None, description="token for either API")
    state_dir: Path = Field(default=Path("./.anju/state"),
                            description="alarm store, webhook outbox, InfluxDB spool "
                                        "(a service: /var/lib/anju)")
    api_addr: str = Field(default="127.0.0.1:8080", description="HTTP API host:port")
    partition: str = Field(default="0/1", description="i/N: serve the estates whose index "
                                                      "in site.yaml ≡ i (mod N)")
    batch_max: int = Field(default=5000, ge=1, description="readings per decoded batch at most")
    batch_linger_ms: int = Field(default=50, ge=1,
                                 description="wait at most this long to fill a batch")
    tick_s: float = Field(default=1.0, gt=0, description="rule engine clock tick")
    spool_max_mb: int = Field(default=1024, ge=1, description="InfluxDB spool bound on disk")
    deadletter_max_mb: int = Field(default=64, ge=1,
                                   description="dead-letter file size before rotation")
    webhook_timeout_s: float = Field(default=10.0, gt=0,
                                     description="one webhook request's timeout")
    webhook_concurrency: int = Field(
        default=4, ge=1, le=64,
        description="events of different alarms sent to one target at once (each alarm's "
                    "events stay in order)")
    webhook_horizon_s: float = Field(
        default=24 * 3600, gt=0,
        description="retry a delivery this long, then park it for `anju alarms requeue`")
    # -- deliveries (docs/alarms.md): backoff, and the console link in chat messages --------
    webhook_backoff_base_s: float = Field(default=1.0, gt=0, description="first retry delay")
    webhook_backoff_cap_s: float = Field(default=300.0, gt=0,
                                         description="longest retry delay (5xx, timeouts)")
    webhook_backoff_refused_cap_s: float = Field(
        default=900.0, gt=0, description="longest retry delay after a refusal (401, 403, …)")
    report_monthly: bool = Field(
        default=True, description="write last month's report into InfluxDB once a month is "
                                  "over (report_monthly; one partition only)")
    report_timezone: str = Field(default="Asia/Shanghai",
                                 description="the zone whose midnights begin a month")
    console_url: str = Field(default="http://127.0.0.1:8080",
                             description="operators' console, linked from chat messages")

    @field_validator("mqtt_url")
    @classmethod
    def _mqtt_url(cls, v: SecretUrl) -> SecretUrl:
        raw = v.get_secret_value()
        try:
            parts = urlsplit(raw)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"{redact_url(raw)!r}: expected mqtt://[user:pass@]host[:port] "
                             "or mqtts://")
        return v

    @field_validator("influx_url")
    @classmethod
    def _influx_url(cls, v: str) -> str:
        try:
            parts = urlsplit(v)
            parts.port  # noqa: B018 - raises ValueError for a port out of range
        except ValueError:
            parts = None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{redact_url(v)!r}: expected http(s)://host[:port]")
        if "@" in parts.netloc:
            # A password here would be printed wherever the URL is (logs, dashboards).
            raise ValueError(f"{redact_url(v)!r}: no credentials in the URL; give them as "
                             "ANJU_INFLUX_TOKEN")
        return v.rstrip("/")

    @field_validator("report_timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (an IANA name: Asia/Shanghai)") from None
        return v

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
        file = getattr(settings_cls, "_file", None)
        if file is None and os.environ.get("ANJU_CONFIG"):
            file = read_settings_file(Path(os.environ["ANJU_CONFIG"]))
        if file is not None:
            sources.append(_FileSource(settings_cls, file[1]))
        return tuple(sources)

    # -- derived -----------------------------------------------------------------------
    @property
    def partition_spec(self) -> Partition:
        return Partition.parse(self.partition)

    @property
    def mqtt(self) -> dict[str, Any]:
        """Host, port, credentials (percent-decoded) and TLS flag parsed from ``mqtt_url``.
        Holds the password: never log it."""
        p = urlsplit(self.mqtt_url.get_secret_value())
        tls = p.scheme == "mqtts"
        return {
            "hostname": p.hostname,
            "port": p.port or (8883 if tls else 1883),
            "username": unquote(p.username) if p.username is not None else None,
            "password": unquote(p.password) if p.password is not None else None,
            "tls": tls,
        }

    @property
    def api_host_port(self) -> tuple[str, int]:
        host, _, port = self.api_addr.rpartition(":")
        return host.strip("[]"), int(port)


class _FileSource(PydanticBaseSettingsSource):
    """The values of a settings file, already read and checked by read_settings_file."""

    def __init__(self, settings_cls: type[BaseSettings], values: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self.values = values

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.values.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self.values)


def _suggest(key: str) -> str:
    """`` (did you mean 'x'?)`` for a misspelt or differently written setting name."""
    names = list(Settings.model_fields)
    norm = key.strip().lower().replace("-", "_").removeprefix("anju_")
    if norm in names:
        return f" (did you mean {norm!r}?)"
    close = difflib.get_close_matches(norm, names, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _key_lines(text: str) -> dict[str, int]:
    """Line of each top-level ``key =`` of a TOML text (tomllib keeps no positions)."""
    lines: dict[str, int] = {}
    pat = re.compile(r"""^\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""")
    for n, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("["):
            break  # a table: what follows is not top level
        m = pat.match(line)
        if m:
            lines.setdefault(next(g for g in m.groups() if g is not None), n)
    return lines


def read_settings_file(path: Path) -> tuple[Path, dict[str, Any], dict[str, int]]:
    """Reads a TOML settings file: (path, values, line of each key).

    Raises ConfigError naming the file and line for a syntax error, and for every unknown
    key (with the setting probably meant).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such settings file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the settings file ({exc})") from None
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        msg = str(exc)
        m = re.search(r"\(at line (\d+), column (\d+)\)", msg)
        end = re.search(r"\(at end of document\)", msg)
        if m:
            where, problem = f"{path}:{m[1]}:{m[2]}", msg[:m.start()].strip()
        elif end:
            where = f"{path}:{max(1, len(text.splitlines()))}"
            problem = msg[:end.start()].strip() + " (at the end of the file)"
        else:
            where, problem = str(path), msg
        raise ConfigError(f"{where}: not valid TOML: {problem}") from None
    lines = _key_lines(text)
    problems = []
    for key, value in values.items():
        at = f"{path}:{lines[key]}" if key in lines else str(path)
        if key not in Settings.model_fields:
            problems.append(f"{at}: unknown setting {key!r}{_suggest(key)}")
        elif isinstance(value, dict):
            problems.append(f"{at}: {key}: expected a value, not a table")
    if problems:
        raise ConfigError("; ".join(problems))
    return path, values, lines


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Settings from the environment, a TOML file (``config_file`` or ``ANJU_CONFIG``) and
    overrides. Raises ConfigError naming the variable, or the file, line and key."""
    if config_file is None and os.environ.get("ANJU_CONFIG"):
        config_file = os.environ["ANJU_CONFIG"]
    file = read_settings_file(Path(config_file)) if config_file is not None else None

    class _FromFile(Settings):  # the file for this call only, not the whole process
        _file = file

    try:
        return _FromFile(**overrides)
    except ValidationError as exc:
        problems = []
        for e in exc.errors():
            key = str(e["loc"][0]) if e["loc"] else ""
            if key in overrides:
                where = key
            elif f"ANJU_{key.upper()}" in os.environ or file is None or key not in file[1]:
                where = f"ANJU_{key.upper()}"  # the variable a user sets, not the field
            else:
                path, _values, lines = file
                where = f"{path}:{lines[key]}: {key}" if key in lines else f"{path}: {key}"
            # our validators' messages redact URLs themselves; pydantic's carry no input
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = f"unknown setting{_suggest(key)}"
            problems.append(f"{where}: {msg}")
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None


def settings_help() -> str:
    """Every setting with its variable, default and meaning, for ``anju run --help``."""
    rows = ["Settings (environment variables; a --config TOML file may set the same keys "
            "in lower case, without ANJU_):", ""]
    for name, field in Settings.model_fields.items():
        default = field.default
        if default is None:
            shown = "none"
        elif isinstance(default, Path) and not default.is_absolute():
            shown = f"`./{default}`"
        else:
            shown = f"`{default}`"
        rows.append(f"- `ANJU_{name.upper()}` (default {shown}) — {field.description or ''}")
    rows.append("- `ANJU_CONFIG` — the TOML settings file (as --config)")
    return "\n".join(rows)
