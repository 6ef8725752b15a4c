"""The "physical" network: a switch namespace with a bridge, one cable per node.

Each node's ``eth0`` is one end of a veth pair; the other end is a port of ``br0``
in the lab's switch namespace (``<lab>-switch``). Nothing of it touches the root
namespace: both ends are created directly inside lab namespaces. The cable's MTU
is the node's underlay MTU, the number flannel subtracts its overhead from.
"""
from __future__ import annotations

import ipaddress
import os
from collections.abc import Callable
from typing import Any

from . import netns
from .errors import LabError
from .spec import OUTSIDE_HOST, OUTSIDE_NET, OUTSIDE_ROUTER, VBOX_GATEWAY, VBOX_NODE
from .state import LabState

BRIDGE = "br0"
# (the underlay, the router's address on the node's segment): the route a node takes to the
# rest of a routed underlay
RouterRoute = tuple[ipaddress.IPv4Network, ipaddress.IPv4Address]


def _bridge(ipr: Any, name: str = BRIDGE) -> None:
    ipr.link("add", ifname=name, kind="bridge", state="up")


def bridge_name(segment: int) -> str:
    """Segment 0 is br0 (the only one of a flat underlay), segment 1 br1, ..."""
    return f"br{segment}"


def build_switch(state: LabState, segments: int = 1, then: Callable[[], object] | None = None) -> str:
    """The switch namespace and its bridges; `then` runs as soon as the namespace exists
    (the lab starts its own processes there while the rest is built)."""
    ns = state.netns("switch")
    state.record("netns", ns)
    netns.add(ns)
    if then is not None:
        then()
    switch_no_netfilter(ns)
    for seg in range(segments):
        netns.netlink.call(ns, _bridge, bridge_name(seg))
    return ns


BRIDGE_NF = ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables")


def switch_no_netfilter(ns: str) -> None:
    """A switch forwards frames and never filters them. With br_netfilter loaded on the host
    (flannel >= 0.26 wants it on every node), a new namespace's bridges pass every bridged
    frame through that namespace's iptables hooks: measured, about a fifth of the cost of
    each udp-backend packet's send, on every underlay frame of every backend. The nodes keep
    the setting (their docker0 needs it, as on a real host); the switch turns it off.
    Before Linux 5.3 these settings were global, the host's own: then nothing is touched."""
    if kernel_release() < (5, 3):
        return
    for key in BRIDGE_NF:
        if os.path.exists(f"/proc/sys/net/bridge/{key}"):
            try:
                netns.write_sysctl(ns, f"net/bridge/{key}", "0")
            except (OSError, LabError):
                pass  # not writable here (a sandbox): the switch filters, only slower


def kernel_release(release: str | None = None) -> tuple[int, int]:
    """(major, minor) of the running kernel ("6.1.0-18-amd64" -> (6, 1)); (0, 0) if unreadable."""
    import re
    m = re.match(r"(\d+)\.(\d+)", release or os.uname().release)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _cable(ipr: Any, port: str, node_ns: str, mtu: int, bridge: str = BRIDGE, ifname: str = "eth0") -> None:
    """The veth pair, its switch end made a port of `bridge` and up in the same request
    (RTM_NEWLINK takes IFLA_MASTER and IFF_UP for a new device): each netlink call through
    pyroute2 costs about a millisecond of Python, and a 100-node underlay made 900 of them."""
    ipr.link("add", ifname=port, kind="veth", mtu=mtu, master=ipr.link_lookup(ifname=bridge)[0], state="up",
             peer={"ifname": ifname, "net_ns_fd": node_ns, "mtu": mtu})


def _nic(ipr: Any, address: ipaddress.IPv4Interface, ifname: str = "eth0") -> None:
    idx = ipr.link_lookup(ifname=ifname)[0]
    ipr.addr("add", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
    ipr.link("set", index=idx, state="up")


def _route_via(ipr: Any, dst: ipaddress.IPv4Network | str, gateway: ipaddress.IPv4Address | str) -> None:
    ipr.route("add", dst=str(dst), gateway=str(gateway))


def _pair(ipr: Any, ifname: str, peer_ns: str, peer_ifname: str, mtu: int) -> None:
    """A cable that is not a switch port: `ifname` here, `peer_ifname` in `peer_ns`."""
    ipr.link("add", ifname=ifname, kind="veth", mtu=mtu,
             peer={"ifname": peer_ifname, "net_ns_fd": peer_ns, "mtu": mtu})


def _routes(ns: str, router: RouterRoute | None, default_via: ipaddress.IPv4Address | None) -> None:
    """The underlay via the router (several segments) and the default route (--outside)."""
    if router is not None:
        netns.netlink.call(ns, _route_via, *router)
    if default_via is not None:
        netns.netlink.call(ns, _route_via, "0.0.0.0/0", default_via)


def iptables(ns: str, *args: str) -> None:
    """One iptables rule inside a lab namespace (argv, never a shell line)."""
    netns.run(ns, ["iptables", "-w", *args], check=True)


def attach(state: LabState, node: str, node_ns: str, address: ipaddress.IPv4Interface, mtu: int,
           segment: int = 0, router: RouterRoute | None = None, ifname: str = "eth0",
           default_via: ipaddress.IPv4Address | None = None) -> None:
    """Plug `node` into the switch: `ifname` (eth0; eth1 with two NICs) with `address`.

    ip_forward stays 0 here, as in a new namespace: flannel never turns it on, dockerd
    does at its start (``--ip-forward=true``, labkit/docker/iptables.py), and without
    it the node would not route between docker0 and flannel.1. On a routed underlay
    the node's cable goes to its segment's bridge, and `router` = (underlay, gateway)
    gives it a route to the rest of the underlay via the router; `default_via` is
    the default route towards <lab>-outside.
    """
    netns.netlink.call(state.netns("switch"), _cable, node, node_ns, mtu, bridge_name(segment), ifname)
    netns.netlink.call(node_ns, _nic, address, ifname)
    _routes(node_ns, router, default_via)


def attach_vbox_nat(state: LabState, node: str, node_ns: str) -> str:
    """--nics 2: the node's eth0 is a VirtualBox-NAT-like link, 10.0.2.15/24, default via 10.0.2.2.

    Every node gets the same address, as every Vagrant VM does: each NAT is a private
    link to a namespace of its own (<lab>-vbox-NODE, 10.0.2.2, no forwarding, no other
    link), so the addresses never meet and nothing it receives goes anywhere.
    """
    ns = state.netns(f"vbox-{node}")
    state.record("netns", ns)
    netns.add(ns)
    netns.netlink.call(ns, _pair, "eth0", node_ns, "eth0", 1500)
    netns.netlink.call(ns, _nic, ipaddress.IPv4Interface(f"{VBOX_GATEWAY}/24"), "eth0")
    netns.netlink.call(node_ns, _nic, ipaddress.IPv4Interface(VBOX_NODE), "eth0")
    netns.netlink.call(node_ns, _route_via, "0.0.0.0/0", VBOX_GATEWAY)
    return ns


def _plug_private(state: LabState, node: str, node_ns: str, private: ipaddress.IPv4Interface,
                  gateway: ipaddress.IPv4Address, mtu: int) -> None:
    """The node's eth0 on its private link behind its NAT router (eth1 there)."""
    nat_ns = state.netns(f"nat-{node}")
    netns.netlink.call(nat_ns, _pair, "eth1", node_ns, "eth0", mtu)
    netns.netlink.call(nat_ns, _nic, ipaddress.IPv4Interface(f"{gateway}/{private.network.prefixlen}"), "eth1")
    netns.netlink.call(node_ns, _nic, private, "eth0")
    netns.netlink.call(node_ns, _route_via, "0.0.0.0/0", gateway)


def attach_nat(state: LabState, node: str, node_ns: str, outside: ipaddress.IPv4Interface,
               private: ipaddress.IPv4Interface, gateway: ipaddress.IPv4Address, mtu: int, port: int,
               segment: int = 0, router: RouterRoute | None = None,
               default_via: ipaddress.IPv4Address | None = None) -> str:
    """--nat NODE: the node sits behind a NAT router of its own, <lab>-nat-NODE.

    The NAT router has the node's underlay address (`outside`, on the switch) and the
    private link's gateway; the node has only `private` (eth0) and a default route
    via the gateway, so its interface IP differs from the address peers can reach.
    The NAT masquerades what the node sends and forwards UDP `port` (the backend's,
    8472 for VXLAN) to it, like a port forward an admin sets up for flannel.
    """
    ns = state.netns(f"nat-{node}")
    state.record("netns", ns)
    netns.add(ns)
    netns.netlink.call(state.netns("switch"), _cable, node, ns, mtu, bridge_name(segment), "eth0")
    netns.netlink.call(ns, _nic, outside, "eth0")
    _routes(ns, router, default_via)
    _plug_private(state, node, node_ns, private, gateway, mtu)
    netns.write_sysctl(ns, "net/ipv4/ip_forward", "1")
    iptables(ns, "-t", "nat", "-A", "POSTROUTING", "-s", str(private.network), "-o", "eth0", "-j", "MASQUERADE")
    iptables(ns, "-t", "nat", "-A", "PREROUTING", "-i", "eth0", "-p", "udp", "--dport", str(port),
             "-j", "DNAT", "--to-destination", str(private.ip))
    return ns   # the node's own ip_forward is dockerd's to turn on (see attach)


def _set_state(ipr: Any, ifname: str, up: bool) -> None:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"no device {ifname}")
    ipr.link("set", index=found[0], state="up" if up else "down")


def _delete(ipr: Any, ifname: str) -> None:
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise LabError(f"no device {ifname}")
    ipr.link("del", index=found[0])


def _exists(ipr: Any, ifname: str) -> bool:
    return bool(ipr.link_lookup(ifname=ifname))


def cable(state: LabState, node: str, up: bool) -> None:
    """Unplug (or plug back) a node's cable: its port on the switch goes down (up).

    The node's own NIC stays administratively up and shows NO-CARRIER, as when the
    cable is pulled; routes stay (marked linkdown). Behind --nat the cable is the
    NAT router's."""
    netns.netlink.call(state.netns("switch"), _set_state, node, up)


def has_device(ns: str, ifname: str) -> bool:
    return bool(netns.netlink.call(ns, _exists, ifname))


def delete_device(ns: str, ifname: str) -> None:
    """`ip link del IFNAME` in `ns` (a veth: its other end, the switch port, goes too)."""
    netns.netlink.call(ns, _delete, ifname)


def _route_mtu(ipr: Any, address: ipaddress.IPv4Interface, ifname: str, mtu: int) -> None:
    """The connected route of `address` with `mtu` (`ip route replace NET dev IF ... mtu N`)."""
    ipr.route("replace", dst=str(address.network), oif=ipr.link_lookup(ifname=ifname)[0], scope=253,
              proto=2, prefsrc=str(address.ip), metrics={"mtu": mtu})


def build_router(state: LabState, addresses: list[ipaddress.IPv4Interface], mtu: int,
                 drop_icmp: bool = False, hop_mtu: int | None = None) -> str:
    """A routed underlay: `<lab>-router`, one leg per segment, forwarding between them.

    Leg i is eth<i> in the router with ``addresses[i]``, cabled to port ``router<i>``
    of segment i's bridge. Nodes of one segment reach the others only through it, so
    a next hop in another segment is not on-link (what host-gw needs) and VXLAN's
    DirectRouting falls back to encapsulation for those peers.
    """
    ns = state.netns("router")
    state.record("netns", ns)
    netns.add(ns)
    for seg, address in enumerate(addresses):
        netns.netlink.call(state.netns("switch"), _cable, f"router{seg}", ns, mtu, bridge_name(seg),
                           f"eth{seg}")
        netns.netlink.call(ns, _nic, address, f"eth{seg}")
        if hop_mtu:  # forwards at most hop_mtu bytes on this link: "frag needed" beyond that
            netns.netlink.call(ns, _route_mtu, address, f"eth{seg}", hop_mtu)
    netns.write_sysctl(ns, "net/ipv4/ip_forward", "1")
    if drop_icmp:  # what it would send for a too-big DF packet is dropped: a PMTU black hole
        iptables(ns, "-A", "OUTPUT", "-p", "icmp", "--icmp-type", "fragmentation-needed", "-j", "DROP")
    return ns


def build_outside(state: LabState, underlay: ipaddress.IPv4Network, mtu: int, hop_mtu: int | None = None) -> str:
    """--outside: <lab>-outside, a host "on the internet" behind the router.

    It has 203.0.113.1/24 (TEST-NET-3, documentation addresses, inside the lab only) on a
    link to the router (203.0.113.254) and one route back: the underlay via the router.
    Nothing routes the flannel Network there, so a pod's packet arrives with its pod
    address and the answer is lost, unless the node masquerades it (flanneld -ip-masq).
    The router keeps no NAT of its own: the outside sees the nodes' addresses.
    """
    ns = state.netns("outside")
    router = state.netns("router")
    state.record("netns", ns)
    netns.add(ns)
    netns.netlink.call(router, _pair, "outside", ns, "eth0", mtu)
    netns.netlink.call(router, _nic, ipaddress.IPv4Interface(f"{OUTSIDE_ROUTER}/{OUTSIDE_NET.prefixlen}"),
                       "outside")
    netns.netlink.call(ns, _nic, ipaddress.IPv4Interface(f"{OUTSIDE_HOST}/{OUTSIDE_NET.prefixlen}"), "eth0")
    netns.netlink.call(ns, _route_via, underlay, OUTSIDE_ROUTER)
    if hop_mtu:
        netns.netlink.call(router, _route_mtu,
                           ipaddress.IPv4Interface(f"{OUTSIDE_ROUTER}/{OUTSIDE_NET.prefixlen}"), "outside", hop_mtu)
    return ns
