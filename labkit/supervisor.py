"""The lab's stand-in for systemd's job engine after a start: Restart= and late ExecStartPost.

One process per lab (``python -m labkit.supervisor LAB``), in the lab's switch namespace
next to the zygote, its pid in ``<state>/supervisor.pid``: ``labkit down``/``clean``
stops it first, and deleting the switch namespace would kill it anyway. Every quarter
second it looks at each node's started units (``pid/UNIT.want``, see ``Service``):

* the main process is gone and the unit's ``Restart=`` says so for how it ended (from
  the wait status the zygote recorded; an unknown end counts as a crash): it logs what
  systemd logs, waits ``RestartSec`` ("activating (auto-restart)") and starts it again,
  counting restarts; more than 5 starts in 10 s give up ("start request repeated too
  quickly", as systemd's default StartLimitBurst/Interval). A clean exit ends the unit.
* a unit with ``ExecStartPost`` that became ready without anyone waiting for it (flanneld
  started before the network config existed): its ExecStartPost runs then, as systemd's.

``systemctl stop`` removes the ``.want`` file before it kills, so a stop is never restarted.
"""
from __future__ import annotations

import glob
import json
import os
import signal
import sys
import time
from typing import TYPE_CHECKING

from . import units
from .services import Service

if TYPE_CHECKING:
    from .lab import Lab

POLL = 0.25
# A service forked by the zygote is reaped by it, which then writes the exit status where
# `how_it_ended` reads it. A process already gone whose status is not written yet is given
# this long before it is taken for a crash (a clean exit read as SIGKILL got restarted).
EXIT_GRACE = 1.0


def _journal(svc: Service, node: str, text: str) -> None:
    """A systemd line in the unit's journal (its log file)."""
    stamp = time.strftime("%b %d %H:%M:%S", time.gmtime())
    try:
        with open(svc.log_path, "a") as f:
            f.write(f"{stamp} {node} systemd[1]: {text}\n")
    except OSError:
        pass


def how_it_ended(svc: Service, pid: int | None) -> tuple[int | None, int | None, str]:
    """(exit code, signal, systemd's words) for the main process `pid`."""
    last = svc.last_exit()
    if last is None or pid is None or last[0] != pid:
        return None, signal.SIGKILL, "code=killed, status=9/KILL"   # not seen: taken for a crash
    status = last[1]
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        return None, sig, f"code=killed, status={sig}/{signal.Signals(sig).name[3:]}"
    code = os.WEXITSTATUS(status)
    return code, None, f"code=exited, status={code}/{'SUCCESS' if code == 0 else 'FAILURE'}"


class Supervisor:
    def __init__(self, lab_name: str) -> None:
        from .state import LabState
        self.state = LabState(lab_name)
        self.lab_name = lab_name
        self.last_pid: dict[str, int] = {}
        self.gone_since: dict[str, float] = {}  # unit -> when its process was first seen gone
        self._lab: Lab | None = None
        self._units: dict[str, units.Unit | None] = {}  # parsed once: the unit files never change

    def _unit(self, name: str) -> units.Unit | None:
        if name not in self._units:
            try:
                self._units[name] = units.load(name)
            except KeyError:
                self._units[name] = None
        return self._units[name]

    def _node_service(self, node: str, unit: str) -> Service:
        from .lab import Lab
        lab = self._lab
        if lab is None or node not in {n.name for n in lab.nodes}:
            lab = self._lab = Lab.attach(self.lab_name)   # nodes may have joined since
        return lab.node(node).service(unit)

    def tick(self) -> None:
        for want in glob.glob(os.path.join(self.state.path("nodes"), "*", "pid", "*.want")):
            node = want.split(os.sep)[-3]
            name = os.path.basename(want)[:-5]
            unit = self._unit(name)
            if unit is None:
                continue
            try:
                self._check(node, name, unit)
            except Exception as e:  # noqa: BLE001 - one unit's trouble must not stop the others
                print(f"supervisor: {node}/{name}: {e!r}", file=sys.stderr, flush=True)

    def _check(self, node: str, name: str, unit: units.Unit) -> None:
        key = f"{node}/{name}"
        pid_path = self.state.node_dir(node, "pid", f"{name}.pid")
        light = Service(name, "", [], self.state.node_dir(node, "log", f"{name}.log"), pid_path)
        pid = light.pid()
        if pid is not None:
            self.last_pid[key] = pid
            self.gone_since.pop(key, None)
            if unit.exec_start_post and not _posted(light, pid) and _ready(self, node, name, pid_path):
                why = self._node_service(node, name).run_post_start()
                if why:
                    _journal(light, node, f"{name}.service: control process exited: {why}")
            return
        with light._locked():   # a start or stop in flight is seen whole, never half-done
            if light.pid() is not None or not light.wanted():
                return
            start = self._decide(node, name, unit, light, pid_path)
        if start:
            svc = self._node_service(node, name)
            svc.start(only_if_wanted=True)

    def _decide(self, node: str, name: str, unit: units.Unit, light: Service, pid_path: str) -> bool:
        """A wanted unit whose process is gone (under its lock): record, wait, or say "start it"."""
        st = light.unit_state()
        now = time.time()
        if "restart_at" not in st:
            key = f"{node}/{name}"
            pid = _pid_in_file(pid_path) or self.last_pid.get(key)
            last = light.last_exit()
            if pid is not None and (last is None or last[0] != pid) \
                    and now - self.gone_since.setdefault(key, now) < EXIT_GRACE:
                return False  # its exit status may not be written yet: look again next time
            self.gone_since.pop(key, None)
            code, sig, words = how_it_ended(light, pid)
            _journal(light, node, f"{name}.service: main process exited, {words}")
            if not unit.restarts_after(code, sig):
                failed = not (code == 0 or sig in units.CLEAN_SIGNALS)
                _journal(light, node, f"Unit {name}.service entered failed state." if failed
                         else f"{name}.service: Succeeded.")
                _retire(light, result=("signal" if sig else "exit-code") if failed else "success", since=now)
                return False
            _journal(light, node, f"Unit {name}.service entered failed state.")
            _journal(light, node, f"{name}.service failed.")
            st.update(restart_at=now + unit.restart_sec, result="signal" if sig else "exit-code", since=now)
            _write_state(light, st)
            return False
        if now < st["restart_at"]:
            return False
        starts = [t for t in st.get("starts", []) if now - t < units.START_LIMIT_INTERVAL] + [now]
        if len(starts) > units.START_LIMIT_BURST:
            _journal(light, node, f"{name}.service start request repeated too quickly, refusing to start.")
            _journal(light, node, f"Failed to start {unit.description}.")
            _retire(light, result="start-limit", since=now)
            return False
        restarts = st.get("restarts", 0) + 1
        _journal(light, node, f"{name}.service holdoff time over, scheduling restart.")
        _journal(light, node, f"{name}.service: Scheduled restart job, restart counter is at {restarts}.")
        st.pop("restart_at", None)
        st.update(restarts=restarts, starts=starts, result="success", since=now)
        _write_state(light, st)
        return True


def _retire(svc: Service, **state: object) -> None:
    """The unit ends (no restart): not wanted any more, its result kept for `systemctl status`."""
    try:
        os.unlink(svc.want_path)
    except FileNotFoundError:
        pass
    _write_state(svc, dict(state))


def _write_state(svc: Service, st: dict) -> None:
    tmp = svc.state_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(st, f)
    os.replace(tmp, svc.state_path)


def _pid_in_file(pid_path: str) -> int | None:
    try:
        with open(pid_path) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _posted(svc: Service, pid: int) -> bool:
    try:
        with open(svc.posted_path) as f:
            return int(f.read().strip() or 0) == pid
    except (OSError, ValueError):
        return False


def _ready(sup: Supervisor, node: str, name: str, pid_path: str) -> bool:
    """Type=notify readiness seen from outside: flanneld has written subnet.env since it started."""
    if name != "flanneld":
        return False
    try:
        return os.stat(sup.state.node_dir(node, "run", "flannel", "subnet.env")).st_mtime_ns >= \
            os.stat(pid_path).st_mtime_ns
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m labkit.supervisor LAB", file=sys.stderr)
        return 2
    sup = Supervisor(args[0])
    stopping = []
    signal.signal(signal.SIGTERM, lambda *a: stopping.append(1))
    while not stopping and os.path.isdir(sup.state.dir):
        sup.tick()
        while True:  # etcd restarted from here is our child: reap it
            try:
                if os.waitpid(-1, os.WNOHANG)[0] == 0:
                    break
            except ChildProcessError:
                break
        time.sleep(POLL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
