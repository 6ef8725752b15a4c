"""dockerd, as far as the network goes: docker0 from --bip/--mtu, or Docker's default.

On a flannel host, docker learns its bridge address from flannel: mk-docker-opts.sh
turns /run/flannel/subnet.env into ``--bip=10.108.14.1/24 --mtu=1450``. This daemon
reads the same file *once, when it starts* (as dockerd reads its flags once). If the
file is missing, docker0 gets Docker's default 172.17.0.1/16, which is exactly the
blog's first "common problem": start docker before flanneld, or restart flanneld
without restarting docker, and docker0 sits outside the flannel network.

Run inside a node: ``python -m labkit.docker.daemon --lab LAB --node NODE``.
"""
from __future__ import annotations

import argparse
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time

from ..flannel.subnetenv import read_subnet_file
from ..state import LabState
from . import containers
from .opts import bip_and_mtu

DEFAULT_BIP = ipaddress.IPv4Interface("172.17.0.1/16")
DEFAULT_MTU = 1500
SUBNET_FILE = "/run/flannel/subnet.env"


def log(msg: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    sys.stderr.write(f'time="{stamp}Z" level=info msg="{msg}"\n')
    sys.stderr.flush()


def network_options(subnet_file: str = SUBNET_FILE):
    """(bip, mtu) as dockerd would get them from mk-docker-opts.sh, or the defaults."""
    try:
        env = read_subnet_file(subnet_file)
    except FileNotFoundError:
        env = {}
    bip, mtu = bip_and_mtu(env) if env else (None, None)
    return bip or DEFAULT_BIP, mtu or DEFAULT_MTU


def _ip(*args: str) -> str:
    r = subprocess.run(["ip", *args], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")
    return r.stdout


def ensure_bridge(bip: ipaddress.IPv4Interface) -> None:
    """docker0 exists, is up and carries exactly `bip` (other IPv4 addresses go).

    Plain `ip` commands: this daemon lives as long as the node, and pyroute2 would
    triple its memory for four netlink calls.
    """
    if subprocess.run(["ip", "link", "show", "docker0"], capture_output=True).returncode != 0:
        _ip("link", "add", "docker0", "type", "bridge")
    have = False
    for info in json.loads(_ip("-j", "-4", "addr", "show", "dev", "docker0") or "[]"):
        for a in info.get("addr_info", []):
            cur = ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
            if cur == bip:
                have = True
            else:
                _ip("addr", "del", str(cur), "dev", "docker0")
    if not have:
        _ip("addr", "add", str(bip), "dev", "docker0")
    _ip("link", "set", "docker0", "up")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="dockerd", description=__doc__.splitlines()[0])
    p.add_argument("--lab", required=True, help="the lab's name")
    p.add_argument("--node", required=True, help="the node this daemon runs on")
    p.add_argument("--subnet-file", default=SUBNET_FILE)
    args = p.parse_args(argv)

    state = LabState(args.lab)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stopping.set())
    signal.signal(signal.SIGINT, lambda *a: stopping.set())

    bip, mtu = network_options(args.subnet_file)
    log(f"Starting up; bridge docker0 --bip={bip} --mtu={mtu}")
    ensure_bridge(bip)
    info = {"pid": os.getpid(), "bip": str(bip), "mtu": mtu, "started": time.time()}
    path = state.node_dir(args.node, "docker", "daemon.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(info, f)
    os.replace(path + ".tmp", path)
    log("Daemon has completed initialization")
    containers.restart_policy_start(state, args.node)
    log("API listen on /var/run/docker.sock")

    while not stopping.wait(3600):
        pass
    log("Processing signal 'terminated'")
    # without live-restore, stopping dockerd stops every container
    containers.stop_all(state, args.node)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    log("Daemon shutdown complete")
    return 0


if __name__ == "__main__":
    sys.exit(main())
