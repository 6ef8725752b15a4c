"""dockerd, as far as the network goes: docker0 from --bip/--mtu, ip_forward, iptables.

On a flannel host, docker learns its bridge address from flannel, through a chain of
systemd units (``labkit/units.py``): flanneld's ExecStartPost (mk-docker-opts.sh) turns
/run/flannel/subnet.env into /run/flannel/docker, ``DOCKER_NETWORK_OPTIONS=" --bip=...
--ip-masq=... --mtu=..."``, and docker.service passes that variable to dockerd as flags.
This daemon gets the same flags (``Node.docker_argv``), read *once, when it starts*.
Without them docker0 gets Docker's default 172.17.0.1/16, which is exactly the blog's
first "common problem": start docker before flanneld, or restart flanneld without
restarting docker, and docker0 sits outside the flannel network.

At every start it also does what dockerd does to the node's netfilter, per docker
profile (``labkit/docker/iptables.py``): ip_forward on, its chains and FORWARD rules,
MASQUERADE for docker0's subnet with --ip-masq=true, and from 1.13 FORWARD policy DROP.
While it runs it stops the containers whose command ended (``containers.reap``).

Run inside a node: ``python -m labkit.docker.daemon --lab LAB --node NODE [--bip=...]``.
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
from collections.abc import Sequence

from ..flannel.subnetenv import read_subnet_file
from ..state import LabState
from . import containers
from .opts import bip_and_mtu

DEFAULT_BIP = ipaddress.IPv4Interface("172.17.0.1/16")
DEFAULT_MTU = 1500
SUBNET_FILE = "/run/flannel/subnet.env"
REAP_EVERY = 1.0   # seconds between looks for containers whose command ended


def log(msg: str) -> None:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime())
    sys.stderr.write(f'time="{stamp}Z" level=info msg="{msg}"\n')
    sys.stderr.flush()


def network_options(subnet_file: str = SUBNET_FILE) -> tuple[ipaddress.IPv4Interface, int]:
    """(bip, mtu) as mk-docker-opts.sh would derive them from a subnet.env, or the defaults."""
    try:
        env = read_subnet_file(subnet_file)
    except FileNotFoundError:
        env = {}
    bip, mtu = bip_and_mtu(env) if env else (None, None)
    return bip or DEFAULT_BIP, mtu or DEFAULT_MTU


def _bip(value: str) -> ipaddress.IPv4Interface:
    """--bip: an IPv4 address with its prefix (dockerd: "invalid --bip")."""
    try:
        if "/" not in value:
            raise ValueError
        return ipaddress.IPv4Interface(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid bip {value!r}") from None


def _mtu(value: str) -> int:
    if not value.isdigit() or not 68 <= int(value) <= 65535:
        raise argparse.ArgumentTypeError(f"invalid mtu {value!r}")
    return int(value)


def _bool(value: str) -> bool:
    if value not in ("true", "false"):
        raise argparse.ArgumentTypeError(f"invalid boolean {value!r}")
    return value == "true"


def ip_forward(value: str | None = None) -> str:
    """net.ipv4.ip_forward of this process's namespace; set it when `value` is given."""
    path = "/proc/sys/net/ipv4/ip_forward"
    if value is not None:
        with open(path, "w") as f:
            f.write(value)
    with open(path) as f:
        return f.read().strip()


def ensure_bridge(bip: ipaddress.IPv4Interface) -> None:
    """docker0 exists, is up and carries exactly `bip` (other IPv4 addresses go).

    Plain `ip`, two processes: one to read docker0's addresses, one `ip -batch` for every
    change (five `ip` processes before: 10 ms of each docker start). pyroute2 would triple
    this daemon's memory for four netlink calls, and it lives as long as the node.
    """
    shown = subprocess.run(["ip", "-j", "-4", "addr", "show", "dev", "docker0"], capture_output=True, text=True)
    lines, have = [], False
    if shown.returncode != 0:  # Device "docker0" does not exist.
        lines.append("link add docker0 type bridge")
    for info in json.loads(shown.stdout or "[]") if shown.returncode == 0 else []:
        for a in info.get("addr_info", []):
            cur = ipaddress.IPv4Interface(f"{a['local']}/{a['prefixlen']}")
            if cur == bip:
                have = True
            else:
                lines.append(f"addr del {cur} dev docker0")
    if not have:
        lines.append(f"addr add {bip} dev docker0")
    lines.append("link set docker0 up")
    r = subprocess.run(["ip", "-batch", "-"], input="\n".join(lines) + "\n", capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"ip -batch ({'; '.join(lines)}): {r.stderr.strip()}")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="dockerd", description=__doc__.splitlines()[0])
    p.add_argument("--lab", required=True, help="the lab's name")
    p.add_argument("--node", required=True, help="the node this daemon runs on")
    p.add_argument("--lab-docker-version", default="24.0", choices=["1.12", "1.13", "24.0"],
                   help="the docker profile (labkit/docker/iptables.py)")
    p.add_argument("--bip", type=_bip, default=None, help="docker0's address (default 172.17.0.1/16)")
    p.add_argument("--mtu", type=_mtu, default=None, help="docker0's MTU (default 1500)")
    p.add_argument("--ip-masq", type=_bool, default=True, help="masquerade docker0's subnet (default true)")
    p.add_argument("--ip-forward", type=_bool, default=True, help="turn ip_forward on (default true)")
    p.add_argument("--iptables", type=_bool, default=True, help="program iptables (default true)")
    args = p.parse_args(argv)

    state = LabState(args.lab)

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stopping.set())
    signal.signal(signal.SIGINT, lambda *a: stopping.set())

    bip, mtu = args.bip or DEFAULT_BIP, args.mtu or DEFAULT_MTU
    log(f"Starting up; docker {args.lab_docker_version} profile; bridge docker0 --bip={bip} --mtu={mtu} "
        f"--ip-masq={str(args.ip_masq).lower()}")
    ensure_bridge(bip)
    was_on = ip_forward() == "1"
    if args.ip_forward and not was_on:
        ip_forward("1")
        log("net.ipv4.ip_forward was 0: set it to 1 (--ip-forward=true)")
    if args.iptables:
        from . import iptables
        for what in iptables.apply(args.lab_docker_version, bip, args.ip_masq, was_on or not args.ip_forward):
            log(f"iptables: {what}")
    info = {"pid": os.getpid(), "bip": str(bip), "mtu": mtu, "started": time.time(),
            "ip_masq": args.ip_masq, "docker_version": args.lab_docker_version}
    path = state.node_dir(args.node, "docker", "daemon.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(info, f)
    os.replace(path + ".tmp", path)
    log("Daemon has completed initialization")
    containers.restart_policy_start(state, args.node)
    log("API listen on /var/run/docker.sock")

    # containers whose command ended stop (and --rm / --restart apply): looked for every REAP_EVERY
    # s while a container runs a command or waits to restart, else only when a record changed
    # (one stat a second: a 100-node lab of idle dockerd must not cost a core)
    watching, stamp = True, None
    while not stopping.wait(REAP_EVERY):
        now = containers.records_stamp(state, args.node)
        if watching or now != stamp:
            stamp = now
            said, watching = containers.reap(state, args.node)
            for what in said:
                log(what)
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
