"""What the lab looks like right now, read from etcd and the kernel (never from a cache).

One function per source, so a notebook can show "the etcd lease" next to "the kernel
entries it produced" for the same node. The result is typed (:class:`LabStatus`,
:class:`NodeStatus`): the CLI, the widgets and the notebooks read attributes, and
``to_dict()`` is the JSON of ``labkit status --json``.
"""
from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import netns
from .etcd import CLIENT_PORT
from .flannel.backends.footprint import device_name
from .flannel.config import decode_config
from .flannel.ip import AF_BRIDGE, AF_INET, NUD_PERMANENT, RT_TABLE_MAIN, RTNH_F_ONLINK
from .underlay import bridge_name

if TYPE_CHECKING:
    from .lab import Lab
    from .node import Node


def _link_addrs(ipr: Any, ifname: str) -> list[str]:
    idx = ipr.link_lookup(ifname=ifname)
    if not idx:
        return []
    return [f"{a.get_attr('IFA_ADDRESS')}/{a['prefixlen']}" for a in ipr.get_addr(family=2, index=idx[0])]


def kernel_state(ipr: Any, device: str) -> dict[str, Any]:
    """flannel's footprint in one node: the device, its ARP/FDB entries, the routes."""
    out: dict[str, Any] = {"device": None, "arp": [], "fdb": [], "routes": [], "docker0": _link_addrs(ipr, "docker0")}
    idx = ipr.link_lookup(ifname=device)
    if idx:
        link = ipr.link("get", index=idx[0])[0]
        info = link.get_attr("IFLA_LINKINFO")
        data = info.get_attr("IFLA_INFO_DATA") if info else None
        out["device"] = {
            "name": device, "mtu": link.get_attr("IFLA_MTU"), "mac": link.get_attr("IFLA_ADDRESS"),
            "addresses": _link_addrs(ipr, device),
            "vni": data.get_attr("IFLA_VXLAN_ID") if data else None,
            "port": data.get_attr("IFLA_VXLAN_PORT") if data else None,
            "local": data.get_attr("IFLA_VXLAN_LOCAL") if data else None,
            "learning": bool(data.get_attr("IFLA_VXLAN_LEARNING")) if data else None,
            "up": link.get_attr("IFLA_OPERSTATE") in ("UP", "UNKNOWN"),   # `ip link set flannel.1 down`: False
        }
        for n in ipr.get_neighbours(family=2, ifindex=idx[0]):
            out["arp"].append({"ip": n.get_attr("NDA_DST"), "mac": n.get_attr("NDA_LLADDR"),
                               "permanent": bool(n["state"] & NUD_PERMANENT)})
        for n in ipr.get_neighbours(family=AF_BRIDGE, ifindex=idx[0]):
            if n.get_attr("NDA_DST"):
                out["fdb"].append({"mac": n.get_attr("NDA_LLADDR"), "dst": n.get_attr("NDA_DST"),
                                   "permanent": bool(n["state"] & NUD_PERMANENT)})
    names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
    for r in ipr.get_routes(family=AF_INET):
        dst = r.get_attr("RTA_DST")
        if dst is None or r.get_attr("RTA_TABLE") != RT_TABLE_MAIN:
            continue
        out["routes"].append({"dst": f"{dst}/{r['dst_len']}", "via": r.get_attr("RTA_GATEWAY"),
                              "dev": names.get(r.get_attr("RTA_OIF")),
                              "onlink": bool(r["flags"] & RTNH_F_ONLINK)})
    return out


def json_network(config: str | None) -> ipaddress.IPv4Network | None:
    """The Network of a flannel config JSON (any key case, as Go reads it), or None."""
    if not config:
        return None
    return decode_config(config).network


def docker0_in_range(docker0: str | None, subnet: str | None, network: str | None) -> bool | None:
    """docker0 is right when its address lies in the node's *own* leased subnet, and that
    in the Network: that is where flannel routes the node's containers. None when the
    lease is unknown because etcd cannot be read (nothing to judge against)."""
    if not docker0:
        return False
    ip = ipaddress.IPv4Interface(docker0).ip
    if network:
        try:
            if ip not in ipaddress.IPv4Network(network, strict=False):
                return False
        except ValueError:
            pass
    if not subnet:
        return False
    return ip in ipaddress.IPv4Network(subnet)


def _ext_addr(ipr: Any, iface: str | None) -> str | None:
    """In a node's namespace, the address flanneld takes as its external one (iface.lookup):
    -iface's (a name or an address), else the first IPv4 address of the default route's device."""
    if iface:
        try:
            return str(ipaddress.IPv4Address(iface))
        except ValueError:
            addrs = _link_addrs(ipr, iface)
            return addrs[0].split("/")[0] if addrs else None
    for r in ipr.get_routes(family=AF_INET):
        if r["dst_len"] == 0 and r.get_attr("RTA_TABLE") == RT_TABLE_MAIN and r.get_attr("RTA_OIF"):
            names = {link["index"]: link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            addrs = _link_addrs(ipr, names.get(r.get_attr("RTA_OIF"), ""))
            return addrs[0].split("/")[0] if addrs else None
    return None


def flanneld_public_ip(node: Node) -> str:
    """The PublicIP the node's flanneld puts in its lease, from the node's FLANNEL_OPTIONS
    (/etc/sysconfig/flanneld): -public-ip if given, else -iface's address, else the default
    route's interface's (Vagrant's 10.0.2.15 on every node); the node's underlay address when
    none of that can be read."""
    import shlex

    from .flannel.daemon import FlagError, parse_flags
    from .flannel.subnetenv import read_subnet_file
    try:
        conf = read_subnet_file(node.etc_file("sysconfig", "flanneld"))
        opts = parse_flags(shlex.split(conf.get("FLANNEL_OPTIONS", "")), environ={})
        if opts["public-ip"]:
            return opts["public-ip"]
        return netns.netlink.call(node.ns, _ext_addr, opts["iface"][0] if opts["iface"] else None) \
            or str(node.public_ip)
    except (OSError, ValueError, FlagError):
        return str(node.public_ip)


def own_lease(leases: Mapping[str, dict[str, Any]], subnet_env: Mapping[str, str],
              public_ip: str) -> tuple[str | None, dict[str, Any] | None]:
    """The node's lease as its flanneld wrote it: the lease of the subnet in its subnet.env
    (several nodes can share one PublicIP, like Vagrant's 10.0.2.15), if that lease carries
    the node's PublicIP; else the first lease with the node's PublicIP (flannel's findLeaseByIP)."""
    env_subnet = subnet_env.get("FLANNEL_SUBNET")
    if env_subnet:
        try:
            sn = str(ipaddress.IPv4Interface(env_subnet).network)
        except ValueError:
            sn = ""
        if (leases.get(sn) or {}).get("PublicIP") == public_ip:
            return sn, leases[sn]
    for sn, lease in leases.items():
        if lease.get("PublicIP") == public_ip:
            return sn, lease
    return None, None


def link_state(ipr: Any, ifname: str) -> dict[str, Any] | None:
    """One interface as `ip addr` shows it: name, IPv4 addresses, MTU, up (None: no such link)."""
    idx = ipr.link_lookup(ifname=ifname)
    if not idx:
        return None
    link = ipr.link("get", index=idx[0])[0]
    return {"name": ifname, "addresses": _link_addrs(ipr, ifname), "mtu": link.get_attr("IFLA_MTU"),
            "up": link.get_attr("IFLA_OPERSTATE") in ("UP", "UNKNOWN")}


def _node_kernel(ipr: Any, device: str, uplink: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """kernel_state and the uplink NIC, read through one netlink socket."""
    return kernel_state(ipr, device), link_state(ipr, uplink)


def _router_legs(ipr: Any, legs: int) -> list[str | None]:
    """The router's address on each segment (its eth0, eth1, ...)."""
    addrs = [_link_addrs(ipr, f"eth{i}") for i in range(legs)]
    return [a[0] if a else None for a in addrs]


@dataclass
class ContainerStatus:
    name: str
    ip: str | None
    running: bool
    veth: str | None = None            # its veth's end on the node, a port of docker0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ip": self.ip, "running": self.running, "veth": self.veth}


@dataclass
class SegmentStatus:
    """One L2 segment of the underlay: a bridge in the switch namespace (README: routed underlay)."""
    index: int
    network: str
    bridge: str
    router: str | None = None          # the router's address on it, read from the router (None: no router)

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "network": self.network, "bridge": self.bridge, "router": self.router}


@dataclass
class NodeStatus:
    name: str
    namespace: str
    public_ip: str
    subnet: str | None                 # the node's lease in etcd (None: none, or etcd down)
    vtep_mac: str | None
    lease: dict | None                 # the lease JSON, with its etcd "key"
    docker0: str | None
    docker0_in_network: bool           # docker0 inside the Network in etcd
    in_range: bool | None              # ...and inside the node's own lease (None: lease unknown)
    services: dict = field(default_factory=dict)
    subnet_env: dict = field(default_factory=dict)
    containers: list[ContainerStatus] = field(default_factory=list)
    kernel: dict = field(default_factory=dict)
    segment: int = 0                   # the underlay segment its cable is plugged into
    uplink: dict | None = None         # its NIC on the cluster network (eth0): name, addresses, mtu, up
    namespace_gone: bool = False       # its namespace's name was deleted under the lab (`ip netns del`)

    def to_dict(self, kernel: bool = True) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "namespace": self.namespace, "public_ip": self.public_ip,
             "subnet": self.subnet, "vtep_mac": self.vtep_mac, "lease": self.lease,
             "docker0": self.docker0, "docker0_in_network": self.docker0_in_network,
             "in_range": self.in_range, "services": dict(self.services),
             "subnet_env": dict(self.subnet_env), "containers": [c.to_dict() for c in self.containers],
             "segment": self.segment, "uplink": self.uplink, "namespace_gone": self.namespace_gone}
        if kernel:
            d["kernel"] = self.kernel
        return d


@dataclass
class LabStatus:
    name: str
    network: str
    backend: str
    prefix: str
    nodes: list[NodeStatus]
    etcd_error: str | None = None      # why etcd could not be read (None: it answered)
    underlay: str = ""                 # the "physical" network the nodes' eth0 are on
    segments: list[SegmentStatus] = field(default_factory=list)
    router: str | None = None          # the router's namespace (several segments, --outside), else None
    etcd: str = ""                     # etcd's client endpoint, address:port (it runs on the master)

    @property
    def etcd_ok(self) -> bool:
        return self.etcd_error is None

    def node(self, name: str) -> NodeStatus:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(name)

    def to_dict(self, kernel: bool = True) -> dict[str, Any]:
        return {"name": self.name, "network": self.network, "backend": self.backend,
                "prefix": self.prefix, "etcd_error": self.etcd_error,
                "nodes": [n.to_dict(kernel=kernel) for n in self.nodes],
                "underlay": self.underlay, "segments": [s.to_dict() for s in self.segments],
                "router": self.router, "etcd": self.etcd}

    def to_json(self, kernel: bool = False) -> str:
        return json.dumps(self.to_dict(kernel=kernel), indent=2)


def lab_status(lab: Lab) -> LabStatus:
    """Read etcd (leases, config) and every node's kernel. With etcd down the kernel's
    side is still shown and `etcd_error` says why the leases are missing."""
    etcd_error = lab.etcd_health()
    leases: dict[str, dict[str, Any]] = {}
    if etcd_error is None:
        try:
            for subnet, (key, value) in lab.leases().items():
                leases[subnet] = {"key": key, **json.loads(value)}
        except Exception as e:  # etcd went away between the two calls
            etcd_error = str(e) or type(e).__name__
    network = ipaddress.IPv4Network(lab.spec.network)
    if etcd_error is None:
        try:  # "in range" means inside the Network flannel is told about now, in etcd
            network = json_network(lab.network_config()) or network
        except ValueError:
            pass
    nodes = []
    for node in lab.nodes:
        subnet_env = node.subnet_env()
        gone = not netns.exists(node.ns)
        sn, lease = own_lease(leases, subnet_env, str(node.public_ip) if gone else flanneld_public_ip(node))
        data = (lease or {}).get("BackendData") or {}
        vni = data.get("VNI", lab.spec.vni or 1)
        # the backend the node runs is the one its lease says (udp writes no BackendType)
        backend = (lease or {}).get("BackendType") or ("udp" if lease else lab.spec.backend)
        device = device_name(backend, vni) or ""  # host-gw has no device
        kern: dict[str, Any]
        uplink: dict[str, Any] | None
        if gone:   # nothing of its kernel can be read by name (its processes may still run in it)
            kern, uplink = {"device": None, "arp": [], "fdb": [], "routes": [], "docker0": []}, None
        else:
            kern, uplink = netns.netlink.call(node.ns, _node_kernel, device, lab.uplink(node.name))
        docker0 = kern["docker0"][0] if kern["docker0"] else None
        in_net = bool(docker0 and ipaddress.IPv4Interface(docker0).ip in network)
        in_range = None if etcd_error is not None or gone else docker0_in_range(docker0, sn, str(network))
        nodes.append(NodeStatus(
            name=node.name, namespace=node.ns, public_ip=str(node.public_ip), subnet=sn,
            vtep_mac=data.get("VtepMAC"), lease=lease, docker0=docker0, docker0_in_network=in_net,
            in_range=in_range, services={s: node.service(s).status() for s in node.services()},
            subnet_env=subnet_env,
            containers=[ContainerStatus(r.name, r.ip, r.running, r.veth if r.running else None)
                        for r in lab.containers(node.name)],
            kernel=kern, segment=lab.spec.segment_of(node.index), uplink=uplink, namespace_gone=gone))
    spec = lab.spec
    router = lab.state.netns("router") if spec.has_router else None
    legs: list[str | None] = [None] * spec.segments
    if router and netns.exists(router):
        legs = netns.netlink.call(router, _router_legs, spec.segments)
    segments = [SegmentStatus(i, str(net), bridge_name(i), legs[i] if router else None)
                for i, net in enumerate(spec.segment_nets())]
    return LabStatus(name=spec.name, network=str(network), backend=spec.backend,
                     prefix=spec.prefix, nodes=nodes, etcd_error=etcd_error,
                     underlay=str(spec.underlay_net()), segments=segments, router=router,
                     etcd=f"{lab.master.public_ip}:{CLIENT_PORT}")
