"""Debian's Mosquitto, started as its packaged service starts it (as root, dropping to user
``mosquitto``), runs on the mosquitto.conf that ``anju devices credentials`` writes:
passwd and acl readable by the broker's user, per-device credentials enforced, and the
pipeline's persistent session kept across a broker restart."""

from __future__ import annotations

import asyncio
import csv
import grp
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import aiomqtt
import pytest
from typer.testing import CliRunner

from anju.cli import app
from anju.devices.credentials import PIPELINE_USER
from anju.devices.sample import write_site
from anju.services import Mosquitto
from anju.services._proc import free_port

pytestmark = pytest.mark.integration

MOSQUITTO = "/usr/sbin/mosquitto"
READING = b'{"ts": 1767225600000, "smoke_db_m": 0.01, "temp_c": 21.0}'


def _packaged_broker_possible() -> str | None:
    if not os.access(MOSQUITTO, os.X_OK):
        return f"{MOSQUITTO} is not installed"
    if os.geteuid() != 0:
        return "only root can start the broker as its service does (dropping to mosquitto)"
    try:
        pwd.getpwnam("mosquitto")
        grp.getgrnam("mosquitto")
    except KeyError:
        return "no user/group mosquitto (Debian's mosquitto package creates them)"
    return None


class PackagedMosquitto(Mosquitto):
    """/usr/sbin/mosquitto -c <the generated config>, as Debian's mosquitto.service runs it."""

    def __init__(self, workdir: Path, port: int, config: Path, log: Path) -> None:
        super().__init__(workdir, port)
        self._config, self._log = config, log

    @property
    def config_path(self) -> Path:
        return self._config

    @property
    def log_path(self) -> Path:
        return self._log

    def _write_config(self) -> None:
        pass  # the generated one, as it is

    def _argv(self) -> list[str]:
        return [MOSQUITTO, "-c", str(self._config)]


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory the broker's user can enter (pytest's tmp dirs are root-only, 0700)."""
    why = _packaged_broker_possible()
    if why:
        pytest.skip(why)
    base = Path(tempfile.mkdtemp(prefix="anju-broker-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def _as_mosquitto(path: Path) -> Path:
    """A directory owned by the broker's user, as Debian's packaging makes
    /var/lib/mosquitto and /var/log/mosquitto."""
    path.mkdir(mode=0o750)
    os.chown(path, pwd.getpwnam("mosquitto").pw_uid, -1)
    return path


def _uid_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return int(line.split()[1])  # real uid
    raise AssertionError("no Uid line")


async def test_packaged_mosquitto_runs_on_the_generated_config(world: Path) -> None:
    site = write_site(world / "site", estates=1, buildings=1, per_building=1)
    out, data, logs = world / "anju", _as_mosquitto(world / "lib"), _as_mosquitto(world / "log")
    port = free_port()
    log = logs / "mosquitto.log"
    r = CliRunner().invoke(app, [
        "devices", "credentials", "--site", str(site), "--out", str(out),
        "--listen", f"127.0.0.1:{port}", "--persistence-dir", str(data),
        "--log-dest", f"file {log}", "--json"])
    assert r.exit_code == 0, r.output
    conf = (out / "mosquitto.conf").read_text()
    for line in ["allow_anonymous false", f"password_file {out}/passwd",
                 f"acl_file {out}/acl", "persistence true", f"persistence_location {data}/",
                 "max_queued_messages 1000000", "max_inflight_messages 0",
                 f"listener {port} 127.0.0.1"]:
        assert line in conf.splitlines(), line
    assert "\nuser " not in conf  # no `user root`: the broker drops to mosquitto
    gid = grp.getgrnam("mosquitto").gr_gid
    for name in ("passwd", "acl", "mosquitto.conf"):
        st = (out / name).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 0, gid), name
    assert stat.S_IMODE((out / "credentials.csv").stat().st_mode) == 0o600
    with (out / "credentials.csv").open(newline="") as fh:
        pw = {row["username"]: row["password"] for row in csv.DictReader(fh)}

    log.touch()
    os.chown(log, pwd.getpwnam("mosquitto").pw_uid, -1)
    broker = PackagedMosquitto(world / "svc", port, out / "mosquitto.conf", log)
    await asyncio.to_thread(broker.start)
    try:
        assert broker.pid is not None
        assert _uid_of(broker.pid) == pwd.getpwnam("mosquitto").pw_uid  # it dropped root
        device, topic = "smoke-1", "anju/e1/b1/smoke/smoke-1"

        def client(user: str | None, password: str | None, cid: str,
                   **kw: object) -> aiomqtt.Client:
            return aiomqtt.Client("127.0.0.1", port, username=user, password=password,
                                  identifier=cid, timeout=10, **kw)  # type: ignore[arg-type]

        with pytest.raises(aiomqtt.MqttError):
            async with client(device, "not-its-password", "t-bad"):
                pass
        # The pipeline's persistent session (3.1.1, clean_session false), then away.
        async with client(PIPELINE_USER, pw[PIPELINE_USER], "t-pipe",
                          clean_session=False) as pipe:
            await pipe.subscribe("anju/#", qos=1)
        async with client(device, pw[device], "t-dev") as dev:
            await dev.publish(topic, READING, qos=1)  # queued for the absent pipeline
        # restart the broker: what is queued survives in persistence_location
        await asyncio.to_thread(broker.stop)
        assert (data / "mosquitto.db").is_file()
        await asyncio.to_thread(broker.start)
        async with client(PIPELINE_USER, pw[PIPELINE_USER], "t-pipe",
                          clean_session=False) as pipe:
            async with asyncio.timeout(10):
                msg = await anext(aiter(pipe.messages))
            assert (str(msg.topic), msg.payload) == (topic, READING)
    finally:
        await asyncio.to_thread(broker.stop)
    assert "Unable to open" not in log.read_text()
