"""`systemctl start|stop|restart|status|is-active UNIT...` for a node's services.

Like systemd with ``Type=notify`` units, ``start``/``restart`` return only once the
service says it is ready: flanneld when it has (re)written /run/flannel/subnet.env,
docker when docker0 is configured. That is what makes ``systemctl restart flanneld
docker`` safe: docker starts after flanneld has written the file docker reads.
"""
from __future__ import annotations

import os
import sys
import time

from . import START_ORDER, UNITS, current, run

READY_TIMEOUT = 15.0  # systemd's is 90 s; a lab learner should not wait that long


def _unit(name: str) -> str:
    return name[:-8] if name.endswith(".service") else name


def _mtime(path):
    try:
        return os.stat(path).st_mtime_ns
    except FileNotFoundError:
        return None


def _wait_ready(lab, node, unit, svc, before) -> bool:
    from ..docker.containers import daemon_info
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if not svc.is_active():
            return False
        if unit == "flanneld" and _mtime(node.subnet_file) not in (None, before):
            return True
        if unit == "docker":
            info = daemon_info(lab.state, node.name)
            if info and info["pid"] == svc.pid():
                return True
        if unit == "etcd":
            return True
        time.sleep(0.05)
    return False


def _start(lab, node, unit, restart: bool) -> int:
    svc = node.service(unit)
    before = _mtime(node.subnet_file)
    if restart:
        svc.restart()
    elif svc.is_active():
        return 0
    else:
        svc.start()
    if _wait_ready(lab, node, unit, svc, before):
        return 0
    if svc.is_active():  # systemd kills a unit that misses its start timeout
        svc.stop()
        why = "a timeout was exceeded"
    else:
        why = "the control process exited with error code"
    print(f"Job for {unit}.service failed because {why}.\n"
          f'See "systemctl status {unit}.service" and "journalctl -xe" for details.', file=sys.stderr)
    return 1


def status(node, unit) -> int:
    svc = node.service(unit)
    desc, path = UNITS.get(unit, (unit, f"/usr/lib/systemd/system/{unit}.service"))
    pid = svc.pid()
    if pid:
        started = os.stat(svc.pid_path).st_mtime
        since = time.strftime("%a %Y-%m-%d %H:%M:%S UTC", time.gmtime(started))
        active = f"active (running) since {since}; {int(time.time() - started)}s ago"
    else:
        active = "inactive (dead)"
    print(f"{'●' if pid else '○'} {unit}.service - {desc}")
    print(f"   Loaded: loaded ({path}; enabled; vendor preset: disabled)")
    print(f"   Active: {active}")
    if pid:
        print(f" Main PID: {pid} ({unit})")
    tail = svc.log().splitlines()[-10:]
    if tail:
        print()
        print("\n".join(tail))
    return 0 if pid else 3


def main(argv) -> int:
    args = [a for a in argv if not a.startswith("-")]
    if not args:
        print("usage: systemctl start|stop|restart|status|is-active UNIT...", file=sys.stderr)
        return 1
    verb, units = args[0], [_unit(u) for u in args[1:]]
    if verb in ("daemon-reload", "enable", "disable"):
        return 0
    lab, node = current()
    for u in units:
        node.service(u)  # "Unit X.service not found." for unknown units, before acting
    if verb in ("start", "restart"):
        rc = 0
        for u in sorted(units, key=lambda u: START_ORDER.index(u) if u in START_ORDER else 99):
            rc |= _start(lab, node, u, restart=(verb == "restart"))
        return rc
    if verb == "stop":
        for u in reversed(sorted(units, key=lambda u: START_ORDER.index(u) if u in START_ORDER else 99)):
            node.service(u).stop()
        return 0
    if verb == "is-active":
        states = [node.service(u).status() for u in units]
        print("\n".join(states))
        return 0 if all(s == "active" for s in states) else 3
    if verb == "status":
        rc = 0
        for i, u in enumerate(units):
            if i:
                print()
            rc = max(rc, status(node, u))
        return rc
    print(f'Unknown operation \'{verb}\'.', file=sys.stderr)
    return 1


if __name__ == "__main__":
    run(main)
