"""Containers, as far as the network goes: a namespace with one veth into docker0.

What docker's bridge driver does for ``docker run``, reduced to its network steps:
allocate the next free address of docker0's subnet (docker's IPAM starts at .2),
create a veth pair, put one end (``vethXXXXXXX``) on docker0 and the other, renamed
``eth0``, into the container with the docker MTU, the address and a default route via
docker0. A lab container shares the host's files; only its network is its own.

Records live in ``nodes/<node>/docker/containers/<name>.json``; the namespace is
``<lab>-<node>-<name>``.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import secrets
import subprocess
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .. import netns
from ..errors import LabError
from ..spec import check_container_name
from ..state import LabState


@dataclass
class Container:
    """A container's record. On disk as JSON (these keys, in this order), except
    `running`, which is not stored: it is whether the namespace exists now."""

    name: str
    id: str
    image: str
    node: str
    netns: str
    command: list[str] = field(default_factory=list)
    restart: str = "no"
    created: float = 0.0
    veth: str | None = None
    ip: str | None = None          # None while stopped
    gateway: str | None = None
    prefixlen: int | None = None
    mtu: int | None = None
    started: float | None = None
    pid: int | None = None         # the command's process (None: no command)
    exit_code: int | None = None   # how its command last ended (137: stopped by docker stop)
    auto_remove: bool = False      # run --rm: removed when its command ends
    restart_count: int = 0         # restarts by its policy in a row (each one waits twice as long)
    restart_at: float | None = None  # stopped, to be started again by its policy at this time
    running: bool = False

    @classmethod
    def from_json(cls, data: dict) -> "Container":
        known = {f.name for f in fields(cls)} - {"running"}
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self) -> dict:
        data = asdict(self)
        del data["running"]
        return data


def container_netns(state: LabState, node: str, name: str) -> str:
    return state.netns(f"{node}-{name}")


def _records_dir(state: LabState, node: str) -> str:
    return state.node_dir(node, "docker", "containers")


def _record_path(state: LabState, node: str, name: str) -> str:
    return os.path.join(_records_dir(state, node), name + ".json")


def log_path(state: LabState, node: str, name: str) -> str:
    """Where a container's main process writes (stdout and stderr): what `docker logs` reads."""
    return os.path.join(_records_dir(state, node), name + ".log")


def exit_path(state: LabState, node: str, name: str) -> str:
    """Where the wrapper around a container's command writes its exit status."""
    return os.path.join(_records_dir(state, node), name + ".exit")


def _write(path: str, rec: Container) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump(rec.to_json(), f, indent=2)
    os.replace(path + ".tmp", path)


def list_all(state: LabState, node: str) -> list[Container]:
    out: list[Container] = []
    try:
        names = sorted(os.listdir(_records_dir(state, node)))
    except FileNotFoundError:
        return out
    for fn in names:
        if fn.endswith(".json"):
            with open(os.path.join(_records_dir(state, node), fn)) as f:
                rec = Container.from_json(json.load(f))
            rec.running = netns.exists(rec.netns)
            out.append(rec)
    return out


def by_name(state: LabState, node: str, name: str) -> Container | None:
    """The container called exactly `name`, or None (ids are not looked at)."""
    return next((rec for rec in list_all(state, node) if rec.name == name), None)


def get(state: LabState, node: str, name: str) -> Container | None:
    """A container by name, or by a unique prefix of its id (as the docker CLI accepts).

    Only for what a user types after `docker stop|start|rm|exec|inspect`: a name that
    happens to be a prefix of another container's hex id ("c2", "ab") would otherwise
    find that container, so a new name's conflict check uses ``by_name``."""
    recs = list_all(state, node)
    for rec in recs:
        if rec.name == name:
            return rec
    by_id = [r for r in recs if name and r.id.startswith(name)]
    return by_id[0] if len(by_id) == 1 else None


def daemon_info(state: LabState, node: str) -> dict | None:
    """What the node's running dockerd configured (bip, mtu), or None if it is down."""
    try:
        with open(state.node_dir(node, "docker", "daemon.json")) as f:
            info = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(info["pid"], 0)
    except OSError:
        return None
    return info


def _allocate(state: LabState, node: str, bip: ipaddress.IPv4Interface) -> ipaddress.IPv4Address:
    used = {bip.ip} | {ipaddress.IPv4Address(r.ip) for r in list_all(state, node)
                       if r.running and r.ip}
    for host in bip.network.hosts():
        if host not in used:
            return host
    raise LabError(f"no free address left in {bip.network} on {node}")


def _veth_name() -> str:
    """A fresh random name, as docker picks one: the veth of a container that just
    stopped may still exist for a moment (namespace teardown is asynchronous)."""
    return "veth" + secrets.token_hex(4)[:7]


def _plumb(ipr: Any, veth: str, peer_ns: str, mtu: int) -> None:
    """In the node: the veth pair, host end on docker0 and up."""
    ipr.link("add", ifname=veth, kind="veth", mtu=mtu,
             peer={"ifname": "eth0", "net_ns_fd": peer_ns, "mtu": mtu})
    idx = ipr.link_lookup(ifname=veth)[0]
    bridge = ipr.link_lookup(ifname="docker0")[0]
    ipr.link("set", index=idx, master=bridge, state="up")


def _inside(ipr: Any, ip: ipaddress.IPv4Address, bip: ipaddress.IPv4Interface) -> None:
    """In the container: eth0 up with its address and a default route via docker0."""
    idx = ipr.link_lookup(ifname="eth0")[0]
    ipr.addr("add", index=idx, address=str(ip), prefixlen=bip.network.prefixlen)
    ipr.link("set", index=idx, state="up")
    ipr.route("add", dst="0.0.0.0/0", gateway=str(bip.ip))


def _start(state: LabState, node: str, rec: Container) -> Container:
    info = daemon_info(state, node)
    if info is None:
        raise LabError(f"Cannot connect to the Docker daemon on {node}. Is the docker daemon running?")
    bip = ipaddress.IPv4Interface(info["bip"])
    ns = rec.netns
    ip = _allocate(state, node, bip)
    state.record("netns", ns)
    netns.add(ns)
    try:
        rec.veth = _veth_name()
        netns.netlink.call(state.netns(node), _plumb, rec.veth, ns, info["mtu"])
        netns.netlink.call(ns, _inside, ip, bip)
        # no socket of ours may outlive this call inside the container: an open netlink
        # socket keeps a stopped container's namespace, and its veth on docker0, alive
        netns.netlink.forget(ns)
        rec.ip, rec.gateway, rec.prefixlen = str(ip), str(bip.ip), bip.network.prefixlen
        rec.mtu, rec.started, rec.pid = info["mtu"], time.time(), None
        if rec.command:
            os.makedirs(_records_dir(state, node), exist_ok=True)
            status = exit_path(state, node, rec.name)
            if os.path.exists(status):
                os.unlink(status)
            log = open(log_path(state, node, rec.name), "ab")
            # a shell waits for the command and writes its exit status, which dockerd reads
            # when it sees the container's main process gone (`reap`): `docker ps` says
            # "Exited (N)" as docker does, and a restart policy can look at N
            argv = ["sh", "-c", '"$@"; echo $? > "$0"', status, *rec.command]
            proc = subprocess.Popen(netns.nsexec_argv(ns, argv), stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()
            rec.pid = proc.pid
    except Exception:
        netns.delete(ns)
        raise
    rec.running, rec.restart_at = True, None
    _write(_record_path(state, node, rec.name), rec)
    return rec


def run(state: LabState, node: str, name: str, command: list[str] | None = None,
        restart: str = "no", image: str = "busybox", auto_remove: bool = False) -> Container:
    """`docker run -d --name NAME [--restart R] [--rm] IMAGE [CMD...]` (the image is not used)."""
    check_container_name(name)
    if by_name(state, node, name) is not None:
        raise LabError(f'docker: Error response from daemon: Conflict. The container name "/{name}" '
                       f"is already in use. You have to remove (or rename) that container to be able "
                       f"to reuse that name.")
    ns = container_netns(state, node, name)
    cid = hashlib.sha256(f"{ns}/{time.time()}".encode()).hexdigest()
    rec = Container(name=name, id=cid, image=image, node=node, netns=ns, command=list(command or []),
                    restart=restart, created=time.time(), auto_remove=auto_remove)
    return _start(state, node, rec)


def stop(state: LabState, node: str, name: str, exit_code: int = 137) -> None:
    """The container's processes and namespace go; its record stays (docker ps -a).
    `exit_code`: 137 when docker stops it (its command killed), else how its command ended."""
    rec = get(state, node, name)
    if rec is None:
        raise LabError(f"Error response from daemon: No such container: {name}")
    if rec.running:
        rec.exit_code = exit_code
    rec.restart_at = None   # a `docker stop` also ends a pending restart
    netns.delete(rec.netns)  # its veth goes with it, and leaves docker0
    rec.running, rec.ip, rec.pid = False, None, None
    _write(_record_path(state, node, rec.name), rec)  # `name` may be an id prefix


def start(state: LabState, node: str, name: str) -> Container:
    """`docker start NAME`: a stopped container runs again, on docker0 as it is now."""
    rec = get(state, node, name)
    if rec is None:
        raise LabError(f"Error response from daemon: No such container: {name}")
    if rec.running:
        return rec
    return _start(state, node, rec)


def remove(state: LabState, node: str, name: str) -> None:
    """`docker rm -f NAME`."""
    rec = get(state, node, name)
    if rec is None:
        raise LabError(f"Error response from daemon: No such container: {name}")
    stop(state, node, rec.name)
    os.unlink(_record_path(state, node, rec.name))
    for path in (log_path(state, node, rec.name), exit_path(state, node, rec.name)):
        try:   # a new container of the same name starts with an empty log, as in docker
            os.unlink(path)
        except FileNotFoundError:
            pass


def stop_all(state: LabState, node: str) -> None:
    for rec in list_all(state, node):
        if rec.running:
            stop(state, node, rec.name)


RESTART_DELAY_FIRST, RESTART_DELAY_MAX = 0.1, 60.0


def records_stamp(state: LabState, node: str) -> int | None:
    """The records folder's mtime: any record (or exit status) written changes it."""
    try:
        return os.stat(_records_dir(state, node)).st_mtime_ns
    except FileNotFoundError:
        return None


def reap(state: LabState, node: str) -> tuple[list[str], bool]:
    """What dockerd does when a container's main process ends: the container stops (its
    namespace goes) with the command's exit status; `--rm` removes it, and the restart
    policy (always, unless-stopped, on-failure with a status other than 0) starts it
    again. Returns a line for dockerd's log per container handled, and whether anything
    is left to watch (a running command, a pending restart)."""
    said, watching = [], False
    now = time.time()
    for rec in list_all(state, node):
        if not rec.running and rec.restart_at is not None and rec.restart_at <= now:
            rec.restart_at = None
            _start(state, node, rec)
            said.append(f"container {rec.name} restarted (--restart {rec.restart}, restart {rec.restart_count})")
            watching = watching or rec.pid is not None
            continue
        if not rec.running or rec.pid is None or netns.alive(rec.pid):
            watching = watching or (rec.running and rec.pid is not None) or rec.restart_at is not None
            continue
        try:
            with open(exit_path(state, node, rec.name)) as f:
                code = int(f.read().strip())
        except (OSError, ValueError):   # killed before the shell could write it
            code = 137
        if rec.auto_remove:
            remove(state, node, rec.name)
            said.append(f"container {rec.name} exited with status {code}: removed (--rm)")
            continue
        ran = now - (rec.started or now)
        stop(state, node, rec.name, exit_code=code)
        if rec.restart in ("always", "unless-stopped") or (rec.restart == "on-failure" and code != 0):
            # docker's back-off: 100 ms, doubling, at most a minute; reset after 10 s of running
            stopped = get(state, node, rec.name) or rec
            stopped.restart_count = 0 if ran >= 10 else rec.restart_count + 1
            delay = min(RESTART_DELAY_MAX, RESTART_DELAY_FIRST * 2 ** max(0, stopped.restart_count - 1))
            stopped.restart_at = now + delay
            _write(_record_path(state, node, rec.name), stopped)
            said.append(f"container {rec.name} exited with status {code}: restarting in {delay:g}s "
                        f"(--restart {rec.restart})")
            watching = True
        else:
            said.append(f"container {rec.name} exited with status {code}")
    return said, watching


def restart_policy_start(state: LabState, node: str) -> list[Container]:
    """At dockerd start: containers with --restart always come back, on the new docker0."""
    started = []
    for rec in list_all(state, node):
        if rec.restart == "always" and not rec.running:
            started.append(_start(state, node, rec))
    return started
