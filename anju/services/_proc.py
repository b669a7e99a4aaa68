"""Child-process plumbing shared by the Mosquitto and InfluxDB wrappers.

The contract every service keeps: a child started here never outlives the process that
started it (unless it was started ``detached``), a failed start raises
:class:`~anju.errors.ServiceError` with the tail of the service's own log, and stopping
is idempotent.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from queue import SimpleQueue
from types import TracebackType
from typing import Any, ClassVar, Self

from anju.errors import ServiceError

__all__ = [
    "LOG_TAIL_LINES",
    "ServiceProcess",
    "find_binary",
    "free_port",
    "free_ports",
    "pid_alive",
    "pid_cmdline",
    "port_free",
    "read_log_tail",
    "terminate_pid",
]

LOG_TAIL_LINES = 40
_LOCALHOST = "127.0.0.1"


# --------------------------------------------------------------------------- ports


def free_port(host: str = _LOCALHOST) -> int:
    """Return a TCP port on ``host`` that nothing listens on right now.

    The kernel picks it (bind to port 0); another process may still take it before
    the caller binds, which is why services retry with a fresh port when their own
    port was chosen this way.
    """
    return free_ports(1, host)[0]


def free_ports(n: int, host: str = _LOCALHOST) -> list[int]:
    """Return ``n`` distinct free ports (all probe sockets are held until every port is chosen)."""
    socks: list[socket.socket] = []
    try:
        for _ in range(n):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(s)
            s.bind((host, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def port_free(port: int, host: str = _LOCALHOST) -> bool:
    """True when a server could bind ``host:port`` now.

    SO_REUSEADDR mirrors what Mosquitto and Go's listeners set, so a port left in
    TIME_WAIT by our own previous run counts as free, and only a live listener (or a
    socket bound without reuse) counts as taken.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


# --------------------------------------------------------------------------- binaries and logs


def find_binary(name: str, env_var: str, extra_dirs: Sequence[str] = ()) -> str:
    """Locate an executable: ``$env_var`` first, then ``PATH``, then ``extra_dirs``.

    ``/usr/sbin`` is not on a normal user's PATH, yet that is where Debian puts
    ``mosquitto``; hence ``extra_dirs``.
    """
    override = os.environ.get(env_var)
    if override:
        if os.access(override, os.X_OK):
            return override
        raise ServiceError(name, f"{env_var}={override!r} is not an executable file")
    found = shutil.which(name)
    if found:
        return found
    for d in extra_dirs:
        candidate = os.path.join(d, name)
        if os.access(candidate, os.X_OK):
            return candidate
    raise ServiceError(
        name,
        f"executable {name!r} not found on PATH nor in {', '.join(extra_dirs) or '-'}; "
        f"install it (`make services`) or set {env_var}",
    )


def read_log_tail(path: Path, offset: int = 0, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``path`` written after byte ``offset`` ("" when none)."""
    try:
        with path.open("rb") as f:
            size = f.seek(0, os.SEEK_END)
            # 64 KiB is plenty for 40 log lines and bounds the read on a huge log.
            f.seek(max(offset, size - 65536))
            data = f.read()
    except OSError:
        return ""
    text = data.decode("utf-8", errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def _log_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


# --------------------------------------------------------------------------- pids


def pid_cmdline(pid: int) -> list[str] | None:
    """The argv of ``pid`` from /proc, or None when unknown (no such pid, or no /proc)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def pid_alive(pid: int) -> bool:
    """True when ``pid`` exists and is not a zombie.

    Zombies count as dead: a detached service that is stopped by another process is
    reparented to PID 1, and in some containers PID 1 never reaps, so the pid stays
    visible to ``kill(pid, 0)`` forever.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc (macOS): kill(pid, 0) is all we know
    # The state letter follows the parenthesised command name, which may contain spaces.
    state = stat.rpartition(")")[2].split()[:1]
    return state != ["Z"]


def terminate_pid(pid: int, timeout: float = 10) -> bool:
    """SIGTERM ``pid``, then SIGKILL after ``timeout``; True when it was alive.

    For processes that are not our children (``anju services down``), so it polls
    instead of waiting.
    """
    if not pid_alive(pid):
        return False
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5
            while pid_alive(pid) and time.monotonic() < kill_deadline:
                time.sleep(0.02)
            break
        time.sleep(0.02)
    return True


# --------------------------------------------------------------------------- spawning

_PR_SET_PDEATHSIG = 1


@functools.cache
def _load_prctl() -> Callable[..., int] | None:
    """libc's prctl, or None off Linux.

    Loaded in the parent (cached), so the child, between fork and exec, only makes the call.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes
    import ctypes.util

    libc_name = ctypes.util.find_library("c") or "libc.so.6"
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
    except OSError:
        return None
    prctl: Callable[..., int] = libc.prctl
    return prctl


def _die_with_parent(parent_pid: int) -> Callable[[], None]:
    prctl = _load_prctl()

    def preexec() -> None:
        if prctl is not None:
            prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        # If the parent died between fork and prctl, the signal will never come.
        if os.getppid() != parent_pid:
            os._exit(1)

    return preexec


class _Box:
    """A call's outcome, handed from the spawner thread to the caller."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class _Spawner:
    """One long-lived daemon thread that forks every attached child.

    PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, not the
    process. A service started from a short-lived thread (``asyncio.to_thread``, a
    worker of a pool being shut down) would be killed when that thread ends; forking
    from a daemon thread that lives as long as the process avoids that.
    """

    _instance: ClassVar[_Spawner | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self) -> None:
        self._queue: SimpleQueue[tuple[Callable[[], Any], _Box]] = SimpleQueue()
        threading.Thread(target=self._run, name="anju-services-spawner", daemon=True).start()

    @classmethod
    def get(cls) -> _Spawner:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def _run(self) -> None:
        while True:
            fn, box = self._queue.get()
            try:
                box.result = fn()
            except BaseException as exc:  # handed over to the caller's thread
                box.error = exc
            box.done.set()

    def call(self, fn: Callable[[], Any]) -> Any:
        box = _Box()
        self._queue.put((fn, box))
        box.done.wait()
        if box.error is not None:
            raise box.error
        return box.result


def _spawn(
    argv: Sequence[str], *, log_path: Path, cwd: Path, env: dict[str, str], detached: bool
) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as log:
        # The child gets its own copy of the descriptor; ours closes on leaving the block.
        def popen() -> subprocess.Popen[bytes]:
            if detached:
                # Own session: survives the parent and its terminal's SIGHUP/SIGINT.
                return subprocess.Popen(
                    list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                )
            # Own process group so a Ctrl-C in the terminal reaches only us, and we stop
            # the services in order (after draining whatever talks to them).
            return subprocess.Popen(
                list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, process_group=0,
                preexec_fn=_die_with_parent(os.getpid()),
            )

        if detached:
            return popen()
        proc: subprocess.Popen[bytes] = _Spawner.get().call(popen)
        return proc


# Attached services still running, stopped at interpreter exit (pdeathsig is the backstop
# for a parent that dies without running atexit handlers).
_live: dict[int, ServiceProcess] = {}
_live_lock = threading.Lock()


@atexit.register
def _stop_all_at_exit() -> None:
    with _live_lock:
        services = list(_live.values())
    for svc in services:
        with contextlib.suppress(Exception):
            svc.stop(timeout=5)


# --------------------------------------------------------------------------- base class


class ServiceProcess:
    """A server binary run as a child process on loopback ports, with a readiness probe.

    Subclasses supply the name, the config file, the argv and the probe. The port is
    chosen once (at construction when not given) and kept across stop/start, so a
    restart serves the same URL and the same data.
    """

    name: ClassVar[str] = "service"
    host: str = _LOCALHOST

    def __init__(self, workdir: Path, port: int | None, *, detached: bool = False) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._auto_port = port is None
        self.port: int = port if port is not None else free_port(self.host)
        self.detached = detached
        self._proc: subprocess.Popen[bytes] | None = None
        self._ever_started = False

    # -- for subclasses

    @property
    def log_path(self) -> Path:
        """The service's log (its own log output plus anything it prints)."""
        raise NotImplementedError

    @property
    def config_path(self) -> Path:
        """The generated configuration file."""
        raise NotImplementedError

    def _write_config(self) -> None:
        raise NotImplementedError

    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _ports(self) -> list[int]:
        """Every port the service binds (checked before start)."""
        return [self.port]

    def _choose_new_ports(self) -> None:
        """Pick fresh ports after losing a race for automatically chosen ones."""
        self.port = free_port(self.host)

    def _env(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self, timeout: float = 1.0) -> bool:
        """Probe the service once: True when it answers its protocol."""
        raise NotImplementedError

    # -- lifecycle

    @property
    def pid(self) -> int | None:
        """The pid of the running child, or None."""
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    @property
    def running(self) -> bool:
        """True while the child process is alive (not necessarily ready)."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 15) -> None:
        """Start the service and wait until it is ready; no-op when already running.

        Raises ServiceError, with the tail of the service's log, when it exits or
        does not become ready within ``timeout`` seconds.
        """
        if self.running:
            return
        self._reap()
        # Only ports we picked ourselves may be swapped for others: a caller who named a
        # port (or a restart, which must keep the URL) gets an error instead.
        attempts = 3 if self._auto_port and not self._ever_started else 1
        for attempt in range(attempts):
            busy = [p for p in self._ports() if not port_free(p, self.host)]
            if not busy:
                break
            if attempt + 1 < attempts:
                self._choose_new_ports()
                continue
            raise ServiceError(
                self.name,
                f"port {', '.join(f'{self.host}:{p}' for p in busy)} already in use "
                "by another process",
                log_tail=read_log_tail(self.log_path),
            )
        self._write_config()
        self._launch(timeout)
        self._ever_started = True

    def _launch(self, timeout: float) -> None:
        argv = self._argv()
        offset = _log_size(self.log_path)
        with self.log_path.open("ab") as log:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
            log.write(f"--- anju: starting {self.name} at {stamp}: {' '.join(argv)}\n".encode())
        try:
            proc = _spawn(
                argv, log_path=self.log_path, cwd=self.workdir, env=self._env(),
                detached=self.detached,
            )
        except OSError as exc:
            raise ServiceError(self.name, f"cannot execute {argv[0]}: {exc}") from exc
        self._proc = proc
        if not self.detached:
            with _live_lock:
                _live[id(self)] = self
        deadline = time.monotonic() + timeout
        while True:
            code = proc.poll()
            if code is not None:
                self._reap()
                raise ServiceError(
                    self.name,
                    f"exited with code {code} while starting (port {self.port})",
                    log_tail=read_log_tail(self.log_path, offset),
                )
            if self.ready(timeout=min(1.0, max(0.05, deadline - time.monotonic()))):
                # A second look: a squatter on our port could have answered the probe
                # while our child was still on its way to failing.
                if proc.poll() is None:
                    return
                continue
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError(
                    self.name,
                    f"not ready after {timeout:g} s (port {self.port})",
                    log_tail=read_log_tail(self.log_path, offset),
                )
            time.sleep(0.02)

    def stop(self, timeout: float = 10) -> None:
        """Stop the service: SIGTERM (it saves its state), SIGKILL after ``timeout``. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self._reap()

    def kill(self) -> None:
        """SIGKILL the service at once (a crash, for tests); it can be started again."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
        self._reap()

    def release(self) -> None:
        """Forget a detached child without stopping it (the CLI hands it over to the OS)."""
        if self._proc is not None and self.detached:
            # Marking it collected keeps Popen.__del__ from warning about a live child
            # that we leave running on purpose.
            self._proc.returncode = 0
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            with contextlib.suppress(ChildProcessError, OSError):
                self._proc.poll()
        self._proc = None
        with _live_lock:
            _live.pop(id(self), None)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid {self.pid}" if self.running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state} in {self.workdir}>"
