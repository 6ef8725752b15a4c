"""LabSpec: everything a lab is built from, validated once, before anything is created.

The spec is plain data, so a lab can be written to its state folder, shown, exported
and rebuilt. Validation here is what makes "bad input changes nothing" true: every
name and number that will reach a command line or the kernel is checked first, and
the flannel network config is run through the same checks flanneld applies.
"""
from __future__ import annotations

import ipaddress
import json
import re
import shlex
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from .errors import LabError
from .flannel.backends.catalogue import (
    KERNEL_LINK_TYPES,
    SUPPORTED_BACKENDS,
    is_known_backend,
    kernel_reason,
    unavailable_reason,
)
from .flannel.config import ConfigError, go_parse_cidr, parse_config
from .flannel.versions import ALIASES, Profile, VersionError
from .flannel.versions import parse as parse_flannel_version

LAB_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")
NODE_NAME_RE = re.compile(r"^(master|node[0-9]{1,3})$")
CONTAINER_NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,31}$")

# SUPPORTED_BACKENDS (what a lab can be built with) and KERNEL_LINK_TYPES (backends
# whose link type this kernel may lack) come from the backend catalogue.
__all__ = ["LabSpec", "SUPPORTED_BACKENDS", "KERNEL_LINK_TYPES", "blog_spec", "check_lab_name",
           "check_node_name", "check_container_name", "node_names"]
MAX_SEGMENTS = 4
FLAVOURS = ("modern", "legacy")  # flannel v0.2x (etcd v3) / flannel 0.7.1 (etcd v2, CentOS 7)
DEFAULT_PREFIX = "/coreos.com/network"
# Docker profiles (--docker-version): what dockerd does to a node's netfilter at each start.
# Every one turns ip_forward on and, with --ip-masq=true, masquerades docker0's subnet;
# from 1.13 it also sets the FORWARD policy to DROP (flannel #603/#834). Details:
# labkit/docker/iptables.py. The default follows the flavour: CentOS 7's docker 1.12
# for legacy (the blog's hosts), a current docker for modern.
DOCKER_PROFILES = {
    "1.12": "pre-1.13, CentOS 7's docker: FORWARD policy left ACCEPT",
    "1.13": "sets the FORWARD policy to DROP at every start",
    "24.0": "a current docker: DOCKER-USER chain; FORWARD policy DROP when it turns ip_forward on itself",
}
DEFAULT_DOCKER = {"legacy": "1.12", "modern": "24.0"}
# 1000 = master + node1..node999 (the node-name pattern); the scale target is 250.
MAX_NODES = 1000
# The underlay when none is given: 192.168.50.0/24, or, when the nodes (and segments)
# need more room, the smallest block around it inside 192.168.48.0/20 that holds them
# (/23, /22 = 192.168.48.0/22, /21, /20).
DEFAULT_UNDERLAY = "192.168.50.0/24"
WIDEST_DEFAULT_UNDERLAY = 20
# Underlay knobs: the fixed addresses of the lab's pretend outer world (inside the lab only).
VBOX_NAT = ipaddress.IPv4Network("10.0.2.0/24")       # every node's eth0 with --nics 2
VBOX_NODE, VBOX_GATEWAY = "10.0.2.15/24", "10.0.2.2"   # VirtualBox NAT's guest and gateway
NAT_PRIVATE = ipaddress.IPv4Network("100.64.0.0/10")  # the private links behind --nat routers
OUTSIDE_NET = ipaddress.IPv4Network("203.0.113.0/24")  # TEST-NET-3: <lab>-outside and the router
OUTSIDE_HOST, OUTSIDE_ROUTER = "203.0.113.1", "203.0.113.254"
IFACE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,15}$")       # a Linux interface name, or an IPv4 address


def _shown(value: object, limit: int = 40) -> str:
    """A user's value in a message: repr, cut short (a 10 kB name is not echoed back)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 5] + "...'"


def _check_name(name: str, pattern: re.Pattern[str], what: str, rule: str, fieldname: str) -> str:
    """One clear line for a name that will reach a command line or a file path."""
    if not isinstance(name, str) or not pattern.match(name):
        raise LabError(f"invalid {what} name {_shown(name)}: {rule}", field=fieldname)
    return name


def check_lab_name(name: str) -> str:
    return _check_name(name, LAB_NAME_RE, "lab", "use 1-12 lower-case letters and digits, starting with a "
                       "letter (it prefixes every namespace of the lab)", "name")


def check_node_name(name: str) -> str:
    return _check_name(name, NODE_NAME_RE, "node", "nodes are called master, node1, node2, ...", "node")


def check_container_name(name: str) -> str:
    return _check_name(name, CONTAINER_NAME_RE, "container", "use up to 32 of [a-zA-Z0-9_.-], starting with "
                       "a letter or digit", "container")


def check_target(value: str) -> tuple[str, str]:
    """NODE or NODE/CONTAINER (where a command runs), each name checked: (node, container or "")."""
    node, _, container = value.partition("/")
    check_node_name(node)
    if container:
        check_container_name(container)
    return node, container


def node_name(index: int) -> str:
    return "master" if index == 0 else f"node{index}"


def node_names(count: int) -> list[str]:
    """The first node is the master (it runs etcd); the others are node1, node2, ..."""
    return [node_name(i) for i in range(count)]


def _room_problem(net: ipaddress.IPv4Network, nodes: int, segments: int, router: bool = False) -> str | None:
    """Why `nodes` nodes dealt over `segments` segments do not fit in `net` (None: they fit).
    `router`: a one-segment underlay that also holds the router (--outside)."""
    if segments <= 1:
        room = net.num_addresses - (3 if router else 2)
        if room < nodes:
            return f"underlay {net} has room for {max(room, 0)} nodes{' and the router' if router else ''}, " \
                   f"{nodes} asked"
        return None
    bits = (segments - 1).bit_length()
    if net.prefixlen + bits > 29:
        return f"underlay {net} is too small to split into {segments} segments"
    for seg, sub in enumerate(list(net.subnets(prefixlen_diff=bits))[:segments]):
        members = len(range(seg, nodes, segments))  # nodes are dealt to the segments in turn
        if sub.num_addresses - 3 < members:  # network, broadcast, the router
            return f"segment {sub} has room for {sub.num_addresses - 3} nodes, {members} asked"
    return None


def default_underlay(nodes: int, segments: int = 1, router: bool = False) -> str:
    """DEFAULT_UNDERLAY, or the smallest block around it (up to a /20) that holds the nodes."""
    base = ipaddress.IPv4Network(DEFAULT_UNDERLAY)
    for prefix in range(base.prefixlen, WIDEST_DEFAULT_UNDERLAY - 1, -1):
        net = base.supernet(new_prefix=prefix)
        if _room_problem(net, nodes, segments, router) is None:
            return str(net)
    return str(base.supernet(new_prefix=WIDEST_DEFAULT_UNDERLAY))


# Networks a lab cannot use, whatever flannel says: (block, what it is, why it breaks the lab).
# Each was tried: flanneld accepts all of them (flannel has no such check) and the lab then
# fails to converge. Class E (240.0.0.0/4), 0.0.0.0/8, 169.254.0.0/16 and 172.17.0.0/16 were
# tried too and work on Linux, so they are accepted.
UNUSABLE_NETWORKS = [
    ("127.0.0.0/8", "loopback",
     "the kernel never sends loopback addresses out of a host, so no packet reaches another node"),
    ("224.0.0.0/4", "multicast",
     "a multicast address cannot be a host's address or a route's next hop (the kernel answers "
     "'network is unreachable')"),
]


def blog_spec(name: str = "lab", flavour: str = "legacy", **fields: Any) -> "LabSpec":
    """The blog's cluster: a master and one node, flannel under /flannel/network, and no
    network config yet (the first command of the walkthrough writes it)."""
    return LabSpec(name=name, nodes=2, flavour=flavour, prefix="/flannel/network",
                   write_config=False, **fields)


@dataclass
class LabSpec:
    name: str = "lab"
    nodes: int = 2
    underlay: str | None = None       # None: DEFAULT_UNDERLAY, widened for many nodes (validate)
    mtu: int = 1500
    network: str = "10.108.0.0/16"
    subnet_len: int | None = None
    backend: str = "vxlan"
    vni: int | None = None
    port: int | None = None
    direct_routing: bool = False
    containers: int = 0
    flavour: str = "modern"
    prefix: str = DEFAULT_PREFIX
    seed: int | None = None
    lease_ttl: int = 86400            # seconds; flannel's subnetTTL is 24 h
    renew_margin: int = 3600          # seconds; flannel's -subnet-lease-renew-margin=60 (minutes)
    flannel_options: str = ""         # more flanneld flags for every node's FLANNEL_OPTIONS, e.g. "-v=2"
    write_config: bool = True         # put the network config into etcd during `up`
    extra_config: dict = field(default_factory=dict)
    segments: int = 1                 # L2 segments of the underlay, joined by <lab>-router
    docker_version: str | None = None  # a DOCKER_PROFILES key; None: DEFAULT_DOCKER of the flavour
    # -- underlay knobs (README "Underlay knobs"); all plain data, so a scenario file can set them
    node_mtu: dict = field(default_factory=dict)   # {"node1": 1400}: that node's uplink MTU, both ends
    router_mtu: int | None = None     # MTU of every link of <lab>-router, both ends
    router_drop_icmp: bool = False    # the router drops the ICMP frag-needed it sends: a PMTU black hole
    nics: int = 1                     # 2: eth0 is a VirtualBox-NAT-like 10.0.2.15 link, eth1 the underlay
    iface: str | None = None          # flanneld -iface (None: eth0 with one NIC, none with two)
    nat: list = field(default_factory=list)        # nodes behind their own NAT router <lab>-nat-NODE
    nat_public_ip: bool = False       # flanneld on those nodes gets -public-ip=<the NAT's outside address>
    outside: bool = False             # <lab>-outside (203.0.113.1) behind the router; nodes route to it
    ip_masq: bool = False             # flanneld -ip-masq
    flannel_version: str | None = None  # a flannel release (0.9.1, v0.17.0, legacy, ...): its profile,
                                        # labkit/flannel/versions.py; None: the flavour's (0.7.1 / 0.28.0)

    # -- derived views -------------------------------------------------------------
    @property
    def node_names(self) -> list[str]:
        # built once per node count: Node(i) reads it for every node (n lookups, not n lists)
        cached = self.__dict__.get("_node_names")
        if cached is None or len(cached) != self.nodes:
            cached = node_names(self.nodes)
            self.__dict__["_node_names"] = cached
        return cached

    @property
    def docker_profile(self) -> str:
        """The docker profile in effect: the one asked for, or the flavour's default."""
        return self.docker_version or DEFAULT_DOCKER.get(self.flavour, "24.0")

    @property
    def release(self) -> str:
        """The flannel release the lab runs: --flannel-version, or the flavour's alias."""
        if self.flannel_version is not None:
            try:
                return parse_flannel_version(self.flannel_version)
            except VersionError:
                pass  # validate() says why; until then the flavour's release
        return ALIASES.get(self.flavour, ALIASES["modern"])

    @property
    def profile(self) -> Profile:
        """The behaviour switches of that release (labkit/flannel/versions.py)."""
        return Profile(self.release)

    @property
    def etcd_v2(self) -> bool:
        """flannel before 0.18.0 reads and writes the etcd v2 key space (`etcdctl set`)."""
        return self.profile.etcd_v2

    def underlay_net(self) -> ipaddress.IPv4Network:
        if self.underlay is None:
            return ipaddress.IPv4Network(default_underlay(self.nodes, self.segments, self.outside is True))
        return ipaddress.IPv4Network(self.underlay)

    def public_ip(self, index: int) -> ipaddress.IPv4Address:
        """Node i's address on the underlay: the master gets .1, node1 .2, ...

        With several segments, each one is a slice of the underlay (a /24 gives two
        /25s); nodes are dealt to the segments in turn (master to the first, node1 to the
        second, ...), numbered from .1 of their slice, so adding a node moves nobody.
        """
        if self.segments <= 1:
            return self.underlay_net().network_address + 1 + index
        return self.segment_nets()[self.segment_of(index)].network_address + 1 + index // self.segments

    def segment_nets(self) -> list[ipaddress.IPv4Network]:
        """The underlay's L2 segments: the whole underlay, or equal slices of it."""
        if self.segments <= 1:
            return [self.underlay_net()]
        bits = (self.segments - 1).bit_length()
        return list(self.underlay_net().subnets(prefixlen_diff=bits))[:self.segments]

    def segment_of(self, index: int) -> int:
        return index % self.segments if self.segments > 1 else 0

    def node_interface(self, index: int) -> ipaddress.IPv4Interface:
        """Node i's eth0 address with its segment's prefix length."""
        net = self.segment_nets()[self.segment_of(index)]
        return ipaddress.IPv4Interface(f"{self.public_ip(index)}/{net.prefixlen}")

    @property
    def has_router(self) -> bool:
        """<lab>-router exists with several segments, or to reach the outside network."""
        return self.segments > 1 or self.outside

    def uplink_ifname(self) -> str:
        """The node's NIC on the cluster network: eth1 when eth0 is the Vagrant-like NAT link."""
        return "eth1" if self.nics == 2 else "eth0"

    def link_mtu(self, node: str) -> int:
        """A node's uplink MTU: its own (node_mtu) or the lab's."""
        return int(self.node_mtu.get(node, self.mtu))

    def nat_private(self, index: int) -> tuple[ipaddress.IPv4Interface, ipaddress.IPv4Address]:
        """(node's eth0, its NAT gateway) on node i's private link behind its NAT router:
        100.64.i.0/24 counted in /24s from 100.64.0.0 (RFC 6598 shared space, a carrier NAT's)."""
        net = ipaddress.IPv4Network((int(NAT_PRIVATE.network_address) + 256 * index, 24))
        return ipaddress.IPv4Interface(f"{net.network_address + 2}/24"), net.network_address + 1

    def flanneld_options(self, node: str) -> list[str]:
        """FLANNEL_OPTIONS in the node's /etc/sysconfig/flanneld (every token validated)."""
        opts = []
        if self.iface:
            opts.append(f"-iface={self.iface}")
        elif self.nics == 1:
            opts.append("-iface=eth0")  # with two NICs, flannel's default: the default route's
        if self.nat_public_ip and node in self.nat:
            opts.append(f"-public-ip={self.public_ip(self.node_names.index(node))}")
        if self.ip_masq:
            opts.append("-ip-masq")
        return opts + shlex.split(self.flannel_options)  # the lab's extra flags, e.g. -v=2

    def router_ip(self, segment: int) -> ipaddress.IPv4Address:
        """The router's address on a segment: the last usable one of its slice."""
        return self.segment_nets()[segment].broadcast_address - 1

    def network_config(self) -> dict[str, Any]:
        """The JSON a user would write with `etcdctl put <prefix>/config`."""
        backend: dict = {"Type": self.backend}
        if self.vni is not None:
            backend["VNI"] = self.vni
        if self.port is not None:
            backend["Port"] = self.port
        if self.direct_routing:
            backend["DirectRouting"] = True
        cfg: dict = {"Network": self.network}
        if self.subnet_len is not None:
            cfg["SubnetLen"] = self.subnet_len
        cfg.update(self.extra_config)
        cfg["Backend"] = backend
        return cfg

    def network_config_json(self) -> str:
        return json.dumps(self.network_config(), separators=(",", ":"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LabSpec":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    # -- validation ------------------------------------------------------------------
    def validate(self) -> "LabSpec":
        """Raise LabError with one clear message (its ``field`` names the LabSpec field it is
        about); return self when all is well.

        Fills in what is derived: the underlay when none was given (widened for many
        nodes), and the Network as flannel reads it (``10.108.0.1/16`` is ``10.108.0.0/16``:
        flannel's IP4Net drops the host bits, net.ParseCIDR)."""
        check_lab_name(self.name)
        if not _is_int(self.nodes) or not 1 <= self.nodes <= MAX_NODES:
            raise LabError(f"--nodes must be between 1 and {MAX_NODES}, got {_shown(self.nodes)}", field="nodes")
        if not _is_int(self.segments) or not 1 <= self.segments <= MAX_SEGMENTS:
            raise LabError(f"--segments must be between 1 and {MAX_SEGMENTS}, got {_shown(self.segments)}",
                           field="segments")
        if self.segments > self.nodes:
            raise LabError(f"{self.segments} segments need at least {self.segments} nodes", field="segments")
        if self.underlay is None:
            self.underlay = default_underlay(self.nodes, self.segments, self.outside is True)
        under = _parse_underlay(self.underlay)
        if not isinstance(self.outside, bool):
            raise LabError(f"outside must be true or false, got {_shown(self.outside)}", field="outside")
        problem = _room_problem(under, self.nodes, self.segments, self.outside)
        if problem:
            raise LabError(problem, field="underlay")
        if not _is_int(self.mtu) or not 576 <= self.mtu <= 9000:
            raise LabError(f"underlay MTU must be between 576 and 9000, got {_shown(self.mtu)}", field="mtu")
        self._validate_knobs(under)
        if self.flavour not in FLAVOURS:
            raise LabError(f"unknown flannel flavour {_shown(self.flavour)}; choose one of {', '.join(FLAVOURS)}",
                           field="flavour")
        if self.flannel_version is not None:
            try:
                release = parse_flannel_version(self.flannel_version)
            except VersionError as e:
                raise LabError(f"--flannel-version: {e}", field="flannel_version") from None
            daemon = "legacy" if Profile(release).legacy_daemon else "modern"
            if self.flavour == "legacy" and daemon == "modern":
                raise LabError(f"--flavour legacy is flannel {ALIASES['legacy']}; flannel {release} is run by "
                               "the modern flanneld: give one of the two", field="flannel_version")
            self.flannel_version, self.flavour = release, daemon
        if self.docker_version is not None and self.docker_version not in DOCKER_PROFILES:
            raise LabError(f"unknown --docker-version {_shown(self.docker_version)}; the lab has these docker "
                           "profiles: " + "; ".join(f"{k} ({v})" for k, v in DOCKER_PROFILES.items()),
                           field="docker_version")
        if self.vni is not None and (not _is_int(self.vni) or not 1 <= self.vni <= 9999999):
            # flannel names the device flannel.<VNI>; Linux names are at most 15 characters
            raise LabError(f"VNI must be between 1 and 9999999 (device name flannel.<VNI> "
                           f"must fit in 15 characters), got {_shown(self.vni)}", field="vni")
        if self.port is not None and (not _is_int(self.port) or not 0 <= self.port <= 65535):
            raise LabError(f"port must be between 0 and 65535, got {_shown(self.port)}", field="port")
        if not _is_int(self.containers) or not 0 <= self.containers <= 50:
            raise LabError(f"--containers must be between 0 and 50 per node, got {_shown(self.containers)}",
                           field="containers")
        if not isinstance(self.prefix, str) or not re.match(r"^(/[A-Za-z0-9._-]+)+$", self.prefix) \
                or len(self.prefix) > 200:
            raise LabError(f"invalid etcd prefix {_shown(self.prefix)}: use /segments/of/[A-Za-z0-9._-] "
                           "(200 characters at most)", field="prefix")
        if not _is_int(self.lease_ttl) or self.lease_ttl < 2:
            raise LabError(f"lease TTL must be at least 2 seconds, got {_shown(self.lease_ttl)}", field="lease_ttl")
        if not _is_int(self.renew_margin) or not 0 < self.renew_margin < self.lease_ttl:
            raise LabError("renew margin must be positive and shorter than the lease TTL", field="renew_margin")
        if not isinstance(self.flannel_options, str) or any(c in self.flannel_options for c in '"\n\\$`'):
            raise LabError(f"flanneld options must be text without quotes, backslashes, $ or newlines, "
                           f"got {_shown(self.flannel_options)}", field="flannel_options")
        if self.flannel_options:
            from .flannel.daemon import KUBE_SUBNET_MGR_REFUSAL, FlagError, parse_flags
            try:
                flags = parse_flags(shlex.split(self.flannel_options), environ={})
            except (FlagError, ValueError) as e:
                raise LabError(f"invalid flanneld options {_shown(self.flannel_options)}: "
                               f"{'-h/-help is not an option for a lab' if str(e) == 'help' else e}",
                               field="flannel_options") from None
            if flags["kube-subnet-mgr"]:
                raise LabError(f"flanneld option {KUBE_SUBNET_MGR_REFUSAL}",
                               field="flannel_options")
        if self.subnet_len is not None and not _is_int(self.subnet_len):
            raise LabError(f"SubnetLen must be a whole number, got {_shown(self.subnet_len)}", field="subnet_len")
        if not isinstance(self.extra_config, dict):
            raise LabError("extra_config must be a dict of network config fields", field="extra_config")
        # the Network alone first, so its errors are the network field's
        if not isinstance(self.network, str):
            raise LabError(f"invalid network config: Network must be text like 10.108.0.0/16, "
                           f"got {_shown(self.network)}", field="network")
        try:
            net = go_parse_cidr(self.network)
        except ValueError as e:  # flannel's words: invalid CIDR address: ...
            raise LabError(f"invalid network config: {e}", field="network") from None
        if net.version != 4:
            raise LabError("invalid network config: invalid IPv4 CIDR format", field="network")
        try:
            cfg = parse_config(self.network_config_json())
        except ConfigError as e:
            raise LabError(f"invalid network config: {e}", field=_config_field(str(e), self)) from None
        assert cfg.network is not None  # the lab's config always has an IPv4 Network
        self.network = str(cfg.network)  # what flannel works with (host bits dropped)
        _check_usable(cfg.network, "Network", "network")
        _check_usable(under, "underlay", "underlay")
        why = unavailable_reason(cfg.backend_type, kernel=False)  # data only: see check_kernel
        if why:
            raise LabError(f"backend {why}" if is_known_backend(cfg.backend_type) else why, field="backend")
        if self.flavour == "legacy" and cfg.backend_type not in ("vxlan", "udp"):
            raise LabError(f"flannel {self.release} is emulated with the vxlan and udp backends only; "
                           f"backend {cfg.backend_type!r} needs --flannel-version 0.9.0 or later", field="flavour")
        if under.overlaps(cfg.network):
            raise LabError(f"the flannel Network {cfg.network} overlaps the underlay {under}", field="network")
        for block, what in self._knob_blocks():
            if block.overlaps(ipaddress.IPv4Network(self.network)):
                raise LabError(f"the flannel Network {cfg.network} overlaps the addresses of {what}",
                               field="network")
        return self

    def _validate_knobs(self, under: ipaddress.IPv4Network) -> None:
        """The underlay knobs: each bad value is one line naming its field."""
        for name in ("router_drop_icmp", "nat_public_ip", "ip_masq"):
            if not isinstance(getattr(self, name), bool):
                raise LabError(f"{name} must be true or false, got {_shown(getattr(self, name))}", field=name)
        if not isinstance(self.node_mtu, dict):
            raise LabError("--node-mtu must map node names to MTUs, e.g. node1=1400", field="node_mtu")
        for node, mtu in self.node_mtu.items():
            if node not in self.node_names:
                raise LabError(f"--node-mtu: no node {_shown(node)} in a lab of {self.nodes} nodes "
                               f"({', '.join(self.node_names[:4])}{', ...' if self.nodes > 4 else ''})",
                               field="node_mtu")
            if not _is_int(mtu) or not 576 <= mtu <= 9000:
                raise LabError(f"--node-mtu: {node}'s MTU must be between 576 and 9000, got {_shown(mtu)}",
                               field="node_mtu")
        if self.router_mtu is not None:
            if not _is_int(self.router_mtu) or not 576 <= self.router_mtu <= 9000:
                raise LabError(f"--router-mtu must be between 576 and 9000, got {_shown(self.router_mtu)}",
                               field="router_mtu")
            if not self.has_router:
                raise LabError("--router-mtu needs a router: add --segments 2 (or --outside)", field="router_mtu")
        if self.router_drop_icmp and not self.has_router:
            raise LabError("--router-drop-icmp needs a router: add --segments 2 (or --outside)",
                           field="router_drop_icmp")
        if not _is_int(self.nics) or self.nics not in (1, 2):
            raise LabError(f"--nics must be 1 or 2, got {_shown(self.nics)}", field="nics")
        if self.iface is not None and (not isinstance(self.iface, str) or not IFACE_RE.match(self.iface)):
            raise LabError(f"invalid --iface {_shown(self.iface)}: an interface name (eth1) or an IPv4 address",
                           field="iface")
        if not isinstance(self.nat, list) or not all(isinstance(n, str) for n in self.nat):
            raise LabError("--nat must be a list of node names", field="nat")
        for node in self.nat:
            if node not in self.node_names:
                raise LabError(f"--nat: no node {_shown(node)} in a lab of {self.nodes} nodes", field="nat")
            if node == "master":
                raise LabError("--nat: the master stays on the underlay (every node reaches etcd on its "
                               "address); put node1, node2, ... behind a NAT", field="nat")
        if len(set(self.nat)) != len(self.nat):
            raise LabError("--nat: a node is named twice", field="nat")
        if self.nat_public_ip and not self.nat:
            raise LabError("--nat-public-ip needs a node behind a NAT (--nat node1)", field="nat_public_ip")
        if self.nics == 2 and (self.nat or self.outside):
            raise LabError("--nics 2 gives every node a default route via its NAT link (10.0.2.2); it cannot "
                           "be combined with --nat or --outside", field="nics")
        for block, what in self._knob_blocks():
            if block.overlaps(under):
                raise LabError(f"the underlay {under} overlaps the addresses of {what}", field="underlay")

    def _knob_blocks(self) -> list[tuple[ipaddress.IPv4Network, str]]:
        """The fixed address blocks the knobs in use put into the lab: (block, which knob)."""
        used = [(VBOX_NAT, "--nics 2 (10.0.2.0/24)", self.nics == 2),
                (NAT_PRIVATE, "--nat (100.64.0.0/10)", bool(self.nat)),
                (OUTSIDE_NET, "--outside (203.0.113.0/24)", self.outside)]
        return [(block, what) for block, what, on in used if on]

    def check_kernel(self) -> "LabSpec":
        """The kernel probe, a step of its own: can this kernel make the backend's device?

        Not part of :meth:`validate`, which only reads data: the probe creates (and
        deletes) a scratch namespace (see flannel/backends/kernel.py). ``Lab.up`` calls
        it first, so a missing link type is named even for a backend the lab does not
        implement (wireguard). A config that does not parse is left to validate()."""
        try:
            backend = parse_config(self.network_config_json()).backend_type
        except ConfigError:
            return self
        why = kernel_reason(backend)
        if why:
            raise LabError(f"backend {why}", field="backend")
        return self

def parse_node_values(items: list[str] | None, flag: str) -> dict[str, int]:
    """CLI `NODE=N` pairs (--node-mtu node1=1400) as a dict; LabSpec.validate checks the values."""
    out: dict[str, int] = {}
    for item in items or []:
        node, sep, value = item.partition("=")
        try:
            if not sep:
                raise ValueError
            out[node] = int(value)
        except ValueError:
            raise LabError(f"{flag} takes NODE=NUMBER, e.g. node1=1400; got {_shown(item)}",
                           field=flag.lstrip("-").replace("-", "_")) from None
    return out


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _parse_underlay(text: object) -> ipaddress.IPv4Network:
    """The lab's own underlay: an IPv4 network written exactly (no host bits)."""
    if not isinstance(text, str):
        raise LabError(f"invalid underlay {_shown(text)}: write an IPv4 network like 192.168.50.0/24",
                       field="underlay")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise LabError(f"invalid underlay {_shown(text)}: write an IPv4 network like 192.168.50.0/24",
                       field="underlay") from None
    if net.version != 4:
        raise LabError(f"invalid underlay {_shown(text)}: the underlay is IPv4 (the nodes' eth0 and "
                       "flannel's PublicIP); write an IPv4 network like 192.168.50.0/24", field="underlay")
    if "/" not in text:
        raise LabError(f"invalid underlay {_shown(text)}: give the prefix length, e.g. {net.network_address}/24",
                       field="underlay")
    if ipaddress.IPv4Interface(text).ip != net.network_address:
        raise LabError(f"invalid underlay {_shown(text)}: it has host bits set; the network is {net}",
                       field="underlay")
    return net


def _config_field(msg: str, spec: "LabSpec") -> str:
    """Which LabSpec field a flannel config error is about (for LabError.field)."""
    if "SubnetLen" in msg or "four subnets" in msg:
        return "subnet_len" if spec.subnet_len is not None else "extra_config"
    if "SubnetMin" in msg or "SubnetMax" in msg or "IPv6" in msg or "EnableIPv" in msg \
            or "NFTables" in msg:
        return "extra_config"
    if "Backend" in msg or "backend" in msg:
        return "backend"
    return "network"


def _check_usable(net: ipaddress.IPv4Network, what: str, fieldname: str) -> None:
    for block, kind, why in UNUSABLE_NETWORKS:
        if net.overlaps(ipaddress.IPv4Network(block)):
            note = " (flannel has no such check and would accept it)" if what == "Network" else ""
            raise LabError(f"the lab refuses {what} {net} because it overlaps {block} ({kind}): {why}{note}",
                           field=fieldname)
