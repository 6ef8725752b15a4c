"""Lab: the one object the CLI and a notebook hold.

``with Lab(LabSpec(nodes=3)) as lab:`` builds, in this order, what a cluster admin
would: the underlay (switch + nodes), etcd on the master, the network config in etcd,
flanneld on every node, then docker (after flanneld, as the blog insists), then the
containers. Leaving the block (or ``lab.down()``) removes everything the lab made.

The lab keeps no copy of the cluster's state: ``status()`` reads etcd and the kernel.
What it writes to its state folder is the spec and the list of what it created, so
``clean`` works after any crash.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from . import netns, rtdump, tally, transcript
from .capture import MAX_PING_COUNT, Capture, capture
from .docker import containers
from .docker.containers import Container
from .errors import LabError
from .etcd import V2Client, V3Gateway, http_request, v3_client, wait_healthy
from .flannel.backends.footprint import peers_handled, remove_leftovers
from .flannel.backends.kernel import dead_probes
from .flannel.ip import AF_BRIDGE
from .flannel.subnet import parse_subnet_key
from .node import Node
from .services import Service
from .spec import LabSpec, check_lab_name
from .state import LabState, lab_lock, mounts_under
from .status import LabStatus, lab_status
from .underlay import (
    attach,
    attach_nat,
    attach_vbox_nat,
    build_outside,
    build_router,
    build_switch,
    cable,
    delete_device,
    has_device,
)

REQUIRED_BINARIES = {"ip": "iproute2", "etcd": "etcd-server", "etcdctl": "etcd-client",
                     "ping": "iputils-ping"}
# `labkit link NODE ACTION`: unplug/plug the node's cable, delete/re-create its uplink NIC
LINK_ACTIONS = ("down", "up", "del", "add")


def preflight() -> None:
    """Root and the binaries a lab needs; one clear message for the first problem."""
    if os.geteuid() != 0:
        raise LabError("labkit must run as root or in your sandbox: it creates network namespaces, veth "
                       "pairs and VXLAN devices. The labkit command joins your sandbox by itself; a program "
                       "such as Jupyter must be started in it: labkit sandbox run --publish 8888 -- "
                       "jupyter lab --ip 127.0.0.1 --port 8888")
    missing = [f"{b} (Debian package {p})" for b, p in REQUIRED_BINARIES.items() if not shutil.which(b)]
    if missing:
        raise LabError("missing programs: " + ", ".join(missing) + "; run ./run setup to install them")


# The fork server's malloc: glibc gives every thread that allocates an arena of its own,
# and each arena's touched pages are private to its process: with a dozen gRPC and watch
# threads per flanneld that is megabytes per node. One arena per process (read once, at
# the zygote's start; the forked children keep it) is enough for daemons that mostly wait.
ZYGOTE_ENV = {"MALLOC_ARENA_MAX": os.environ.get("LABKIT_MALLOC_ARENA_MAX", "1")}
# From this many nodes the zygote warms and freezes what its children share before it
# serves (labkit/zygote.py serve): 0.1 s that a smaller lab would wait for and not win back.
ZYGOTE_SHARE_FROM = 4

# flanneld processes `up` starts at once; the next ones start as these become ready. Hosts
# of a real cluster do not all boot in the same millisecond; 250 flanneld listing and
# watching the leases together made etcd on two busy cores answer too late (flanneld's
# 5 s timeout). Labs up to this size start every flanneld together, as before.
FLANNELD_WAVE = 100
RESTART_SEC = 2.0   # the lab's drop-in RestartSec=2s (README: the start-up chain)
ALIVE_CHECK = 0.2   # how often `up` looks for a flanneld that exited while it waits for subnet.env

# What a running cluster can change (flannel's network config, and the node count);
# every other LabSpec field shapes what `up` built and needs a rebuild.
RECONFIGURABLE = ("network", "subnet_len", "backend", "vni", "port", "direct_routing", "extra_config",
                  "nodes")


@dataclass
class StepResult:
    """One step of a reconfiguration, as done: what, what came of it, how long it took."""
    step: str
    detail: str
    seconds: float


@dataclass
class ReconfigureResult:
    """What `Lab.reconfigure` did, step by step, with timings (data, not text)."""
    old: LabSpec
    new: LabSpec
    steps: list[StepResult] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)

    @property
    def changed(self) -> list[str]:
        return [f for f in RECONFIGURABLE if getattr(self.old, f) != getattr(self.new, f)]

    def summary(self) -> str:
        what = ", ".join(self.changed) or "nothing"
        return f"changed {what} in {len(self.steps)} steps, {self.seconds:.2f}s"


Progress = Callable[[int, int, str], None]


class Lab:
    def __init__(self, spec: LabSpec | None = None, *, progress: Callable[[str], object] | None = None,
                 built_by: str | None = None, ticker: Callable[[str, int, int], object] | None = None,
                 _validate: bool = True, **fields: Any) -> None:
        self.spec = spec if spec is not None else LabSpec(**fields)
        if _validate:  # before a Node is made: bad input builds nothing (attach: already valid)
            self.spec.check_kernel().validate()  # the probe first: it names a missing link type
        self.state = LabState(check_lab_name(self.spec.name))
        self.progress: Callable[[str], object] = progress or (lambda msg: None)
        # ticker(step, done, total): how far a step over every node is (a progress bar)
        self.ticker: Callable[[str, int, int], object] = ticker or (lambda step, done, total: None)
        self.built_by = built_by or "a python process"   # recorded in owner.json by up()
        self.nodes = [Node(self.state, self.spec, i) for i in range(self.spec.nodes)]
        self._etcd: Any = None  # python-etcd3's client (untyped)
        self._etcd_started = 0.0  # when `up` started etcd (time.monotonic)
        # a step between etcd and flanneld (a bundle's replay puts its leases into etcd there)
        self.before_flanneld: Callable[[], object] | None = None
        self.flanneld_restarts: dict[str, int] = {}  # why -> how often `up` started a flanneld again

    @classmethod
    def attach(cls, name: str = "lab", progress: Callable[[str], object] | None = None) -> "Lab":
        """The running lab called `name` (as built by `labkit up` or another process)."""
        state = LabState(name)
        if not state.exists():
            raise LabError(f"no lab named {name!r} is running (start one with: labkit up --name {name})")
        return cls(state.spec(), progress=progress, _validate=False)

    def __repr__(self) -> str:
        return f"<Lab {self.spec.name}: {', '.join(n.name for n in self.nodes)}>"

    def __enter__(self) -> Lab:
        self.up()
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.down()
        return False

    # -- lookup ------------------------------------------------------------------------
    @property
    def master(self) -> Node:
        return self.nodes[0]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise LabError(f"no node {name!r} in lab {self.spec.name} "
                       f"(nodes: {', '.join(n.name for n in self.nodes)})")

    def etcd(self) -> Any:
        """A python-etcd3 client, through etcd's unix socket in the state folder."""
        if self._etcd is None:
            self._etcd = v3_client(self.state.etcd_socket)
        return self._etcd

    # -- build -------------------------------------------------------------------------
    def up(self) -> "Lab":
        preflight()
        self.spec.check_kernel()  # first: it names a missing link type (see LabSpec.check_kernel)
        self.spec.validate()
        with lab_lock(self.spec.name):  # a second `up` of this name fails here, touching nothing
            return self._up()

    def _up(self) -> "Lab":
        if self.state.exists() or any(n.startswith(self.state.prefix) for n in netns.list_names()):
            raise LabError(f"a lab named {self.spec.name!r} already exists; remove it with "
                           f"`labkit down --name {self.spec.name}` or pick another --name")
        t0 = time.monotonic()
        try:
            self.state.mount_tmpfs()  # before anything is written there
            self.state.create(self.spec)
            self.state.set_owner(self.built_by)
            # the underlay step also starts the zygote and etcd as soon as their namespaces
            # exist, so their start-up overlaps the rest of the build
            self._step("underlay", self._build_underlay)
            self._step("etcd", self._wait_etcd)
            if self.spec.write_config:
                self._step("network config", self.write_config)
            if self.before_flanneld is not None:
                self._step("before flanneld", self.before_flanneld)
            # Like a host at boot: flanneld, then docker. Without a config in etcd, flanneld
            # waits for one (retrying every second) and docker gets its default bridge.
            # as systemd orders them on each host (docker.service After=flanneld.service), a
            # node's docker starts as soon as its own flanneld is ready, not after every node's
            self._step("flanneld", lambda: self.start_flanneld(wait=self.spec.write_config, docker=True))
            # Restart=on-failure and late ExecStartPost from here on (a flanneld that dies after
            # it was ready, a blog lab's flanneld that gets its config later). While the step
            # above runs, its own wait restarts a flanneld that lost a subnet race, and the
            # supervisor's checks of every unit, four times a second, would take 7 of the CPU
            # seconds of a 250-node flanneld phase, which is CPU-bound.
            self.supervisor().start()
            self._step("docker", self.start_docker)
            if self.spec.containers:
                self._step("containers", self._start_containers)
            if self.spec.write_config:
                self._step("converge", self.wait_converged)
            # the transcript (labkit/transcript.py) opens with what `up` built: the spec, each node's subnet
            transcript.start(self.state, self.spec.to_dict(),
                             {n.name: n.subnet_env().get("FLANNEL_SUBNET") for n in self.nodes})
        except BaseException as e:
            self.progress(f"build failed ({e}); removing the half-built lab")
            self.down()
            raise
        self.progress(f"lab {self.spec.name} is up in {time.monotonic() - t0:.2f}s")
        return self

    def _step(self, what: str, fn: Callable[[], object]) -> None:
        t = time.monotonic()
        self.progress(f"{what} ...")
        detail = fn()
        self.progress(f"{what}: {detail or 'done'} ({time.monotonic() - t:.2f}s)")

    def _build_underlay(self) -> str:
        spec = self.spec
        def own_processes() -> None:  # started first: it imports while the rest is built
            self.zygote().start()  # the fork server of flanneld and dockerd: labkit/zygote.py
        build_switch(self.state, spec.segments, then=own_processes)
        if spec.has_router:  # segments joined by <lab>-router; it also leads to <lab>-outside
            build_router(self.state, [ipaddress.IPv4Interface(f"{spec.router_ip(i)}/{net.prefixlen}")
                                      for i, net in enumerate(spec.segment_nets())], spec.mtu,
                         drop_icmp=spec.router_drop_icmp, hop_mtu=spec.router_mtu)
        if spec.outside:
            build_outside(self.state, spec.underlay_net(), spec.mtu, spec.router_mtu)
        for node in self.nodes:   # recorded before they exist, so `clean` finds them after a crash
            self.state.record("netns", node.ns)
        netns.add_many([node.ns for node in self.nodes])
        for i, node in enumerate(self.nodes):
            self._attach(node)
            node.prepare()
            if node is self.master:
                self.master.service("etcd").start()  # healthy by the time the others are wired
                self._etcd_started = time.monotonic()
            self.ticker("underlay", i + 1, len(self.nodes))
        knobs = self._knobs_text()
        if spec.segments > 1:
            return (f"{len(self.nodes)} nodes on {spec.segments} segments "
                    f"({', '.join(map(str, spec.segment_nets()))}) joined by {self.state.netns('router')}, "
                    f"MTU {spec.mtu}{knobs}")
        return f"{len(self.nodes)} nodes on {self.spec.underlay}, MTU {self.spec.mtu}{knobs}"

    def _knobs_text(self) -> str:
        """The underlay knobs in use, for the progress line of `up`."""
        spec, said = self.spec, []
        said += [f"{n} MTU {m}" for n, m in spec.node_mtu.items()]
        if spec.router_mtu:
            said.append(f"router links MTU {spec.router_mtu}")
        if spec.router_drop_icmp:
            said.append("router drops ICMP frag-needed")
        if spec.nics == 2:
            said.append("eth0 = NAT link 10.0.2.15 on every node, eth1 = cluster network")
        said += [f"{n} behind {self.state.netns('nat-' + n)}" for n in spec.nat]
        if spec.outside:
            said.append(f"{self.state.netns('outside')} at 203.0.113.1 via the router")
        return "; " + "; ".join(said) if said else ""

    def _backend_port(self) -> int:
        """The UDP port peers send the backend's packets to (what a NAT must forward)."""
        if self.spec.port:
            return self.spec.port
        return 8285 if self.spec.backend == "udp" else 8472

    def _attach(self, node: Node) -> None:
        """The node's cable: to its segment's bridge (or to its NAT router), with a route via
        the router if any, a default route to the outside, and the Vagrant NAT NIC."""
        spec = self.spec
        seg = spec.segment_of(node.index)
        router = (spec.underlay_net(), spec.router_ip(seg)) if spec.segments > 1 else None
        default = spec.router_ip(seg) if spec.outside else None
        mtu = spec.link_mtu(node.name)
        if node.name in spec.nat:
            private, gateway = spec.nat_private(node.index)
            attach_nat(self.state, node.name, node.ns, spec.node_interface(node.index), private, gateway, mtu,
                       self._backend_port(), seg, router, default)
        else:
            attach(self.state, node.name, node.ns, spec.node_interface(node.index), mtu, seg, router,
                   spec.uplink_ifname(), default)
        if spec.nics == 2:
            attach_vbox_nat(self.state, node.name, node.ns)

    def uplink(self, node: str) -> str:
        """The NIC a node reaches the cluster with: eth0, eth1 with two NICs (eth0 behind a NAT)."""
        return "eth0" if node in self.spec.nat else self.spec.uplink_ifname()

    def link(self, node: str, action: str, record: bool = True, via: str = "python") -> str:
        """Unplug and replug a node: `down`/`up` act on its cable (the switch port), `del`/`add`
        delete and re-create its uplink NIC with the same address, MTU and routes (a NIC that
        is re-created, flannel #2247). Returns what was done, in one line."""
        n = self.node(node)
        if action not in LINK_ACTIONS:
            raise LabError(f"unknown link action {action!r}: use one of {', '.join(LINK_ACTIONS)}")
        if record:
            transcript.record(self.state, {"action": "link", "on": n.name, "verb": action}, via)
        ifname, spec = self.uplink(n.name), self.spec
        where = f"{self.state.netns('nat-' + n.name)}'s" if n.name in spec.nat else "the node's"
        if action in ("down", "up"):
            try:
                cable(self.state, n.name, up=action == "up")
            except LabError:
                raise LabError(f"{n.name} has no cable to unplug or plug ({ifname} was deleted: "
                               f"labkit link {n.name} add)") from None
            return (f"{n.name}: cable {'unplugged' if action == 'down' else 'plugged in'} (switch port "
                    f"{n.name} {action}; {where} link shows {'NO-CARRIER' if action == 'down' else 'carrier'})")
        present = has_device(n.ns, ifname)
        if action == "del":
            if not present:
                raise LabError(f"{n.name} has no {ifname} to delete (labkit link {n.name} add re-creates it)")
            delete_device(n.ns, ifname)
            return f"{n.name}: {ifname} deleted (ip link del {ifname}; its cable went with it)"
        if present:
            raise LabError(f"{n.name} already has {ifname} (labkit link {n.name} del first)")
        seg = spec.segment_of(n.index)
        if n.name in spec.nat:
            from .underlay import _plug_private
            private, gateway = spec.nat_private(n.index)
            _plug_private(self.state, n.name, n.ns, private, gateway, spec.link_mtu(n.name))
            address = private
        else:
            router = (spec.underlay_net(), spec.router_ip(seg)) if spec.segments > 1 else None
            address = spec.node_interface(n.index)
            attach(self.state, n.name, n.ns, address, spec.link_mtu(n.name), seg, router, ifname,
                   spec.router_ip(seg) if spec.outside else None)
        return f"{n.name}: {ifname} re-created with {address}, MTU {spec.link_mtu(n.name)}, up"

    def _wait_etcd(self) -> str:
        """etcd was started with the master's namespace (see _build_underlay): wait for /health."""
        svc = self.master.service("etcd")
        wait_healthy(self.state.etcd_socket, is_running=svc.is_active)
        return f"etcd healthy on {self.master.public_ip}:2379 after {time.monotonic() - self._etcd_started:.2f}s"

    def zygote(self) -> Service:
        """The lab's fork server for flanneld and dockerd (in the switch namespace)."""
        sock = self.state.path("zygote.sock")
        return Service(name="zygote", ns=self.state.netns("switch"),
                       argv=[sys.executable, "-m", "labkit.zygote", sock],
                       log_path=self.state.path("zygote.log"), pid_path=self.state.path("zygote.pid"),
                       env={**self.master.env(), **ZYGOTE_ENV,
                            "LABKIT_ZYGOTE_SHARE": "1" if len(self.nodes) >= ZYGOTE_SHARE_FROM else "0"})

    def supervisor(self) -> Service:
        """The lab's restarter of failed units (in the switch namespace, like the zygote)."""
        return Service(name="supervisor", ns=self.state.netns("switch"),
                       argv=[sys.executable, "-m", "labkit.supervisor", self.spec.name],
                       log_path=self.state.path("supervisor.log"), pid_path=self.state.path("supervisor.pid"),
                       env=self.master.env())

    def _wait_zygote(self, timeout: float = 10.0) -> None:
        sock, svc = self.state.path("zygote.sock"), self.zygote()
        deadline = time.monotonic() + timeout
        while not os.path.exists(sock) and svc.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)

    def write_config(self, config: str | None = None) -> str:
        """`etcdctl put <prefix>/config '<json>'` (the spec's config unless one is given)."""
        value = config if config is not None else self.spec.network_config_json()
        if self.spec.etcd_v2:  # flannel before 0.18 reads the etcd v2 key space
            V2Client(self.state.etcd_socket).set(f"{self.spec.prefix}/config", value)
        else:
            V3Gateway(self.state.etcd_socket).put(f"{self.spec.prefix}/config", value)
        return f"{self.spec.prefix}/config = {value}"

    # -- services ----------------------------------------------------------------------
    def start_flanneld(self, nodes: list[Node] | None = None, timeout: float = 30, wait: bool = True,
                       docker: bool = False) -> str:
        """Start flanneld on `nodes` and (`wait`) wait until each wrote subnet.env and ran its
        ExecStartPost; `docker`: then start that node's docker at once (start_docker waits)."""
        nodes = nodes or self.nodes
        self._wait_zygote()
        if not wait:
            for node in nodes:
                node.service("flanneld").start()
            return f"started; waiting for {self.spec.prefix}/config in etcd"
        times: dict[str, float] = {}
        if self.spec.seed is not None:  # one at a time: the same subnets on every run
            for i, node in enumerate(nodes):
                times.update(self._start_and_wait_flanneld([node], timeout, docker=docker))
                self.ticker("flanneld", i + 1, len(nodes))
        else:
            times = self._start_and_wait_flanneld(nodes, timeout, tick=True, docker=docker)
        said = tally.listing({n.name: str(n.subnet_env().get("FLANNEL_SUBNET")) for n in nodes}, "subnets")
        if len(nodes) > tally.LIST_UP_TO:  # a big lab's summary (small labs' lines stay as they were)
            said += f"; ready after {tally.slowest(times)}"
            if self.flanneld_restarts:  # Restart=on-failure at work: lost subnet races, a busy etcd
                said += "; started again: " + ", ".join(f"{n} after {why!r}"
                                                        for why, n in self.flanneld_restarts.items())
        return said

    def _count_restart(self, why: str) -> None:
        self.flanneld_restarts[why] = self.flanneld_restarts.get(why, 0) + 1

    def _start_and_wait_flanneld(self, nodes: Sequence[Node], timeout: float, tick: bool = False,
                                 docker: bool = False) -> dict[str, float]:
        """Start flanneld on `nodes` and wait until each has written subnet.env; returns
        the seconds each took from the first start (the slowest is where contention shows)."""
        def mtime(node: Node) -> int | None:
            try:
                return os.stat(node.subnet_file).st_mtime_ns
            except FileNotFoundError:
                return None
        before = {n.name: mtime(n) for n in nodes}  # ready = flanneld (re)wrote subnet.env
        # one Service per node for the whole wait: building one reads the node's sysconfig and
        # copies the environment (0.2 ms), too much to do for 100 nodes every 20 ms
        svcs = {n.name: n.service("flanneld") for n in nodes}
        t0 = time.monotonic()
        waiting = list(nodes)      # not started yet: at most FLANNELD_WAVE start at once
        pending: dict[str, Node] = {}
        times: dict[str, float] = {}
        restarts = {n.name: 0 for n in nodes}
        retry_at: dict[str, float] = {}   # timed out on etcd: started again at this time
        deadline = time.monotonic() + timeout
        alive_check_at = 0.0  # an exited flanneld is looked for every ALIVE_CHECK s, readiness every loop
        while pending or waiting:
            while waiting and len(pending) < FLANNELD_WAVE:
                node = waiting.pop(0)
                svcs[node.name].start()
                pending[node.name] = node
            check_alive = time.monotonic() >= alive_check_at
            if check_alive:
                alive_check_at = time.monotonic() + ALIVE_CHECK
            for name, node in list(pending.items()):
                svc = svcs[name]
                if mtime(node) not in (None, before[name]):
                    del pending[name]
                    times[name] = time.monotonic() - t0
                    if tick:
                        self.ticker("flanneld", len(nodes) - len(pending), len(nodes))
                    why = svc.run_post_start()   # ExecStartPost
                    if why:
                        raise LabError(f"flanneld's ExecStartPost on {name} failed: {why}")
                    if docker:
                        node.service("docker").start()
                    continue
                if name in retry_at:
                    if time.monotonic() >= retry_at[name]:
                        del retry_at[name]
                        svc.start()
                    continue
                if check_alive and not svc.is_active():
                    # flanneld's own last words (the service manager's journal lines follow them)
                    tail = _last_words(svc, 3)
                    # systemd's Restart=on-failure: a lost race for a subnet is retried at once (a few
                    # times); an etcd too busy to answer in time (hundreds of flanneld starting
                    # together) after RestartSec (the lab's 2 s), until `up`'s deadline
                    if any("etcd connection timeout" in t for t in tail):
                        retry_at[name] = time.monotonic() + RESTART_SEC
                        self._count_restart("etcd connection timeout")
                        continue
                    if restarts[name] < 5 and any("subnet already exists" in t for t in tail):
                        restarts[name] += 1
                        self._count_restart("subnet already exists")
                        svc.start()
                        continue
                    if not tail:   # it died before its first line: say what can still be seen
                        gone = not netns.exists(node.ns)
                        raise LabError(f"flanneld on {name} exited before writing a log line"
                                       + (f": the node's network namespace {node.ns} is gone" if gone else ""))
                    raise LabError(f"flanneld on {name} exited:\n" + "\n".join(tail))
            if time.monotonic() > deadline:
                late = list(pending)
                named = ", ".join(late[:10]) + (f" and {len(late) - 10} more" if len(late) > 10 else "")
                raise LabError(f"flanneld did not write subnet.env within {timeout:.0f}s on "
                               f"{named}; see `labkit logs NODE flanneld`")
            time.sleep(0.02)
        return times

    def start_docker(self, nodes: list[Node] | None = None, timeout: float = 20) -> str:
        nodes = nodes or self.nodes
        svcs = {node.name: node.service("docker") for node in nodes}
        for node in nodes:
            svcs[node.name].start()
        deadline = time.monotonic() + timeout
        bips: dict[str, str] = {}
        for i, node in enumerate(nodes):
            while (info := containers.daemon_info(self.state, node.name)) is None or \
                    info["pid"] != svcs[node.name].pid():
                if time.monotonic() > deadline:
                    raise LabError(f"docker did not start on {node.name}; see `labkit logs {node.name} docker`")
                time.sleep(0.02)
            bips[node.name] = info["bip"]
            self.ticker("docker", i + 1, len(nodes))
        return tally.listing({n.name: bips[n.name] for n in nodes}, "docker0 bridges")

    def service(self, node: str, name: str) -> Service:
        return self.node(node).service(name)

    def add_node(self) -> Node:
        """A new node joins the running lab: plugged in, then flanneld, docker, containers.

        If any step fails the half-joined node is removed again (its services, lease,
        namespaces and record) and the lab is left as it was.
        """
        new = dataclasses.replace(self.spec, nodes=self.spec.nodes + 1).validate()
        self._check_whole("add-node")
        node = Node(self.state, new, len(self.nodes))
        self._adopt(new)
        self.nodes.append(node)
        try:
            self.state.create(self.spec)  # the spec on disk now has one more node
            self.state.record("netns", node.ns)
            netns.add(node.ns)
            self._attach(node)
            node.prepare()
            self.start_flanneld([node], wait=self.spec.write_config)
            self.start_docker([node])
            for i in range(1, self.spec.containers + 1):
                containers.run(self.state, node.name, f"c{i}")
            if self.spec.write_config:
                self.wait_converged()
        except BaseException as e:
            self.progress(f"{node.name} did not join ({e}); removing it")
            try:
                self.remove_node(node.name, revoke=True)
            except Exception as e2:  # keep the first error; say what is left
                self.progress(f"removing {node.name} failed too: {e2}")
            raise
        transcript.record_change(self.state, {"nodes": len(self.nodes)}, "add_node")
        return node

    def remove_node(self, name: str | None = None, revoke: bool = True) -> str:
        """The last node leaves: its flanneld stops, its lease is revoked in etcd (peers drop
        its routes at once; ``revoke=False`` leaves the lease to expire, as a crashed node's
        does), then its services, containers and namespaces go."""
        node = self.nodes[-1]
        if name is not None and name != node.name:
            raise LabError(f"only the last node ({node.name}) can be removed, not {name}")
        if node.is_master:
            raise LabError("the master runs etcd: it cannot be removed (labkit down removes the lab)")
        said = []
        node.service("flanneld").stop()
        if revoke:
            try:
                said.append(self._revoke_lease(node))
            except Exception as e:  # the node goes anyway; its lease then expires
                said.append(f"lease not revoked ({e})")
        node.service("docker").stop()
        spaces = [r.netns for r in containers.list_all(self.state, node.name)]
        spaces += [n for n in netns.list_names() if n.startswith(f"{node.ns}-")]
        for ns in sorted(set(spaces)) + [node.ns]:
            if netns.exists(ns):
                netns.delete(ns)
        shutil.rmtree(self.state.node_dir(node.name), ignore_errors=True)
        self.nodes.pop()
        self._adopt(dataclasses.replace(self.spec, nodes=len(self.nodes)))
        self.state.create(self.spec)
        said.append(f"namespace {node.ns} removed")
        transcript.record_change(self.state, {"nodes": len(self.nodes), "revoke": revoke}, "remove_node")
        return "; ".join(s for s in said if s)

    def _revoke_lease(self, node: Node) -> str:
        """Revoke (etcd v3) or delete (v2) the node's lease, found by its PublicIP."""
        for sn, (key, value) in self.leases().items():
            try:
                if json.loads(value).get("PublicIP") != str(node.public_ip):
                    continue
            except ValueError:
                continue
            if self.spec.etcd_v2:
                http_request(self.state.etcd_socket, "DELETE", "/v2/keys" + urllib.parse.quote(key))
                return f"lease {sn} deleted"
            _, meta = self.etcd().get(key)
            if meta is not None and meta.lease_id:
                self.etcd().revoke_lease(meta.lease_id)
            else:
                self.etcd().delete(key)
            return f"lease {sn} revoked"
        return "no lease to revoke"

    def _adopt(self, spec: LabSpec) -> None:
        self.spec = spec
        for node in self.nodes:
            node.spec = spec

    def containers(self, node: str | None = None) -> list[Container]:
        """`docker ps -a` of a node (or of every node): name, ip, running, netns, ..."""
        names = [node] if node is not None else [n.name for n in self.nodes]
        return [r for n in names for r in containers.list_all(self.state, n)]

    def etcd_health(self, timeout: float = 3.0) -> str | None:
        """None when etcd answers /health, else why not. A stopped etcd refuses at once; a
        hung one must not make `status` wait for the client's 10 s timeout, and a loaded
        machine must not turn a slow answer into a false alarm (hence 3 s, not 1)."""
        try:
            code, body = http_request(self.state.etcd_socket, "GET", "/health", timeout=timeout)
        except OSError as e:
            return f"etcd is not reachable ({e.strerror or e})"
        if code != 200 or body.get("health") not in ("true", True):
            return f"etcd is unhealthy ({code} {body})"
        return None

    def _start_containers(self) -> str:
        made: dict[str, str] = {}
        for k, node in enumerate(self.nodes):
            for i in range(1, self.spec.containers + 1):
                rec = containers.run(self.state, node.name, f"c{i}")
                made[f"{node.name}/c{i}"] = str(rec.ip)
            self.ticker("containers", k + 1, len(self.nodes))
        return tally.listing(made, "containers")

    def wait_converged(self, timeout: float = 30) -> str:
        """Every node has a route (and, for VXLAN, an FDB entry) for every peer's lease."""
        deadline = time.monotonic() + timeout
        # nodes sharing a PublicIP share one lease (the Vagrant trap): a peer is a lease
        want = min(len(self.nodes), len(self.leases())) - 1
        counts: dict[str, int] = {}
        while True:
            # a node that had every peer is not asked again until the end (one more round of
            # all of them, unless this round asked all): in a big lab this loop's route dumps
            # would otherwise take the CPU the flanneld processes need
            asked = [n for n in self.nodes if counts.get(n.name, -1) < want]
            for n in asked:
                counts[n.name] = self._peers_known(n)
            self.ticker("converge", sum(c >= want for c in counts.values()), len(self.nodes))
            if all(c >= want for c in counts.values()) and len(asked) < len(self.nodes):
                counts = {n.name: self._peers_known(n) for n in self.nodes}   # all of them, once more
            if all(c >= want for c in counts.values()):
                if want < len(self.nodes) - 1:
                    return (f"{len(self.nodes)} nodes hold {want + 1} leases (nodes with the same PublicIP "
                            f"share one): {want} peer routes on each node")
                return f"{want} peer routes on each of {len(self.nodes)} nodes"
            if time.monotonic() > deadline:
                shown = counts if len(counts) <= tally.LIST_UP_TO else tally.counts(counts, want)
                behind = self.node(min(counts, key=lambda name: counts[name]))
                svc = behind.service("flanneld")
                raise LabError(f"flannel did not converge within {timeout:.0f}s: peer routes {shown}; "
                               f"{behind.name}'s flanneld is {'running' if svc.is_active() else 'not running'}, "
                               f"its last lines: {' | '.join(_last_words(svc, 2)) or '(none)'}")
            time.sleep(0.05 + 0.002 * len(self.nodes))

    def _peers_known(self, node: Node) -> int:
        """How many peers this node's flanneld has programmed into the kernel."""
        if self.spec.profile.legacy_daemon and self.spec.backend == "vxlan":  # 0.7/0.8: FDB per peer, no routes
            def fdb(ipr: Any) -> int:
                idx = ipr.link_lookup(ifname=f"flannel.{self.spec.vni or 1}")
                return 0 if not idx else sum(1 for n in ipr.get_neighbours(family=AF_BRIDGE, ifindex=idx[0])
                                             if n.get_attr("NDA_DST"))
            return netns.netlink.call(node.ns, fdb)
        return self._peer_routes(node)

    def gateway_subnets(self, node: Node) -> set[ipaddress.IPv4Network]:
        """The subnets of the Network this node has a gateway route to."""
        net = ipaddress.IPv4Network(self.spec.network)

        def routed(ipr: Any) -> set[ipaddress.IPv4Network]:
            out: set[ipaddress.IPv4Network] = set()
            for r in ipr.get_routes(family=2):
                if r.get_attr("RTA_DST") and r.get_attr("RTA_GATEWAY"):
                    sn = ipaddress.IPv4Network(f"{r.get_attr('RTA_DST')}/{r['dst_len']}")
                    if sn.subnet_of(net):
                        out.add(sn)
            return out
        return netns.netlink.call(node.ns, routed)

    def _peer_routes(self, node: Node) -> int:
        net = ipaddress.IPv4Network(self.spec.network)
        own = node.subnet_env().get("FLANNEL_SUBNET")
        own_net = ipaddress.IPv4Interface(own).network if own else None

        keys = rtdump.gateway_routes(node.ns, int(net.network_address), net.prefixlen)
        if own_net:
            keys.discard((int(own_net.network_address), own_net.prefixlen))
        if self.spec.backend == "vxlan":
            return len(keys)
        # udp's table is in its proxy; host-gw may be refused
        routed = {ipaddress.IPv4Network(key) for key in keys}
        return len(peers_handled(self.spec.backend, node.service("flanneld").log(), routed) - {own_net})

    # -- reconfiguration -------------------------------------------------------------------
    def _check_whole(self, doing: str) -> None:
        """Refuse `doing` on a lab whose node namespace was deleted under it (`ip netns del`):
        the change would stop halfway, at the first step that needs that node."""
        gone = [n for n in self.nodes if not netns.exists(n.ns)]
        if gone:
            raise LabError(f"{doing} needs every node, and the network namespace of "
                           f"{', '.join(f'{n.name} ({n.ns})' for n in gone)} no longer exists (deleted under "
                           f"the lab?): nothing was changed; rebuild it with `labkit down --name {self.spec.name}`, "
                           "then `labkit up`")

    def _check_reconfigurable(self, new: LabSpec) -> None:
        fixed = [f.name for f in dataclasses.fields(LabSpec)
                 if f.name not in RECONFIGURABLE and getattr(new, f.name) != getattr(self.spec, f.name)]
        if fixed:
            detail = ", ".join(f"{f} {getattr(self.spec, f)!r} -> {getattr(new, f)!r}" for f in fixed)
            raise LabError(f"a running lab cannot change {', '.join(fixed)} ({detail}): that needs a "
                           f"rebuild (`labkit down --name {self.spec.name}`, then `labkit up` with the new "
                           "values); reconfigure changes the network config and the node count only")

    def _steps(self, new: LabSpec, clean: bool, revoke: bool, timeout: float) -> list[tuple[str, Callable[[], Any]]]:
        """[(text, fn)]: the plan and what carries it out, from one list so they agree."""
        old = self.spec
        steps: list[tuple[str, Callable[[], Any]]] = []
        for node in reversed(self.nodes[new.nodes:]):
            how = ("revoke its lease (peers drop its routes now)" if revoke
                   else "leave its lease to expire (as after a crash)")
            steps.append((f"{node.name}: stop flanneld, {how}, remove its namespaces",
                          functools.partial(self._remove_and_wait, node, revoke, timeout)))
        if new.network_config_json() != old.network_config_json():
            running: dict[str, list[str]] = {}

            def write() -> str:
                running.update({n.name: [r.name for r in self.containers(n.name) if r.running]
                                for n in self.nodes})
                self._adopt(dataclasses.replace(self.spec, **{f: getattr(new, f) for f in RECONFIGURABLE
                                                              if f != "nodes"}))
                self.state.create(self.spec)  # spec.json: `labkit status` shows the new config
                transcript.record_change(self.state, {f: getattr(new, f) for f in RECONFIGURABLE
                                                      if f != "nodes" and getattr(new, f) != getattr(old, f)},
                                         "reconfigure")
                return self.write_config()
            steps.append((f"etcdctl put {new.prefix}/config '{new.network_config_json()}'", write))
            steps.append(("flanneld: stop on every node", self._stop_flanneld))
            if clean:
                steps.append((f"remove what {old.backend} left behind (like `ip link del flannel.1`)",
                              lambda: self._remove_leftovers(old.network)))
            steps.append(("flanneld: start on every node (each keeps its subnet)", self.start_flanneld))
            steps.append(("docker: restart on every node (it reads FLANNEL_MTU at start)", self._restart_docker))
            steps.append(("containers: start again the ones docker stopped",
                          lambda: self._restart_containers(running)))
        for _ in range(len(self.nodes), new.nodes):
            steps.append(("add a node: underlay, flanneld, docker, containers", self._join))
        if steps and self.spec.write_config:
            steps.append(("wait for routes to every peer", lambda: self.wait_converged(timeout)))
        return steps

    def plan(self, new_spec: LabSpec, *, clean: bool = True, revoke: bool = True) -> list[str]:
        """The steps `reconfigure(new_spec)` will take, in order (empty: nothing changes).
        Raises LabError when `new_spec` changes a field only a rebuild can change."""
        new_spec.check_kernel().validate()
        self._check_reconfigurable(new_spec)
        return [text for text, _ in self._steps(new_spec, clean, revoke, 30)]

    def reconfigure(self, new_spec: LabSpec, *, clean: bool = True, revoke: bool = True,
                    progress: Progress | None = None, timeout: float = 30) -> ReconfigureResult:
        """Change a running cluster to `new_spec`: its network config and node count.

        The config change is what an admin does on every node: the new config in etcd,
        flanneld stopped, the previous backend's leftovers removed (flanneld never does
        that itself; ``clean=False`` keeps them, to look at them), flanneld started (each
        node keeps its subnet), docker restarted (it reads FLANNEL_MTU only at start),
        its containers started again. Nodes leave first (``revoke`` as in remove_node)
        and join last (add_node). `progress(done, total, text)` is called before each step.
        """
        new_spec.check_kernel().validate()
        self._check_reconfigurable(new_spec)
        self._check_whole("reconfigure")   # the plan is pure; carrying it out needs every node
        steps = self._steps(new_spec, clean, revoke, timeout)
        say = progress or (lambda done, total, text: self.progress(f"[{done + 1}/{total}] {text}"))
        result = ReconfigureResult(old=self.spec, new=new_spec)
        for i, (text, fn) in enumerate(steps):
            say(i, len(steps), text)
            t = time.monotonic()
            detail = fn()
            result.steps.append(StepResult(text, detail or "done", time.monotonic() - t))
        if progress is not None:
            progress(len(steps), len(steps), "done")
        return result

    def _join(self) -> str:
        node = self.add_node()
        return f"{node.name} joined with {node.subnet_env().get('FLANNEL_SUBNET', '-')}"

    def _remove_and_wait(self, node: Node, revoke: bool, timeout: float) -> str:
        subnet = node.subnet_env().get("FLANNEL_SUBNET")
        said = self.remove_node(node.name, revoke=revoke)
        if revoke and subnet and not self.spec.profile.legacy_daemon and self.spec.backend != "udp":
            gone = ipaddress.IPv4Interface(subnet).network
            deadline = time.monotonic() + timeout
            while any(gone in self.gateway_subnets(n) for n in self.nodes):
                if time.monotonic() > deadline:
                    raise LabError(f"peers still route {gone} {timeout:.0f}s after its lease was revoked")
                time.sleep(0.05)
            said += f"; no peer routes {gone} any more"
        return said

    def _stop_flanneld(self) -> str:
        for node in self.nodes:
            node.service("flanneld").stop()
        return f"stopped on {len(self.nodes)} nodes"

    def _remove_leftovers(self, old_network: str) -> str:
        done = []
        for node in self.nodes:
            for net in dict.fromkeys([old_network, self.spec.network]):
                done += [f"{node.name}: {d}" for d in netns.netlink.call(node.ns, remove_leftovers, net)]
        return "; ".join(done) or "nothing left behind"

    def _restart_docker(self) -> str:
        for node in self.nodes:
            node.service("docker").stop()
        return self.start_docker()

    def _restart_containers(self, running: Mapping[str, list[str]]) -> str:
        started: dict[str, str] = {}
        for node in self.nodes:
            for name in running.get(node.name, []):
                rec = containers.start(self.state, node.name, name)  # `docker start`
                started[f"{node.name}/{name}"] = str(rec.ip)
        return tally.listing(started, "containers") or "no containers"

    def switch_backend(self, backend: str, clean: bool = True, timeout: float = 30, **fields: Any) -> str:
        """Move the running lab to another backend: a thin wrapper over reconfigure.

        `fields` are other LabSpec fields (port, vni, direct_routing, ...); the Backend
        options of the previous config are not carried over, as in a freshly written one.
        """
        fields = {"vni": None, "port": None, "direct_routing": False, **fields}
        old = self.spec.backend
        res = self.reconfigure(dataclasses.replace(self.spec, backend=backend, **fields), clean=clean,
                               timeout=timeout)
        return f"{old} -> {backend}: {res.steps[-1].detail if res.steps else 'nothing to change'}"

    # -- teardown ------------------------------------------------------------------------
    def down(self) -> None:
        if self._etcd is not None:
            try:
                self._etcd.close()
            except Exception:
                pass
            self._etcd = None
        clean(self.spec.name)

    # -- looking at it -------------------------------------------------------------------
    def leases(self) -> dict[str, tuple[str, str]]:
        """{subnet: (key, value json)} straight from etcd."""
        if self.spec.etcd_v2:
            pairs = V2Client(self.state.etcd_socket).list(f"{self.spec.prefix}/subnets")
        else:
            pairs = V3Gateway(self.state.etcd_socket).get_prefix(f"{self.spec.prefix}/subnets/")
        out: dict[str, tuple[str, str]] = {}
        for key, value in pairs:
            sn = parse_subnet_key(key)
            if sn is not None:
                out[str(sn)] = (key, value)
        return out

    def capture(self, target: str, iface: str, **kw: Any) -> Capture:
        """Capture packets on a node's or container's interface (see labkit.capture)."""
        return capture(self, target, iface, **kw)

    def network_config(self) -> str | None:
        """The config as it is in etcd now (a learner may have changed it), or None."""
        key = f"{self.spec.prefix}/config"
        try:
            if self.spec.etcd_v2:
                return V2Client(self.state.etcd_socket).get(key)
            return V3Gateway(self.state.etcd_socket).get(key)
        except Exception:
            return None

    def status(self) -> "LabStatus":
        """The lab as etcd and the kernel see it now (a status.LabStatus)."""
        return lab_status(self)

    def resolve(self, target: str) -> tuple[Node, Container | None]:
        """'node1' -> (node, None); 'node1/c1' or a unique 'c1' -> (node, container record).
        Names only: docker's id prefixes are for the docker shim."""
        if "/" in target:
            node_name, _, cname = target.partition("/")
            node = self.node(node_name)
            rec = containers.by_name(self.state, node.name, cname)
            if rec is None:
                raise LabError(f"no container {cname!r} on {node.name}")
            return node, rec
        if any(n.name == target for n in self.nodes):
            return self.node(target), None
        hits = [(n, r) for n in self.nodes for r in containers.list_all(self.state, n.name)
                if r.name == target]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise LabError(f"{target!r} is a container on several nodes; say NODE/{target}")
        raise LabError(f"no node or container called {target!r} in lab {self.spec.name}")

    def command(self, target: str, argv: list[str]) -> tuple[list[str], dict[str, str]]:
        """(full argv, environment) that runs argv on a node or in a container."""
        node, rec = self.resolve(target)
        if rec is None:
            return netns.nsexec_argv(node.ns, argv, node.view()), node.env()
        if not rec.running:
            raise LabError(f"container {rec.name} on {node.name} is not running")
        return netns.nsexec_argv(rec.netns, argv, node.view(hostname=rec.name)), node.env()

    def exec(self, target: str, argv: list[str], timeout: float | None = 60,
             input: str | None = None, record: bool = True,
             via: str = "python") -> subprocess.CompletedProcess[str]:
        """Run argv on a node or in a container; returns CompletedProcess (text).

        A command typed into a node is recorded in the lab's transcript (labkit/transcript.py)
        with its argv; the lab's own probes (ping, checks) pass ``record=False``."""
        full, env = self.command(target, argv)
        if record:
            step: dict[str, Any] = {"on": target, "argv": list(argv)}
            if input is not None:
                step["input"] = input
            transcript.record(self.state, step, via)
        return subprocess.run(full, capture_output=True, text=True, env=env, timeout=timeout, input=input,
                              stdin=subprocess.DEVNULL if input is None else None)

    def sh(self, target: str, script: str, timeout: float | None = 60, record: bool = True,
           via: str = "python") -> subprocess.CompletedProcess[str]:
        """Run a shell command line on a node or in a container, as typed at its prompt
        (recorded in the transcript as that line unless ``record=False``)."""
        if record:
            self.command(target, ["true"])  # an unknown target is refused before it is recorded
            transcript.record(self.state, {"on": target, "run": script}, via)
        return self.exec(target, ["bash", "-c", script], timeout=timeout, record=False)

    def address_of(self, target: str) -> ipaddress.IPv4Address:
        node, rec = self.resolve(target)
        if rec is None:
            return node.public_ip
        if not rec.ip:
            raise LabError(f"container {rec.name} on {node.name} has no address (not running)")
        return ipaddress.IPv4Address(rec.ip)

    def lab_networks(self) -> list[ipaddress.IPv4Network]:
        """Every range lab traffic may be sent to: nothing outside these is ever pinged."""
        return [self.spec.underlay_net(), ipaddress.IPv4Network(self.spec.network),
                ipaddress.IPv4Network("172.17.0.0/16")] + [block for block, _ in self.spec._knob_blocks()]

    def ping(self, src: str, dst: str, count: int = 1, timeout: float = 2.0) -> tuple[bool, str]:
        """Ping from a node or container to another (or to an address inside the lab)."""
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= MAX_PING_COUNT:
            raise LabError(f"ping count must be between 1 and {MAX_PING_COUNT}, got {count!r}")
        if not 0 < timeout <= 60:
            raise LabError(f"ping timeout must be between 0 and 60 seconds, got {timeout!r}")
        try:
            ip = ipaddress.IPv4Address(dst)
            if not any(ip in net for net in self.lab_networks()):
                raise LabError(f"{dst} is not an address of this lab; labkit only sends traffic "
                               "between the lab's own namespaces")
        except ValueError:
            ip = self.address_of(dst)
        r = self.exec(src, ["ping", "-c", str(count), "-i", "0.2", "-W", str(max(1, int(timeout))),
                            str(ip)], timeout=timeout * count + 5, record=False)
        return r.returncode == 0, r.stdout + r.stderr

    def endpoints(self) -> list[str]:
        """Every running container as NODE/NAME, or the nodes when there are none."""
        eps = [f"{n.name}/{r.name}" for n in self.nodes
               for r in containers.list_all(self.state, n.name) if r.running]
        return eps or [n.name for n in self.nodes]

    def duplicate_addresses(self, endpoints: list[str] | None = None) -> dict[str, list[str]]:
        """{address: endpoints} for every address more than one endpoint has (the Vagrant
        trap gives every node one lease, so their containers get the same addresses)."""
        by_addr: dict[str, list[str]] = {}
        for ep in endpoints or self.endpoints():
            by_addr.setdefault(str(self.address_of(ep)), []).append(ep)
        return {a: eps for a, eps in by_addr.items() if len(eps) > 1}

    def connectivity(self, endpoints: list[str] | None = None) -> "Connectivity":
        """All-pairs ping matrix: {(src, dst): bool}, with ``.duplicates`` ({address: endpoints}).

        Two endpoints with the same address are never pinged: the ping would answer
        locally and score a broken pair reachable. Such a pair is False and listed."""
        eps = endpoints or self.endpoints()
        dups = self.duplicate_addresses(eps)
        same = {(a, b) for group in dups.values() for a in group for b in group if a != b}
        pairs = [(a, b) for a in eps for b in eps if a != b and (a, b) not in same]
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            # a pair is reachable if one of two single pings answers: the first packet of a
            # path may be lost to neighbour resolution on a loaded machine; a broken path
            # fails both
            got = dict(zip(pairs, pool.map(lambda p: self.ping(p[0], p[1])[0] or self.ping(p[0], p[1])[0],
                                           pairs)))
        return Connectivity({(a, b): got.get((a, b), False) for a in eps for b in eps if a != b}, dups)


class Connectivity(dict[tuple[str, str], bool]):
    """The ping matrix {(src, dst): bool}; ``duplicates`` = {address: endpoints sharing it}."""

    def __init__(self, pairs: Mapping[tuple[str, str], bool] | Iterable[tuple[tuple[str, str], bool]] = (),
                 duplicates: dict[str, list[str]] | None = None) -> None:
        super().__init__(pairs)
        self.duplicates: dict[str, list[str]] = duplicates or {}

    def same_address(self, src: str, dst: str) -> bool:
        """True when src and dst share an address: the pair was not pinged, it is flagged."""
        return any(src in eps and dst in eps for eps in self.duplicates.values())


def _last_words(svc: Service, n: int) -> list[str]:
    """The last `n` lines a service itself logged (the service manager's journal lines left out)."""
    return [line for line in svc.log().strip().splitlines() if " systemd[1]: " not in line][-n:]


def clean(name: str) -> list[str]:
    """Remove everything lab `name` owns: processes, namespaces, state. Idempotent.

    Works from the ownership record *and* the lab's namespace prefix, so it also
    cleans after a crash in the middle of `up`. Touches nothing without the prefix.
    """
    with lab_lock(name, wait=CLEAN_LOCK_WAIT):  # never while another process builds it
        return _clean(LabState(name))


CLEAN_LOCK_WAIT = 60.0


def _clean(state: LabState) -> list[str]:
    removed = []
    # 0. the supervisor first: it would restart what step 1 stops
    sup = Service("supervisor", "", [], "", state.path("supervisor.pid"))
    if sup.pid() is not None:
        sup.stop(timeout=2)
        removed.append("process supervisor")
    # 1. services, by pid file (they all live in lab namespaces, but stop them first so
    #    that flanneld and docker do not react to devices vanishing under them)
    pid_root = state.path("nodes")
    if os.path.isdir(pid_root):
        for node in os.listdir(pid_root):
            for svc in ("docker", "flanneld", "etcd"):
                s = Service(svc, "", [], "", os.path.join(pid_root, node, "pid", f"{svc}.pid"))
                if s.pid() is not None:
                    s.stop(timeout=2)
                    removed.append(f"process {svc}@{node}")
    # 2. namespaces: recorded ones and any carrying the prefix (containers first)
    names = set(state.owned("netns")) | {n for n in netns.list_names() if n.startswith(state.prefix)}
    for ns in sorted(names, key=lambda n: (-n.count("-"), n)):
        if ns.startswith(state.prefix) and netns.exists(ns):
            netns.delete(ns)
            removed.append(f"netns {ns}")
    # 3. mounts at and below the state folder (etcd's tmpfs, the folder's own where /run
    #    is no tmpfs): recorded ones and any left there, deepest first
    for point in mounts_under(state.dir):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", point], capture_output=True)  # busy: detach it
        removed.append(f"mount {point}")
    # 4. the state folder
    if os.path.isdir(state.dir):
        state.remove()
        removed.append(f"state {state.dir}")
    # 4. kernel probes of any lab whose process was killed mid-probe (spec.check_kernel)
    for ns in dead_probes(netns.list_names()):
        netns.delete(ns)
        removed.append(f"netns {ns} (a kernel probe whose process is gone)")
    return removed
