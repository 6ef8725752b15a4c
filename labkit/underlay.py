"""The "physical" network: a switch namespace with a bridge, one cable per node.

Each node's ``eth0`` is one end of a veth pair; the other end is a port of ``br0``
in the lab's switch namespace (``<lab>-switch``). Nothing of it touches the root
namespace: both ends are created directly inside lab namespaces. The cable's MTU
is the node's underlay MTU, the number flannel subtracts its overhead from.
"""
from __future__ import annotations

import ipaddress

from . import netns
from .state import LabState

BRIDGE = "br0"


def _bridge(ipr, name: str = BRIDGE) -> None:
    ipr.link("add", ifname=name, kind="bridge")
    ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")


def bridge_name(segment: int) -> str:
    """Segment 0 is br0 (the only one of a flat underlay), segment 1 br1, ..."""
    return f"br{segment}"


def build_switch(state: LabState, segments: int = 1) -> str:
    ns = state.netns("switch")
    state.record("netns", ns)
    netns.add(ns)
    for seg in range(segments):
        netns.netlink.call(ns, _bridge, bridge_name(seg))
    return ns


def _cable(ipr, port: str, node_ns: str, mtu: int, bridge: str = BRIDGE, ifname: str = "eth0") -> None:
    ipr.link("add", ifname=port, kind="veth", mtu=mtu,
             peer={"ifname": ifname, "net_ns_fd": node_ns, "mtu": mtu})
    idx = ipr.link_lookup(ifname=port)[0]
    ipr.link("set", index=idx, master=ipr.link_lookup(ifname=bridge)[0], state="up")


def _nic(ipr, address: ipaddress.IPv4Interface, ifname: str = "eth0") -> None:
    idx = ipr.link_lookup(ifname=ifname)[0]
    ipr.addr("add", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
    ipr.link("set", index=idx, state="up")


def _route_via(ipr, dst: ipaddress.IPv4Network, gateway: ipaddress.IPv4Address) -> None:
    ipr.route("add", dst=str(dst), gateway=str(gateway))


def attach(state: LabState, node: str, node_ns: str, address: ipaddress.IPv4Interface, mtu: int,
           segment: int = 0, router: tuple | None = None) -> None:
    """Plug `node` into the switch: eth0 with `address`.

    ip_forward stays 0 here, as in a new namespace: flannel never turns it on, dockerd
    does at its start (``--ip-forward=true``, labkit/docker/iptables.py), and without
    it the node would not route between docker0 and flannel.1. On a routed underlay
    the node's cable goes to its segment's bridge, and `router` = (underlay, gateway)
    gives it a route to the rest of the underlay via the router.
    """
    netns.netlink.call(state.netns("switch"), _cable, node, node_ns, mtu, bridge_name(segment))
    netns.netlink.call(node_ns, _nic, address)
    if router is not None:
        netns.netlink.call(node_ns, _route_via, *router)


def build_router(state: LabState, addresses: list[ipaddress.IPv4Interface], mtu: int) -> str:
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
    netns.write_sysctl(ns, "net/ipv4/ip_forward", "1")
    return ns
