"""A tiny supervisor for node services: start, stop, restart, status, pid, log.

On a real host systemd runs flanneld and dockerd. Here each service is a real process
started inside its node's namespace (through ``labkit.nsexec``), in its own session
so it outlives the command that started it, with its log appended to a file and its
pid written next to it. "Restart flanneld" therefore means what it means on a host:
the old process dies, a new one starts and reads etcd and subnet.env afresh.
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable, Iterator

from . import netns
from .errors import LabError
from .zygote import request


def _starttime(pid: int) -> str | None:
    """Field 22 of /proc/PID/stat: tells a live service from a reused pid."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        if fields[0] == "Z":
            return None
        return fields[19]
    except (OSError, IndexError):
        return None


@dataclass
class Service:
    """One supervised process: `argv` run in `ns` with the node's `view`, logging to `log_path`."""
    name: str
    ns: str
    argv: list[str]
    log_path: str
    pid_path: str
    view: list = field(default_factory=list)
    env: dict | None = None
    cwd: str | None = None
    zygote: str | None = None   # socket of the lab's fork server (labkit.zygote), if any
    socket: str | None = None   # a unix socket it listens on: a dead one's file is removed before start
    probe: Callable[[], Callable[[], bool]] | None = None  # before start: gives "is it ready yet?"
    prepare: Callable[[], object] | None = None  # run before each start (etcd: its tmpfs)
    # the unit's ExecStartPost (flanneld: mk-docker-opts.sh), run once the service is ready;
    # returns None, or why it failed (the start job then fails and the service is stopped)
    post_start: Callable[[], str | None] | None = None

    # -- the unit's state next to its pid file (read by labkit/supervisor.py) ------------
    def _side(self, suffix: str) -> str:
        base = self.pid_path[:-4] if self.pid_path.endswith(".pid") else self.pid_path
        return base + suffix

    @property
    def want_path(self) -> str:
        """Exists while the unit is started and not stopped: a death then is a failure to handle."""
        return self._side(".want")

    @property
    def exit_path(self) -> str:
        """`PID WAITSTATUS` of the last main process that ended (written by the zygote)."""
        return self._side(".exit")

    @property
    def state_path(self) -> str:
        """The supervisor's record: restart counter, result, auto-restart time."""
        return self._side(".state")

    @property
    def posted_path(self) -> str:
        """The pid whose ExecStartPost has run."""
        return self._side(".posted")

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One start/stop of this unit at a time (systemctl, labkit and the supervisor)."""
        os.makedirs(os.path.dirname(self.pid_path), exist_ok=True)
        fd = os.open(self._side(".lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def unit_state(self) -> dict:
        try:
            with open(self.state_path) as f:
                return json.load(f)
        except (OSError, ValueError):
            return {}

    def set_unit_state(self, **changes: object) -> dict:
        st = self.unit_state()
        st.update(changes)
        _write_atomic(self.state_path, json.dumps(st))
        return st

    def wanted(self) -> bool:
        return os.path.exists(self.want_path)

    def last_exit(self) -> tuple[int, int] | None:
        """(pid, wait status) of the main process that ended last, if the zygote saw it."""
        try:
            with open(self.exit_path) as f:
                pid_s, status_s = f.read().split()
            return int(pid_s), int(status_s)
        except (OSError, ValueError):
            return None

    def run_post_start(self) -> str | None:
        """ExecStartPost for the running main process (once per pid)."""
        pid = self.pid()
        if self.post_start is None or pid is None:
            return None
        why = self.post_start()
        if why is None:
            _write_atomic(self.posted_path, f"{pid}\n")
        return why

    def pid(self) -> int | None:
        try:
            with open(self.pid_path) as f:
                pid_s, start = f.read().split()
            pid = int(pid_s)
        except (OSError, ValueError):
            return None
        return pid if _starttime(pid) == start else None

    def is_active(self) -> bool:
        return self.pid() is not None

    def status(self) -> str:
        """systemctl is-active's word: active, activating (a restart is pending), failed, inactive."""
        if self.is_active():
            return "active"
        if self.wanted():
            return "activating"
        return "failed" if self.unit_state().get("result") not in (None, "success") else "inactive"

    def start(self, only_if_wanted: bool = False) -> int | None:
        """Start the process (no-op if it runs). `only_if_wanted`: the supervisor's
        auto-restart, which must not undo a `stop` that came in meanwhile."""
        with self._locked():
            if only_if_wanted and not self.wanted():
                return None
            return self._start()

    def _start(self) -> int:
        pid = self.pid()
        if pid is not None:
            return pid
        _write_atomic(self.want_path, "")
        st = self.unit_state()
        if st.get("restart_at") is not None:   # a start by hand ends a pending auto-restart
            st.pop("restart_at")
            _write_atomic(self.state_path, json.dumps(st))
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        os.makedirs(os.path.dirname(self.pid_path), exist_ok=True)
        if self.prepare:
            self.prepare()
        if self.socket:
            remove_stale_socket(self.socket)
        pid = self._fork_from_zygote()
        if pid is None:
            with open(self.log_path, "ab") as log:
                proc = subprocess.Popen(netns.nsexec_argv(self.ns, self.argv, self.view),
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True, env=self.env, cwd=self.cwd)
            self._proc = proc  # keep the handle so the lab process reaps it
            pid = proc.pid
        start = None
        for _ in range(100):  # the stat line exists as soon as fork returns
            start = _starttime(pid)
            if start:
                break
            time.sleep(0.001)
        if start is None:
            raise LabError(f"{self.name} in {self.ns} exited at once; see {self.log_path}")
        tmp = self.pid_path + ".tmp"
        with open(tmp, "w") as f:
            f.write(f"{pid} {start}\n")
        os.replace(tmp, self.pid_path)
        return pid

    def _fork_from_zygote(self) -> int | None:
        """Start a `python -m labkit...daemon` service as a fork of the lab's zygote."""
        if not self.zygote or self.argv[1:2] != ["-m"] or not os.path.exists(self.zygote):
            return None
        try:
            return request(self.zygote, {"name": self.name, "module": self.argv[2], "args": self.argv[3:],
                                         "netns": self.ns, "view": self.view, "env": self.env,
                                         "cwd": self.cwd, "log": self.log_path, "exit": self.exit_path})
        except OSError:
            return None  # no zygote answering: a plain process does the same job

    def stop(self, timeout: float = 5.0) -> None:
        with self._locked():
            # not wanted any more first: the supervisor must not take this death for a crash
            for path in (self.want_path, self.state_path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            pid = self.pid()
            if pid is not None:
                netns.kill_pids([pid], timeout=timeout)
                proc = getattr(self, "_proc", None)
                if proc is not None:
                    proc.poll()
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.pid_path)

    def restart(self) -> int:
        self.stop()
        with self._locked():
            return self._start()

    def start_ready(self, restart: bool = False, timeout: float = 15.0) -> str | None:
        """`systemctl start|restart` of a Type=notify unit: None once the service says it is
        ready, else systemd's reason: it exited first, or missed its start timeout (then
        it is stopped, as systemd does)."""
        ready = self.probe() if self.probe else (lambda: True)
        if restart:
            self.stop()
        elif self.is_active():
            return None
        try:
            self.start()
        except LabError:
            return "the control process exited with error code"
        deadline = time.monotonic() + timeout
        while True:
            if not self.is_active():
                return "the control process exited with error code"
            if ready():
                why = self.run_post_start()
                if why is not None:  # a failed ExecStartPost fails the job and stops the unit
                    self.stop()
                    return "the control process exited with error code"
                return None
            if time.monotonic() > deadline:
                self.stop()
                return "a timeout was exceeded"
            time.sleep(0.05)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""


def _write_atomic(path: str, text: str) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def systemd_failure(unit: str, why: str) -> str:
    """What systemctl prints when a start job fails."""
    return (f"Job for {unit}.service failed because {why}.\n"
            f'See "systemctl status {unit}.service" and "journalctl -xe" for details.')


def remove_stale_socket(path: str) -> bool:
    """Remove a unix socket file nobody listens on any more (left by a killed process).

    A socket file outlives its process: after `kill -9` the next start fails with
    "bind: address already in use". A live listener answers connect(), and its file
    is left alone; only a refused connection (no listener) removes it."""
    if not os.path.exists(path):
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(1.0)
        s.connect(path)
        return False
    except ConnectionRefusedError:
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        s.close()
