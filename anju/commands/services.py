"""``anju services up | down | status``: a local Mosquitto and InfluxDB that outlive the command.

``up`` starts both detached and records them in ``DIR/services.json``; ``down`` and
``status`` work from that file alone, so they run in any later shell. Heavy imports
happen inside the commands (``anju --help`` stays instant).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["app"]

app = typer.Typer(no_args_is_help=True)

STATE_FILE = "services.json"
_DEFAULT_DIR = Path(".anju/services")

DirOpt = Annotated[
    Path, typer.Option("--dir", help="Work directory: configs, logs, data, services.json.")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text.")]


def _load_state(directory: Path) -> dict[str, Any] | None:
    try:
        state: dict[str, Any] = json.loads((directory / STATE_FILE).read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        typer.echo(f"ignoring unreadable {directory / STATE_FILE}: {exc}", err=True)
        return None
    return state


def _save_state(directory: Path, state: dict[str, Any]) -> None:
    # Write then rename, so a concurrent `status` never reads half a file.
    tmp = directory / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, directory / STATE_FILE)


def _ours(entry: dict[str, Any]) -> bool:
    """True when the recorded pid is alive and still runs the recorded config.

    A stale pid may have been recycled by an unrelated process: checking its command
    line keeps `down` from killing a stranger.
    """
    from anju.services._proc import pid_alive, pid_cmdline

    pid = entry.get("pid")
    if not isinstance(pid, int) or not pid_alive(pid):
        return False
    argv = pid_cmdline(pid)
    if argv is None:  # no /proc: trust the pid
        return True
    return str(entry.get("config")) in argv


def _entry_status(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    from anju.services.influxdb import http_ping
    from anju.services.mosquitto import mqtt_ready

    alive = _ours(entry)
    ready = False
    if alive:
        if name == "mosquitto":
            ready = mqtt_ready(entry["host"], int(entry["port"]))
        else:
            ready = http_ping(entry["url"])
    return {**entry, "alive": alive, "ready": ready}


def _env_of(state: dict[str, Any]) -> dict[str, str]:
    return {
        "ANJU_MQTT_URL": state["services"]["mosquitto"]["url"],
        "ANJU_INFLUX_URL": state["services"]["influxdb"]["url"],
    }


def _print_env(env: dict[str, str]) -> None:
    # stdout carries only the exports, so `eval "$(anju services up)"` works.
    for k, v in env.items():
        typer.echo(f"export {k}={v}")


@app.command()
def up(
    directory: DirOpt = _DEFAULT_DIR,
    as_json: JsonOpt = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for readiness.")] = 30,
) -> None:
    """Start Mosquitto and InfluxDB detached; print the env vars to export."""
    from anju.errors import ServiceError
    from anju.services import LocalServices
    from anju.services._proc import port_free, terminate_pid

    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    previous = _load_state(directory)
    if previous is not None:
        statuses = {n: _entry_status(n, e) for n, e in previous["services"].items()}
        if all(s["ready"] for s in statuses.values()):
            typer.echo(f"services already running (see {directory / STATE_FILE})", err=True)
            if as_json:
                typer.echo(json.dumps({**previous, "already_running": True}, indent=2))
            else:
                _print_env(_env_of(previous))
            return
        # Half up (one crashed): restart both from a clean slate, on the same ports.
        for s in statuses.values():
            if s["alive"]:
                terminate_pid(int(s["pid"]))

    def old_port(name: str, key: str = "port") -> int | None:
        # Keep the URLs of the previous run when we can, so exported env vars stay valid.
        if previous is None:
            return None
        port = previous["services"].get(name, {}).get(key)
        return port if isinstance(port, int) and port_free(port) else None

    svc = LocalServices(
        directory,
        mosquitto_kwargs={"port": old_port("mosquitto")},
        influx_kwargs={"port": old_port("influxdb"), "rpc_port": old_port("influxdb", "rpc_port")},
        detached=True,
    )
    try:
        svc.start(timeout)
    except ServiceError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    m, i = svc.mosquitto, svc.influx
    state: dict[str, Any] = {
        "dir": str(directory),
        "services": {
            "mosquitto": {
                "pid": m.pid, "host": m.host, "port": m.port, "url": m.url,
                "config": str(m.config_path), "log": str(m.log_path),
            },
            "influxdb": {
                "pid": i.pid, "host": i.host, "port": i.port, "rpc_port": i.rpc_port,
                "url": i.url, "config": str(i.config_path), "log": str(i.log_path),
            },
        },
        "env": svc.env(),
    }
    _save_state(directory, state)
    # Hand the children over to the OS: they run in their own sessions.
    m.release()
    i.release()
    typer.echo(f"started mosquitto (pid {state['services']['mosquitto']['pid']}) and influxd "
               f"(pid {state['services']['influxdb']['pid']}); state in {directory / STATE_FILE}",
               err=True)
    if as_json:
        typer.echo(json.dumps(state, indent=2))
    else:
        _print_env(state["env"])


@app.command()
def down(
    directory: DirOpt = _DEFAULT_DIR,
    as_json: JsonOpt = False,
    timeout: Annotated[float, typer.Option(help="Seconds before SIGKILL.")] = 10,
) -> None:
    """Stop the services recorded in DIR/services.json (stale pids are fine)."""
    from anju.services._proc import terminate_pid

    directory = directory.resolve()
    state = _load_state(directory)
    result: dict[str, str] = {}
    if state is not None:
        for name, entry in state["services"].items():
            if _ours(entry):
                terminate_pid(int(entry["pid"]), timeout)
                result[name] = "stopped"
            else:
                result[name] = "not running"
            # Keep ports and paths: the next `up` reuses them.
            entry["pid"] = None
        _save_state(directory, state)
    if as_json:
        typer.echo(json.dumps({"dir": str(directory), "services": result}))
    elif state is None:
        typer.echo(f"nothing to stop: no {directory / STATE_FILE}")
    else:
        for name, what in result.items():
            typer.echo(f"{name}: {what}")


@app.command()
def status(directory: DirOpt = _DEFAULT_DIR, as_json: JsonOpt = False) -> None:
    """Show whether each recorded service is alive and ready; exit 1 unless both are ready."""
    directory = directory.resolve()
    state = _load_state(directory)
    statuses = (
        {n: _entry_status(n, e) for n, e in state["services"].items()} if state else {}
    )
    all_ready = bool(statuses) and all(s["ready"] for s in statuses.values())
    if as_json:
        typer.echo(json.dumps({"dir": str(directory), "ready": all_ready, "services": statuses},
                              indent=2))
    elif not statuses:
        typer.echo(f"no services recorded in {directory / STATE_FILE}")
    else:
        for name, s in statuses.items():
            what = "ready" if s["ready"] else ("alive, not ready" if s["alive"] else "not running")
            pid = s.get("pid") or "-"
            typer.echo(f"{name:10} {what:17} pid {pid:>7}  {s['url']}  log {s['log']}")
    if not all_ready:
        raise typer.Exit(1)
