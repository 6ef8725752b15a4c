"""The reference overlay: what the kernel alone does, built by hand with plain `ip` commands.

The throughput benchmark measures containers through the lab's flanneld and docker. To
know what the *lab* costs (rather than the kernel's VXLAN itself), the same run builds a
second, minimal copy of the path next to it, with nothing but iproute2:

    refc1 --veth-- [ref1: docker0 bridge -> flannel.1 | eth0] --br0-- [ref2: eth0 | flannel.1 -> docker0] --veth-- refc2

* two "nodes" (``<lab>-ref1``, ``<lab>-ref2``) plugged into the lab's own switch bridge
  ``br0`` with two free underlay addresses, at the lab's underlay MTU;
* in each, a bridge named ``docker0`` with the subnet's .1 and one "container" namespace
  (``<lab>-ref1c``, ...) on a veth, at the lab containers' MTU;
* vxlan: a ``flannel.1`` made with the settings read from the lab's own flannel.1
  (VNI, UDP port, learning, TTL/TOS, checksums, MTU), its /32, and, per peer, what
  flannel programs: a permanent ARP entry, an FDB entry to the peer's address and an
  onlink route (``vxlan_network.go``);
* host-gw: ``<peer subnet> via <peer address> dev eth0`` and the containers at 1500.

No flanneld, no docker, no iptables rule, no conntrack: what is left is the kernel's
own data path. Everything lives in namespaces with the lab's prefix (recorded before
creation, so ``labkit clean`` removes them) and is removed by :func:`remove`.
"""
from __future__ import annotations

import ipaddress
import json
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from . import netns
from .errors import LabError
from .state import LabState

ROLES = ("ref1", "ref2", "ref3", "ref4")   # pair 0: ref1-ref2, pair 1: ref3-ref4


@dataclass
class RefNode:
    role: str                       # ref1 / ref2
    ns: str                         # the node's namespace
    cns: str                        # its container's namespace
    ip: ipaddress.IPv4Interface     # eth0
    subnet: ipaddress.IPv4Network   # docker0's subnet
    mac: str = ""                   # flannel.1's MAC (once made)

    @property
    def container_ip(self) -> ipaddress.IPv4Address:
        return self.subnet.network_address + 2


@dataclass
class Reference:
    """The hand-built pair; `script` is every command it ran, in order (to print or read)."""
    state: LabState
    nodes: list[RefNode]
    mode: str = ""
    script: list[str] = field(default_factory=list)

    # -- plain ip, one batch per namespace ------------------------------------------------
    def _ip(self, ns: str, lines: Sequence[str], tool: str = "ip") -> None:
        """`ip -n NS -batch -` (or `bridge`): plain iproute2, run from the root namespace
        but acting only inside NS; each line is also appended to `script`."""
        self.script += [f"{tool} -n {ns} {line}" for line in lines]
        r = subprocess.run([tool, "-n", ns, "-batch", "-"], input="\n".join(lines) + "\n",
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise LabError(f"reference overlay: {tool} -n {ns}: {r.stderr.strip()[:300]}")

    def pair(self, i: int = 0) -> tuple[RefNode, RefNode]:
        return self.nodes[2 * i], self.nodes[2 * i + 1]

    def set_mode(self, mode: str, vxlan: dict[str, object], mtu: int) -> None:
        """Route the containers' traffic the way `mode` (vxlan/host-gw) does, containers at `mtu`."""
        for me, peer in _peers(self.nodes):
            lines = [f"link set veth-{me.role} mtu {mtu}", f"link set docker0 mtu {mtu}"]
            if mode == "vxlan":
                lines += [f"route replace {peer.subnet} via {peer.subnet.network_address} dev flannel.1 onlink"]
            elif mode == "host-gw":
                lines += [f"route replace {peer.subnet} via {peer.ip.ip} dev eth0"]
            else:
                raise LabError(f"the reference overlay has no {mode!r} mode (vxlan, host-gw)")
            self._ip(me.ns, lines)
            self._ip(me.cns, [f"link set eth0 mtu {mtu}"])
        self.mode = mode


def _peers(nodes: Sequence[RefNode]) -> list[tuple[RefNode, RefNode]]:
    """(node, its peer) for each node: pairs are (0, 1), (2, 3), ..."""
    out = []
    for i in range(0, len(nodes) - 1, 2):
        out += [(nodes[i], nodes[i + 1]), (nodes[i + 1], nodes[i])]
    return out


def copy_rules(ref: Reference, pair: int, lab_nodes: Sequence[tuple[str, str]]) -> None:
    """Give a reference pair the lab nodes' own netfilter rules: `iptables-save` of each lab
    node [(its namespace, its subnet)], its subnet replaced by the reference node's, then
    `iptables-restore` (a pair of its own, because a namespace keeps conntrack's hooks once
    a nat table was there)."""
    for me, (lab_ns, lab_subnet) in zip(ref.pair(pair), lab_nodes):
        saved = netns.run(lab_ns, ["iptables-save"], timeout=20, check=True).stdout
        rules = saved.replace(lab_subnet, str(me.subnet))
        netns.run(me.ns, ["iptables-restore"], input=rules, timeout=20, check=True)
        ref.script.append(f"ip netns exec {lab_ns} iptables-save | sed s#{lab_subnet}#{me.subnet}# | "
                          f"ip netns exec {me.ns} iptables-restore")


def free_addresses(underlay: ipaddress.IPv4Network, used: Sequence[ipaddress.IPv4Address],
                   count: int = len(ROLES)) -> list[ipaddress.IPv4Address]:
    """`count` underlay addresses no node (nor a router, which takes the last) uses, from the top."""
    taken = set(used) | {underlay.broadcast_address - 1}
    out: list[ipaddress.IPv4Address] = []
    addr = underlay.broadcast_address - 2
    while len(out) < count and addr > underlay.network_address:
        if addr not in taken:
            out.append(addr)
        addr -= 1
    if len(out) < count:
        raise LabError(f"no free address on {underlay} for the reference overlay")
    return out


def ref_subnets(network: ipaddress.IPv4Network, subnet_len: int,
                count: int = len(ROLES)) -> list[ipaddress.IPv4Network]:
    """The Network's last `count` subnets (flannel leases from the bottom; these namespaces
    are separate anyway, the choice only keeps the addresses recognisable)."""
    subs = list(network.subnets(new_prefix=subnet_len)) if subnet_len - network.prefixlen <= 12 else []
    if len(subs) < count + 1:
        raise LabError(f"Network {network} has too few /{subnet_len} subnets for the reference overlay")
    return subs[-count:]


def vxlan_settings(ns: str, ifname: str = "flannel.1") -> dict[str, object]:
    """The lab's VXLAN device as `ip -d -j link show` reports it (info_data, and the MTU)."""
    r = netns.run(ns, ["ip", "-d", "-j", "link", "show", ifname], timeout=20)
    if r.returncode != 0:
        raise LabError(f"no {ifname} in {ns} to copy the VXLAN settings from: {r.stderr.strip()}")
    link = json.loads(r.stdout)[0]
    data = dict(link.get("linkinfo", {}).get("info_data", {}))
    data["mtu"] = link["mtu"]
    return data


def vxlan_args(data: dict[str, object], local: ipaddress.IPv4Address) -> str:
    """`ip link add flannel.1 type vxlan ...` arguments from `vxlan_settings` (local = our eth0)."""
    args = [f"id {data['id']}", f"local {local}", "dev eth0", f"dstport {data.get('port', 8472)}"]
    args.append("learning" if data.get("learning") else "nolearning")
    ttl = data.get("ttl")
    args.append(f"ttl {ttl}" if ttl else "ttl auto")
    tos = data.get("tos")
    if tos and tos != "inherit":
        args.append(f"tos {tos}")
    if "udp_csum" in data:
        args.append("udpcsum" if data["udp_csum"] else "noudpcsum")
    if data.get("ageing") is not None:
        args.append(f"ageing {data['ageing']}")
    if data.get("gbp"):
        args.append("gbp")
    return " ".join(args)


def build(state: LabState, underlay: ipaddress.IPv4Network, used: Sequence[ipaddress.IPv4Address],
          underlay_mtu: int, network: ipaddress.IPv4Network, subnet_len: int,
          vxlan: dict[str, object]) -> Reference:
    """The two reference nodes and containers, on the lab's switch (see the module docstring)."""
    addrs = free_addresses(underlay, used)
    subs = ref_subnets(network, subnet_len)
    nodes = [RefNode(role, state.netns(role), state.netns(role + "c"),
                     ipaddress.IPv4Interface(f"{ip}/{underlay.prefixlen}"), sub)
             for role, ip, sub in zip(ROLES, addrs, subs)]
    ref = Reference(state, nodes)
    switch = state.netns("switch")
    try:
        for n in nodes:
            for ns in (n.ns, n.cns):
                state.record("netns", ns)
                netns.add(ns)
            ref.script.append(f"ip netns add {n.ns}; ip netns add {n.cns}")
            # the cable: a port of br0 in the switch, eth0 in the node
            ref._ip(switch, [f"link add {n.role} mtu {underlay_mtu} type veth peer name eth0 netns {n.ns}",
                             f"link set {n.role} master br0 up"])
            vmtu = int(str(vxlan["mtu"]))
            gw = n.subnet.network_address + 1
            ref._ip(n.ns, [f"addr add {n.ip} dev eth0", "link set eth0 up",
                           "link add docker0 type bridge", f"addr add {gw}/{n.subnet.prefixlen} dev docker0",
                           "link set docker0 up",
                           f"link add veth-{n.role} mtu {vmtu} type veth peer name eth0 netns {n.cns}",
                           f"link set veth-{n.role} master docker0 up",
                           f"link add flannel.1 type vxlan {vxlan_args(vxlan, n.ip.ip)}",
                           f"link set flannel.1 mtu {vmtu}",
                           f"addr add {n.subnet.network_address}/32 dev flannel.1", "link set flannel.1 up"])
            ref._ip(n.cns, [f"addr add {n.container_ip}/{n.subnet.prefixlen} dev eth0", "link set eth0 up",
                            f"route add default via {gw}"])
            netns.write_sysctl(n.ns, "net/ipv4/ip_forward", "1")
            ref.script.append(f"ip netns exec {n.ns} sysctl -w net.ipv4.ip_forward=1")
            r = netns.run(n.ns, ["cat", "/sys/class/net/flannel.1/address"], timeout=20)
            n.mac = r.stdout.strip()
        for me, peer in _peers(nodes):  # what flanneld programs per peer: ARP, FDB, then the route
            ref._ip(me.ns, [f"neigh add {peer.subnet.network_address} lladdr {peer.mac} dev flannel.1 nud permanent"])
            ref._ip(me.ns, [f"fdb append {peer.mac} dev flannel.1 dst {peer.ip.ip} self permanent"], tool="bridge")
        ref.set_mode("vxlan", vxlan, int(str(vxlan["mtu"])))
    except BaseException:
        remove(ref)
        raise
    return ref


def remove(ref: Reference) -> None:
    """Delete the reference namespaces (their devices and the switch ports go with them)."""
    for n in ref.nodes:
        for ns in (n.cns, n.ns):
            netns.delete(ns)
