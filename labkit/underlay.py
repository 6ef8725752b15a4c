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


def _bridge(ipr) -> None:
    ipr.link("add", ifname=BRIDGE, kind="bridge")
    ipr.link("set", index=ipr.link_lookup(ifname=BRIDGE)[0], state="up")


def build_switch(state: LabState) -> str:
    ns = state.netns("switch")
    state.record("netns", ns)
    netns.add(ns)
    netns.netlink.call(ns, _bridge)
    return ns


def _cable(ipr, port: str, node_ns: str, mtu: int) -> None:
    ipr.link("add", ifname=port, kind="veth", mtu=mtu,
             peer={"ifname": "eth0", "net_ns_fd": node_ns, "mtu": mtu})
    idx = ipr.link_lookup(ifname=port)[0]
    ipr.link("set", index=idx, master=ipr.link_lookup(ifname=BRIDGE)[0], state="up")


def _nic(ipr, address: ipaddress.IPv4Interface) -> None:
    idx = ipr.link_lookup(ifname="eth0")[0]
    ipr.addr("add", index=idx, address=str(address.ip), prefixlen=address.network.prefixlen)
    ipr.link("set", index=idx, state="up")


def attach(state: LabState, node: str, node_ns: str, address: ipaddress.IPv4Interface, mtu: int) -> None:
    """Plug `node` into the switch: eth0 with `address`, and IP forwarding on.

    flannel never turns ip_forward on; a Kubernetes node has it on, and without it
    the node would not route between docker0 and flannel.1.
    """
    netns.netlink.call(state.netns("switch"), _cable, node, node_ns, mtu)
    netns.netlink.call(node_ns, _nic, address)
    netns.write_sysctl(node_ns, "net/ipv4/ip_forward", "1")
