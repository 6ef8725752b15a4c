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
from dataclasses import asdict, dataclass, field

from .errors import LabError
from .flannel.backends.catalogue import (
    KERNEL_LINK_TYPES, SUPPORTED_BACKENDS, is_known_backend, kernel_reason, unavailable_reason)
from .flannel.config import ConfigError, parse_config

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
MAX_NODES = 250


def check_lab_name(name: str) -> str:
    if not isinstance(name, str) or not LAB_NAME_RE.match(name):
        raise LabError(f"invalid lab name {name!r}: use 1-12 lower-case letters and digits, "
                       "starting with a letter (it prefixes every namespace of the lab)")
    return name


def check_node_name(name: str) -> str:
    if not isinstance(name, str) or not NODE_NAME_RE.match(name):
        raise LabError(f"invalid node name {name!r}: nodes are called master, node1, node2, ...")
    return name


def check_container_name(name: str) -> str:
    if not isinstance(name, str) or not CONTAINER_NAME_RE.match(name):
        raise LabError(f"invalid container name {name!r}: use up to 32 of [a-zA-Z0-9_.-], "
                       "starting with a letter or digit")
    return name


def node_names(count: int) -> list[str]:
    """The first node is the master (it runs etcd); the others are node1, node2, ..."""
    return ["master"] + [f"node{i}" for i in range(1, count)]


def blog_spec(name: str = "lab", flavour: str = "legacy", **fields) -> "LabSpec":
    """The blog's cluster: a master and one node, flannel under /flannel/network, and no
    network config yet (the first command of the walkthrough writes it)."""
    return LabSpec(name=name, nodes=2, flavour=flavour, prefix="/flannel/network",
                   write_config=False, **fields)


@dataclass
class LabSpec:
    name: str = "lab"
    nodes: int = 2
    underlay: str = "192.168.50.0/24"
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
    write_config: bool = True         # put the network config into etcd during `up`
    extra_config: dict = field(default_factory=dict)
    segments: int = 1                 # L2 segments of the underlay, joined by <lab>-router

    # -- derived views -------------------------------------------------------------
    @property
    def node_names(self) -> list[str]:
        return node_names(self.nodes)

    def underlay_net(self) -> ipaddress.IPv4Network:
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

    def router_ip(self, segment: int) -> ipaddress.IPv4Address:
        """The router's address on a segment: the last usable one of its slice."""
        return self.segment_nets()[segment].broadcast_address - 1

    def network_config(self) -> dict:
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

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LabSpec":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    # -- validation ------------------------------------------------------------------
    def validate(self) -> "LabSpec":
        """Raise LabError with one clear message; return self when all is well."""
        check_lab_name(self.name)
        if not isinstance(self.nodes, int) or not 1 <= self.nodes <= MAX_NODES:
            raise LabError(f"--nodes must be between 1 and {MAX_NODES}, got {self.nodes!r}")
        try:
            under = ipaddress.IPv4Network(self.underlay, strict=True)
        except ValueError as e:
            raise LabError(f"invalid underlay CIDR {self.underlay!r}: {e}") from None
        if under.num_addresses - 2 < self.nodes:
            raise LabError(f"underlay {under} has room for {max(under.num_addresses - 2, 0)} "
                           f"nodes, {self.nodes} asked")
        if not isinstance(self.segments, int) or not 1 <= self.segments <= MAX_SEGMENTS:
            raise LabError(f"--segments must be between 1 and {MAX_SEGMENTS}, got {self.segments!r}")
        if self.segments > 1:
            if self.segments > self.nodes:
                raise LabError(f"{self.segments} segments need at least {self.segments} nodes")
            if under.prefixlen + (self.segments - 1).bit_length() > 29:
                raise LabError(f"underlay {under} is too small to split into {self.segments} segments")
            for seg, net in enumerate(self.segment_nets()):
                members = sum(1 for i in range(self.nodes) if self.segment_of(i) == seg)
                if net.num_addresses - 3 < members:  # network, broadcast, the router
                    raise LabError(f"segment {net} has room for {net.num_addresses - 3} nodes, "
                                   f"{members} asked")
        if not isinstance(self.mtu, int) or not 576 <= self.mtu <= 9000:
            raise LabError(f"underlay MTU must be between 576 and 9000, got {self.mtu!r}")
        if self.flavour not in FLAVOURS:
            raise LabError(f"unknown flannel flavour {self.flavour!r}; choose one of {', '.join(FLAVOURS)}")
        if self.vni is not None and (not isinstance(self.vni, int) or not 1 <= self.vni <= 9999999):
            # flannel names the device flannel.<VNI>; Linux names are at most 15 characters
            raise LabError(f"VNI must be between 1 and 9999999 (device name flannel.<VNI> "
                           f"must fit in 15 characters), got {self.vni!r}")
        if self.port is not None and (not isinstance(self.port, int) or not 0 <= self.port <= 65535):
            raise LabError(f"port must be between 0 and 65535, got {self.port!r}")
        if not isinstance(self.containers, int) or not 0 <= self.containers <= 50:
            raise LabError(f"--containers must be between 0 and 50 per node, got {self.containers!r}")
        if not isinstance(self.prefix, str) or not re.match(r"^(/[A-Za-z0-9._-]+)+$", self.prefix):
            raise LabError(f"invalid etcd prefix {self.prefix!r}: use /segments/of/[A-Za-z0-9._-]")
        if not isinstance(self.lease_ttl, int) or self.lease_ttl < 2:
            raise LabError(f"lease TTL must be at least 2 seconds, got {self.lease_ttl!r}")
        if not isinstance(self.renew_margin, int) or not 0 < self.renew_margin < self.lease_ttl:
            raise LabError("renew margin must be positive and shorter than the lease TTL")
        try:
            cfg = parse_config(self.network_config_json())
        except ConfigError as e:
            raise LabError(f"invalid network config: {e}") from None
        why = unavailable_reason(cfg.backend_type, kernel=False)  # data only: see check_kernel
        if why:
            raise LabError(f"backend {why}" if is_known_backend(cfg.backend_type) else why)
        if self.flavour == "legacy" and cfg.backend_type != "vxlan":
            raise LabError(f"the legacy flavour (flannel 0.7.1) is emulated with the vxlan backend only; "
                           f"backend {cfg.backend_type!r} needs --flavour modern")
        overlap = under.overlaps(cfg.network)
        if overlap:
            raise LabError(f"the flannel Network {cfg.network} overlaps the underlay {under}")
        return self

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
            raise LabError(f"backend {why}")
        return self
