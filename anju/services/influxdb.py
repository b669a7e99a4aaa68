"""A private InfluxDB 1.x (``influxd``, v1 HTTP API) on free loopback ports."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anju.errors import ServiceError
from anju.services._proc import ServiceProcess, find_binary, free_ports

if TYPE_CHECKING:
    import urllib.request

__all__ = ["InfluxDB", "http_ping"]


@functools.cache
def _opener() -> urllib.request.OpenerDirector:
    # Imported on first use: urllib.request (http.client, ssl, email) would cost
    # `anju --help` some 25 ms.
    import urllib.request

    # urllib honours http_proxy/HTTP_PROXY; a loopback service must never go through one.
    return urllib.request.build_opener(urllib.request.ProxyHandler({}))

_TomlValue = str | int | float | bool


def http_ping(url: str, timeout: float = 1.0) -> bool:
    """True when ``GET {url}/ping`` answers 204 (InfluxDB 1.x, and 2.x/3.x compatibility)."""
    try:
        with _opener().open(f"{url}/ping", timeout=timeout) as resp:
            return bool(resp.status == 204)
    except (OSError, ValueError):  # URLError, refused, reset, timeout
        return False


def _toml_value(v: _TomlValue) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    # JSON string escapes are valid TOML basic-string escapes.
    return json.dumps(str(v))


def _quote_ident(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


class InfluxDB(ServiceProcess):
    """``influxd`` with HTTP on ``127.0.0.1:port``; config, log and data in ``workdir``.

    Besides the HTTP port it binds the RPC port of backup/restore (the global
    ``bind-address``, 8088 by default), which gets a free loopback port of its own so
    that several instances, and a system InfluxDB, can run side by side.
    """

    name = "influxdb"

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        rpc_port: int | None = None,
        settings: Mapping[str, Mapping[str, _TomlValue]] | None = None,
        extra_config: str = "",
        detached: bool = False,
    ) -> None:
        """Prepare (not start) an InfluxDB.

        ``settings`` overrides keys of the generated influxdb.conf by section, e.g.
        ``{"data": {"wal-fsync-delay": "100ms"}}`` (section ``""`` is the top level);
        ``extra_config`` is appended verbatim (new sections only: TOML forbids a
        repeated table). ``detached`` starts it in its own session, to outlive this
        process.
        """
        super().__init__(workdir, port, detached=detached)
        if rpc_port is None:
            rpc_port = next(p for p in free_ports(2, self.host) if p != self.port)
        self.rpc_port: int = rpc_port
        self.settings = {k: dict(v) for k, v in (settings or {}).items()}
        self.extra_config = extra_config

    # -- paths, URLs, config

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (the form ANJU_INFLUX_URL takes)."""
        return f"http://{self.host}:{self.port}"

    @property
    def log_path(self) -> Path:
        """influxd.log in the workdir (influxd logs to stderr, which goes there)."""
        return self.workdir / "influxd.log"

    @property
    def config_path(self) -> Path:
        """The generated influxdb.conf."""
        return self.workdir / "influxdb.conf"

    def _ports(self) -> list[int]:
        return [self.port, self.rpc_port]

    def _choose_new_ports(self) -> None:
        self.port, self.rpc_port = free_ports(2, self.host)

    def config_sections(self) -> dict[str, dict[str, _TomlValue]]:
        """The configuration as ``{section: {key: value}}`` ("" is the top level)."""
        d = self.workdir
        sections: dict[str, dict[str, _TomlValue]] = {
            "": {
                "reporting-disabled": True,
                "bind-address": f"{self.host}:{self.rpc_port}",
            },
            "meta": {"dir": str(d / "meta"), "logging-enabled": False},
            "data": {
                "dir": str(d / "data"),
                "wal-dir": str(d / "wal"),
                # Per-query log lines would swamp the log tail we show on failures.
                "query-log-enabled": False,
            },
            "http": {
                "bind-address": f"{self.host}:{self.port}",
                "log-enabled": False,  # access log: a line per /write
                "pprof-enabled": False,
            },
            # No _internal database: it would appear in SHOW DATABASES and cost writes.
            "monitor": {"store-enabled": False},
            "continuous_queries": {"enabled": False},
            "subscriber": {"enabled": False},
            "logging": {"suppress-logo": True},
        }
        for section, values in self.settings.items():
            sections.setdefault(section, {}).update(values)
        return sections

    def config_text(self) -> str:
        """The influxdb.conf this instance runs with."""
        out = ["# generated by anju.services; rewritten at every start"]
        for section, values in self.config_sections().items():
            if section:
                out.append(f"\n[{section}]")
            indent = "  " if section else ""
            out += [f"{indent}{k} = {_toml_value(v)}" for k, v in values.items()]
        text = "\n".join(out) + "\n"
        if self.extra_config:
            text += "\n# extra_config\n" + self.extra_config.rstrip("\n") + "\n"
        return text

    def _write_config(self) -> None:
        self.config_path.write_text(self.config_text())

    def _argv(self) -> list[str]:
        binary = find_binary("influxd", "ANJU_INFLUXD_BIN", ("/usr/bin", "/usr/local/bin"))
        return [binary, "run", "-config", str(self.config_path)]

    def _env(self) -> dict[str, str]:
        # influxd lets INFLUXDB_* variables override any config key; a stray one from the
        # developer's shell must not change what we generated.
        return {k: v for k, v in os.environ.items() if not k.startswith("INFLUXDB_")}

    def ready(self, timeout: float = 1.0) -> bool:
        """``GET /ping`` answers 204."""
        return http_ping(self.url, timeout)

    # -- HTTP helpers (tests, demo, benchmarks)

    def _request(
        self, path: str, params: Mapping[str, str], body: bytes | None, timeout: float
    ) -> tuple[int, bytes]:
        import urllib.error
        import urllib.parse
        import urllib.request

        url = f"{self.url}{path}?{urllib.parse.urlencode(params)}"
        headers = {"Content-Type": "application/x-www-form-urlencoded"} if path == "/query" else {}
        req = urllib.request.Request(url, data=body, method="POST", headers=headers)
        try:
            with _opener().open(req, timeout=timeout) as resp:
                return int(resp.status), resp.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.read()
        except OSError as exc:
            raise ServiceError(self.name, f"POST {path} failed: {exc}") from exc

    def query(
        self, q: str, db: str | None = None, *, epoch: str | None = None, timeout: float = 30
    ) -> dict[str, Any]:
        """Run InfluxQL ``q`` (POST /query) and return the parsed JSON.

        ``epoch`` ("ms", "s", "ns" …) returns times as integers instead of RFC 3339.
        Raises ServiceError on an HTTP error or when any statement reports an error.
        """
        from urllib.parse import urlencode

        form = {"q": q}
        if db is not None:
            form["db"] = db
        if epoch is not None:
            form["epoch"] = epoch
        # POST serves reads and writes alike; GET refuses CREATE/DROP on 1.x.
        status, body = self._request("/query", {}, urlencode(form).encode(), timeout)
        try:
            result: dict[str, Any] = json.loads(body) if body else {}
        except ValueError:
            result = {"error": body[:300].decode(errors="replace")}
        errors = [result["error"]] if "error" in result else []
        errors += [r["error"] for r in result.get("results", []) if "error" in r]
        if status >= 300 or errors:
            detail = "; ".join(map(str, errors)) or f"HTTP {status}"
            raise ServiceError(self.name, f"query {q[:200]!r} failed: {detail}")
        return result

    def create_database(self, name: str) -> None:
        """``CREATE DATABASE`` (a no-op when it exists)."""
        self.query(f"CREATE DATABASE {_quote_ident(name)}")

    def drop_database(self, name: str) -> None:
        """``DROP DATABASE`` (a no-op when it does not exist)."""
        self.query(f"DROP DATABASE {_quote_ident(name)}")

    def write(
        self, db: str, lines: str | Iterable[str], *, precision: str = "ms", timeout: float = 30
    ) -> None:
        """Write line protocol to ``db`` (POST /write); raises ServiceError unless 204."""
        text = lines if isinstance(lines, str) else "\n".join(lines)
        status, body = self._request(
            "/write", {"db": db, "precision": precision}, text.encode(), timeout
        )
        if status != 204:
            raise ServiceError(
                self.name, f"write to {db!r} failed: HTTP {status} {body[:300]!r}"
            )

    def count(self, measurement: str, db: str, where: str = "") -> int:
        """Points in ``measurement``: ``SELECT count(*)``, the largest count over its fields.

        ``where`` is an InfluxQL condition, with or without the WHERE keyword.
        Returns 0 when the measurement has no points (or does not exist).
        """
        q = f"SELECT count(*) FROM {_quote_ident(measurement)}"
        cond = where.strip()
        if cond:
            q += " " + (cond if cond[:6].upper() == "WHERE " else f"WHERE {cond}")
        result = self.query(q, db=db)
        best = 0
        for stmt in result.get("results", []):
            for series in stmt.get("series", []):
                for row in series.get("values", []):
                    # row[0] is the time column; the rest are count_<field>.
                    best = max([best, *(v for v in row[1:] if isinstance(v, int))])
        return best
