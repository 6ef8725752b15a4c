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
import ipaddress
import os
import shutil
import subprocess
import time

from . import netns
from .errors import LabError
from .etcd import V2Client, wait_healthy, v3_client
from .node import Node
from .spec import LabSpec, check_lab_name
from .state import LabState
from .underlay import attach, build_router, build_switch

REQUIRED_BINARIES = {"ip": "iproute2", "etcd": "etcd-server", "etcdctl": "etcd-client",
                     "ping": "iputils-ping"}
AF_BRIDGE = 7
MAX_PING_COUNT = 1000  # ping's interval here is 0.2 s: at most 200 s of pings


def preflight() -> None:
    """Root and the binaries a lab needs; one clear message for the first problem."""
    if os.geteuid() != 0:
        raise LabError("labkit must run as root: it creates network namespaces, "
                       "veth pairs and VXLAN devices (try: sudo labkit ...)")
    missing = [f"{b} (Debian package {p})" for b, p in REQUIRED_BINARIES.items() if not shutil.which(b)]
    if missing:
        raise LabError("missing programs: " + ", ".join(missing) + "; run ./run setup to install them")


def _node_port(ipr, name):
    return ipr.link_lookup(ifname=name)


class Lab:
    def __init__(self, spec: LabSpec | None = None, *, progress=None, _validate=True, **fields):
        self.spec = spec if spec is not None else LabSpec(**fields)
        if _validate:  # before a Node is made: bad input builds nothing (attach: already valid)
            self.spec.validate()
        self.state = LabState(check_lab_name(self.spec.name))
        self.progress = progress or (lambda msg: None)
        self.nodes = [Node(self.state, self.spec, i) for i in range(self.spec.nodes)]
        self._etcd = None

    @classmethod
    def attach(cls, name: str = "lab", progress=None) -> "Lab":
        """The running lab called `name` (as built by `labkit up` or another process)."""
        state = LabState(name)
        if not state.exists():
            raise LabError(f"no lab named {name!r} is running (start one with: labkit up --name {name})")
        return cls(state.spec(), progress=progress, _validate=False)

    def __repr__(self):
        return f"<Lab {self.spec.name}: {', '.join(n.name for n in self.nodes)}>"

    def __enter__(self):
        self.up()
        return self

    def __exit__(self, *exc):
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

    def etcd(self):
        """A python-etcd3 client, through etcd's unix socket in the state folder."""
        if self._etcd is None:
            self._etcd = v3_client(self.state.etcd_socket)
        return self._etcd

    # -- build -------------------------------------------------------------------------
    def up(self) -> "Lab":
        preflight()
        self.spec.validate()
        if self.state.exists() or any(n.startswith(self.state.prefix) for n in netns.list_names()):
            raise LabError(f"a lab named {self.spec.name!r} already exists; remove it with "
                           f"`labkit down --name {self.spec.name}` or pick another --name")
        t0 = time.monotonic()
        try:
            self.state.create(self.spec)
            self._step("underlay", self._build_underlay)
            self.zygote().start()  # imports while etcd starts; see labkit/zygote.py
            self._step("etcd", self._start_etcd)
            if self.spec.write_config:
                self._step("network config", self.write_config)
            # Like a host at boot: flanneld, then docker. Without a config in etcd, flanneld
            # waits for one (retrying every second) and docker gets its default bridge.
            self._step("flanneld", lambda: self.start_flanneld(wait=self.spec.write_config))
            self._step("docker", self.start_docker)
            if self.spec.containers:
                self._step("containers", self._start_containers)
            if self.spec.write_config:
                self._step("converge", self.wait_converged)
        except BaseException as e:
            self.progress(f"build failed ({e}); removing the half-built lab")
            self.down()
            raise
        self.progress(f"lab {self.spec.name} is up in {time.monotonic() - t0:.2f}s")
        return self

    def _step(self, what: str, fn) -> None:
        t = time.monotonic()
        self.progress(f"{what} ...")
        detail = fn()
        self.progress(f"{what}: {detail or 'done'} ({time.monotonic() - t:.2f}s)")

    def _build_underlay(self) -> str:
        spec = self.spec
        build_switch(self.state, spec.segments)
        if spec.segments > 1:  # a routed underlay: segments joined by <lab>-router
            build_router(self.state, [ipaddress.IPv4Interface(f"{spec.router_ip(i)}/{net.prefixlen}")
                                      for i, net in enumerate(spec.segment_nets())], spec.mtu)
        for node in self.nodes:
            self.state.record("netns", node.ns)
            netns.add(node.ns)
            self._attach(node)
            node.prepare()
        if spec.segments > 1:
            return (f"{len(self.nodes)} nodes on {spec.segments} segments "
                    f"({', '.join(map(str, spec.segment_nets()))}) joined by {self.state.netns('router')}, "
                    f"MTU {spec.mtu}")
        return f"{len(self.nodes)} nodes on {self.spec.underlay}, MTU {self.spec.mtu}"

    def _attach(self, node: Node) -> None:
        """The node's cable: to its segment's bridge, with a route via the router if any."""
        spec = self.spec
        seg = spec.segment_of(node.index)
        router = (spec.underlay_net(), spec.router_ip(seg)) if spec.segments > 1 else None
        attach(self.state, node.name, node.ns, spec.node_interface(node.index), spec.mtu, seg, router)

    def _start_etcd(self) -> str:
        svc = self.master.service("etcd")
        svc.start()
        waited = wait_healthy(self.state.etcd_socket, is_running=svc.is_active)
        return f"etcd healthy on {self.master.public_ip}:2379 after {waited:.2f}s"

    def zygote(self):
        """The lab's fork server for flanneld and dockerd (in the switch namespace)."""
        import sys
        from .services import Service
        sock = self.state.path("zygote.sock")
        return Service(name="zygote", ns=self.state.netns("switch"),
                       argv=[sys.executable, "-m", "labkit.zygote", sock],
                       log_path=self.state.path("zygote.log"), pid_path=self.state.path("zygote.pid"),
                       env=self.master.env())

    def _wait_zygote(self, timeout: float = 10.0) -> None:
        sock, svc = self.state.path("zygote.sock"), self.zygote()
        deadline = time.monotonic() + timeout
        while not os.path.exists(sock) and svc.is_active() and time.monotonic() < deadline:
            time.sleep(0.02)

    def write_config(self, config: str | None = None) -> str:
        """`etcdctl put <prefix>/config '<json>'` (the spec's config unless one is given)."""
        value = config if config is not None else self.spec.network_config_json()
        if self.spec.flavour == "legacy":  # flannel 0.7 reads the etcd v2 key space
            V2Client(self.state.etcd_socket).set(f"{self.spec.prefix}/config", value)
        else:
            self.etcd().put(f"{self.spec.prefix}/config", value)
        return f"{self.spec.prefix}/config = {value}"

    # -- services ----------------------------------------------------------------------
    def start_flanneld(self, nodes=None, timeout: float = 30, wait: bool = True) -> str:
        nodes = nodes or self.nodes
        self._wait_zygote()
        if not wait:
            for node in nodes:
                node.service("flanneld").start()
            return f"started; waiting for {self.spec.prefix}/config in etcd"
        if self.spec.seed is not None:  # one at a time: the same subnets on every run
            for node in nodes:
                self._start_and_wait_flanneld([node], timeout)
        else:
            self._start_and_wait_flanneld(nodes, timeout)
        return ", ".join(f"{n.name}={n.subnet_env().get('FLANNEL_SUBNET')}" for n in nodes)

    def _start_and_wait_flanneld(self, nodes, timeout: float) -> None:
        def mtime(node):
            try:
                return os.stat(node.subnet_file).st_mtime_ns
            except FileNotFoundError:
                return None
        before = {n.name: mtime(n) for n in nodes}  # ready = flanneld (re)wrote subnet.env
        for node in nodes:
            node.service("flanneld").start()
        pending = {n.name: n for n in nodes}
        restarts = {n.name: 0 for n in nodes}
        deadline = time.monotonic() + timeout
        while pending:
            for name, node in list(pending.items()):
                if mtime(node) not in (None, before[name]):
                    del pending[name]
                    continue
                svc = node.service("flanneld")
                if not svc.is_active():
                    tail = svc.log().strip().splitlines()[-3:]
                    # systemd's Restart=on-failure: a lost race for a subnet is retried
                    if restarts[name] < 3 and any("subnet already exists" in t for t in tail):
                        restarts[name] += 1
                        svc.start()
                        continue
                    raise LabError(f"flanneld on {name} exited:\n" + "\n".join(tail))
            if time.monotonic() > deadline:
                raise LabError(f"flanneld did not write subnet.env within {timeout:.0f}s on "
                               f"{', '.join(pending)}; see `labkit logs NODE flanneld`")
            time.sleep(0.02)

    def start_docker(self, nodes=None, timeout: float = 20) -> str:
        from .docker.containers import daemon_info
        nodes = nodes or self.nodes
        for node in nodes:
            node.service("docker").start()
        deadline = time.monotonic() + timeout
        for node in nodes:
            while daemon_info(self.state, node.name) is None or \
                    daemon_info(self.state, node.name)["pid"] != node.service("docker").pid():
                if time.monotonic() > deadline:
                    raise LabError(f"docker did not start on {node.name}; see `labkit logs {node.name} docker`")
                time.sleep(0.02)
        return ", ".join(f"{n.name}={daemon_info(self.state, n.name)['bip']}" for n in nodes)

    def service(self, node: str, name: str):
        return self.node(node).service(name)

    def add_node(self) -> Node:
        """A new node joins the running lab: plugged in, then flanneld, docker, containers."""
        self.spec.nodes += 1
        self.spec.validate()
        node = Node(self.state, self.spec, len(self.nodes))
        self.nodes.append(node)
        self.state.create(self.spec)  # the spec on disk now has one more node
        self.state.record("netns", node.ns)
        netns.add(node.ns)
        self._attach(node)
        node.prepare()
        self.start_flanneld([node], wait=self.spec.write_config)
        self.start_docker([node])
        from .docker import containers
        for i in range(1, self.spec.containers + 1):
            containers.run(self.state, node.name, f"c{i}")
        if self.spec.write_config:
            self.wait_converged()
        return node

    def _start_containers(self) -> str:
        from .docker import containers
        made = []
        for node in self.nodes:
            for i in range(1, self.spec.containers + 1):
                rec = containers.run(self.state, node.name, f"c{i}")
                made.append(f"{node.name}/c{i}={rec['ip']}")
        return ", ".join(made)

    def wait_converged(self, timeout: float = 30) -> str:
        """Every node has a route (and, for VXLAN, an FDB entry) for every peer's lease."""
        deadline = time.monotonic() + timeout
        want = len(self.nodes) - 1
        while True:
            counts = {n.name: self._peers_known(n) for n in self.nodes}
            if all(c >= want for c in counts.values()):
                return f"{want} peer routes on each of {len(self.nodes)} nodes"
            if time.monotonic() > deadline:
                raise LabError(f"flannel did not converge within {timeout:.0f}s: peer routes {counts}")
            time.sleep(0.05)

    def _peers_known(self, node: Node) -> int:
        """How many peers this node's flanneld has programmed into the kernel."""
        if self.spec.flavour == "legacy":  # flannel 0.7: one FDB entry per peer, no routes
            def fdb(ipr):
                idx = ipr.link_lookup(ifname=f"flannel.{self.spec.vni or 1}")
                return 0 if not idx else sum(1 for n in ipr.get_neighbours(family=AF_BRIDGE, ifindex=idx[0])
                                             if n.get_attr("NDA_DST"))
            return netns.netlink.call(node.ns, fdb)
        return self._peer_routes(node)

    def _peer_routes(self, node: Node) -> int:
        net = ipaddress.IPv4Network(self.spec.network)
        own = node.subnet_env().get("FLANNEL_SUBNET")
        own_net = ipaddress.IPv4Interface(own).network if own else None

        def count(ipr):
            n = set()
            for r in ipr.get_routes(family=2):
                dst = r.get_attr("RTA_DST")
                if dst and r.get_attr("RTA_GATEWAY"):
                    sn = ipaddress.IPv4Network(f"{dst}/{r['dst_len']}")
                    if sn.subnet_of(net) and sn != own_net:
                        n.add(sn)
            return n
        routed = netns.netlink.call(node.ns, count)
        if self.spec.backend != "vxlan":  # udp's table is in its proxy; host-gw may be refused
            from .flannel.backends.footprint import peers_handled
            routed = peers_handled(self.spec.backend, node.service("flanneld").log(), routed) - {own_net}
        return len(routed)

    def switch_backend(self, backend: str, clean: bool = True, timeout: float = 30, **fields) -> str:
        """Move the running lab to another backend the way an admin does, on every node.

        1. put the new network config into etcd (flanneld reads it only at start);
        2. stop flanneld; with `clean`, remove what the previous backend left in the
           kernel (flanneld itself never does: flannel/backends/footprint.py says what
           each backend leaves and why it matters), like ``ip link del flannel.1``;
        3. start flanneld: each node keeps its subnet (its lease is found by PublicIP)
           and writes FLANNEL_MTU for the new backend;
        4. restart docker, which reads subnet.env only when it starts, then start again
           the containers that docker's stop took down;
        5. wait until every node has programmed every peer.
        `fields` are other LabSpec fields (port, vni, direct_routing, ...); the Backend
        options of the previous config are not carried over, as in a freshly written one.
        """
        import dataclasses
        from .docker import containers
        from .flannel.backends.footprint import remove_leftovers
        fields = {"vni": None, "port": None, "direct_routing": False, **fields}
        new = dataclasses.replace(self.spec, backend=backend, **fields).validate()
        old = self.spec.backend
        self.spec = new
        for node in self.nodes:
            node.spec = new
        self.state.create(new)  # spec.json: `labkit status` shows the new backend
        self.progress(self.write_config())
        for node in self.nodes:
            node.service("flanneld").stop()
        if clean:
            for node in self.nodes:
                done = netns.netlink.call(node.ns, remove_leftovers, self.spec.network)
                if done:
                    self.progress(f"{node.name}: {'; '.join(done)}")
        running = {n.name: [r for r in containers.list_all(self.state, n.name) if r["running"]]
                   for n in self.nodes}
        self.progress("flanneld: " + self.start_flanneld())
        for node in self.nodes:
            node.service("docker").stop()
        self.progress("docker: " + self.start_docker())
        for node in self.nodes:
            for rec in running[node.name]:
                containers.start(self.state, node.name, rec["name"])  # `docker start`
        converged = self.wait_converged(timeout)
        return f"{old} -> {backend}: {converged}"

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
    def leases(self) -> dict:
        """{subnet: (key, value json)} straight from etcd."""
        from .flannel.subnet import parse_subnet_key
        if self.spec.flavour == "legacy":
            pairs = V2Client(self.state.etcd_socket).list(f"{self.spec.prefix}/subnets")
        else:
            pairs = [(meta.key.decode(), value.decode())
                     for value, meta in self.etcd().get_prefix(f"{self.spec.prefix}/subnets/")]
        out = {}
        for key, value in pairs:
            sn = parse_subnet_key(key)
            if sn is not None:
                out[str(sn)] = (key, value)
        return out

    def capture(self, target: str, iface: str, **kw):
        """Capture packets on a node's or container's interface (see labkit.capture)."""
        from .capture import capture
        return capture(self, target, iface, **kw)

    def network_config(self) -> str | None:
        """The config as it is in etcd now (a learner may have changed it), or None."""
        key = f"{self.spec.prefix}/config"
        try:
            if self.spec.flavour == "legacy":
                return V2Client(self.state.etcd_socket).get(key)
            value, _ = self.etcd().get(key)
            return value.decode() if value is not None else None
        except Exception:
            return None

    def status(self) -> dict:
        from .status import lab_status
        return lab_status(self)

    def resolve(self, target: str):
        """'node1' -> (node, None); 'node1/c1' or a unique 'c1' -> (node, container record)."""
        from .docker import containers
        if "/" in target:
            node_name, _, cname = target.partition("/")
            node = self.node(node_name)
            rec = containers.get(self.state, node.name, cname)
            if rec is None:
                raise LabError(f"no container {cname!r} on {node.name}")
            return node, rec
        if any(n.name == target for n in self.nodes):
            return self.node(target), None
        hits = [(n, r) for n in self.nodes for r in containers.list_all(self.state, n.name)
                if r["name"] == target]
        if len(hits) == 1:
            return hits[0]
        if hits:
            raise LabError(f"{target!r} is a container on several nodes; say NODE/{target}")
        raise LabError(f"no node or container called {target!r} in lab {self.spec.name}")

    def command(self, target: str, argv: list[str]) -> tuple[list[str], dict]:
        """(full argv, environment) that runs argv on a node or in a container."""
        node, rec = self.resolve(target)
        if rec is None:
            return netns.nsexec_argv(node.ns, argv, node.view()), node.env()
        if not rec["running"]:
            raise LabError(f"container {rec['name']} on {node.name} is not running")
        return netns.nsexec_argv(rec["netns"], argv, node.view(hostname=rec["name"])), node.env()

    def exec(self, target: str, argv: list[str], timeout: float | None = 60, input: str | None = None):
        """Run argv on a node or in a container; returns CompletedProcess (text)."""
        full, env = self.command(target, argv)
        return subprocess.run(full, capture_output=True, text=True, env=env, timeout=timeout, input=input,
                              stdin=subprocess.DEVNULL if input is None else None)

    def sh(self, target: str, script: str, timeout: float | None = 60):
        """Run a shell command line on a node or in a container, as typed at its prompt."""
        return self.exec(target, ["bash", "-c", script], timeout=timeout)

    def address_of(self, target: str) -> ipaddress.IPv4Address:
        node, rec = self.resolve(target)
        if rec is None:
            return node.public_ip
        if not rec.get("ip"):
            raise LabError(f"container {rec['name']} on {node.name} has no address (not running)")
        return ipaddress.IPv4Address(rec["ip"])

    def lab_networks(self) -> list[ipaddress.IPv4Network]:
        """Every range lab traffic may be sent to: nothing outside these is ever pinged."""
        return [self.spec.underlay_net(), ipaddress.IPv4Network(self.spec.network),
                ipaddress.IPv4Network("172.17.0.0/16")]

    def ping(self, src: str, dst: str, count: int = 1, timeout: float = 2.0):
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
                            str(ip)], timeout=timeout * count + 5)
        return r.returncode == 0, r.stdout + r.stderr

    def endpoints(self) -> list[str]:
        """Every running container as NODE/NAME, or the nodes when there are none."""
        from .docker import containers
        eps = [f"{n.name}/{r['name']}" for n in self.nodes
               for r in containers.list_all(self.state, n.name) if r["running"]]
        return eps or [n.name for n in self.nodes]

    def connectivity(self, endpoints=None) -> dict:
        """All-pairs ping matrix: {(src, dst): bool}."""
        eps = endpoints or self.endpoints()
        pairs = [(a, b) for a in eps for b in eps if a != b]
        with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
            # a pair is reachable if one of two single pings answers: the first packet of a
            # path may be lost to neighbour resolution on a loaded machine; a broken path
            # fails both
            results = pool.map(lambda p: self.ping(p[0], p[1])[0] or self.ping(p[0], p[1])[0], pairs)
            return dict(zip(pairs, results))


def clean(name: str) -> list[str]:
    """Remove everything lab `name` owns: processes, namespaces, state. Idempotent.

    Works from the ownership record *and* the lab's namespace prefix, so it also
    cleans after a crash in the middle of `up`. Touches nothing without the prefix.
    """
    state = LabState(name)
    removed = []
    # 1. services, by pid file (they all live in lab namespaces, but stop them first so
    #    that flanneld and docker do not react to devices vanishing under them)
    pid_root = state.path("nodes")
    if os.path.isdir(pid_root):
        for node in os.listdir(pid_root):
            for svc in ("docker", "flanneld", "etcd"):
                from .services import Service
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
    # 3. the state folder
    if os.path.isdir(state.dir):
        state.remove()
        removed.append(f"state {state.dir}")
    return removed
