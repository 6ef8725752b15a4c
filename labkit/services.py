"""A tiny supervisor for node services: start, stop, restart, status, pid, log.

On a real host systemd runs flanneld and dockerd. Here each service is a real process
started inside its node's namespace (through ``labkit.nsexec``), in its own session
so it outlives the command that started it, with its log appended to a file and its
pid written next to it. "Restart flanneld" therefore means what it means on a host:
the old process dies, a new one starts and reads etcd and subnet.env afresh.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from dataclasses import dataclass, field
from typing import Callable

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
        return "active" if self.is_active() else "inactive"

    def start(self) -> int:
        pid = self.pid()
        if pid is not None:
            return pid
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
                                         "cwd": self.cwd, "log": self.log_path})
        except OSError:
            return None  # no zygote answering: a plain process does the same job

    def stop(self, timeout: float = 5.0) -> None:
        pid = self.pid()
        if pid is not None:
            netns.kill_pids([pid], timeout=timeout)
            proc = getattr(self, "_proc", None)
            if proc is not None:
                proc.poll()
        try:
            os.unlink(self.pid_path)
        except FileNotFoundError:
            pass

    def restart(self) -> int:
        self.stop()
        return self.start()

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
