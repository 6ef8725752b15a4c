"""`systemctl start|stop|restart|status|is-active|cat UNIT...` for a node's services.

Like systemd with ``Type=notify`` units, ``start``/``restart`` return only once the
service says it is ready: flanneld when it has (re)written /run/flannel/subnet.env,
docker when docker0 is configured, etcd when it answers /health (``labkit service``
does the same, see ``Service.start_ready``); a unit that exits first fails the job. That
is what makes ``systemctl restart flanneld docker`` safe: docker starts after flanneld has
written the file docker reads. The order of one command's units comes from their
Before=/After= (``labkit/units.py``), and flanneld's ExecStartPost (mk-docker-opts.sh) runs
before its start job ends.
"""
from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from .. import units as unitfiles
from ..services import systemd_failure
from . import current, run

if TYPE_CHECKING:
    from ..lab import Lab
    from ..node import Node

READY_TIMEOUT = 15.0  # systemd's is 90 s; a lab learner should not wait that long


def _unit(name: str) -> str:
    return name[:-8] if name.endswith(".service") else name


def _start(lab: Lab, node: Node, unit: str, restart: bool) -> int:
    why = node.service(unit).start_ready(restart=restart, timeout=READY_TIMEOUT)
    if why is None:
        return 0
    print(systemd_failure(unit, why), file=sys.stderr)
    return 1


def _since(t: float) -> str:
    return f"since {time.strftime('%a %Y-%m-%d %H:%M:%S UTC', time.gmtime(t))}; {int(time.time() - t)}s ago"


def status(node: Node, unit: str) -> int:
    """systemd's status block: Loaded (with drop-ins), Active (also "activating (auto-restart)"
    and "failed"), Main PID, the journal's tail."""
    svc = node.service(unit)
    try:
        u = unitfiles.load(unit)
        desc, path = u.description, u.path
        dropins = [p for p, _ in unitfiles.FILES[unit][1:]]
    except KeyError:
        desc, path, dropins = unit, f"/usr/lib/systemd/system/{unit}.service", []
    pid = svc.pid()
    st = svc.unit_state()
    if pid:
        active = f"active (running) {_since(os.stat(svc.pid_path).st_mtime)}"
    elif svc.wanted():
        result = st.get("result", "signal")
        active = f"activating (auto-restart) (Result: {result}) {_since(st.get('since', time.time()))}"
    elif st.get("result") not in (None, "success"):
        active = f"failed (Result: {st['result']}) {_since(st.get('since', time.time()))}"
    else:
        active = "inactive (dead)"
    print(f"{'●' if pid else '○'} {unit}.service - {desc}")
    print(f"   Loaded: loaded ({path}; enabled; vendor preset: disabled)")
    if dropins:
        print(f"  Drop-In: {os.path.dirname(dropins[0])}")
        print(f"           └─{', '.join(os.path.basename(d) for d in dropins)}")
    print(f"   Active: {active}")
    if pid:
        print(f" Main PID: {pid} ({unit})")
    if st.get("restarts"):
        print(f" Restarts: {st['restarts']} (Restart={u.restart}, RestartSec={u.restart_sec:g}s)")
    tail = svc.log().splitlines()[-10:]
    if tail:
        print()
        print("\n".join(tail))
    return 0 if pid else 3


def main(argv: list[str]) -> int:
    args = [a for a in argv if not a.startswith("-")]
    if not args:
        print("usage: systemctl start|stop|restart|status|is-active|cat UNIT...", file=sys.stderr)
        return 1
    verb, units = args[0], [_unit(u) for u in args[1:]]
    if verb in ("daemon-reload", "enable", "disable"):
        return 0
    lab, node = current()
    for u in units:
        node.service(u)  # "Unit X.service not found." for unknown units, before acting
    if verb in ("start", "restart"):
        rc = 0
        for u in unitfiles.start_order(units):   # by Before=/After=, as systemd orders a transaction
            rc |= _start(lab, node, u, restart=(verb == "restart"))
        return rc
    if verb == "stop":
        for u in unitfiles.stop_order(units):
            node.service(u).stop()
        return 0
    if verb == "cat":
        print("\n".join(unitfiles.cat(u) for u in units if u in unitfiles.FILES), end="")
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
